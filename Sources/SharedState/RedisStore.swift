import Logging
import Redis
import Synchronization

/// What `RedisStore` reports, so the app can export metrics without this module knowing about them.
public protocol RedisStoreMonitor: Sendable {
    /// Redis became usable (true) or is being skipped after a failure (false).
    func redisAvailability(up: Bool)
    /// One store operation: sent and answered, failed (with the failure's kind), or skipped while Redis is
    /// down. `duration` is the command's round trip, nil when nothing was sent.
    func redisOperation(_ operation: RedisStore.Operation, result: RedisStore.Result, duration: Duration?)
}

/// `SharedStore` on Redis, and the one owner of the circuit breaker: after any failure Redis is skipped
/// for `retryInterval`, then one `PING` decides whether it is used again, with no restart and no
/// request waiting on a dead server. While skipped, `get` answers nil, `put` drops the write,
/// `insertIfAbsent` answers `.notStored` and `claim` `.unavailable`: what that means for a request is the
/// caller's decision (`ReplicatedStore`).
public final class RedisStore: SharedStore {
    public enum Operation: String, Sendable, CaseIterable {
        case get, set, claim, ping
    }

    public enum Result: Sendable, Equatable {
        case ok
        case failed(kind: String)
        case skipped
    }

    private enum Breaker {
        case closed
        /// Skipping Redis until a probe succeeds; `probe` sleeps the retry interval, then pings.
        case open(probe: Task<Void, Never>?)
        case shutDown
    }

    private let client: RedisClient
    private let retryInterval: Duration
    private let monitor: any RedisStoreMonitor
    private let logger: Logger
    /// What an outage means for traffic, appended to the one warning logged when Redis becomes unavailable.
    private let outageConsequence: String
    private let breaker = Mutex(Breaker.closed)

    public init(
        client: RedisClient, retryInterval: Duration, monitor: any RedisStoreMonitor, outageConsequence: String,
        logger: Logger
    ) {
        self.client = client
        self.retryInterval = retryInterval
        self.monitor = monitor
        self.outageConsequence = outageConsequence
        self.logger = logger
    }

    /// Pings once at start-up so a wrong password or an unreachable server is logged at once, not at the
    /// first request; either way the proxy starts. Then checks the eviction policy (`reportEvictionPolicy`).
    public func start() async {
        do throws(RedisError) {
            try await measured(.ping) { try await client.ping() }
            logger.info("redis: connected (\(client.configuration))")
            monitor.redisAvailability(up: true)
        } catch {
            return  // Already reported by `measured`; the policy is checked once Redis answers.
        }
        await reportEvictionPolicy()
    }

    /// What Redis does when it reaches `maxmemory`, as `CONFIG GET maxmemory-policy` tells.
    public enum EvictionPolicy: Sendable, Equatable {
        /// `noeviction`: a full Redis refuses writes (which fail, so claims fail closed) and drops nothing.
        case noEviction
        /// Any other policy (LRU, LFU, random, TTL): a full Redis drops keys, live replay claims and records
        /// among them (every key here has a TTL, so the `volatile-*` policies reach them too).
        case evicting(String)
        /// Not known: the server refused `CONFIG` (managed services often do) or did not answer; the reason.
        case unknown(String)
    }

    /// Asks Redis for its eviction policy. Sent past the breaker: a refused `CONFIG` says nothing about
    /// whether Redis can hold records and claims, so it must not open it.
    public func evictionPolicy() async -> EvictionPolicy {
        do throws(RedisError) {
            guard let policy = try await client.configGet("maxmemory-policy") else {
                return .unknown("the server has no maxmemory-policy")
            }
            if policy == "noeviction" { return .noEviction }
            // The server's text goes into a log line: only a short printable word, as every real policy is.
            let printable = policy.utf8.count <= 32 && policy.utf8.allSatisfy { (0x21...0x7E).contains($0) }
            return .evicting(printable ? policy : "(unprintable)")
        } catch {
            return .unknown(error.description)
        }
    }

    /// Warns when Redis may evict keys: an evicted live replay claim lets its captured E2EE request be
    /// replayed, and an evicted record loses a receipt before its time. Checked whenever Redis becomes
    /// usable, since a server that comes back may be another one (a restart, a failover).
    private func reportEvictionPolicy() async {
        switch await evictionPolicy() {
        case .noEviction:
            logger.debug("redis: maxmemory-policy is noeviction")
        case .evicting(let policy):
            logger.warning(
                "redis: maxmemory-policy is \(policy), not noeviction: a full Redis then evicts keys, and an evicted E2EE replay claim lets its captured request be replayed, an evicted record loses its receipt. Set maxmemory-policy noeviction (a full Redis then refuses writes: records stay on their replica and v2 claims fail closed)."
            )
        case .unknown(let why):
            logger.notice(
                "redis: could not check maxmemory-policy (\(why)); make sure it is noeviction, or a full Redis may evict live E2EE replay claims (letting captured requests be replayed) and records."
            )
        }
    }

    public func put(_ key: String, _ value: [UInt8], ttl: Duration) async {
        let seconds = Self.expireSeconds(ttl)
        _ = try? await measured(.set) { try await client.set(key, value, expireSeconds: seconds) }
    }

    /// `SET key value NX EX ttl`, counted as a `set` (it is how records are written). A failure or a skipped
    /// Redis is `.notStored`: the caller decides what a record does then (`ReplicatedStore`).
    public func insertIfAbsent(_ key: String, _ value: [UInt8], ttl: Duration) async -> InsertOutcome {
        let seconds = Self.expireSeconds(ttl)
        do throws(RedisError) {
            let created = try await measured(.set) {
                try await client.setIfAbsent(key, value, expireSeconds: seconds)
            }
            return created ? .inserted : .alreadyPresent
        } catch {
            return .notStored
        }
    }

    public func get(_ key: String) async -> [UInt8]? {
        do throws(RedisError) {
            return try await measured(.get) { try await client.get(key) }
        } catch {
            return nil
        }
    }

    public func claim(_ key: String, ttl: Duration) async -> ClaimOutcome {
        let seconds = Self.expireSeconds(ttl)
        do throws(RedisError) {
            let created = try await measured(.claim) {
                try await client.setIfAbsent(key, Array("1".utf8), expireSeconds: seconds)
            }
            return created ? .claimed : .alreadyClaimed
        } catch {
            return .unavailable
        }
    }

    /// Stops the retry probe and closes the connections.
    public func shutdown() async {
        let probe: Task<Void, Never>? = breaker.withLock { breaker in
            defer { breaker = .shutDown }
            if case .open(let probe) = breaker { return probe }
            return nil
        }
        probe?.cancel()
        await client.shutdown()
    }

    /// Whether commands are being sent (false while the breaker is open).
    public var isUp: Bool {
        breaker.withLock { if case .closed = $0 { return true } else { return false } }
    }

    // MARK: the breaker

    private func measured<T>(_ operation: Operation, _ body: () async throws -> T) async throws(RedisError) -> T {
        guard isUp || operation == .ping else {
            monitor.redisOperation(operation, result: .skipped, duration: nil)
            throw .connection("skipped while Redis is unavailable")
        }
        let start = ContinuousClock.now
        do {
            let value = try await body()
            monitor.redisOperation(operation, result: .ok, duration: .now - start)
            return value
        } catch {
            // The client throws only `RedisError`; the closure's type just cannot say so.
            let failure = error as? RedisError ?? .connection(String(describing: type(of: error)))
            monitor.redisOperation(operation, result: .failed(kind: failure.kind), duration: .now - start)
            open(after: failure)
            throw failure
        }
    }

    /// Opens the breaker after a failure: one warning per outage, then a probe every retry interval.
    private func open(after error: RedisError) {
        let opened: Bool = breaker.withLock { breaker in
            guard case .closed = breaker else { return false }
            breaker = .open(probe: nil)
            return true
        }
        guard opened else { return }
        monitor.redisAvailability(up: false)
        logger.warning(
            "redis: unavailable (\(error)) at \(client.configuration); skipping it, retrying every \(Self.seconds(retryInterval)) s. \(outageConsequence)"
        )
        scheduleProbe()
    }

    private func scheduleProbe() {
        let retryInterval = self.retryInterval
        let task = Task { [self] in
            try? await Task.sleep(for: retryInterval)
            guard !Task.isCancelled else { return }
            await probe()
        }
        let keep = breaker.withLock { breaker in
            guard case .open = breaker else { return false }
            breaker = .open(probe: task)
            return true
        }
        if !keep { task.cancel() }
    }

    private func probe() async {
        do throws(RedisError) {
            try await measured(.ping) { try await client.ping() }
        } catch {
            scheduleProbe()
            return
        }
        let closed: Bool = breaker.withLock { breaker in
            guard case .open = breaker else { return false }
            breaker = .closed
            return true
        }
        guard closed else { return }
        monitor.redisAvailability(up: true)
        logger.notice("redis: reachable again (\(client.configuration)); using it")
        await reportEvictionPolicy()
    }

    /// `EX` takes whole seconds; round up so a key never expires before its TTL.
    static func expireSeconds(_ ttl: Duration) -> Int {
        let (seconds, attoseconds) = ttl.components
        return max(1, Int(seconds) + (attoseconds > 0 ? 1 : 0))
    }

    private static func seconds(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        if attoseconds == 0 { return String(seconds) }
        return String(Double(seconds) + Double(attoseconds) / 1e18)
    }
}
