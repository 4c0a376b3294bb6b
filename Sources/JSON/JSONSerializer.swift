extension JSONValue {
    /// Compact UTF-8 serialisation (no insignificant whitespace), keys in order, numbers verbatim,
    /// non-ASCII text as raw UTF-8 — the same shape vLLM and the OpenAI API emit.
    public func serialized() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        serialize(into: &out)
        return out
    }

    /// Appends the compact serialisation to `out`.
    public func serialize(into out: inout [UInt8]) {
        write(to: &out)
    }

    /// How many bytes `serialized()` returns, counted without writing them: a document of tens of MB (a
    /// sealed answer) can then be written into an array of its exact size, where a growing one would hold
    /// up to twice that, and both its old and new storage while it grows.
    public var serializedCount: Int {
        var counter = ByteCounter()
        write(to: &counter)
        return counter.count
    }

    private func write(to out: inout some JSONOutput) {
        switch self {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let value): out.append(contentsOf: (value ? "true" : "false").utf8)
        case .number(let literal): out.append(contentsOf: literal.utf8)
        case .string(let string): JSONValue.writeString(string, to: &out)
        case .array(let elements):
            out.append(UInt8(ascii: "["))
            for (index, element) in elements.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                element.write(to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let object):
            out.append(UInt8(ascii: "{"))
            for (index, member) in object.members.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                JSONValue.writeString(member.key, to: &out)
                out.append(UInt8(ascii: ":"))
                member.value.write(to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    private static func writeString(_ string: String, to out: inout some JSONOutput) {
        out.append(UInt8(ascii: "\""))
        for byte in string.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: [0x5C, 0x22])
            case UInt8(ascii: "\\"): out.append(contentsOf: [0x5C, 0x5C])
            case 0x0A: out.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [0x5C, UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [0x5C, UInt8(ascii: "t")])
            case 0x08: out.append(contentsOf: [0x5C, UInt8(ascii: "b")])
            case 0x0C: out.append(contentsOf: [0x5C, UInt8(ascii: "f")])
            case 0..<0x20:
                out.append(contentsOf: [0x5C, UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0")])
                out.append(hexDigits[Int(byte >> 4)])
                out.append(hexDigits[Int(byte & 0x0F)])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}

/// Where a serialisation goes: bytes, or only their count (`serializedCount`), so the two cannot disagree.
private protocol JSONOutput {
    mutating func append(_ byte: UInt8)
    mutating func append(contentsOf bytes: some Collection<UInt8>)
}

extension [UInt8]: JSONOutput {}

private struct ByteCounter: JSONOutput {
    var count = 0

    mutating func append(_ byte: UInt8) { count += 1 }
    mutating func append(contentsOf bytes: some Collection<UInt8>) { count += bytes.count }
}
