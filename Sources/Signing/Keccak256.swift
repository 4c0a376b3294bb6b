/// Keccak-256 as Ethereum uses it: the original Keccak submission's padding (`0x01`), not FIPS 202 SHA3-256 (`0x06`).
///
/// swift-crypto only ships SHA3, whose different padding byte gives different digests, so the
/// permutation is implemented here. Inputs are public (messages to sign, public keys), so the
/// implementation does not need to be constant-time. Every receipt hashes two EIP-191 messages, so the
/// permutation works on a stack buffer with the lanes of a row in locals (no arrays, no bounds checks in
/// the rounds): a naive array version cost ~2.5 µs per block, ~6 % of a request's CPU.
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
                    state[lane] ^= UInt64(littleEndian: input.loadUnaligned(fromByteOffset: offset + lane * 8, as: UInt64.self))
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
                    for byte in 0..<8 { digest[lane * 8 + byte] = UInt8(truncatingIfNeeded: word >> (8 * UInt64(byte))) }
                }
                count = 32
            }
        }
    }

    /// Keccak-f[1600], 24 rounds, on 25 lanes indexed x + 5·y.
    private static func permute(_ a: UnsafeMutableBufferPointer<UInt64>) {
        // Round constants and, for ρ and π, the lane each step reads (walking the π cycle from lane 1)
        // with its rotation; as tuples they stay in registers and read-only memory, never on the heap.
        let roundConstants: [24 of UInt64] = [
            0x0000_0000_0000_0001, 0x0000_0000_0000_8082, 0x8000_0000_0000_808A, 0x8000_0000_8000_8000,
            0x0000_0000_0000_808B, 0x0000_0000_8000_0001, 0x8000_0000_8000_8081, 0x8000_0000_0000_8009,
            0x0000_0000_0000_008A, 0x0000_0000_0000_0088, 0x0000_0000_8000_8009, 0x0000_0000_8000_000A,
            0x0000_0000_8000_808B, 0x8000_0000_0000_008B, 0x8000_0000_0000_8089, 0x8000_0000_0000_8003,
            0x8000_0000_0000_8002, 0x8000_0000_0000_0080, 0x0000_0000_0000_800A, 0x8000_0000_8000_000A,
            0x8000_0000_8000_8081, 0x8000_0000_0000_8080, 0x0000_0000_8000_0001, 0x8000_0000_8000_8008,
        ]
        let piLanes: [24 of Int] = [10, 7, 11, 17, 18, 3, 5, 16, 8, 21, 24, 4, 15, 23, 19, 13, 12, 2, 20, 14, 22, 9, 6, 1]
        let rotations: [24 of UInt64] = [1, 3, 6, 10, 15, 21, 28, 36, 45, 55, 2, 14, 27, 41, 56, 8, 25, 43, 62, 18, 39, 61, 20, 44]
        let p = a.baseAddress!
        for round in 0..<24 {
            // θ
            let c0 = p[0] ^ p[5] ^ p[10] ^ p[15] ^ p[20]
            let c1 = p[1] ^ p[6] ^ p[11] ^ p[16] ^ p[21]
            let c2 = p[2] ^ p[7] ^ p[12] ^ p[17] ^ p[22]
            let c3 = p[3] ^ p[8] ^ p[13] ^ p[18] ^ p[23]
            let c4 = p[4] ^ p[9] ^ p[14] ^ p[19] ^ p[24]
            let d0 = c4 ^ rotl(c1, 1)
            let d1 = c0 ^ rotl(c2, 1)
            let d2 = c1 ^ rotl(c3, 1)
            let d3 = c2 ^ rotl(c4, 1)
            let d4 = c3 ^ rotl(c0, 1)
            for y in stride(from: 0, to: 25, by: 5) {
                p[y] ^= d0
                p[y + 1] ^= d1
                p[y + 2] ^= d2
                p[y + 3] ^= d3
                p[y + 4] ^= d4
            }
            // ρ and π together: lane (x, y) moves to (y, 2x + 3y), rotated.
            var carried = p[1]
            for step in 0..<24 {
                let lane = piLanes[step]
                let next = p[lane]
                p[lane] = rotl(carried, rotations[step])
                carried = next
            }
            // χ, one row at a time.
            for y in stride(from: 0, to: 25, by: 5) {
                let b0 = p[y], b1 = p[y + 1], b2 = p[y + 2], b3 = p[y + 3], b4 = p[y + 4]
                p[y] = b0 ^ (~b1 & b2)
                p[y + 1] = b1 ^ (~b2 & b3)
                p[y + 2] = b2 ^ (~b3 & b4)
                p[y + 3] = b3 ^ (~b4 & b0)
                p[y + 4] = b4 ^ (~b0 & b1)
            }
            // ι
            p[0] ^= roundConstants[round]
        }
    }

    /// Rotation by 1…63 (every Keccak offset but lane 0's, which ρ never rotates here).
    @inline(__always)
    private static func rotl(_ value: UInt64, _ count: UInt64) -> UInt64 {
        (value &<< count) | (value &>> (64 &- count))
    }
}
