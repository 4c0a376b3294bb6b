/// Finds a key repeated within one object while `JSONScan` passes over a document, without building a tree:
/// a request whose object says `"stream"` twice must be refused, since the proxy and the upstream (Python's
/// `json` keeps the last) could act on different values.
///
/// Keys are compared as decoded code-point sequences, as Python does (`"a"` and `"\u0061"` are one key; `"é"`
/// precomposed and decomposed stay two). The cost stays linear in the document for any input: an object's
/// first `linearLimit` keys are compared one against another (chat objects have two to a dozen keys, where a
/// few length compares beat hashing), and past that they go into a hash table of that object's own, seeded
/// per process through `Hasher` so that crafted keys cannot force collisions. Memory is bounded too: the
/// stack of compared keys holds at most `linearLimit` per open object, and a table 16 to 32 bytes per key of
/// the one object it serves, freed when that object closes.
struct DuplicateKeys {
    /// A key as it lies in the document: the offsets of its opening quote and just past its closing one, and
    /// whether it holds an escape (then only its decoded form can be compared).
    struct Key {
        let start: Int
        let end: Int
        let escaped: Bool
    }

    /// What one open object has recorded so far: where its keys begin on the stack, and once it outgrew the
    /// linear comparison, which of `tables` holds them (-1: none). Plain integers, so that the scanner's
    /// per-object bookkeeping costs no reference counting.
    struct Object {
        fileprivate let base: Int
        fileprivate var table = -1
    }

    /// Open addressing with linear probing, at most half full. Each slot holds the top 24 bits of the key's
    /// hash (its tag: most probes are settled without reading a key) above the key's offset + 1 (0: empty);
    /// the key's bytes are found again from its offset, which keeps a slot at 8 bytes. The slots are
    /// allocated by hand so that passing a table around costs no reference counting; `close` and `release`
    /// free them.
    fileprivate struct Table {
        var slots: UnsafeMutableBufferPointer<UInt64>
        var count = 0

        init(capacity: Int) {
            slots = .allocate(capacity: capacity)
            slots.initialize(repeating: 0)
        }

        /// Where a probe for `hash` starts: the tag's bits while they can address every slot, so that growing
        /// moves entries without reading their keys again; in larger tables the hash's low bits, and growing
        /// hashes the keys again.
        func home(_ hash: UInt64) -> Int {
            let mask = slots.count - 1
            return slots.count <= DuplicateKeys.tagAddressedSlots
                ? Int(hash >> DuplicateKeys.offsetBits) & mask : Int(truncatingIfNeeded: hash) & mask
        }
    }

    static let linearLimit = 16
    /// Keys the caller's temporary storage holds: 40 × 24 bytes stays within the 1 KiB that
    /// `withUnsafeTemporaryAllocation` places on the stack unconditionally, so a typical request's keys
    /// never touch the heap.
    static let inlineCapacity = 40
    fileprivate static let offsetBits: UInt64 = 40
    private static let offsetMask: UInt64 = (1 << offsetBits) - 1
    fileprivate static let tagAddressedSlots = 1 << (64 - offsetBits)

    let bytes: UnsafeBufferPointer<UInt8>
    /// The keys of every open object still under `linearLimit`, innermost object's last (`depth` of them);
    /// nested objects push above their parent's keys and pop theirs when they close, so each object's keys
    /// are contiguous. At most `linearLimit` per open object, so bounded by the nesting limit.
    private var keys: UnsafeMutablePointer<Key>
    private var capacity: Int
    private var depth = 0
    /// Whether `keys` was allocated here (it outgrew the caller's storage) and must be freed by `release`.
    private var ownsKeys = false
    /// The tables of the open objects that outgrew the linear comparison, innermost last.
    private var tables: [Table] = []
    /// Reused buffers for decoding escaped keys, so comparing or hashing one allocates nothing after the first.
    private var decodedA: [UInt8] = []
    private var decodedB: [UInt8] = []

    /// `storage` is uninitialized scratch space for the first keys, valid until `release()`; it may be empty
    /// (a scan that does not check duplicates), and then the first key allocates.
    init(bytes: UnsafeBufferPointer<UInt8>, storage: UnsafeMutableBufferPointer<Key>) {
        self.bytes = bytes
        self.capacity = storage.count
        // An empty buffer has no address; with `capacity` 0 this placeholder is never read or written.
        self.keys = storage.baseAddress ?? UnsafeMutablePointer(bitPattern: MemoryLayout<Key>.alignment)!
    }

    /// Frees what was allocated beyond the caller's storage, including the tables of objects left open by
    /// an error; call once, when the scan is over.
    mutating func release() {
        if ownsKeys { keys.deallocate() }
        ownsKeys = false
        for table in tables { table.slots.deallocate() }
        tables.removeAll()
    }

    /// Starts recording the keys of an object just opened.
    func open() -> Object {
        Object(base: depth)
    }

    /// Records `key` (validated, its value scanned) in `object`; false when the object already holds it.
    @inline(__always)
    mutating func insert(_ key: Key, into object: inout Object) -> Bool {
        // The common case, inlined into the scanner: a small object and a key without escapes, which only a
        // key of the same length (or an escaped one) can equal.
        if object.table < 0, depth - object.base < Self.linearLimit, !key.escaped {
            let length = key.end - key.start
            var index = object.base
            while index < depth {
                let other = keys[index]
                if other.escaped || other.end - other.start == length, same(other, key) { return false }
                index += 1
            }
            push(key)
            return true
        }
        return insertSlowly(key, into: &object)
    }

    /// Forgets a closed object's keys.
    mutating func close(_ object: Object) {
        depth = object.base
        if object.table >= 0 { tables.removeLast().slots.deallocate() }
    }

    /// `insert` for escaped keys, and for objects at or past `linearLimit`.
    @inline(never)
    private mutating func insertSlowly(_ key: Key, into object: inout Object) -> Bool {
        if object.table < 0 {
            for index in object.base..<depth where same(keys[index], key) { return false }
            guard depth - object.base >= Self.linearLimit else {
                push(key)
                return true
            }
            // The object outgrew the linear comparison: its keys, all distinct, move into a table of its own.
            precondition(UInt64(bytes.count) < Self.offsetMask, "offsets must fit a table slot")
            var table = Table(capacity: 4 * Self.linearLimit)
            for index in object.base..<depth { place(keys[index], hash: hash(keys[index]), in: &table) }
            place(key, hash: hash(key), in: &table)
            depth = object.base
            object.table = tables.count
            tables.append(table)
            return true
        }
        var table = tables[object.table]
        let inserted = insert(key, into: &table)
        tables[object.table] = table
        return inserted
    }

    private mutating func push(_ key: Key) {
        if depth == capacity { growKeys() }
        (keys + depth).initialize(to: key)
        depth += 1
    }

    @inline(never)
    private mutating func growKeys() {
        let larger = UnsafeMutablePointer<Key>.allocate(capacity: max(2 * capacity, Self.inlineCapacity))
        larger.moveInitialize(from: keys, count: depth)
        if ownsKeys { keys.deallocate() }
        keys = larger
        capacity = max(2 * capacity, Self.inlineCapacity)
        ownsKeys = true
    }

    private mutating func insert(_ key: Key, into table: inout Table) -> Bool {
        let hash = self.hash(key)
        let tag = hash >> Self.offsetBits
        let mask = table.slots.count - 1
        var slot = table.home(hash)
        while table.slots[slot] != 0 {
            let entry = table.slots[slot]
            if entry >> Self.offsetBits == tag, same(self.key(at: entry), key) { return false }
            slot = (slot + 1) & mask
        }
        table.slots[slot] = tag << Self.offsetBits | UInt64(key.start + 1)
        table.count += 1
        if table.count * 2 > table.slots.count { grow(&table) }
        return true
    }

    /// Adds a key known to be absent, by its hash (or a slot's entry, whose tag is the hash's top bits).
    private func place(_ key: Key, hash: UInt64, in table: inout Table) {
        place(entry: (hash >> Self.offsetBits) << Self.offsetBits | UInt64(key.start + 1), hash: hash, in: &table)
    }

    private func place(entry: UInt64, hash: UInt64, in table: inout Table) {
        let mask = table.slots.count - 1
        var slot = table.home(hash)
        while table.slots[slot] != 0 { slot = (slot + 1) & mask }
        table.slots[slot] = entry
        table.count += 1
    }

    /// Doubles the table. Up to `tagAddressedSlots` the tags say where entries go; past that each key is
    /// hashed again from its bytes, which doubling keeps to about once per key in all: linear either way.
    private mutating func grow(_ table: inout Table) {
        let old = table.slots
        defer { old.deallocate() }
        table = Table(capacity: old.count * 2)
        for entry in old where entry != 0 {
            if table.slots.count <= Self.tagAddressedSlots {
                place(entry: entry, hash: entry, in: &table)
            } else {
                let key = key(at: entry)
                place(key, hash: hash(key), in: &table)
            }
        }
    }

    /// The key whose opening quote a table entry records; its end is found again by skipping escapes (the
    /// document was validated, so the closing quote is there).
    private func key(at entry: UInt64) -> Key {
        let start = Int(entry & Self.offsetMask) - 1
        var index = start + 1
        var escaped = false
        while bytes[index] != UInt8(ascii: "\"") {
            if bytes[index] == UInt8(ascii: "\\") {
                escaped = true
                index += 2
            } else {
                index += 1
            }
        }
        return Key(start: start, end: index + 1, escaped: escaped)
    }

    /// Whether two keys decode to the same string: equal raw bytes suffice when neither holds an escape.
    private mutating func same(_ a: Key, _ b: Key) -> Bool {
        guard a.escaped || b.escaped else {
            let count = a.end - a.start
            guard count == b.end - b.start else { return false }
            for offset in 1..<(count - 1) where bytes[a.start + offset] != bytes[b.start + offset] { return false }
            return true
        }
        Self.decode(a, from: bytes, into: &decodedA)
        Self.decode(b, from: bytes, into: &decodedB)
        return decodedA == decodedB
    }

    /// A hash of the decoded key, so that two spellings of one key land together.
    private mutating func hash(_ key: Key) -> UInt64 {
        var hasher = Hasher()
        if key.escaped {
            Self.decode(key, from: bytes, into: &decodedA)
            decodedA.withUnsafeBytes { hasher.combine(bytes: $0) }
        } else {
            hasher.combine(
                bytes: UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: bytes[(key.start + 1)..<(key.end - 1)])))
        }
        return UInt64(truncatingIfNeeded: hasher.finalize())
    }

    /// The key's UTF-8 once its escapes are decoded, into `buffer` (emptied first, its storage kept).
    private static func decode(_ key: Key, from bytes: UnsafeBufferPointer<UInt8>, into buffer: inout [UInt8]) {
        buffer.removeAll(keepingCapacity: true)
        var reader = EscapeReader(bytes: bytes, offset: key.start + 1)
        while reader.offset < key.end - 1 {
            let byte = bytes[reader.offset]
            reader.offset += 1
            guard byte == UInt8(ascii: "\\") else {
                buffer.append(byte)
                continue
            }
            // The scanner validated this escape moments before, so reading it again cannot fail.
            let scalar = try! reader.readEscape()
            buffer.append(contentsOf: UTF8.encode(scalar)!)
        }
    }
}

/// Reads escapes with the grammar the scanner and the parser share, so decoding cannot disagree with them.
private struct EscapeReader: JSONByteReader {
    let bytes: UnsafeBufferPointer<UInt8>
    var offset: Int
}
