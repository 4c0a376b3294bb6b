/// What a v2 replay claim falls back to while a configured Redis fails (`E2EE_REPLAY_ON_REDIS_FAILURE`).
public enum ReplayFallback: String, Sendable, CaseIterable {
    /// Refuse: the request gets `503 replay_store_unavailable` (fail closed, the default).
    case reject
    /// This replica's own claims only: a captured request can be replayed once per replica meanwhile.
    case local
}

/// This replica's store and Redis together; the one place that decides how the two combine:
/// records are written to both and read from Redis first, then locally (so a record written during an
/// outage, or by a replica whose Redis write failed, is still served here); replay claims are Redis'
/// `SET NX` when it answers, and `fallback` decides when it does not.
public final class ReplicatedStore: SharedStore {
    private let local: any SharedStore
    private let redis: RedisStore
    private let fallback: ReplayFallback

    public init(local: any SharedStore, redis: RedisStore, fallback: ReplayFallback) {
        self.local = local
        self.redis = redis
        self.fallback = fallback
    }

    public func put(_ key: String, _ value: [UInt8], ttl: Duration) async {
        await local.put(key, value, ttl: ttl)
        await redis.put(key, value, ttl: ttl)
    }

    public func get(_ key: String) async -> [UInt8]? {
        if let shared = await redis.get(key) { return shared }
        return await local.get(key)
    }

    public func claim(_ key: String, ttl: Duration) async -> ClaimOutcome {
        switch await redis.claim(key, ttl: ttl) {
        case .claimed:
            // Remembered locally too, so a fallback during a later outage still knows this nonce.
            if fallback == .local { _ = await local.claim(key, ttl: ttl) }
            return .claimed
        case .alreadyClaimed:
            return .alreadyClaimed
        case .full, .unavailable:
            switch fallback {
            case .reject: return .unavailable
            case .local: return await local.claim(key, ttl: ttl)
            }
        }
    }
}
