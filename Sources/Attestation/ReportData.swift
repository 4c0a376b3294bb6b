import Crypto

/// The 64 bytes the TDX quote carries as report data: identity(32) ‖ nonce(32), per SPEC §6.
public enum ReportData {
    /// Version 1: the signing address bytes (20 for ecdsa, 32 for ed25519) right-padded with zeros.
    public static func v1(identity: [UInt8], nonce: [UInt8]) -> [UInt8] {
        precondition(identity.count <= 32, "a v1 identity is at most 32 bytes")
        precondition(nonce.count == 32, "the nonce is 32 bytes")
        return identity + [UInt8](repeating: 0, count: 32 - identity.count) + nonce
    }

    /// Version 2: SHA-256(signing address bytes ‖ SHA-256(leaf certificate SPKI DER)).
    public static func v2(addressBytes: [UInt8], spkiDER: [UInt8], nonce: [UInt8]) -> [UInt8] {
        v2(addressBytes: addressBytes, spkiSHA256: Array(SHA256.hash(data: spkiDER)), nonce: nonce)
    }

    /// Version 2 from an already computed SPKI digest, which is what the service caches per certificate.
    public static func v2(addressBytes: [UInt8], spkiSHA256: [UInt8], nonce: [UInt8]) -> [UInt8] {
        precondition(spkiSHA256.count == 32, "the SPKI digest is 32 bytes")
        precondition(nonce.count == 32, "the nonce is 32 bytes")
        return Array(SHA256.hash(data: addressBytes + spkiSHA256)) + nonce
    }
}
