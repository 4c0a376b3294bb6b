extension JSONValue {
    /// The canonical form signed and hashed for verifiers (SPEC §5 records, §7.2): exactly the bytes of
    /// Python's `json.dumps(value, sort_keys=True, separators=(",", ":"))`, so a verifier recomputes them
    /// with the standard library from what it parsed.
    ///
    /// - Object keys are sorted by Unicode code point (Python's `str` order; UTF-8 byte order is the same
    ///   order). Keys equal by code points cannot come out of the parser, which keeps the last value as
    ///   Python does; an object built with such duplicates keeps them in their original relative order.
    /// - No whitespace; output is ASCII only (`ensure_ascii=True`): every other character as `\uXXXX` with
    ///   lowercase hex, beyond U+FFFF as a UTF-16 surrogate pair; `/` is not escaped; controls as Python
    ///   writes them (`\n`, `\r`, `\t`, `\b`, `\f`, the rest `\u00XX`, DEL as `\u007f`).
    /// - Numbers: the literal text, except that an integer `-0` becomes `0`. Integers are then what Python
    ///   writes for them; a fraction or exponent literal (`1e5`, `1.50`) is not re-formatted the way Python
    ///   re-prints a float (`100000.0`, `1.5`). Records carry only strings, booleans, null and objects, so
    ///   none reaches a signature.
    public func canonicalSerialized() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(512)
        canonicalSerialize(into: &out)
        return out
    }

    private func canonicalSerialize(into out: inout [UInt8]) {
        switch self {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let value): out.append(contentsOf: (value ? "true" : "false").utf8)
        case .number(let literal):
            // Python reads the integer -0 as int 0 and writes "0"; "-0.0" stays a float and keeps its sign.
            out.append(contentsOf: (literal == "-0" ? "0" : literal).utf8)
        case .string(let string): JSONValue.canonicalSerializeString(string, into: &out)
        case .array(let elements):
            out.append(UInt8(ascii: "["))
            for (index, element) in elements.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                element.canonicalSerialize(into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let object):
            // Swift's `<` on String compares canonically equivalent strings as equal and is not code point
            // order; UTF-8 bytes are. The original index breaks ties so equal keys keep their order.
            let sorted = object.members.enumerated().sorted { lhs, rhs in
                if lhs.element.key.utf8.elementsEqual(rhs.element.key.utf8) { return lhs.offset < rhs.offset }
                return lhs.element.key.utf8.lexicographicallyPrecedes(rhs.element.key.utf8)
            }
            out.append(UInt8(ascii: "{"))
            for (index, entry) in sorted.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                JSONValue.canonicalSerializeString(entry.element.key, into: &out)
                out.append(UInt8(ascii: ":"))
                entry.element.value.canonicalSerialize(into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    private static let lowercaseHexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    /// Python's `json.encoder.py_encode_basestring_ascii`: escapes everything outside printable ASCII.
    private static func canonicalSerializeString(_ string: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for scalar in string.unicodeScalars {
            switch scalar.value {
            case 0x22: out.append(contentsOf: [0x5C, 0x22])
            case 0x5C: out.append(contentsOf: [0x5C, 0x5C])
            case 0x0A: out.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [0x5C, UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [0x5C, UInt8(ascii: "t")])
            case 0x08: out.append(contentsOf: [0x5C, UInt8(ascii: "b")])
            case 0x0C: out.append(contentsOf: [0x5C, UInt8(ascii: "f")])
            case 0x20...0x7E: out.append(UInt8(scalar.value))
            case 0x10000...:
                // UTF-16 surrogate pair, as Python writes astral characters under ensure_ascii.
                let offset = scalar.value - 0x10000
                appendEscapedUnit(UInt16(0xD800 + (offset >> 10)), into: &out)
                appendEscapedUnit(UInt16(0xDC00 + (offset & 0x3FF)), into: &out)
            default: appendEscapedUnit(UInt16(scalar.value), into: &out)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// `\u` and four lowercase hex digits.
    private static func appendEscapedUnit(_ unit: UInt16, into out: inout [UInt8]) {
        out.append(contentsOf: [0x5C, UInt8(ascii: "u")])
        for shift in stride(from: 12, through: 0, by: -4) {
            out.append(lowercaseHexDigits[Int((unit >> UInt16(shift)) & 0xF)])
        }
    }
}
