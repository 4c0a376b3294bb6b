/// A parsed Intel TDX quote, version 4 or 5 (Intel's "TDX DCAP Quote Generation Library and Quote
/// Verification Library" layout): header, TD report body, and the ECDSA-P256 signature data with its
/// certification data (type 6, the QE report, carrying type 5, the PCK certificate chain). Parsing only
/// reads: nothing here is trusted until `TDXQuoteVerifier` checked it.
public struct TDXQuote: Sendable, Equatable {
    public let version: UInt16
    public let attestationKeyType: UInt16
    public let teeType: UInt32
    public let qeVendorID: [UInt8]
    public let body: TDReport
    /// Header ‖ (v5: body descriptor ‖) body: what the attestation key signs.
    public let signedBytes: [UInt8]
    /// r ‖ s, 64 bytes.
    public let signature: [UInt8]
    /// The attestation key, x ‖ y (64 bytes).
    public let attestationKey: [UInt8]
    /// The QE's SGX enclave report (384 bytes) as signed by the PCK key.
    public let qeReport: [UInt8]
    public let qeReportSignature: [UInt8]
    public let qeAuthenticationData: [UInt8]
    /// The PCK certificate chain, PEM text, leaf first.
    public let pckChainPEM: [UInt8]

    public static let teeTypeTDX: UInt32 = 0x81
    public static let attestationKeyECDSAP256: UInt16 = 2

    /// Parses `bytes`; bytes after the signature data are ignored (real quotes carry padding).
    public init(parsing bytes: [UInt8]) throws(TDXVerificationError) {
        var reader = ByteReader(bytes)
        version = try reader.u16()
        attestationKeyType = try reader.u16()
        teeType = try reader.u32()
        _ = try reader.take(4)  // reserved (v4) / QE SVN and PCE SVN (later layouts): not used
        qeVendorID = try reader.take(16)
        _ = try reader.take(20)  // user data
        guard version == 4 || version == 5 else { throw .unsupportedQuote("version \(version)") }
        guard teeType == Self.teeTypeTDX else { throw .unsupportedQuote("TEE type \(teeType) is not TDX") }
        guard attestationKeyType == Self.attestationKeyECDSAP256 else {
            throw .unsupportedQuote("attestation key type \(attestationKeyType)")
        }
        var bodyLength = TDReport.length10
        var bodyType: UInt16 = 2
        if version == 5 {
            bodyType = try reader.u16()
            bodyLength = Int(try reader.u32())
            switch (bodyType, bodyLength) {
            case (2, TDReport.length10), (3, TDReport.length15): break
            default: throw .unsupportedQuote("v5 body type \(bodyType) of \(bodyLength) bytes")
            }
        }
        body = try TDReport(parsing: try reader.take(bodyLength), v15: bodyType == 3)
        signedBytes = Array(bytes[0..<reader.offset])

        let signatureDataLength = Int(try reader.u32())
        var signatureData = ByteReader(try reader.take(signatureDataLength))
        signature = try signatureData.take(64)
        attestationKey = try signatureData.take(64)
        let certificationType = try signatureData.u16()
        let certificationLength = Int(try signatureData.u32())
        guard certificationType == 6 else { throw .unsupportedQuote("certification data type \(certificationType)") }
        var qe = ByteReader(try signatureData.take(certificationLength))
        qeReport = try qe.take(384)
        qeReportSignature = try qe.take(64)
        qeAuthenticationData = try qe.take(Int(try qe.u16()))
        let innerType = try qe.u16()
        let innerLength = Int(try qe.u32())
        guard innerType == 5 else { throw .unsupportedQuote("QE certification data type \(innerType)") }
        pckChainPEM = try qe.take(innerLength)
    }
}

/// The TD report a TDX quote carries (TDX 1.0: 584 bytes; 1.5 adds TEE_TCB_SVN2 and MRSERVICETD: 648).
public struct TDReport: Sendable, Equatable {
    public static let length10 = 584
    public static let length15 = 648

    public let teeTCBSVN: [UInt8]
    public let mrSeam: [UInt8]
    public let mrSignerSeam: [UInt8]
    public let seamAttributes: [UInt8]
    public let tdAttributes: [UInt8]
    public let xfam: [UInt8]
    public let mrTD: [UInt8]
    public let mrConfigID: [UInt8]
    public let mrOwner: [UInt8]
    public let mrOwnerConfig: [UInt8]
    public let rtmr: [[UInt8]]
    public let reportData: [UInt8]
    /// TDX 1.5 only.
    public let teeTCBSVN2: [UInt8]?
    public let mrServiceTD: [UInt8]?

    init(parsing bytes: [UInt8], v15: Bool) throws(TDXVerificationError) {
        var reader = ByteReader(bytes)
        teeTCBSVN = try reader.take(16)
        mrSeam = try reader.take(48)
        mrSignerSeam = try reader.take(48)
        seamAttributes = try reader.take(8)
        tdAttributes = try reader.take(8)
        xfam = try reader.take(8)
        mrTD = try reader.take(48)
        mrConfigID = try reader.take(48)
        mrOwner = try reader.take(48)
        mrOwnerConfig = try reader.take(48)
        rtmr = [try reader.take(48), try reader.take(48), try reader.take(48), try reader.take(48)]
        reportData = try reader.take(64)
        if v15 {
            teeTCBSVN2 = try reader.take(16)
            mrServiceTD = try reader.take(48)
        } else {
            teeTCBSVN2 = nil
            mrServiceTD = nil
        }
    }
}

/// Little-endian reads that fail closed on truncation.
struct ByteReader {
    let bytes: [UInt8]
    private(set) var offset = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    mutating func take(_ count: Int) throws(TDXVerificationError) -> [UInt8] {
        guard count >= 0, count <= bytes.count - offset else { throw .malformedQuote }
        defer { offset += count }
        return Array(bytes[offset..<(offset + count)])
    }

    mutating func u16() throws(TDXVerificationError) -> UInt16 {
        let b = try take(2)
        return UInt16(b[0]) | UInt16(b[1]) << 8
    }

    mutating func u32() throws(TDXVerificationError) -> UInt32 {
        let b = try take(4)
        return UInt32(b[0]) | UInt32(b[1]) << 8 | UInt32(b[2]) << 16 | UInt32(b[3]) << 24
    }
}
