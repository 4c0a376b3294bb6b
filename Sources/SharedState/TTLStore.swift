import Synchronization

/// In-process `SharedStore`: entries expire after their TTL and the oldest are evicted past `capacity`,
/// so memory stays bounded whatever the request rate.
public final class TTLStore: SharedStore {
    private struct Entry {
        var value: [UInt8]
        var expiry: ContinuousClock.Instant
        var sequence: UInt64
    }

    private struct State {
        var entries: [String: Entry] = [:]
        // Insertion order for eviction; stale positions (key rewritten or removed) are skipped lazily.
        var order: [(key: String, sequence: UInt64)] = []
        var head = 0
        var nextSequence: UInt64 = 0

        mutating func popOldest() -> (key: String, sequence: UInt64)? {
            guard head < order.count else { return nil }
            let oldest = order[head]
            head += 1
            if head > 1024 && head * 2 > order.count {
                order.removeFirst(head)
                head = 0
            }
            return oldest
        }
    }

    private let state = Mutex(State())
    private let capacity: Int
    private let now: @Sendable () -> ContinuousClock.Instant

    /// - Parameters:
    ///   - capacity: most entries kept; the oldest are evicted first.
    ///   - now: the clock, injectable so tests can move time.
    public init(capacity: Int = 100_000, now: @escaping @Sendable () -> ContinuousClock.Instant = { .now }) {
        precondition(capacity > 0)
        self.capacity = capacity
        self.now = now
    }

    public var count: Int { state.withLock { $0.entries.count } }

    public func put(_ key: String, _ value: [UInt8], ttl: Duration) async {
        insert(key, value, ttl: ttl, onlyIfAbsent: false)
    }

    public func get(_ key: String) async -> [UInt8]? {
        let now = self.now()
        return state.withLock { state in
            guard let entry = state.entries[key] else { return nil }
            guard entry.expiry > now else {
                state.entries[key] = nil
                return nil
            }
            return entry.value
        }
    }

    public func claim(_ key: String, ttl: Duration) async -> ClaimOutcome {
        insert(key, [1], ttl: ttl, onlyIfAbsent: true) ? .claimed : .alreadyClaimed
    }

    @discardableResult
    private func insert(_ key: String, _ value: [UInt8], ttl: Duration, onlyIfAbsent: Bool) -> Bool {
        let now = self.now()
        return state.withLock { state in
            if onlyIfAbsent, let existing = state.entries[key], existing.expiry > now {
                return false
            }
            state.nextSequence += 1
            state.entries[key] = Entry(value: value, expiry: now + ttl, sequence: state.nextSequence)
            state.order.append((key, state.nextSequence))
            // Expired entries at the front go first, then the oldest live ones while over capacity.
            while let oldest = state.order[safe: state.head] {
                guard let entry = state.entries[oldest.key], entry.sequence == oldest.sequence else {
                    _ = state.popOldest()
                    continue
                }
                guard entry.expiry <= now || state.entries.count > capacity else { break }
                state.entries[oldest.key] = nil
                _ = state.popOldest()
            }
            return true
        }
    }
}

extension Array {
    fileprivate subscript(safe index: Int) -> Element? {
        indices.contains(index) ? self[index] : nil
    }
}
