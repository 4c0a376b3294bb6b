/// An NVIDIA GPU attestation report: the SPDM GET_MEASUREMENTS request (37 bytes) followed by the signed
/// MEASUREMENTS response, parsed only as far as bounds need (layout of nvtrust's local GPU verifier,
/// `attestation/spdm_msrt_req_msg.py` and `spdm_msrt_resp_msg.py`). Every length is checked against what is
/// left, and the fields must use the report exactly, so the signature is the last 96 bytes.
struct SPDMAttestationReport {
    static let requestLength = 37
    static let nonceLength = 32
    /// ECDSA P-384, raw r ‖ s (NVIDIA's `signature_length` for Hopper and Blackwell).
    static let signatureLength = 96
    static let getMeasurements: UInt8 = 0xe0
    static let measurements: UInt8 = 0x60
    /// The opaque-data field NVIDIA's verifier reads the driver version from (`OPAQUE_FIELD_ID_DRIVER_VERSION`).
    static let driverVersionField = 3

    let requestNonce: [UInt8]
    let spdmVersion: UInt8
    let measurementBlockCount: Int
    let driverVersion: String?
    /// Request ‖ response without the signature: what the signature covers.
    let signedBytes: ArraySlice<UInt8>
    let signature: ArraySlice<UInt8>

    init(parsing report: [UInt8]) throws(GPUEvidenceError) {
        var reader = Reader(bytes: report)
        // Request: version, code, param1, param2, nonce, slot id.
        let requestVersion = try reader.byte("request")
        guard try reader.byte("request") == Self.getMeasurements else {
            throw .malformedEvidence("the report does not begin with a GET_MEASUREMENTS request")
        }
        _ = try reader.take(2, "request")
        requestNonce = Array(try reader.take(Self.nonceLength, "request nonce"))
        _ = try reader.byte("request slot id")
        // Response: version, code, param1, param2, block count, record length (u24 LE), record, nonce,
        // opaque length (u16 LE), opaque data, signature.
        spdmVersion = try reader.byte("response")
        guard spdmVersion == requestVersion else {
            throw .malformedEvidence("the response's SPDM version is not the request's")
        }
        guard try reader.byte("response") == Self.measurements else {
            throw .malformedEvidence("the response is not MEASUREMENTS")
        }
        _ = try reader.take(2, "response")
        measurementBlockCount = Int(try reader.byte("block count"))
        let recordLength = try reader.littleEndian(3, "record length")
        try Self.checkRecord(try reader.take(recordLength, "measurement record"), blocks: measurementBlockCount)
        _ = try reader.take(Self.nonceLength, "response nonce")
        let opaqueLength = try reader.littleEndian(2, "opaque length")
        driverVersion = try Self.driverVersion(opaque: try reader.take(opaqueLength, "opaque data"))
        signedBytes = report[..<reader.offset]
        signature = try reader.take(Self.signatureLength, "signature")
        guard reader.offset == report.count else {
            throw .malformedEvidence("\(report.count - reader.offset) bytes after the signature")
        }
    }

    /// The measurement record: `blocks` blocks of index, specification, u16 size and a DMTF measurement (type,
    /// u16 value size, value), filling the record exactly.
    private static func checkRecord(_ record: ArraySlice<UInt8>, blocks: Int) throws(GPUEvidenceError) {
        var reader = Reader(bytes: record)
        for _ in 0..<blocks {
            _ = try reader.take(2, "measurement block")
            let size = try reader.littleEndian(2, "measurement block size")
            var measurement = Reader(bytes: try reader.take(size, "measurement"))
            _ = try measurement.byte("measurement value type")
            let valueSize = try measurement.littleEndian(2, "measurement value size")
            _ = try measurement.take(valueSize, "measurement value")
            guard measurement.atEnd else { throw .malformedEvidence("a measurement is longer than its value") }
        }
        guard reader.atEnd else { throw .malformedEvidence("the measurement record is longer than its blocks") }
    }

    /// Opaque data is a list of (u16 type, u16 size, value), filling it exactly; the driver version is a
    /// NUL-terminated string.
    private static func driverVersion(opaque: ArraySlice<UInt8>) throws(GPUEvidenceError) -> String? {
        var reader = Reader(bytes: opaque)
        var version: String?
        while !reader.atEnd {
            let type = try reader.littleEndian(2, "opaque field type")
            let value = try reader.take(try reader.littleEndian(2, "opaque field size"), "opaque field")
            if type == driverVersionField, version == nil {
                version = String(decoding: value.prefix { $0 != 0 }, as: UTF8.self)
            }
        }
        return version
    }
}

/// A cursor over bytes whose every read is bounds-checked and fails as malformed evidence.
private struct Reader {
    let bytes: ArraySlice<UInt8>
    private(set) var offset: Int

    init(bytes: [UInt8]) { self.init(bytes: bytes[...]) }

    init(bytes: ArraySlice<UInt8>) {
        self.bytes = bytes
        self.offset = bytes.startIndex
    }

    var atEnd: Bool { offset == bytes.endIndex }

    mutating func take(_ count: Int, _ what: String) throws(GPUEvidenceError) -> ArraySlice<UInt8> {
        guard count >= 0, bytes.endIndex - offset >= count else {
            throw .malformedEvidence("the report ends inside its \(what)")
        }
        defer { offset += count }
        return bytes[offset..<offset + count]
    }

    mutating func byte(_ what: String) throws(GPUEvidenceError) -> UInt8 {
        try take(1, what).first!
    }

    mutating func littleEndian(_ count: Int, _ what: String) throws(GPUEvidenceError) -> Int {
        try take(count, what).reversed().reduce(0) { $0 << 8 | Int($1) }
    }
}
