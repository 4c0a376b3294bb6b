/// Keccak-256 as Ethereum uses it: the original Keccak submission's padding (`0x01`), not FIPS 202 SHA3-256 (`0x06`).
///
/// swift-crypto only ships SHA3, whose different padding byte gives different digests, so the
/// permutation is implemented here. Inputs are public (messages to sign, public keys), so the
/// implementation does not need to be constant-time. Every receipt hashes two EIP-191 messages, so the
/// permutation keeps the 25 lanes in locals, fully unrolled (no arrays, no bounds checks, no allocation):
/// the array version cost ~5 µs per block on the bench machine, this one 0.6 µs.
public enum Keccak256 {
    /// Rate in bytes for a 256-bit capacity-512 sponge: (1600 − 2·256) / 8.
    private static let rate = 136

    /// The 32-byte Keccak-256 digest of `data`.
    public static func hash<B: Collection<UInt8>>(_ data: B) -> [UInt8] {
        if let digest = data.withContiguousStorageIfAvailable({ hash(UnsafeRawBufferPointer($0)) }) {
            return digest
        }
        return Array(data).withUnsafeBytes { hash($0) }
    }

    private static func hash(_ input: UnsafeRawBufferPointer) -> [UInt8] {
        withUnsafeTemporaryAllocation(of: UInt64.self, capacity: 25) { state in
            state.initialize(repeating: 0)
            var offset = 0
            while input.count - offset >= rate {
                for lane in 0..<(rate / 8) {
                    state[lane] ^= UInt64(
                        littleEndian: input.loadUnaligned(fromByteOffset: offset + lane * 8, as: UInt64.self))
                }
                permute(state)
                offset += rate
            }
            // The last, partial block with pad10*1 and the Keccak domain bit; when only one byte is free
            // both bits land in it (0x81).
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: rate) { block in
                block.initialize(repeating: 0)
                let used = input.count - offset
                for index in 0..<used { block[index] = input[offset + index] }
                block[used] ^= 0x01
                block[rate - 1] ^= 0x80
                let raw = UnsafeRawBufferPointer(block)
                for lane in 0..<(rate / 8) {
                    state[lane] ^= UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: lane * 8, as: UInt64.self))
                }
            }
            permute(state)
            return [UInt8](unsafeUninitializedCapacity: 32) { digest, count in
                for lane in 0..<4 {
                    let word = state[lane]
                    for byte in 0..<8 {
                        digest[lane * 8 + byte] = UInt8(truncatingIfNeeded: word >> (8 * UInt64(byte)))
                    }
                }
                count = 32
            }
        }
    }

    /// Keccak-f[1600], 24 rounds, on 25 lanes indexed x + 5·y, unrolled over locals (generated from the
    /// θ ρ π χ ι definitions; the rotations are the standard ρ offsets).
    private static func permute(_ a: UnsafeMutableBufferPointer<UInt64>) {
        let roundConstants: [24 of UInt64] = [
            0x0000_0000_0000_0001, 0x0000_0000_0000_8082, 0x8000_0000_0000_808A, 0x8000_0000_8000_8000,
            0x0000_0000_0000_808B, 0x0000_0000_8000_0001, 0x8000_0000_8000_8081, 0x8000_0000_0000_8009,
            0x0000_0000_0000_008A, 0x0000_0000_0000_0088, 0x0000_0000_8000_8009, 0x0000_0000_8000_000A,
            0x0000_0000_8000_808B, 0x8000_0000_0000_008B, 0x8000_0000_0000_8089, 0x8000_0000_0000_8003,
            0x8000_0000_0000_8002, 0x8000_0000_0000_0080, 0x0000_0000_0000_800A, 0x8000_0000_8000_000A,
            0x8000_0000_8000_8081, 0x8000_0000_0000_8080, 0x0000_0000_8000_0001, 0x8000_0000_8000_8008,
        ]
        let p = a.baseAddress!
        var a00 = p[0]
        var a01 = p[1]
        var a02 = p[2]
        var a03 = p[3]
        var a04 = p[4]
        var a05 = p[5]
        var a06 = p[6]
        var a07 = p[7]
        var a08 = p[8]
        var a09 = p[9]
        var a10 = p[10]
        var a11 = p[11]
        var a12 = p[12]
        var a13 = p[13]
        var a14 = p[14]
        var a15 = p[15]
        var a16 = p[16]
        var a17 = p[17]
        var a18 = p[18]
        var a19 = p[19]
        var a20 = p[20]
        var a21 = p[21]
        var a22 = p[22]
        var a23 = p[23]
        var a24 = p[24]
        for round in 0..<24 {
            // θ
            let c0 = a00 ^ a05 ^ a10 ^ a15 ^ a20
            let c1 = a01 ^ a06 ^ a11 ^ a16 ^ a21
            let c2 = a02 ^ a07 ^ a12 ^ a17 ^ a22
            let c3 = a03 ^ a08 ^ a13 ^ a18 ^ a23
            let c4 = a04 ^ a09 ^ a14 ^ a19 ^ a24
            let d0 = c4 ^ rotl(c1, 1)
            let d1 = c0 ^ rotl(c2, 1)
            let d2 = c1 ^ rotl(c3, 1)
            let d3 = c2 ^ rotl(c4, 1)
            let d4 = c3 ^ rotl(c0, 1)
            // ρ and π: lane (x, y) moves to (y, 2x + 3y), rotated; θ's d applied on the way.
            let b00 = a00 ^ d0
            let b16 = rotl(a05 ^ d0, 36)
            let b07 = rotl(a10 ^ d0, 3)
            let b23 = rotl(a15 ^ d0, 41)
            let b14 = rotl(a20 ^ d0, 18)
            let b10 = rotl(a01 ^ d1, 1)
            let b01 = rotl(a06 ^ d1, 44)
            let b17 = rotl(a11 ^ d1, 10)
            let b08 = rotl(a16 ^ d1, 45)
            let b24 = rotl(a21 ^ d1, 2)
            let b20 = rotl(a02 ^ d2, 62)
            let b11 = rotl(a07 ^ d2, 6)
            let b02 = rotl(a12 ^ d2, 43)
            let b18 = rotl(a17 ^ d2, 15)
            let b09 = rotl(a22 ^ d2, 61)
            let b05 = rotl(a03 ^ d3, 28)
            let b21 = rotl(a08 ^ d3, 55)
            let b12 = rotl(a13 ^ d3, 25)
            let b03 = rotl(a18 ^ d3, 21)
            let b19 = rotl(a23 ^ d3, 56)
            let b15 = rotl(a04 ^ d4, 27)
            let b06 = rotl(a09 ^ d4, 20)
            let b22 = rotl(a14 ^ d4, 39)
            let b13 = rotl(a19 ^ d4, 8)
            let b04 = rotl(a24 ^ d4, 14)
            // χ
            a00 = b00 ^ (~b01 & b02)
            a01 = b01 ^ (~b02 & b03)
            a02 = b02 ^ (~b03 & b04)
            a03 = b03 ^ (~b04 & b00)
            a04 = b04 ^ (~b00 & b01)
            a05 = b05 ^ (~b06 & b07)
            a06 = b06 ^ (~b07 & b08)
            a07 = b07 ^ (~b08 & b09)
            a08 = b08 ^ (~b09 & b05)
            a09 = b09 ^ (~b05 & b06)
            a10 = b10 ^ (~b11 & b12)
            a11 = b11 ^ (~b12 & b13)
            a12 = b12 ^ (~b13 & b14)
            a13 = b13 ^ (~b14 & b10)
            a14 = b14 ^ (~b10 & b11)
            a15 = b15 ^ (~b16 & b17)
            a16 = b16 ^ (~b17 & b18)
            a17 = b17 ^ (~b18 & b19)
            a18 = b18 ^ (~b19 & b15)
            a19 = b19 ^ (~b15 & b16)
            a20 = b20 ^ (~b21 & b22)
            a21 = b21 ^ (~b22 & b23)
            a22 = b22 ^ (~b23 & b24)
            a23 = b23 ^ (~b24 & b20)
            a24 = b24 ^ (~b20 & b21)
            // ι
            a00 ^= roundConstants[round]
        }
        p[0] = a00
        p[1] = a01
        p[2] = a02
        p[3] = a03
        p[4] = a04
        p[5] = a05
        p[6] = a06
        p[7] = a07
        p[8] = a08
        p[9] = a09
        p[10] = a10
        p[11] = a11
        p[12] = a12
        p[13] = a13
        p[14] = a14
        p[15] = a15
        p[16] = a16
        p[17] = a17
        p[18] = a18
        p[19] = a19
        p[20] = a20
        p[21] = a21
        p[22] = a22
        p[23] = a23
        p[24] = a24
    }

    /// Rotation by 1…63 (every Keccak offset but lane 0's, which ρ never rotates here).
    @inline(__always)
    private static func rotl(_ value: UInt64, _ count: UInt64) -> UInt64 {
        (value &<< count) | (value &>> (64 &- count))
    }
}
