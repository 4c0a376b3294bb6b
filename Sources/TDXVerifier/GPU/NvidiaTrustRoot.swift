import Crypto
import SwiftASN1
import X509

/// The anchor GPU certificate chains end in: NVIDIA's device identity root (pinned) or an override (tests,
/// `NVIDIA_ROOT_CA_FILE`), named in every verdict.
public struct NvidiaTrustRoot: Sendable {
    public let certificate: Certificate
    public let der: [UInt8]
    /// `"nvidia"` for the pinned root, else `"override:<hex SHA-256 of its DER>"`.
    public let name: String

    public init(der: [UInt8], pinned: Bool = false) throws(GPUEvidenceError) {
        guard let certificate = try? Certificate(derEncoded: der) else {
            throw .invalidTrustRoot("the trust root is not a DER certificate")
        }
        self.certificate = certificate
        self.der = der
        self.name = pinned ? "nvidia" : "override:" + TDXHex.encode(SHA256.hash(data: der))
    }

    /// An override root from the text of a PEM file holding exactly one certificate; reading the file is the
    /// caller's business, so this stays a pure function.
    public init(pem: String) throws(GPUEvidenceError) {
        guard let document = try? PEMDocument(pemString: pem.trimmingWhitespace()),
            document.discriminator == "CERTIFICATE"
        else { throw .invalidTrustRoot("the trust root is not one PEM certificate") }
        try self.init(der: Array(document.derBytes))
    }
}

extension String {
    /// Without leading and trailing ASCII whitespace: PEM files end in a newline that `PEMDocument` refuses.
    fileprivate func trimmingWhitespace() -> String {
        let bytes = Array(utf8)
        let isSpace: (UInt8) -> Bool = { $0 == 0x20 || $0 == 0x0a || $0 == 0x0d || $0 == 0x09 }
        guard let first = bytes.firstIndex(where: { !isSpace($0) }), let last = bytes.lastIndex(where: { !isSpace($0) })
        else { return "" }
        return String(decoding: bytes[first...last], as: UTF8.self)
    }
}
