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
/// request waiting on a dead server. While skipped, `get` answers nil, `put` drops the write and `claim`
/// answers `.unavailable`: what that means for a request is the caller's decision (`ReplicatedStore`).
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
    /// first request; either way the proxy starts.
    public func start() async {
        do throws(RedisError) {
            try await measured(.ping) { try await client.ping() }
            logger.info("redis: connected (\(client.configuration))")
            monitor.redisAvailability(up: true)
        } catch {
            // Already reported by `measured`.
        }
    }

    public func put(_ key: String, _ value: [UInt8], ttl: Duration) async {
        let seconds = Self.expireSeconds(ttl)
        _ = try? await measured(.set) { try await client.set(key, value, expireSeconds: seconds) }
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
