/// A strict check of signed collateral JSON (TCB info, QE identity) before Foundation decodes it. Foundation's
/// JSONDecoder silently keeps one of two duplicate keys and reads `3.0` as the integer 3, where dcap-qvl (serde)
/// refuses both; a verifier that reads a different value than the one another parser reads from the same signed
/// bytes is the classic signed-JSON pitfall. One pass, linear in the text: RFC 8259 grammar, no duplicate key in
/// any object, every number a non-negative integer. Every number Intel writes is one (versions, SVNs, ids);
/// dcap-qvl refuses a fraction, an exponent or a sign in each field it reads, and nothing else is read, so refusing
/// them everywhere only refuses more.
enum SignedJSON {
    enum Problem: Error, Equatable {
        case syntax(Int)
        case duplicateKey(String)
        case notAnUnsignedInteger(Int)
        case tooDeep
    }

    /// serde_json's recursion limit; deeper text is refused before any stack could run out.
    static let maximumDepth = 128

    static func check(_ bytes: [UInt8]) throws(Problem) {
        var scanner = Scanner(bytes: bytes)
        scanner.skipWhitespace()
        try scanner.value(depth: 0)
        scanner.skipWhitespace()
        guard scanner.offset == bytes.count else { throw .syntax(scanner.offset) }
    }

    private struct Scanner {
        let bytes: [UInt8]
        var offset = 0

        init(bytes: [UInt8]) { self.bytes = bytes }

        var current: UInt8? { offset < bytes.count ? bytes[offset] : nil }

        mutating func skipWhitespace() {
            while let byte = current, byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D { offset += 1 }
        }

        mutating func expect(_ byte: UInt8) throws(Problem) {
            guard current == byte else { throw .syntax(offset) }
            offset += 1
        }

        mutating func literal(_ text: String) throws(Problem) {
            for byte in text.utf8 { try expect(byte) }
        }

        mutating func value(depth: Int) throws(Problem) {
            guard depth < SignedJSON.maximumDepth else { throw .tooDeep }
            switch current {
            case UInt8(ascii: "{"): try object(depth: depth)
            case UInt8(ascii: "["): try array(depth: depth)
            case UInt8(ascii: "\""): _ = try string()
            case UInt8(ascii: "t"): try literal("true")
            case UInt8(ascii: "f"): try literal("false")
            case UInt8(ascii: "n"): try literal("null")
            default: try number()
            }
        }

        mutating func object(depth: Int) throws(Problem) {
            offset += 1
            skipWhitespace()
            if current == UInt8(ascii: "}") {
                offset += 1
                return
            }
            // Keys compared after unescaping, as serde compares field names: `"fms\u0070c"` is `fmspc` again.
            var keys = Set<[UInt8]>()
            while true {
                skipWhitespace()
                guard current == UInt8(ascii: "\"") else { throw .syntax(offset) }
                let key = try string()
                guard keys.insert(key).inserted else {
                    throw .duplicateKey(String(decoding: key, as: UTF8.self))
                }
                skipWhitespace()
                try expect(UInt8(ascii: ":"))
                skipWhitespace()
                try value(depth: depth + 1)
                skipWhitespace()
                if current == UInt8(ascii: ",") {
                    offset += 1
                    continue
                }
                try expect(UInt8(ascii: "}"))
                return
            }
        }

        mutating func array(depth: Int) throws(Problem) {
            offset += 1
            skipWhitespace()
            if current == UInt8(ascii: "]") {
                offset += 1
                return
            }
            while true {
                skipWhitespace()
                try value(depth: depth + 1)
                skipWhitespace()
                if current == UInt8(ascii: ",") {
                    offset += 1
                    continue
                }
                try expect(UInt8(ascii: "]"))
                return
            }
        }

        /// A string's UTF-8 after unescaping; control characters, bad escapes and lone surrogates are refused.
        mutating func string() throws(Problem) -> [UInt8] {
            offset += 1
            var out: [UInt8] = []
            while true {
                guard let byte = current else { throw .syntax(offset) }
                offset += 1
                switch byte {
                case UInt8(ascii: "\""):
                    return out
                case 0..<0x20:
                    throw .syntax(offset - 1)
                case UInt8(ascii: "\\"):
                    guard let escape = current else { throw .syntax(offset) }
                    offset += 1
                    switch escape {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(escape)
                    case UInt8(ascii: "b"): out.append(0x08)
                    case UInt8(ascii: "f"): out.append(0x0C)
                    case UInt8(ascii: "n"): out.append(0x0A)
                    case UInt8(ascii: "r"): out.append(0x0D)
                    case UInt8(ascii: "t"): out.append(0x09)
                    case UInt8(ascii: "u"):
                        var scalar = try hex4()
                        if (0xD800..<0xDC00).contains(scalar) {
                            guard current == UInt8(ascii: "\\") else { throw .syntax(offset) }
                            offset += 1
                            try expect(UInt8(ascii: "u"))
                            let low = try hex4()
                            guard (0xDC00..<0xE000).contains(low) else { throw .syntax(offset) }
                            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        }
                        guard let unicode = Unicode.Scalar(scalar) else { throw .syntax(offset) }
                        out.append(contentsOf: Array(String(Character(unicode)).utf8))
                    default:
                        throw .syntax(offset - 1)
                    }
                default:
                    out.append(byte)
                }
            }
        }

        mutating func hex4() throws(Problem) -> UInt32 {
            var value: UInt32 = 0
            for _ in 0..<4 {
                guard let byte = current else { throw .syntax(offset) }
                let digit: UInt32
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
                case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
                default: throw .syntax(offset)
                }
                value = value << 4 | digit
                offset += 1
            }
            return value
        }

        /// Only `0` or a digit run without a leading zero; a sign, fraction or exponent is well-formed JSON but
        /// not an unsigned integer, so it is refused as such.
        mutating func number() throws(Problem) {
            let start = offset
            guard let first = current else { throw .syntax(offset) }
            if first == UInt8(ascii: "-") { throw .notAnUnsignedInteger(start) }
            guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(first) else { throw .syntax(offset) }
            offset += 1
            if first != UInt8(ascii: "0") {
                while let byte = current, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) { offset += 1 }
            }
            if let byte = current, byte == UInt8(ascii: ".") || byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E") {
                throw .notAnUnsignedInteger(start)
            }
        }
    }
}
