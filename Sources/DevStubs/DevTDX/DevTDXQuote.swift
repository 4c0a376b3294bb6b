import Crypto

/// A TDX v4 quote in Intel's format (ECDSA-P256 attestation key, certification data type 6 carrying the PCK chain
/// as type 5), made by the dev PKI instead of a quoting enclave: the structure real verifiers check, with dev
/// measurements in the TD report.
enum DevTDXQuote {
    /// Intel's QE vendor id: dcap-qvl refuses any other.
    static let intelQEVendorID: [UInt8] = [
        0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
    ]
    /// TD attributes: only SEPT_VE_DISABLE (bit 28), as dstack TDs run (DEBUG off; dcap-qvl requires bit 28).
    static let tdAttributes: [UInt8] = [0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00]
    /// XFAM of a typical TD (x87, SSE, AVX, AVX-512, PKRU state).
    static let xfam: [UInt8] = [0xe7, 0x02, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00]
    /// Where the report data starts in a v4 quote: header 48 + 520 bytes of the TD report before it.
    static let reportDataOffset = 48 + 520

    /// The quote over `reportData` (64 bytes) for `guest`, signed by `attestationKey`, which a QE report signed by
    /// the PCK key binds through `qeAuthData` (32 bytes).
    static func make(
        reportData: [UInt8], guest: DevTDXGuest, pki: DevTDXPKI, attestationKey: P256.Signing.PrivateKey,
        qeAuthData: [UInt8]
    ) throws -> [UInt8] {
        precondition(reportData.count == 64 && qeAuthData.count == 32)
        let zeros48 = [UInt8](repeating: 0, count: 48)
        // Header: version 4, attestation key type 2, TEE type 0x81 (TDX), QE and PCE SVN 0 (as real quotes),
        // QE vendor id, then 20 bytes of user data (a dev tag here).
        var header = le16(4) + le16(2) + le32(0x81) + le16(0) + le16(0) + intelQEVendorID
        header += padded(Array("DEV-ONLY".utf8), to: 20)
        var body = DevTDXTCB.teeTCBSVN
        body += padded(Array("DEV-ONLY MRSEAM, NOT SECURE".utf8), to: 48)
        body += DevTDXTCB.moduleMRSigner + [UInt8](repeating: 0, count: 8) + tdAttributes + xfam
        body += guest.mrTD + zeros48 + zeros48 + zeros48  // MRTD, MRCONFIGID, MROWNER, MROWNERCONFIG
        body += guest.rtmr0to2.joined() + guest.rtmr3 + reportData
        precondition(header.count == 48 && body.count == 584)
        let signed = header + body
        let signature = Array(try attestationKey.signature(for: signed).rawRepresentation)
        let attestationPublicKey = Array(attestationKey.publicKey.rawRepresentation)  // x ‖ y

        let qeReportData =
            Array(SHA256.hash(data: attestationPublicKey + qeAuthData)) + [UInt8](repeating: 0, count: 32)
        let qeReport = qeReportBody(reportData: qeReportData)
        let qeReportSignature = Array(try pki.pckKey.signature(for: qeReport).rawRepresentation)
        let chain = Array(pki.pckChainPEM.utf8) + [0]  // real quotes end the PEM with a NUL
        var inner = qeReport + qeReportSignature + le16(UInt16(qeAuthData.count)) + qeAuthData
        inner += le16(5) + le32(UInt32(chain.count)) + chain
        let auth = signature + attestationPublicKey + le16(6) + le32(UInt32(inner.count)) + inner
        return signed + le32(UInt32(auth.count)) + auth
    }

    /// The QE's SGX enclave report (384 bytes) with Intel's TD QE identity values and this report data.
    private static func qeReportBody(reportData: [UInt8]) -> [UInt8] {
        var report = DevTDXTCB.cpuSVN + le32(0) + [UInt8](repeating: 0, count: 28) + DevTDXTCB.qeAttributes
        report += padded(Array("DEV-ONLY QE MRENCLAVE".utf8), to: 32) + [UInt8](repeating: 0, count: 32)
        report += DevTDXTCB.qeMRSigner + [UInt8](repeating: 0, count: 96)
        report += le16(DevTDXTCB.qeISVProdID) + le16(DevTDXTCB.qeISVSVN) + [UInt8](repeating: 0, count: 60)
        report += reportData
        precondition(report.count == 384)
        return report
    }

    private static func le16(_ value: UInt16) -> [UInt8] { [UInt8(value & 0xff), UInt8(value >> 8)] }
    private static func le32(_ value: UInt32) -> [UInt8] {
        (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
    }
    private static func padded(_ bytes: [UInt8], to count: Int) -> [UInt8] {
        bytes + [UInt8](repeating: 0, count: count - bytes.count)
    }
}
