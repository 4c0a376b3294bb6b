import Synchronization

/// In-process `SharedStore`: entries expire after their TTL and at most `capacity` live at once, so memory
/// stays bounded whatever the request rate. What happens at capacity is the store's `FullPolicy`.
public final class TTLStore: SharedStore {
    /// What a full store does with a new key.
    public enum FullPolicy: Sendable {
        /// Evict the live entry closest to expiry (the oldest, when every TTL is the same): for caches
        /// such as signature records, where losing an entry early costs a lookup, not safety.
        case evictSoonestExpiring
        /// Keep every live entry and refuse the new one (`claim` answers `.full`, `put` is dropped): for
        /// replay claims, where evicting a live claim would let its request be replayed.
        case refuse
    }

    private struct Entry {
        var value: [UInt8]
        var expiry: ContinuousClock.Instant
        var sequence: UInt64
    }

    /// One scheduled expiry; stale when its key was rewritten (other sequence) or removed since.
    private struct Deadline {
        var expiry: ContinuousClock.Instant
        var sequence: UInt64
        var key: String

        func precedes(_ other: Deadline) -> Bool {
            expiry != other.expiry ? expiry < other.expiry : sequence < other.sequence
        }
    }

    private struct State {
        var entries: [String: Entry] = [:]
        /// A binary min-heap of deadlines ordered by expiry: purging expired entries and finding the one to
        /// evict are O(log n), whatever order the TTLs arrive in (replay claims have varying lifetimes).
        var deadlines: [Deadline] = []
        var nextSequence: UInt64 = 0

        func isCurrent(_ deadline: Deadline) -> Bool { entries[deadline.key]?.sequence == deadline.sequence }

        mutating func push(_ deadline: Deadline) {
            deadlines.append(deadline)
            var child = deadlines.count - 1
            while child > 0 {
                let parent = (child - 1) / 2
                guard deadlines[child].precedes(deadlines[parent]) else { break }
                deadlines.swapAt(child, parent)
                child = parent
            }
        }

        mutating func popFirst() -> Deadline? {
            guard !deadlines.isEmpty else { return nil }
            deadlines.swapAt(0, deadlines.count - 1)
            let first = deadlines.removeLast()
            siftDown(from: 0)
            return first
        }

        mutating func siftDown(from start: Int) {
            var parent = start
            while true {
                let left = 2 * parent + 1
                let right = left + 1
                var first = parent
                if left < deadlines.count, deadlines[left].precedes(deadlines[first]) { first = left }
                if right < deadlines.count, deadlines[right].precedes(deadlines[first]) { first = right }
                guard first != parent else { return }
                deadlines.swapAt(parent, first)
                parent = first
            }
        }

        /// Removes every expired entry, and stale deadlines that reach the top on the way.
        mutating func purge(now: ContinuousClock.Instant) {
            while let first = deadlines.first, first.expiry <= now || !isCurrent(first) {
                _ = popFirst()
                if isCurrent(first) { entries[first.key] = nil }
            }
        }

        /// Removes the live entry closest to expiry.
        mutating func evictFirst() {
            while let first = popFirst() {
                if isCurrent(first) {
                    entries[first.key] = nil
                    return
                }
            }
        }

        /// Rewriting a live key leaves its old deadline behind; once stale ones outnumber live ones, rebuild
        /// the heap from the live entries (O(n), amortised O(1) per write) so it stays within 2n + 64.
        mutating func compactIfMostlyStale() {
            guard deadlines.count > 2 * entries.count + 64 else { return }
            deadlines = entries.map { Deadline(expiry: $0.value.expiry, sequence: $0.value.sequence, key: $0.key) }
            for index in stride(from: deadlines.count / 2 - 1, through: 0, by: -1) { siftDown(from: index) }
        }
    }

    private let state = Mutex(State())
    private let capacity: Int
    private let policy: FullPolicy
    private let now: @Sendable () -> ContinuousClock.Instant
    private let onEvict: (@Sendable () -> Void)?

    /// - Parameters:
    ///   - capacity: most live entries kept.
    ///   - whenFull: evict (caches) or refuse (replay claims) once `capacity` entries are live.
    ///   - now: the clock, injectable so tests can move time.
    ///   - onEvict: called (outside the lock) for each live entry evicted to make room, e.g. to count them.
    public init(
        capacity: Int = 100_000, whenFull policy: FullPolicy = .evictSoonestExpiring,
        now: @escaping @Sendable () -> ContinuousClock.Instant = { .now },
        onEvict: (@Sendable () -> Void)? = nil
    ) {
        precondition(capacity > 0)
        self.capacity = capacity
        self.policy = policy
        self.now = now
        self.onEvict = onEvict
    }

    /// Entries held, live or expired but not yet purged.
    public var count: Int { state.withLock { $0.entries.count } }

    /// Deadlines queued, stale ones included (bounded by `2 · count + 64`; exposed for tests).
    var queuedDeadlines: Int { state.withLock { $0.deadlines.count } }

    public func put(_ key: String, _ value: [UInt8], ttl: Duration) async {
        _ = insert(key, value, ttl: ttl, onlyIfAbsent: false)
    }

    public func get(_ key: String) async -> [UInt8]? {
        let now = self.now()
        return state.withLock { state in
            guard let entry = state.entries[key], entry.expiry > now else { return nil }
            return entry.value
        }
    }

    /// At capacity, `.evictSoonestExpiring` makes room as `put` does; `.refuse` answers `.notStored`.
    public func insertIfAbsent(_ key: String, _ value: [UInt8], ttl: Duration) async -> InsertOutcome {
        switch insert(key, value, ttl: ttl, onlyIfAbsent: true) {
        case .claimed: return .inserted
        case .alreadyClaimed: return .alreadyPresent
        case .full, .unavailable: return .notStored
        }
    }

    /// A claim's value is empty: the key alone is the record, and an empty array costs no allocation.
    public func claim(_ key: String, ttl: Duration) async -> ClaimOutcome {
        insert(key, [], ttl: ttl, onlyIfAbsent: true)
    }

    private func insert(_ key: String, _ value: [UInt8], ttl: Duration, onlyIfAbsent: Bool) -> ClaimOutcome {
        let now = self.now()
        var evicted = false
        let outcome: ClaimOutcome = state.withLock { state in
            state.purge(now: now)
            let replacing = state.entries[key] != nil
            if onlyIfAbsent, replacing { return .alreadyClaimed }  // purged above, so it is live
            if !replacing, state.entries.count >= capacity {
                switch policy {
                case .refuse: return .full
                case .evictSoonestExpiring:
                    state.evictFirst()
                    evicted = true
                }
            }
            state.nextSequence += 1
            let expiry = now + ttl
            state.entries[key] = Entry(value: value, expiry: expiry, sequence: state.nextSequence)
            state.push(Deadline(expiry: expiry, sequence: state.nextSequence, key: key))
            state.compactIfMostlyStale()
            return .claimed
        }
        if evicted { onEvict?() }
        return outcome
    }
}
