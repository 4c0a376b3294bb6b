import NIOCore

/// Receives what the E2EE transport does, for metrics and logs (the proxy counts them in Prometheus).
public protocol ChutesE2EEObserver: Sendable {
    /// An instance listing was fetched for a chute (`ahead`: before the pool ran out).
    func refilled(ahead: Bool)
    /// A listing fetch failed.
    func refillFailed(_ error: ChutesE2EEError)
    /// An invoke answered 403 or 410 and was retried once.
    func retried(status: Int)
}

/// One use of one nonce: the instance to send to and the key to seal for it.
public struct NonceTicket: Sendable {
    public let chuteID: String
    public let instanceID: String
    public let publicKey: InstancePublicKey
    public let nonce: String
}

/// Single-use nonces per chute, shared by every request: fetched from `/e2e/instances` (rate-limited, so
/// cached), handed out once each (never twice, even if a later listing repeats one), refilled in the
/// background when a chute's pool runs low, and considered expired a margin before the relay's
/// `nonce_expires_in` so a nonce is not spent in flight. At most `maxChutes` chutes are kept (least
/// recently used dropped first).
public actor NoncePool {
    private struct Pooled {
        let instanceID: String
        let publicKey: InstancePublicKey
        var nonces: [String]  // reversed: the next nonce is the last element
    }

    private struct ChutePool {
        var instances: [Pooled] = []
        var expiresAt: ContinuousClock.Instant
        var lowWater = 0
        var lastUsed: ContinuousClock.Instant
        /// Nonces already handed out, until their listing expires.
        var spent = SpentNonces()
        /// Instances that answered 410, kept out of later listings for a while (the relay may lag).
        var gone: [String: ContinuousClock.Instant] = [:]

        var remaining: Int { instances.reduce(0) { $0 + $1.nonces.count } }
    }

    private let directory: any ChutesE2EEDirectory
    private let observer: (any ChutesE2EEObserver)?
    /// Told each chute's listed instances, so attestations of instances that left are forgotten (SPEC §7.2).
    private let gate: (any ChutesInstanceGate)?
    private let maxChutes: Int
    private let now: @Sendable () -> ContinuousClock.Instant
    private var pools: [String: ChutePool] = [:]
    private var refills: [String: Task<InstanceListing, any Error>] = [:]

    /// How long an instance that answered 410 stays excluded, and the most spent nonces remembered per chute.
    static let goneFor: Duration = .seconds(120)
    static let maxSpentRemembered = 16_384

    public init(
        directory: any ChutesE2EEDirectory, observer: (any ChutesE2EEObserver)? = nil,
        gate: (any ChutesInstanceGate)? = nil, maxChutes: Int = 256,
        now: @escaping @Sendable () -> ContinuousClock.Instant = { .now }
    ) {
        self.directory = directory
        self.observer = observer
        self.gate = gate
        self.maxChutes = max(1, maxChutes)
        self.now = now
    }

    /// A nonce for `chuteID` of an instance `accept` admits: from the pool, else after a fetch (shared with
    /// concurrent callers). Nonces of instances not admitted stay in the pool, unspent.
    public func take(
        _ chuteID: String,
        where accept: @Sendable (_ instanceID: String, _ key: InstancePublicKey) -> Bool = { _, _ in true }
    ) async throws(ChutesE2EEError) -> NonceTicket {
        if let ticket = popRefillingAhead(chuteID, accept) { return ticket }
        // A burst can outnumber one listing's nonces: the waiters that find the fresh listing already spent
        // by the others fetch again (shared, a few times at most) rather than fail while the relay has more.
        for _ in 0..<Self.maxFetchesPerTake {
            let listing = try await refill(chuteID)
            if let ticket = popRefillingAhead(chuteID, accept) { return ticket }
            let hadUsable =
                listing?.instances.contains { !$0.nonces.isEmpty && accept($0.instanceID, $0.publicKey) } ?? false
            guard hadUsable else { break }
        }
        throw .noInstances
    }

    /// Listings one `take` may wait for before it gives up.
    static let maxFetchesPerTake = 4

    /// The listed key of every instance in the chute's pool, fetching a listing first when it holds none.
    public func listedKeys(_ chuteID: String) async throws(ChutesE2EEError) -> [String: InstancePublicKey] {
        if pools[chuteID].map({ $0.instances.isEmpty || now() >= $0.expiresAt }) ?? true { try await refill(chuteID) }
        let instances = pools[chuteID]?.instances ?? []
        return Dictionary(instances.map { ($0.instanceID, $0.publicKey) }, uniquingKeysWith: { first, _ in first })
    }

    private func popRefillingAhead(
        _ chuteID: String, _ accept: (_ instanceID: String, _ key: InstancePublicKey) -> Bool
    ) -> NonceTicket? {
        guard let ticket = pop(chuteID, accept) else { return nil }
        if let pool = pools[chuteID], pool.remaining <= pool.lowWater, refills[chuteID] == nil {
            startRefill(chuteID, ahead: true)
        }
        return ticket
    }

    /// After a 403 (nonce refused): the pool's nonces are suspect, so the next take fetches fresh ones.
    public func invalidate(_ chuteID: String) {
        pools[chuteID]?.instances = []
    }

    /// After a 410 (instance gone): its nonces go, and later listings that still name it are filtered.
    public func dropInstance(_ chuteID: String, instanceID: String) {
        let until = now() + Self.goneFor
        _ = modifyPool(chuteID) { pool -> Void? in
            pool.instances.removeAll { $0.instanceID == instanceID }
            pool.gone[instanceID] = until
            return nil
        }
    }

    /// Nonces left for a chute (for tests and metrics).
    public func remaining(_ chuteID: String) -> Int { pools[chuteID]?.remaining ?? 0 }

    /// Mutates a chute's pool where it lives. Copying it out and back (`var pool = pools[id]` … `pools[id] =
    /// pool`) shares its storage with the dictionary's entry meanwhile, so the first write copied the whole
    /// spent-nonce table (up to 16 384 entries) and the instance's nonce list: every request paid for that.
    private func modifyPool<T>(_ chuteID: String, _ body: (inout ChutePool) -> T?) -> T? {
        guard pools[chuteID] != nil else { return nil }
        return body(&pools[chuteID]!)
    }

    private func pop(
        _ chuteID: String, _ accept: (_ instanceID: String, _ key: InstancePublicKey) -> Bool
    ) -> NonceTicket? {
        let time = now()
        return modifyPool(chuteID) { pool in pop(from: &pool, chuteID, time: time, accept) }
    }

    private func pop(
        from pool: inout ChutePool, _ chuteID: String, time: ContinuousClock.Instant,
        _ accept: (_ instanceID: String, _ key: InstancePublicKey) -> Bool
    ) -> NonceTicket? {
        pool.lastUsed = time
        guard time < pool.expiresAt else {
            pool.instances = []
            return nil
        }
        // The admitted instance with the most nonces left: spreads load and keeps every instance usable.
        guard
            let index = pool.instances.indices.filter({
                !pool.instances[$0].nonces.isEmpty
                    && accept(pool.instances[$0].instanceID, pool.instances[$0].publicKey)
            }).max(by: {
                pool.instances[$0].nonces.count < pool.instances[$1].nonces.count
            }),
            let nonce = pool.instances[index].nonces.popLast()
        else { return nil }
        let instance = pool.instances[index]
        pool.spent.insert(nonce, until: pool.expiresAt)
        return NonceTicket(
            chuteID: chuteID, instanceID: instance.instanceID, publicKey: instance.publicKey, nonce: nonce)
    }

    /// One fetch per chute at a time; the task itself installs the listing and clears its entry (it runs on
    /// this actor, so nothing can see a finished refill still marked in flight). A failed refill ahead of
    /// time is nobody's error yet: it is counted, and the next take fetches again.
    private func startRefill(_ chuteID: String, ahead: Bool) {
        let directory = self.directory
        let startedAt = now()
        refills[chuteID] = Task {
            do {
                let listing = try await directory.fetchInstances(chuteID: chuteID)
                self.refills[chuteID] = nil
                self.install(listing, chuteID: chuteID, fetchedAt: startedAt, ahead: ahead)
                await self.gate?.listed(chuteID: chuteID, instanceIDs: Set(listing.instances.map(\.instanceID)))
                return listing
            } catch {
                self.refills[chuteID] = nil
                self.observer?.refillFailed((error as? ChutesE2EEError) ?? .transport("instance listing failed"))
                throw error
            }
        }
    }

    @discardableResult
    private func refill(_ chuteID: String) async throws(ChutesE2EEError) -> InstanceListing? {
        if refills[chuteID] == nil { startRefill(chuteID, ahead: false) }
        guard let task = refills[chuteID] else { return nil }
        do {
            return try await task.value
        } catch {
            throw (error as? ChutesE2EEError) ?? .transport("instance listing failed")
        }
    }

    private func install(_ listing: InstanceListing, chuteID: String, fetchedAt: ContinuousClock.Instant, ahead: Bool) {
        let time = now()
        if pools[chuteID] == nil { pools[chuteID] = ChutePool(expiresAt: time, lastUsed: time) }
        _ = modifyPool(chuteID) { pool -> Void? in
            pool.spent.prune(now: time, keepingAtMost: Self.maxSpentRemembered)
            pool.gone = pool.gone.filter { $0.value > time }
            let lifetime = listing.nonceLifetime
            let margin = min(.seconds(5), lifetime / 5)
            pool.expiresAt = fetchedAt + lifetime - margin
            var seen = Set<String>()
            let (spent, gone) = (pool.spent, pool.gone)
            pool.instances = listing.instances.compactMap { instance in
                guard gone[instance.instanceID] == nil else { return nil }
                let fresh = instance.nonces.filter { !spent.contains($0) && seen.insert($0).inserted }
                guard !fresh.isEmpty else { return nil }
                return Pooled(instanceID: instance.instanceID, publicKey: instance.publicKey, nonces: fresh.reversed())
            }
            // Refill when a quarter is left (at least 2), so a steady stream of requests never waits for a fetch.
            pool.lowWater = max(2, pool.remaining / 4)
            return nil
        }
        evictIfNeeded(keeping: chuteID)
        observer?.refilled(ahead: ahead)
    }

    private func evictIfNeeded(keeping chuteID: String) {
        while pools.count > maxChutes {
            guard let oldest = pools.filter({ $0.key != chuteID }).min(by: { $0.value.lastUsed < $1.value.lastUsed })
            else { return }
            pools[oldest.key] = nil
        }
    }
}

/// Nonces handed out, each until its listing expires: looked up by nonce, forgotten oldest first. Pruning walks
/// from the oldest and stops at the first one still live, so a refill costs what it forgets, not a sort of
/// everything remembered (at a few hundred requests a second the table reaches its cap, and sorting 16 384
/// entries at every refill cost more than the requests).
struct SpentNonces {
    private var expiry: [String: ContinuousClock.Instant] = [:]
    /// Handed out first, first (listings' expiries only grow, so this is close to expiry order).
    private var order = CircularBuffer<String>()

    var count: Int { expiry.count }

    func contains(_ nonce: String) -> Bool { expiry[nonce] != nil }

    mutating func insert(_ nonce: String, until: ContinuousClock.Instant) {
        if expiry.updateValue(until, forKey: nonce) == nil { order.append(nonce) }
    }

    /// Forgets the expired ones at the front, and the oldest beyond `limit`.
    mutating func prune(now: ContinuousClock.Instant, keepingAtMost limit: Int) {
        while let oldest = order.first {
            guard order.count > limit || (expiry[oldest].map { $0 <= now } ?? true) else { break }
            order.removeFirst()
            expiry[oldest] = nil
        }
    }
}
