/// Why a byte sequence is not a JSON document we accept.
public enum JSONParseError: Error, Sendable, Equatable {
    case unexpectedEnd
    case unexpectedByte(offset: Int)
    case invalidUTF8(offset: Int)
    case invalidEscape(offset: Int)
    case invalidNumber(offset: Int)
    /// Nesting deeper than `JSONValue.maximumDepth`: refused so hostile input cannot exhaust the stack.
    case tooDeep
    case trailingData(offset: Int)
    /// A key repeated within one object, when parsing with `rejectingDuplicateKeys`.
    case duplicateKey(offset: Int)
}

extension JSONValue {
    /// Nesting limit for parsing; chat requests nest a handful of levels.
    public static let maximumDepth = 256

    /// Parses one JSON document (RFC 8259) from UTF-8 bytes; surrounding whitespace is allowed.
    /// With `rejectingDuplicateKeys`, a key repeated within one object is an error instead of the last
    /// occurrence winning (a sealed E2EE v3 body must not read differently to the proxy and the upstream).
    public init<Bytes: Collection<UInt8>>(
        parsing bytes: Bytes, rejectingDuplicateKeys: Bool = false
    ) throws(JSONParseError) {
        let result: Result<JSONValue, JSONParseError>? = bytes.withContiguousStorageIfAvailable { buffer in
            Result { () throws(JSONParseError) in try JSONValue.parse(buffer, strict: rejectingDuplicateKeys) }
        }
        if let result {
            self = try result.get()
        } else {
            let copy = Array(bytes)
            self = try copy.withUnsafeBufferPointer { buffer throws(JSONParseError) in
                try JSONValue.parse(buffer, strict: rejectingDuplicateKeys)
            }
        }
    }

    private static func parse(_ buffer: UnsafeBufferPointer<UInt8>, strict: Bool) throws(JSONParseError) -> JSONValue {
        var parser = Parser(bytes: buffer, rejectsDuplicateKeys: strict)
        parser.skipWhitespace()
        let value = try parser.parseValue(depth: 0)
        parser.skipWhitespace()
        guard parser.offset == buffer.count else { throw .trailingData(offset: parser.offset) }
        return value
    }
}

private struct Parser: JSONByteReader {
    let bytes: UnsafeBufferPointer<UInt8>
    var offset = 0
    let rejectsDuplicateKeys: Bool

    init(bytes: UnsafeBufferPointer<UInt8>, rejectsDuplicateKeys: Bool) {
        self.bytes = bytes
        self.rejectsDuplicateKeys = rejectsDuplicateKeys
    }

    mutating func parseValue(depth: Int) throws(JSONParseError) -> JSONValue {
        switch try peek() {
        case UInt8(ascii: "{"): return try parseObject(depth: depth + 1)
        case UInt8(ascii: "["): return try parseArray(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"):
            try expect("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try expect("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try expect("null")
            return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw .unexpectedByte(offset: offset)
        }
    }

    mutating func parseObject(depth: Int) throws(JSONParseError) -> JSONValue {
        guard depth <= JSONValue.maximumDepth else { throw .tooDeep }
        offset += 1
        var members: [JSONObject.Member] = []
        // Duplicate detection: a linear scan while the object is small (chat bodies have a handful of keys,
        // where hashing costs more than comparing), then a hash index so large objects stay linear overall.
        var index = KeyIndex()
        skipWhitespace()
        if try peek() == UInt8(ascii: "}") {
            offset += 1
            return .object(JSONObject(members))
        }
        while true {
            skipWhitespace()
            guard try peek() == UInt8(ascii: "\"") else { throw .unexpectedByte(offset: offset) }
            let key = try parseString()
            skipWhitespace()
            guard try peek() == UInt8(ascii: ":") else { throw .unexpectedByte(offset: offset) }
            offset += 1
            skipWhitespace()
            let value = try parseValue(depth: depth)
            // Duplicate keys: the last one wins, as in Python's json module that the reference uses.
            if let existing = index.position(of: key, in: members) {
                if rejectsDuplicateKeys { throw .duplicateKey(offset: offset) }
                members[existing].value = value
            } else {
                index.insert(key, at: members.count, in: members)
                members.append(JSONObject.Member(key: key, value: value))
            }
            skipWhitespace()
            let byte = try peek()
            offset += 1
            if byte == UInt8(ascii: "}") { return .object(JSONObject(members)) }
            guard byte == UInt8(ascii: ",") else { throw .unexpectedByte(offset: offset - 1) }
        }
    }

    mutating func parseArray(depth: Int) throws(JSONParseError) -> JSONValue {
        guard depth <= JSONValue.maximumDepth else { throw .tooDeep }
        offset += 1
        var elements: [JSONValue] = []
        skipWhitespace()
        if try peek() == UInt8(ascii: "]") {
            offset += 1
            return .array(elements)
        }
        while true {
            skipWhitespace()
            elements.append(try parseValue(depth: depth))
            skipWhitespace()
            let byte = try peek()
            offset += 1
            if byte == UInt8(ascii: "]") { return .array(elements) }
            guard byte == UInt8(ascii: ",") else { throw .unexpectedByte(offset: offset - 1) }
        }
    }

    mutating func parseNumber() throws(JSONParseError) -> JSONValue {
        let start = try skipNumber()
        return .number(String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<offset]), as: UTF8.self))
    }

    mutating func parseString() throws(JSONParseError) -> String {
        offset += 1
        let start = offset
        // Fast path: no escapes, so the bytes between the quotes are the string.
        while offset < bytes.count {
            let byte = bytes[offset]
            if byte == UInt8(ascii: "\"") {
                let slice = UnsafeBufferPointer(rebasing: bytes[start..<offset])
                offset += 1
                guard let string = String(validating: slice, as: UTF8.self) else { throw .invalidUTF8(offset: start) }
                return string
            }
            if byte == UInt8(ascii: "\\") { break }
            guard byte >= 0x20 else { throw .unexpectedByte(offset: offset) }
            offset += 1
        }
        var scratch = Array(UnsafeBufferPointer(rebasing: bytes[start..<offset]))
        while true {
            guard offset < bytes.count else { throw .unexpectedEnd }
            let byte = bytes[offset]
            switch byte {
            case UInt8(ascii: "\""):
                offset += 1
                guard let string = String(validating: scratch, as: UTF8.self) else { throw .invalidUTF8(offset: start) }
                return string
            case UInt8(ascii: "\\"):
                offset += 1
                scratch.append(contentsOf: UTF8.encode(try readEscape())!)
            case 0..<0x20:
                throw .unexpectedByte(offset: offset)
            default:
                scratch.append(byte)
                offset += 1
            }
        }
    }
}

/// Finds an object's keys among its members, comparing keys as code-point sequences (as Python's `json`
/// does, so `"é"` precomposed and decomposed stay two keys). Up to `linearScanLimit` members a linear scan is
/// cheapest; past it, an open-addressing table of member positions, hashed with the process-seeded `Hasher`
/// over the key's UTF-8 bytes so crafted keys cannot force collisions.
private struct KeyIndex {
    static let linearScanLimit = 16
    /// Each slot holds 32 bits of a key's hash (which also pick its slot) and its member position + 1
    /// (0: empty), so most probes and every resize are settled without reading a key; empty until the
    /// object outgrows the linear scan.
    private var slots: [UInt64] = []
    private var count = 0

    func position(of key: String, in members: [JSONObject.Member]) -> Int? {
        guard !slots.isEmpty else {
            return members.firstIndex { Self.same($0.key, key) }
        }
        let tag = Self.tag(key)
        var slot = Int(tag) & (slots.count - 1)
        while slots[slot] != 0 {
            if slots[slot] >> 32 == tag {
                let position = Int(slots[slot] & 0xFFFF_FFFF) - 1
                if Self.same(members[position].key, key) { return position }
            }
            slot = (slot + 1) & (slots.count - 1)
        }
        return nil
    }

    /// Records that `key` (not present yet) is at `position`; `members` are those before it.
    mutating func insert(_ key: String, at position: Int, in members: [JSONObject.Member]) {
        if slots.isEmpty {
            guard position >= Self.linearScanLimit else { return }
            slots = Array(repeating: 0, count: 64)
            for (position, member) in members.enumerated() { place(Self.tag(member.key) << 32 | UInt64(position + 1)) }
        } else if (count + 1) * 2 > slots.count {
            let old = slots
            slots = Array(repeating: 0, count: old.count * 2)
            count = 0
            for entry in old where entry != 0 { place(entry) }
        }
        place(Self.tag(key) << 32 | UInt64(position + 1))
    }

    private mutating func place(_ entry: UInt64) {
        var slot = Int(entry >> 32) & (slots.count - 1)
        while slots[slot] != 0 { slot = (slot + 1) & (slots.count - 1) }
        slots[slot] = entry
        count += 1
    }

    /// 32 bits of the key's hash: `Hasher` is seeded per process, so crafted keys cannot force collisions.
    private static func tag(_ key: String) -> UInt64 {
        var key = key
        return key.withUTF8 { bytes in
            var hasher = Hasher()
            hasher.combine(bytes: UnsafeRawBufferPointer(bytes))
            return UInt64(UInt(bitPattern: hasher.finalize())) >> 32
        }
    }

    private static func same(_ a: String, _ b: String) -> Bool {
        a.utf8.elementsEqual(b.utf8)
    }
}
