/// A validating pass over a JSON document that builds nothing. It accepts exactly what `JSONValue(parsing:)`
/// accepts and reports where chosen top-level members' values lie, so the proxy can read a request's `stream`
/// or a response's `id` without allocating a tree for everything else.
public struct JSONScan: Sendable {
    /// What a value is, by its first byte.
    public enum Kind: Sendable, Equatable {
        case object, array, string, number, `true`, `false`, null
    }

    /// A top-level member's value: its kind and where its bytes are in the scanned document.
    public struct Value: Sendable, Equatable {
        public let kind: Kind
        public let range: Range<Int>
    }

    public let rootKind: Kind
    /// The values of the requested top-level keys, in the order asked (unless duplicates are refused, the last
    /// occurrence wins, as in parsing); nil when absent, or when the document is not an object.
    public let members: [Value?]
    /// Whether the flagged key occurs as a key at any depth.
    public let sawFlaggedKey: Bool

    /// Scans `bytes`; throws what `JSONValue(parsing:rejectingDuplicateKeys:)` would throw for the same input
    /// (same error kinds). With `rejectingDuplicateKeys`, a key repeated within any one object is an error,
    /// reported at the same offset as the parser reports it (see `DuplicateKeys` for how that stays linear).
    public init(
        scanning bytes: UnsafeRawBufferPointer, topLevelKeys: [StaticString] = [],
        flagging flaggedKey: StaticString? = nil, rejectingDuplicateKeys: Bool = false
    ) throws(JSONParseError) {
        // The duplicate check's first keys live on this stack frame, so a typical request costs no allocation.
        let scanned = try withUnsafeTemporaryAllocation(
            of: DuplicateKeys.Key.self, capacity: rejectingDuplicateKeys ? DuplicateKeys.inlineCapacity : 0
        ) { storage throws(JSONParseError) in
            var scanner = Scanner(
                bytes: bytes.bindMemory(to: UInt8.self), wanted: topLevelKeys, flagged: flaggedKey,
                rejectsDuplicateKeys: rejectingDuplicateKeys, keyStorage: storage)
            defer { scanner.duplicates.release() }
            scanner.skipWhitespace()
            let rootKind = try scanner.scanValue(depth: 0)
            scanner.skipWhitespace()
            guard scanner.offset == bytes.count else { throw .trailingData(offset: scanner.offset) }
            return (rootKind, scanner.found, scanner.sawFlagged)
        }
        (rootKind, members, sawFlaggedKey) = scanned
    }

    /// A string value's contents (escapes decoded); nil for any other kind.
    public static func string(_ value: Value, in bytes: UnsafeRawBufferPointer) -> String? {
        guard value.kind == .string else { return nil }
        let slice = UnsafeRawBufferPointer(rebasing: bytes[value.range])
        return (try? JSONValue(parsing: slice.bindMemory(to: UInt8.self)))?.stringValue
    }
}

private struct Scanner: JSONByteReader {
    let bytes: UnsafeBufferPointer<UInt8>
    let wanted: [StaticString]
    let flagged: StaticString?
    let rejectsDuplicateKeys: Bool
    var offset = 0
    var found: [JSONScan.Value?]
    var sawFlagged = false
    var duplicates: DuplicateKeys

    init(
        bytes: UnsafeBufferPointer<UInt8>, wanted: [StaticString], flagged: StaticString?, rejectsDuplicateKeys: Bool,
        keyStorage: UnsafeMutableBufferPointer<DuplicateKeys.Key>
    ) {
        self.bytes = bytes
        self.wanted = wanted
        self.flagged = flagged
        self.rejectsDuplicateKeys = rejectsDuplicateKeys
        self.found = Array(repeating: nil, count: wanted.count)
        self.duplicates = DuplicateKeys(bytes: bytes, storage: keyStorage)
    }

    mutating func scanValue(depth: Int) throws(JSONParseError) -> JSONScan.Kind {
        switch try peek() {
        case UInt8(ascii: "{"):
            try scanObject(depth: depth + 1)
            return .object
        case UInt8(ascii: "["):
            try scanArray(depth: depth + 1)
            return .array
        case UInt8(ascii: "\""):
            _ = try scanString()
            return .string
        case UInt8(ascii: "t"):
            try expect("true")
            return .true
        case UInt8(ascii: "f"):
            try expect("false")
            return .false
        case UInt8(ascii: "n"):
            try expect("null")
            return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            _ = try skipNumber()
            return .number
        default:
            throw .unexpectedByte(offset: offset)
        }
    }

    mutating func scanObject(depth: Int) throws(JSONParseError) {
        guard depth <= JSONValue.maximumDepth else { throw .tooDeep }
        offset += 1
        skipWhitespace()
        if try peek() == UInt8(ascii: "}") {
            offset += 1
            return
        }
        var keys = duplicates.open()
        while true {
            skipWhitespace()
            guard try peek() == UInt8(ascii: "\"") else { throw .unexpectedByte(offset: offset) }
            let keyStart = offset
            let escaped = try scanString()
            let key = keyStart..<offset
            skipWhitespace()
            guard try peek() == UInt8(ascii: ":") else { throw .unexpectedByte(offset: offset) }
            offset += 1
            skipWhitespace()
            let valueStart = offset
            let kind = try scanValue(depth: depth)
            // Checked after the value, where the parser checks, so that both report the same error.
            if rejectsDuplicateKeys,
                !duplicates.insert(
                    DuplicateKeys.Key(start: key.lowerBound, end: key.upperBound, escaped: escaped), into: &keys)
            {
                throw .duplicateKey(offset: offset)
            }
            if let flagged, !sawFlagged, matches(key, escaped: escaped, flagged) { sawFlagged = true }
            if depth == 1 {
                for (index, name) in wanted.enumerated() where matches(key, escaped: escaped, name) {
                    found[index] = JSONScan.Value(kind: kind, range: valueStart..<offset)
                }
            }
            skipWhitespace()
            let byte = try peek()
            offset += 1
            if byte == UInt8(ascii: "}") {
                if rejectsDuplicateKeys { duplicates.close(keys) }
                return
            }
            guard byte == UInt8(ascii: ",") else { throw .unexpectedByte(offset: offset - 1) }
        }
    }

    mutating func scanArray(depth: Int) throws(JSONParseError) {
        guard depth <= JSONValue.maximumDepth else { throw .tooDeep }
        offset += 1
        skipWhitespace()
        if try peek() == UInt8(ascii: "]") {
            offset += 1
            return
        }
        while true {
            skipWhitespace()
            _ = try scanValue(depth: depth)
            skipWhitespace()
            let byte = try peek()
            offset += 1
            if byte == UInt8(ascii: "]") { return }
            guard byte == UInt8(ascii: ",") else { throw .unexpectedByte(offset: offset - 1) }
        }
    }

    /// Whether the key whose quoted bytes are `range` equals `name` once decoded.
    func matches(_ range: Range<Int>, escaped: Bool, _ name: StaticString) -> Bool {
        let expected = UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount)
        guard escaped else {
            // A plain loop rather than `elementsEqual`, which the optimiser stops inlining as `scanObject` grows:
            // this runs for every key of a document.
            guard range.count == expected.count + 2 else { return false }
            for index in expected.indices where bytes[range.lowerBound + 1 + index] != expected[index] { return false }
            return true
        }
        guard case .string(let key)? = try? JSONValue(parsing: UnsafeBufferPointer(rebasing: bytes[range])) else {
            return false
        }
        return key.utf8.elementsEqual(expected)
    }

    /// Validates a string (escapes, control bytes, UTF-8); returns whether it held an escape.
    mutating func scanString() throws(JSONParseError) -> Bool {
        offset += 1
        let start = offset
        var escaped = false
        var segment = offset
        while true {
            guard offset < bytes.count else { throw .unexpectedEnd }
            let byte = bytes[offset]
            if byte == UInt8(ascii: "\"") {
                guard Self.isValidUTF8(UnsafeBufferPointer(rebasing: bytes[segment..<offset])) else {
                    throw .invalidUTF8(offset: start)
                }
                offset += 1
                return escaped
            }
            if byte == UInt8(ascii: "\\") {
                // Escapes decode to whole scalars, so the raw bytes between them must be valid on their own.
                guard Self.isValidUTF8(UnsafeBufferPointer(rebasing: bytes[segment..<offset])) else {
                    throw .invalidUTF8(offset: start)
                }
                offset += 1
                _ = try readEscape()
                escaped = true
                segment = offset
                continue
            }
            guard byte >= 0x20 else { throw .unexpectedByte(offset: offset) }
            offset += 1
        }
    }

    /// Well-formed UTF-8 (Unicode's table 3-7: no overlongs, surrogates or scalars past U+10FFFF), as
    /// `String(validating:)` judges it.
    static func isValidUTF8(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        var index = 0
        let count = bytes.count
        while index < count {
            let lead = bytes[index]
            if lead < 0x80 {
                index += 1
                continue
            }
            func continuation(_ at: Int, _ range: ClosedRange<UInt8> = 0x80...0xBF) -> Bool {
                at < count && range.contains(bytes[at])
            }
            switch lead {
            case 0xC2...0xDF:
                guard continuation(index + 1) else { return false }
                index += 2
            case 0xE0:
                guard continuation(index + 1, 0xA0...0xBF), continuation(index + 2) else { return false }
                index += 3
            case 0xE1...0xEC, 0xEE...0xEF:
                guard continuation(index + 1), continuation(index + 2) else { return false }
                index += 3
            case 0xED:
                guard continuation(index + 1, 0x80...0x9F), continuation(index + 2) else { return false }
                index += 3
            case 0xF0:
                guard continuation(index + 1, 0x90...0xBF), continuation(index + 2), continuation(index + 3) else {
                    return false
                }
                index += 4
            case 0xF1...0xF3:
                guard continuation(index + 1), continuation(index + 2), continuation(index + 3) else { return false }
                index += 4
            case 0xF4:
                guard continuation(index + 1, 0x80...0x8F), continuation(index + 2), continuation(index + 3) else {
                    return false
                }
                index += 4
            default:
                return false
            }
        }
        return true
    }
}
