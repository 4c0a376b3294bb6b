/// Key/value state that replicas may share: signature records and E2EE replay claims.
///
/// The in-process `TTLStore` implements it today; a Redis-backed store joins behind the same interface.
public protocol SharedStore: Sendable {
    /// Stores `value` under `key` for `ttl`, replacing any earlier value.
    func put(_ key: String, _ value: [UInt8], ttl: Duration) async
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
