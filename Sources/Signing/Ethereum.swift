/// Ethereum account addresses derived from secp256k1 public keys.
public enum EthereumAddress {
    /// The 20-byte address: the last 20 bytes of Keccak-256 over the 64-byte x‖y public key.
    public static func bytes(of key: Secp256k1PublicKey) -> [UInt8] {
        Array(Keccak256.hash(key.raw64).suffix(20))
    }

    /// EIP-55 mixed-case checksum form, `0x`-prefixed.
    public static func checksummed(_ bytes: [UInt8]) -> String {
        let lower = Array(Hex.encode(bytes).utf8)
        let hash = Keccak256.hash(lower)
        var out = Array("0x".utf8)
        for (index, char) in lower.enumerated() {
            let nibble = (index % 2 == 0) ? hash[index / 2] >> 4 : hash[index / 2] & 0x0f
            if nibble >= 8, (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(char) {
                out.append(char - 32)
            } else {
                out.append(char)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// EIP-191 version 0x45 ("personal_sign") message hashing.
public enum EIP191 {
    /// Keccak-256 of `"\x19Ethereum Signed Message:\n" + decimal byte length + message`.
    public static func digest(_ message: [UInt8]) -> [UInt8] {
        let prefix = Array("\u{19}Ethereum Signed Message:\n\(message.count)".utf8)
        return Keccak256.hash(prefix + message)
    }
}
