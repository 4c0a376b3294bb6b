import Foundation
import NIOPosix
import Testing

@testable import Redis

/// The client against a real redis-server; `.serialized` because tests pause and restart servers.
@Suite(.serialized) struct RedisClientTests {
    @Test func authenticatesAndRoundTripsValues() async throws {
        let server = try await RedisServer()
        defer { server.stop() }
        let client = RedisClient(configuration: server.configuration(), logger: quietLogger)
        try await client.ping()
        let value: [UInt8] = Array("{\"text\": \"a:b\"}".utf8) + [0, 13, 10, 255]
        try await client.set("rec:1", value, expireSeconds: 60)
        #expect(try await client.get("rec:1") == value)
        #expect(try await client.get("rec:missing") == nil)
        // The expiry was set: TTL answers the seconds left.
        guard case .integer(let ttl) = try await client.send(RESPCommand("TTL", "rec:1")) else {
            Issue.record("TTL did not answer an integer")
            return
        }
        #expect((1...60).contains(ttl))
        await client.shutdown()
    }

    @Test func setIfAbsentSucceedsOnce() async throws {
        let server = try await RedisServer()
        defer { server.stop() }
        let client = RedisClient(configuration: server.configuration(), logger: quietLogger)
        #expect(try await client.setIfAbsent("claim", [0x31], expireSeconds: 30) == true)
        #expect(try await client.setIfAbsent("claim", [0x31], expireSeconds: 30) == false)
        #expect(try await client.get("claim") == [0x31])
        await client.shutdown()
    }

    @Test func wrongPasswordIsAnAuthenticationFailureWithoutTheSecret() async throws {
        let server = try await RedisServer()
        defer { server.stop() }
        let secret = "wrong-SECRET-value"
        let client = RedisClient(configuration: server.configuration(password: secret), logger: quietLogger)
        do {
            try await client.ping()
            Issue.record("PING with a wrong password succeeded")
        } catch {
            #expect(error.kind == "auth")
            #expect(!error.description.contains(secret))
        }
        var noPassword = server.configuration()
        noPassword.password = nil
        let anonymous = RedisClient(configuration: noPassword, logger: quietLogger)
        await #expect(throws: RedisError.server("NOAUTH")) { try await anonymous.get("k") }
        await client.shutdown()
        await anonymous.shutdown()
    }

    @Test func aclUserAuthenticates() async throws {
        let server = try await RedisServer()
        defer { server.stop() }
        let admin = RedisClient(configuration: server.configuration(), logger: quietLogger)
        _ = try await admin.send(RESPCommand("ACL", "SETUSER", "proxy", "on", ">proxy-pass", "~*", "+@all"))
        var config = server.configuration(password: "proxy-pass")
        config.username = "proxy"
        let user = RedisClient(configuration: config, logger: quietLogger)
        try await user.set("acl", [1], expireSeconds: 10)
        config.password = server.password  // the default user's password, not proxy's
        let wrong = RedisClient(configuration: config, logger: quietLogger)
        await #expect(throws: RedisError.authentication("WRONGPASS")) { try await wrong.ping() }
        for client in [admin, user, wrong] { await client.shutdown() }
    }

    @Test func selectedDatabaseIsSeparate() async throws {
        let server = try await RedisServer()
        defer { server.stop() }
        let db3 = RedisClient(configuration: server.configuration(database: 3), logger: quietLogger)
        let db0 = RedisClient(configuration: server.configuration(), logger: quietLogger)
        try await db3.set("where", Array("three".utf8), expireSeconds: 60)
        #expect(try await db3.get("where") == Array("three".utf8))
        #expect(try await db0.get("where") == nil)
        await db3.shutdown()
        await db0.shutdown()
    }

    /// Many callers at once on a few pipelined connections: every one gets its own answer.
    @Test func concurrentCommandsGetTheirOwnReplies() async throws {
        let server = try await RedisServer()
        defer { server.stop() }
        let client = RedisClient(configuration: server.configuration(), connections: 2, logger: quietLogger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<500 {
                group.addTask {
                    let value = Array("value-\(index)".utf8)
                    try await client.set("key-\(index)", value, expireSeconds: 60)
                    let read = try await client.get("key-\(index)")
                    #expect(read == value)
                }
            }
            try await group.waitForAll()
        }
        await client.shutdown()
    }

    /// A frozen server: the command fails at its timeout, and the late reply is never taken for the
    /// answer to a later command.
    @Test func timeoutDoesNotDesynchroniseReplies() async throws {
        let server = try await RedisServer()
        defer { server.stop() }
        let client = RedisClient(
            configuration: server.configuration(timeout: .seconds(1)), connections: 1, logger: quietLogger)
        try await client.set("a", Array("A".utf8), expireSeconds: 60)
        try await client.set("b", Array("B".utf8), expireSeconds: 60)
        server.pause()
        let started = ContinuousClock.now
        await #expect(throws: RedisError.timeout) { try await client.get("a") }
        #expect(ContinuousClock.now - started < .seconds(5))
        server.resume()
        // Whatever happened to "a"'s reply, "b" must read "B".
        var answer: [UInt8]?
        for _ in 0..<20 {
            if let value = try? await client.get("b") {
                answer = value
                break
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(answer == Array("B".utf8))
        await client.shutdown()
    }

    @Test func reconnectsByItselfAfterARestart() async throws {
        let server = try await RedisServer()
        defer { server.stop() }
        let client = RedisClient(configuration: server.configuration(timeout: .seconds(2)), logger: quietLogger)
        try await client.ping()
        server.stop()
        await #expect(throws: RedisError.self) { try await client.ping() }
        try await server.start()
        var recovered = false
        for _ in 0..<40 where !recovered {
            recovered = (try? await client.ping()) != nil
            if !recovered { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(recovered)
        // Every connection is back (one per event loop), not only the first.
        for _ in 0..<8 { try await client.set("after", [1], expireSeconds: 10) }
        await client.shutdown()
    }

    @Test func refusedConnectionFailsFastAsAConnectionError() async throws {
        let server = try await RedisServer()
        let port = server.port
        server.stop()
        let client = RedisClient(
            configuration: RedisConfiguration(host: "127.0.0.1", port: port, commandTimeout: .seconds(5)),
            logger: quietLogger)
        let started = ContinuousClock.now
        do {
            try await client.ping()
            Issue.record("PING to a stopped server succeeded")
        } catch {
            #expect(error.kind == "connection")
        }
        #expect(ContinuousClock.now - started < .seconds(4))
        await client.shutdown()
    }

    @Test func commandsAfterShutdownFail() async throws {
        let server = try await RedisServer()
        defer { server.stop() }
        let client = RedisClient(configuration: server.configuration(), logger: quietLogger)
        try await client.ping()
        await client.shutdown()
        await #expect(throws: RedisError.shutDown) { try await client.ping() }
    }

    /// Not a test of correctness: prints throughput for 1, 2 and 4 pipelined connections
    /// (`REDIS_BENCH=1 swift test --filter pipelineThroughput`).
    @Test(.enabled(if: ProcessInfo.processInfo.environment["REDIS_BENCH"] != nil))
    func pipelineThroughput() async throws {
        let server = try await RedisServer()
        defer { server.stop() }
        for connections in [1, 2, 4, 8] {
            let client = RedisClient(
                configuration: server.configuration(), connections: connections, logger: quietLogger)
            try await client.ping()
            let total = 40_000
            let workers = 64
            let started = ContinuousClock.now
            try await withThrowingTaskGroup(of: Void.self) { group in
                for worker in 0..<workers {
                    group.addTask {
                        for index in 0..<(total / workers) {
                            _ = try await client.setIfAbsent(
                                "bench:\(connections):\(worker):\(index)", [1], expireSeconds: 60)
                        }
                    }
                }
                try await group.waitForAll()
            }
            let elapsed = ContinuousClock.now - started
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            print(
                "redis bench: \(connections) connection(s), \(workers) callers: \(Int(Double(total) / seconds)) SET NX/s"
            )
            await client.shutdown()
        }
    }
}
