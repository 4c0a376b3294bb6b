import Logging
import Redis
import Synchronization
import Testing

@testable import SharedState

/// SPEC §2's "a record, once stored, is never overwritten" through a real Redis: `SET NX EX`, two replicas,
/// and what the two stores decide together when Redis is down or lacks a record this replica has.
@Suite(.serialized) struct RecordInsertTests {
    struct Replica {
        let local = TTLStore()
        let redis: RedisStore
        let store: ReplicatedStore

        init(_ server: RedisServer, fallback: ReplayFallback = .reject) {
            redis = RedisStore(
                // Generous: the machine running the tests may be loaded; a stopped server refuses at once anyway.
                client: RedisClient(configuration: server.configuration(timeout: .seconds(5)), logger: quietLogger),
                retryInterval: .milliseconds(300), monitor: RecordingMonitor(), outageConsequence: "",
                logger: quietLogger)
            store = ReplicatedStore(local: local, redis: redis, fallback: fallback)
        }

        /// Waits until the breaker has closed again after the server came back.
        func waitUntilRedisIsUsed() async throws {
            for _ in 0..<100 where !redis.isUp { try await Task.sleep(for: .milliseconds(100)) }
            #expect(redis.isUp, "a probe should have found Redis again within a few retry intervals")
        }
    }

    @Test func redisStoreInsertIsSetNXWithTheTTL() async throws {
        let server = try await RedisServer()
        defer { server.stop() }
        let replica = Replica(server)
        let admin = RedisClient(configuration: server.configuration(), logger: quietLogger)
        #expect(await replica.redis.insertIfAbsent("m:chat:nx", [1], ttl: .seconds(60)) == .inserted)
        #expect(await replica.redis.insertIfAbsent("m:chat:nx", [2], ttl: .seconds(60)) == .alreadyPresent)
        #expect(try await admin.get("m:chat:nx") == [1])
        guard case .integer(let ttl) = try await admin.send(RESPCommand("TTL", "m:chat:nx")) else {
            Issue.record("TTL did not answer an integer")
            return
        }
        #expect((1...60).contains(ttl))
        // A key Redis lost (evicted, flushed) can be written again: NX looks at Redis alone.
        _ = try await admin.send(RESPCommand("DEL", "m:chat:nx"))
        #expect(await replica.redis.insertIfAbsent("m:chat:nx", [3], ttl: .seconds(60)) == .inserted)
        await admin.shutdown()
        await replica.redis.shutdown()
    }

    @Test func theFirstRecordWinsAcrossReplicas() async throws {
        let server = try await RedisServer()
        defer { server.stop() }
        let a = Replica(server)
        let b = Replica(server)
        #expect(await a.store.insertIfAbsent("m:chat:dup", Array("first".utf8), ttl: .seconds(60)) == .inserted)
        #expect(await a.local.get("m:chat:dup") == Array("first".utf8), "kept here too")
        #expect(await b.store.insertIfAbsent("m:chat:dup", Array("second".utf8), ttl: .seconds(60)) == .alreadyPresent)
        #expect(await b.local.get("m:chat:dup") == nil, "the refused record is stored nowhere")
        #expect(await a.store.insertIfAbsent("m:chat:dup", Array("third".utf8), ttl: .seconds(60)) == .alreadyPresent)
        for replica in [a, b] { #expect(await replica.store.get("m:chat:dup") == Array("first".utf8)) }
        await a.redis.shutdown()
        await b.redis.shutdown()
    }

    @Test func concurrentInsertsOnTwoReplicasHaveOneWinner() async throws {
        let server = try await RedisServer()
        defer { server.stop() }
        let replicas = [Replica(server), Replica(server)]
        let outcomes = await withTaskGroup(of: InsertOutcome.self) { group in
            for index in 0..<32 {
                group.addTask {
                    await replicas[index % 2].store.insertIfAbsent("m:chat:race", [UInt8(index)], ttl: .seconds(60))
                }
            }
            return await group.reduce(into: [InsertOutcome]()) { $0.append($1) }
        }
        #expect(outcomes.filter { $0 == .inserted }.count == 1)
        #expect(outcomes.filter { $0 == .alreadyPresent }.count == 31)
        let first = await replicas[0].store.get("m:chat:race")
        let second = await replicas[1].store.get("m:chat:race")
        #expect(first != nil && first == second)
        for replica in replicas { await replica.redis.shutdown() }
    }

    /// During an outage a record is this replica's alone (plain traffic never fails because of Redis);
    /// once Redis is back, a second record for the key is refused here, and the first one is handed to Redis
    /// so the other replicas refuse theirs too.
    @Test func aRecordMadeDuringAnOutageStaysFirstAndReachesRedisLater() async throws {
        let server = try await RedisServer()
        defer { server.stop() }
        let a = Replica(server)
        let b = Replica(server)
        await a.redis.start()
        server.stop()
        #expect(await a.store.insertIfAbsent("m:chat:outage", Array("first".utf8), ttl: .seconds(60)) == .inserted)
        #expect(!a.redis.isUp)
        // Still unique on this replica while Redis is skipped.
        #expect(
            await a.store.insertIfAbsent("m:chat:outage", Array("again".utf8), ttl: .seconds(60)) == .alreadyPresent)
        #expect(await a.store.get("m:chat:outage") == Array("first".utf8))

        try await server.start()
        try await a.waitUntilRedisIsUsed()
        #expect(await b.store.get("m:chat:outage") == nil, "Redis never got it")
        #expect(
            await a.store.insertIfAbsent("m:chat:outage", Array("second".utf8), ttl: .seconds(60)) == .alreadyPresent)
        #expect(await b.store.get("m:chat:outage") == Array("first".utf8), "offered to Redis by the refusal")
        #expect(
            await b.store.insertIfAbsent("m:chat:outage", Array("third".utf8), ttl: .seconds(60)) == .alreadyPresent)
        #expect(await a.store.get("m:chat:outage") == Array("first".utf8))
        await a.redis.shutdown()
        await b.redis.shutdown()
    }

    @Test func aSkippedRedisIsNotStoredAndTheReplicaFallsBackWhateverTheClaimPolicy() async throws {
        let server = try await RedisServer()
        defer { server.stop() }
        let replica = Replica(server, fallback: .reject)
        await replica.redis.start()
        server.stop()
        #expect(await replica.redis.insertIfAbsent("m:chat:down", [1], ttl: .seconds(60)) == .notStored)
        #expect(!replica.redis.isUp)
        #expect(await replica.redis.insertIfAbsent("m:chat:down", [1], ttl: .seconds(60)) == .notStored, "skipped")
        // `reject` is about replay claims; records fail open to this replica.
        #expect(await replica.store.insertIfAbsent("m:chat:down", [1], ttl: .seconds(60)) == .inserted)
        #expect(await replica.store.get("m:chat:down") == [1])
        await replica.redis.shutdown()
    }
}

/// SPEC §8 at start-up: a Redis that may evict keys is reported, since an evicted live replay claim lets
/// its captured E2EE request be replayed.
@Suite(.serialized) struct EvictionPolicyTests {
    func store(_ server: RedisServer, configuration: RedisConfiguration? = nil, logger: Logger) -> RedisStore {
        RedisStore(
            client: RedisClient(
                configuration: configuration ?? server.configuration(timeout: .seconds(5)), logger: quietLogger),
            retryInterval: .seconds(30), monitor: RecordingMonitor(), outageConsequence: "", logger: logger)
    }

    @Test func anEvictingPolicyIsWarnedAboutAtStart() async throws {
        let server = try await RedisServer(arguments: ["--maxmemory-policy", "allkeys-lru"])
        defer { server.stop() }
        let log = RecordingLog()
        let redis = store(server, logger: log.logger)
        #expect(await redis.evictionPolicy() == .evicting("allkeys-lru"))
        await redis.start()
        let warnings = log.lines(at: .warning)
        #expect(warnings.count == 1, "\(warnings)")
        #expect(warnings.first?.contains("maxmemory-policy is allkeys-lru, not noeviction") == true)
        #expect(warnings.first?.contains("replay") == true)
        #expect(!log.all.contains { $0.contains(server.password) })
        #expect(redis.isUp, "a policy is a warning, not a failure")
        await redis.shutdown()
    }

    @Test func volatilePoliciesAreWarnedAboutToo() async throws {
        // Every key the proxy writes has a TTL, so `volatile-*` reaches all of them.
        let server = try await RedisServer(arguments: ["--maxmemory-policy", "volatile-ttl"])
        defer { server.stop() }
        let redis = store(server, logger: quietLogger)
        #expect(await redis.evictionPolicy() == .evicting("volatile-ttl"))
        await redis.shutdown()
    }

    @Test func noevictionIsSilent() async throws {
        let server = try await RedisServer()  // Debian's default: noeviction
        defer { server.stop() }
        let log = RecordingLog()
        let redis = store(server, logger: log.logger)
        await redis.start()
        #expect(await redis.evictionPolicy() == .noEviction)
        #expect(log.lines(at: .notice).isEmpty && log.lines(at: .warning).isEmpty, "\(log.all)")
        await redis.shutdown()
    }

    /// Managed services refuse `CONFIG`; here an ACL user without it: logged as unchecked, and Redis is used.
    @Test func aRefusedConfigIsLoggedAsUncheckedWithoutOpeningTheBreaker() async throws {
        let server = try await RedisServer(arguments: ["--maxmemory-policy", "allkeys-lru"])
        defer { server.stop() }
        let admin = RedisClient(configuration: server.configuration(), logger: quietLogger)
        _ = try await admin.send(
            RESPCommand("ACL", "SETUSER", "proxy", "on", ">proxy-pass", "~*", "+@all", "-config"))
        await admin.shutdown()
        var configuration = server.configuration(password: "proxy-pass", timeout: .seconds(5))
        configuration.username = "proxy"
        let log = RecordingLog()
        let redis = store(server, configuration: configuration, logger: log.logger)
        await redis.start()
        #expect(await redis.evictionPolicy() == .unknown("server error: NOPERM"))
        #expect(log.lines(at: .warning).isEmpty, "\(log.all)")
        let notices = log.lines(at: .notice)
        #expect(notices.count == 1 && notices[0].contains("could not check maxmemory-policy (server error: NOPERM)"))
        #expect(redis.isUp)
        #expect(await redis.insertIfAbsent("m:chat:acl", [1], ttl: .seconds(60)) == .inserted)
        await redis.shutdown()
    }

    @Test func anUnreachableRedisIsNotCheckedAtStart() async throws {
        let server = try await RedisServer(arguments: ["--maxmemory-policy", "allkeys-lru"])
        server.stop()
        let log = RecordingLog()
        let redis = store(server, logger: log.logger)
        await redis.start()
        #expect(!log.all.contains { $0.contains("maxmemory-policy") }, "\(log.all)")
        await redis.shutdown()
    }
}

/// Collects log lines with their level, for tests that check what an operator would read.
final class RecordingLog: Sendable {
    private let entries = Mutex<[(Logger.Level, String)]>([])

    var logger: Logger {
        Logger(label: "redis-test") { _ in Handler(log: self) }
    }

    var all: [String] { entries.withLock { $0.map(\.1) } }
    func lines(at level: Logger.Level) -> [String] { entries.withLock { $0.filter { $0.0 == level }.map(\.1) } }

    fileprivate func append(_ level: Logger.Level, _ message: String) {
        entries.withLock { $0.append((level, message)) }
    }

    private struct Handler: LogHandler {
        let log: RecordingLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            log.append(event.level, event.message.description)
        }
    }
}
