/// Keccak-256 (Ethereum's: the original padding byte 0x01, not SHA3's 0x06) for the dev KMS's messages.
///
/// The dev agent's module does not link the proxy's `Signing` module, so it carries its own; its constants are
/// generated from the Keccak reference's definitions (the LFSR for the round constants, the (x, y) walk for the
/// rotations) rather than copied, and the tests compare it with `Signing.Keccak256`. DEVELOPMENT ONLY.
enum DevKeccak256 {
    private static let rate = 136

    /// ι constants: bit 2^j − 1 of round i is output 7i + j of the LFSR x⁸ + x⁶ + x⁵ + x⁴ + 1.
    private static let roundConstants: [UInt64] = {
        var lfsr: UInt8 = 1
        return (0..<24).map { _ in
            var constant: UInt64 = 0
            for j in 0..<7 {
                if lfsr & 1 == 1 { constant ^= 1 << ((1 << j) - 1) }
                lfsr = lfsr & 0x80 != 0 ? (lfsr << 1) ^ 0x71 : lfsr << 1
            }
            return constant
        }
    }()

    /// ρ offsets by lane x + 5y: (t + 1)(t + 2)/2 along the walk (x, y) → (y, 2x + 3y) from (1, 0).
    private static let rotations: [UInt64] = {
        var offsets = [UInt64](repeating: 0, count: 25)
        var (x, y) = (1, 0)
        for t in 0..<24 {
            offsets[x + 5 * y] = UInt64(((t + 1) * (t + 2) / 2) % 64)
            (x, y) = (y, (2 * x + 3 * y) % 5)
        }
        return offsets
    }()

    /// The 32-byte digest.
    static func hash(_ message: [UInt8]) -> [UInt8] {
        // pad10*1 with Keccak's domain bit; when one byte is left, both bits land in it (0x81).
        var padded = message + [0x01] + [UInt8](repeating: 0, count: (rate - (message.count + 1) % rate) % rate)
        padded[padded.count - 1] |= 0x80
        var state = [UInt64](repeating: 0, count: 25)
        for start in stride(from: 0, to: padded.count, by: rate) {
            for lane in 0..<(rate / 8) {
                // Lanes are little-endian.
                var word: UInt64 = 0
                for byte in (0..<8).reversed() {
                    word = word << 8 | UInt64(padded[start + lane * 8 + byte])
                }
                state[lane] ^= word
            }
            permute(&state)
        }
        return state.prefix(4).flatMap { lane in (0..<8).map { UInt8(truncatingIfNeeded: lane >> ($0 * 8)) } }
    }

    private static func permute(_ a: inout [UInt64]) {
        for round in 0..<24 {
            var c = [UInt64](repeating: 0, count: 5)
            for x in 0..<5 {
                for y in 0..<5 { c[x] ^= a[x + 5 * y] }
            }
            for x in 0..<5 {
                let d = c[(x + 4) % 5] ^ rotate(c[(x + 1) % 5], 1)
                for y in 0..<5 { a[x + 5 * y] ^= d }
            }
            var b = [UInt64](repeating: 0, count: 25)
            for x in 0..<5 {
                for y in 0..<5 { b[y + 5 * ((2 * x + 3 * y) % 5)] = rotate(a[x + 5 * y], rotations[x + 5 * y]) }
            }
            for x in 0..<5 {
                for y in 0..<5 { a[x + 5 * y] = b[x + 5 * y] ^ (~b[(x + 1) % 5 + 5 * y] & b[(x + 2) % 5 + 5 * y]) }
            }
            a[0] ^= roundConstants[round]
        }
    }

    private static func rotate(_ value: UInt64, _ count: UInt64) -> UInt64 {
        count == 0 ? value : value << count | value >> (64 - count)
    }
}
