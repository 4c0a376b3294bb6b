/// Key/value state that replicas may share: signature records and E2EE replay claims.
///
/// `TTLStore` keeps it in process, `RedisStore` in Redis, and `ReplicatedStore` combines the two.
public protocol SharedStore: Sendable {
    /// Stores `value` under `key` for `ttl`, replacing any earlier value.
    func put(_ key: String, _ value: [UInt8], ttl: Duration) async
    /// Stores `value` under `key` for `ttl` only if no live value is there: a live value is never replaced
    /// (signature records, SPEC §2). Atomic: of two concurrent inserts of one key, at most one is `.inserted`.
    func insertIfAbsent(_ key: String, _ value: [UInt8], ttl: Duration) async -> InsertOutcome
    /// The live value under `key`, or nil when absent or expired.
    func get(_ key: String) async -> [UInt8]?
    /// Stores a marker under `key` only if no live value is there.
    func claim(_ key: String, ttl: Duration) async -> ClaimOutcome
}

/// What one attempt to claim a key came to; only `.claimed` lets a request through.
public enum ClaimOutcome: Sendable, Equatable {
    /// This call now holds the key.
    case claimed
    /// A live claim already holds it: a replay.
    case alreadyClaimed
    /// The store cannot take another live claim without evicting one, and it never evicts live claims.
    case full
    /// The authoritative store cannot answer (e.g. Redis down while the policy is to fail closed).
    case unavailable
}

/// What one insert-if-absent came to; only `.inserted` stored anything.
public enum InsertOutcome: Sendable, Equatable {
    /// Stored: no live value was there.
    case inserted
    /// A live value is there; it was left as it was.
    case alreadyPresent
    /// Nothing stored, and whether a value is there is unknown: the store refuses (full) or cannot answer.
    case notStored
}
