import HeapModule
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

    /// One scheduled expiry; stale when its key was rewritten (other sequence) or removed since. Ordered by
    /// expiry, then by when it was scheduled.
    private struct Deadline: Comparable {
        var expiry: ContinuousClock.Instant
        var sequence: UInt64
        var key: String

        static func < (lhs: Deadline, rhs: Deadline) -> Bool {
            lhs.expiry != rhs.expiry ? lhs.expiry < rhs.expiry : lhs.sequence < rhs.sequence
        }

        static func == (lhs: Deadline, rhs: Deadline) -> Bool {
            lhs.expiry == rhs.expiry && lhs.sequence == rhs.sequence
        }
    }

    private struct State {
        var entries: [String: Entry] = [:]
        /// Deadlines in a min-heap (swift-collections' `Heap`): purging expired entries and finding the one to
        /// evict are O(log n), whatever order the TTLs arrive in (replay claims have varying lifetimes).
        var deadlines = Heap<Deadline>()
        var nextSequence: UInt64 = 0

        func isCurrent(_ deadline: Deadline) -> Bool { entries[deadline.key]?.sequence == deadline.sequence }

        mutating func push(_ deadline: Deadline) {
            deadlines.insert(deadline)
        }

        /// Removes every expired entry, and stale deadlines that reach the top on the way.
        mutating func purge(now: ContinuousClock.Instant) {
            while let first = deadlines.min, first.expiry <= now || !isCurrent(first) {
                _ = deadlines.popMin()
                if isCurrent(first) { entries[first.key] = nil }
            }
        }

        /// Removes the live entry closest to expiry.
        mutating func evictFirst() {
            while let first = deadlines.popMin() {
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
            deadlines = Heap(
                entries.map { Deadline(expiry: $0.value.expiry, sequence: $0.value.sequence, key: $0.key) })
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
