/// What a v2 replay claim falls back to while a configured Redis fails (`E2EE_REPLAY_ON_REDIS_FAILURE`).
public enum ReplayFallback: String, Sendable, CaseIterable {
    /// Refuse: the request gets `503 replay_store_unavailable` (fail closed, the default).
    case reject
    /// This replica's own claims only: a captured request can be replayed once per replica meanwhile.
    case local
}

/// This replica's store and Redis together; the one place that decides how the two combine:
/// records are written to both (never over an earlier one: `insertIfAbsent`) and read from Redis first,
/// then locally (so a record written during an outage, or by a replica whose Redis write failed, is still
/// served here); replay claims are Redis' `SET NX` when it answers, and `fallback` decides when it does not.
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

    /// Records are never overwritten (SPEC §2), and the two stores decide together:
    /// - a live copy here is the first record, even when Redis lacks it (written during an outage, or
    ///   dropped by Redis): nothing is stored, and that copy is offered to Redis with `NX` so the other
    ///   replicas refuse a second record for the key from now on;
    /// - otherwise Redis' `SET NX` decides, as for claims, and a record Redis took is kept here too;
    /// - while Redis fails, records fail open to this replica (SPEC §8): the insert is this replica's alone,
    ///   so during an outage a key is unique per replica only. Once Redis is back it is read first, so a
    ///   record it held from before the outage is again what every replica serves.
    /// A copy offered to Redis keeps the full `ttl`: it may outlive this replica's copy by the time since
    /// that was made, which costs nothing (a record holds public signatures over hashes).
    public func insertIfAbsent(_ key: String, _ value: [UInt8], ttl: Duration) async -> InsertOutcome {
        if let existing = await local.get(key) {
            _ = await redis.insertIfAbsent(key, existing, ttl: ttl)
            return .alreadyPresent
        }
        switch await redis.insertIfAbsent(key, value, ttl: ttl) {
        case .inserted:
            // Redis is the authority and just took this value: this replica's copy follows it.
            await local.put(key, value, ttl: ttl)
            return .inserted
        case .alreadyPresent:
            return .alreadyPresent
        case .notStored:
            return await local.insertIfAbsent(key, value, ttl: ttl)
        }
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
