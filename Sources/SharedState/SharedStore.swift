/// Key/value state that replicas may share: signature records and E2EE replay claims.
///
/// The in-process `TTLStore` implements it today; a Redis-backed store joins behind the same interface.
public protocol SharedStore: Sendable {
    /// Stores `value` under `key` for `ttl`, replacing any earlier value.
    func put(_ key: String, _ value: [UInt8], ttl: Duration) async
    /// The live value under `key`, or nil when absent or expired.
    func get(_ key: String) async -> [UInt8]?
    /// Stores a marker under `key` only if no live value is there; true when this call claimed it.
    func claim(_ key: String, ttl: Duration) async -> Bool
}
