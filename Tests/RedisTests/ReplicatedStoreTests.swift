import Redis
import Synchronization
import Testing

@testable import SharedState

/// Records what the store reports, as the metrics would.
final class RecordingMonitor: RedisStoreMonitor {
    private let state = Mutex<(availability: [Bool], operations: [(RedisStore.Operation, RedisStore.Result)])>(([], []))

    func redisAvailability(up: Bool) { state.withLock { $0.availability.append(up) } }
    func redisOperation(_ operation: RedisStore.Operation, result: RedisStore.Result, duration: Duration?) {
        state.withLock { $0.operations.append((operation, result)) }
    }

    var availability: [Bool] { state.withLock { $0.availability } }
    func count(_ operation: RedisStore.Operation, _ result: RedisStore.Result) -> Int {
        state.withLock { $0.operations.filter { $0.0 == operation && $0.1 == result }.count }
    }
    func failures(_ operation: RedisStore.Operation) -> Int {
        state.withLock {
            $0.operations.filter {
                if case .failed = $0.1 { return $0.0 == operation } else { return false }
            }.count
        }
    }
}

/// Two replicas' stores on one real Redis, and what happens when it goes away and comes back.
@Suite(.serialized) struct ReplicatedStoreTests {
    struct Replica {
        let local = TTLStore()
        let redis: RedisStore
        let store: ReplicatedStore
        let monitor = RecordingMonitor()

        init(_ server: RedisServer, fallback: ReplayFallback, retry: Duration = .milliseconds(300)) {
            let monitor = self.monitor
            redis = RedisStore(
                // Generous: the machine running the tests may be loaded; a stopped server refuses at once anyway.
                client: RedisClient(
                    configuration: server.configuration(timeout: .seconds(5)), logger: quietLogger),
                retryInterval: retry, monitor: monitor, outageConsequence: "", logger: quietLogger)
            store = ReplicatedStore(local: local, redis: redis, fallback: fallback)
        }
    }

    @Test func recordsAndClaimsAreSharedAcrossReplicas() async throws {
        let server = try await RedisServer()
        defer { server.stop() }
        let a = Replica(server, fallback: .reject)
        let b = Replica(server, fallback: .reject)
        await a.redis.start()
        #expect(a.monitor.availability == [true])

        await a.store.put("m:chat:1", Array("record".utf8), ttl: .seconds(60))
        #expect(await b.store.get("m:chat:1") == Array("record".utf8))
        #expect(await b.local.get("m:chat:1") == nil, "B read it from Redis, not from its own store")

        #expect(await a.store.claim("m:e2ee_replay:ecdsa:1:n", ttl: .seconds(60)) == .claimed)
        #expect(await b.store.claim("m:e2ee_replay:ecdsa:1:n", ttl: .seconds(60)) == .alreadyClaimed)
        #expect(await a.store.claim("m:e2ee_replay:ecdsa:1:n", ttl: .seconds(60)) == .alreadyClaimed)
        await a.redis.shutdown()
        await b.redis.shutdown()
    }

    @Test func outageKeepsRecordsLocalFailsClaimsClosedAndRecoversByItself() async throws {
        let server = try await RedisServer()
        defer { server.stop() }
        let strict = Replica(server, fallback: .reject)
        let lenient = Replica(server, fallback: .local)
        await strict.redis.start()
        #expect(await lenient.store.claim("before", ttl: .seconds(60)) == .claimed)
        server.stop()

        // The first write fails and is counted; the record is still served from this replica.
        await strict.store.put("m:chat:down", [7], ttl: .seconds(60))
        #expect(strict.monitor.failures(.set) == 1)
        #expect(await strict.store.get("m:chat:down") == [7])
        #expect(strict.monitor.availability == [true, false])
        #expect(!strict.redis.isUp)
        // While the breaker is open nothing is sent: skipped, not failed again.
        #expect(await strict.store.claim("k1", ttl: .seconds(60)) == .unavailable)
        #expect(strict.monitor.count(.claim, .skipped) == 1)

        // Local fallback: this replica's own claims, including one made while Redis was up.
        #expect(await lenient.store.claim("k2", ttl: .seconds(60)) == .claimed)
        #expect(await lenient.store.claim("k2", ttl: .seconds(60)) == .alreadyClaimed)
        #expect(await lenient.store.claim("before", ttl: .seconds(60)) == .alreadyClaimed)

        try await server.start()
        var recovered = false
        for _ in 0..<60 where !recovered {
            try await Task.sleep(for: .milliseconds(100))
            recovered = strict.redis.isUp
        }
        #expect(recovered, "a probe should have found Redis again within a few retry intervals")
        #expect(strict.monitor.availability == [true, false, true])
        #expect(await strict.store.claim("k1", ttl: .seconds(60)) == .claimed)
        await strict.redis.shutdown()
        await lenient.redis.shutdown()
    }

    @Test func wrongPasswordAtStartIsReportedOnceAndFailsClosed() async throws {
        let server = try await RedisServer()
        defer { server.stop() }
        let monitor = RecordingMonitor()
        let redis = RedisStore(
            client: RedisClient(configuration: server.configuration(password: "nope"), logger: quietLogger),
            retryInterval: .seconds(30), monitor: monitor, outageConsequence: "", logger: quietLogger)
        let store = ReplicatedStore(local: TTLStore(), redis: redis, fallback: .reject)
        await redis.start()
        #expect(monitor.availability == [false])
        #expect(monitor.failures(.ping) == 1)
        #expect(await store.claim("k", ttl: .seconds(60)) == .unavailable)
        await store.put("r", [1], ttl: .seconds(60))
        #expect(await store.get("r") == [1])
        await redis.shutdown()
    }

    @Test func expirySecondsRoundUp() {
        #expect(RedisStore.expireSeconds(.seconds(300)) == 300)
        #expect(RedisStore.expireSeconds(.milliseconds(1500)) == 2)
        #expect(RedisStore.expireSeconds(.milliseconds(10)) == 1)
    }
}
