/// The byte-level grammar the parser and the scanner share (whitespace, literals, numbers, escapes), written
/// once so that the two cannot disagree on what JSON is.
protocol JSONByteReader {
    var bytes: UnsafeBufferPointer<UInt8> { get }
    var offset: Int { get set }
}

extension JSONByteReader {
    mutating func skipWhitespace() {
        while offset < bytes.count {
            switch bytes[offset] {
            case 0x20, 0x09, 0x0A, 0x0D: offset += 1
            default: return
            }
        }
    }

    func peek() throws(JSONParseError) -> UInt8 {
        guard offset < bytes.count else { throw .unexpectedEnd }
        return bytes[offset]
    }

    mutating func expect(_ literal: StaticString) throws(JSONParseError) {
        let count = literal.utf8CodeUnitCount
        guard offset + count <= bytes.count else { throw .unexpectedEnd }
        let base = literal.utf8Start
        for index in 0..<count where bytes[offset + index] != base[index] {
            throw .unexpectedByte(offset: offset + index)
        }
        offset += count
    }

    /// Moves past a number (RFC 8259's grammar, first byte `-` or a digit); returns where it started.
    mutating func skipNumber() throws(JSONParseError) -> Int {
        let start = offset
        if bytes[offset] == UInt8(ascii: "-") { offset += 1 }
        guard offset < bytes.count else { throw .unexpectedEnd }
        if bytes[offset] == UInt8(ascii: "0") {
            offset += 1
        } else if skipDigits() == 0 {
            throw .invalidNumber(offset: start)
        }
        if offset < bytes.count, bytes[offset] == UInt8(ascii: ".") {
            offset += 1
            guard skipDigits() > 0 else { throw .invalidNumber(offset: start) }
        }
        if offset < bytes.count, bytes[offset] == UInt8(ascii: "e") || bytes[offset] == UInt8(ascii: "E") {
            offset += 1
            if offset < bytes.count, bytes[offset] == UInt8(ascii: "+") || bytes[offset] == UInt8(ascii: "-") {
                offset += 1
            }
            guard skipDigits() > 0 else { throw .invalidNumber(offset: start) }
        }
        return start
    }

    private mutating func skipDigits() -> Int {
        let begin = offset
        while offset < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[offset]) {
            offset += 1
        }
        return offset - begin
    }

    /// Moves past one escape (its backslash already consumed) and returns the scalar it stands for; a high
    /// surrogate must be followed by an escaped low one.
    mutating func readEscape() throws(JSONParseError) -> Unicode.Scalar {
        let escapeOffset = offset
        let simple: UInt8
        switch try peek() {
        case UInt8(ascii: "\""): simple = 0x22
        case UInt8(ascii: "\\"): simple = 0x5C
        case UInt8(ascii: "/"): simple = 0x2F
        case UInt8(ascii: "b"): simple = 0x08
        case UInt8(ascii: "f"): simple = 0x0C
        case UInt8(ascii: "n"): simple = 0x0A
        case UInt8(ascii: "r"): simple = 0x0D
        case UInt8(ascii: "t"): simple = 0x09
        case UInt8(ascii: "u"):
            offset += 1
            var scalar = try readHex4()
            if (0xD800..<0xDC00).contains(scalar) {
                guard offset + 1 < bytes.count, bytes[offset] == UInt8(ascii: "\\"),
                    bytes[offset + 1] == UInt8(ascii: "u")
                else { throw .invalidEscape(offset: escapeOffset) }
                offset += 2
                let low = try readHex4()
                guard (0xDC00..<0xE000).contains(low) else { throw .invalidEscape(offset: escapeOffset) }
                scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
            } else if (0xDC00..<0xE000).contains(scalar) {
                throw .invalidEscape(offset: escapeOffset)
            }
            guard let unicode = Unicode.Scalar(scalar) else { throw .invalidEscape(offset: escapeOffset) }
            return unicode
        default:
            throw .invalidEscape(offset: escapeOffset)
        }
        offset += 1
        return Unicode.Scalar(simple)
    }

    private mutating func readHex4() throws(JSONParseError) -> UInt32 {
        guard offset + 4 <= bytes.count else { throw .unexpectedEnd }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[offset]
            let nibble: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): nibble = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): nibble = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): nibble = byte - UInt8(ascii: "A") + 10
            default: throw .invalidEscape(offset: offset)
            }
            value = value << 4 | UInt32(nibble)
            offset += 1
        }
        return value
    }
}
