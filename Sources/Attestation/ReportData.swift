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

extension ReportData {
    /// Version 3 identity (SPEC §6): SHA-256 over a label and length-prefixed parts, so the quote binds the
    /// signing address, the TLS key (when configured), the E2EE v3 key list `K` and this report's GPU evidence.
    public static func v3Identity(
        addressBytes: [UInt8], spkiSHA256: [UInt8]?, keyConfig: [UInt8], nvidiaPayloadSHA256: [UInt8]?
    ) -> [UInt8] {
        precondition(keyConfig.count <= Int(UInt16.max), "K is at most 65 535 bytes")
        var message = Array("vllm-proxy/report-data/v3".utf8) + [0]
        message += [UInt8(addressBytes.count)] + addressBytes
        message += [UInt8(spkiSHA256?.count ?? 0)] + (spkiSHA256 ?? [])
        message += [UInt8(keyConfig.count >> 8), UInt8(keyConfig.count & 0xff)] + keyConfig
        message += [UInt8(nvidiaPayloadSHA256?.count ?? 0)] + (nvidiaPayloadSHA256 ?? [])
        return Array(SHA256.hash(data: message))
    }

    /// Version 3: the identity above ‖ nonce.
    public static func v3(
        addressBytes: [UInt8], spkiSHA256: [UInt8]?, keyConfig: [UInt8], nvidiaPayload: String?, nonce: [UInt8]
    ) -> [UInt8] {
        precondition(nonce.count == 32, "the nonce is 32 bytes")
        let gpu = nvidiaPayload.map { Array(SHA256.hash(data: Array($0.utf8))) }
        return v3Identity(
            addressBytes: addressBytes, spkiSHA256: spkiSHA256, keyConfig: keyConfig, nvidiaPayloadSHA256: gpu)
            + nonce
    }
}
