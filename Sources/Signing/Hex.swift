/// Lowercase hex encoding and strict decoding, shared by every module that puts bytes on the wire.
public enum Hex {
    // Inlinable: called across modules with concrete types (String, digests), where an unspecialised generic
    // walks the bytes through protocol witnesses — measured as a visible share of an E2EE request.
    @usableFromInline static let digits: [UInt8] = Array("0123456789abcdef".utf8)

    /// Lowercase hex of `bytes`, no prefix.
    @inlinable
    public static func encode<Bytes: Sequence<UInt8>>(_ bytes: Bytes) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.underestimatedCount * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Lowercase hex of `first` followed by `second`, written straight into the one string returned: an E2EE
    /// answer field (ephemeral key, then nonce ‖ ciphertext ‖ tag) is as large as the answer, and each byte
    /// array or joined copy on the way would hold it once more.
    @inlinable
    public static func encode(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer) -> String {
        String(unsafeUninitializedCapacity: 2 * (first.count + second.count)) { out in
            var written = 0
            for part in [first, second] {
                for byte in part {
                    out[written] = digits[Int(byte >> 4)]
                    out[written + 1] = digits[Int(byte & 0x0f)]
                    written += 2
                }
            }
            return written
        }
    }

    /// Bytes of an even-length hex string (either case, no prefix); nil for anything else.
    @inlinable
    public static func decode<S: StringProtocol>(_ text: S) -> [UInt8]? {
        let utf8 = text.utf8
        guard utf8.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(utf8.count / 2)
        var high: UInt8? = nil
        for char in utf8 {
            guard let nibble = nibble(char) else { return nil }
            if let h = high {
                out.append(h << 4 | nibble)
                high = nil
            } else {
                high = nibble
            }
        }
        return out
    }

    @inlinable @inline(__always)
    static func nibble(_ char: UInt8) -> UInt8? {
        switch char {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return char &- UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return char &- UInt8(ascii: "a") &+ 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return char &- UInt8(ascii: "A") &+ 10
        default: return nil
        }
    }
}
