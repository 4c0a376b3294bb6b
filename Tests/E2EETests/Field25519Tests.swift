import Testing

@testable import E2EE

@Suite struct Field25519Tests {
    /// p − 1 as 32 little-endian bytes.
    static let minusOneBytes: [UInt8] = [0xEC] + [UInt8](repeating: 0xFF, count: 30) + [0x7F]

    @Test func canonicalEncodingOnly() throws {
        let minusOne = try #require(Field25519(canonicalLittleEndian: Self.minusOneBytes))
        #expect(minusOne.littleEndianBytes == Self.minusOneBytes)
        #expect(minusOne == Field25519.zero - Field25519.one)
        // p itself and 2²⁵⁵ − 1 are not canonical.
        #expect(Field25519(canonicalLittleEndian: [0xED] + [UInt8](repeating: 0xFF, count: 30) + [0x7F]) == nil)
        #expect(Field25519(canonicalLittleEndian: [UInt8](repeating: 0xFF, count: 31) + [0x7F]) == nil)
    }

    @Test func arithmeticIdentities() throws {
        let minusOne = Field25519.zero - Field25519.one
        #expect(minusOne * minusOne == Field25519.one)
        #expect(minusOne + Field25519.one == Field25519.zero)
        #expect(minusOne + minusOne == Field25519.zero - Field25519(2))
        let samples: [Field25519] = [
            Field25519(2), Field25519(121_666), minusOne, Field25519(UInt64.max),
            try #require(Field25519(canonicalLittleEndian: (0..<32).map { UInt8($0 * 7 + 3) & 0x7F })),
        ]
        for x in samples {
            #expect(x * x.inverse == Field25519.one)
            #expect((x * x).isSquare)
            #expect(x - x == Field25519.zero)
            #expect((x + minusOne) + Field25519.one == x)
        }
        #expect(Field25519.zero.inverse == Field25519.zero)
    }

    @Test func quadraticCharacter() {
        // p ≡ 5 (mod 8): −1 is a square, 2 is not.
        #expect((Field25519.zero - Field25519.one).isSquare)
        #expect(!Field25519(2).isSquare)
        #expect(Field25519.zero.isSquare)
    }

    @Test func basePointMapsToNine() throws {
        // The Ed25519 base point (y = 4/5) corresponds to the X25519 base point u = 9.
        let base: [UInt8] = [0x58] + [UInt8](repeating: 0x66, count: 31)
        let u = try #require(Ed25519ToX25519.publicKey(ed25519: base))
        #expect(u == [9] + [UInt8](repeating: 0, count: 31))
    }
}
