import NIOCore
import NIOHTTP1
import NIOPosix
import Testing

@testable import UpstreamHTTP

/// Issue #20 against a loopback server that counts what it receives: requests waiting at the connection cap,
/// and what may be sent twice.
@Suite struct PoolWaitingTests {
    typealias Base = UpstreamConnectionPoolTests

    /// Collects `path` with the given read timeout, as the caller's task.
    static func fetch(_ pool: UpstreamConnectionPool, _ path: String, timeout: TimeAmount = .seconds(10))
        async throws -> String
    {
        try await Base.collect(pool, path, timeout: timeout).1
    }

    /// Waits (generously: the machine may be loaded) until `condition` holds.
    static func waitUntil(_ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(15)
        while !condition(), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
    }

    /// A request whose caller is cancelled while it waits for the only connection is never sent, and the slot,
    /// once free, goes to the live waiter behind it (which used to wait for ever).
    @Test func aCancelledWaiterIsNeverSentAndTheNextOneIsServed() async throws {
        let server = try await TestServer()
        let pool = try Base.pool(server, .init(maxConnections: 1))
        let busy = Task { try await Self.fetch(pool, "/silent?busy", timeout: .seconds(60)) }
        try await Self.waitUntil { server.stats.withLock { $0.requests } == 1 }
        let leaving = Task { try await Self.fetch(pool, "/json?leaving") }
        try await Self.waitUntil { pool.waitingRequests == 1 }
        let staying = Task { try await Self.fetch(pool, "/json?staying") }
        try await Self.waitUntil { pool.waitingRequests == 2 }
        #expect(pool.waitingRequests == 2)
        leaving.cancel()
        // Failed by the cancellation itself, on its loop: out of line from then on.
        await #expect(throws: UpstreamHTTPError.cancelled) { _ = try await leaving.value }
        #expect(pool.waitingRequests == 1)
        busy.cancel()  // closes the busy connection: its slot comes free
        _ = try? await busy.value
        try await Self.waitUntil { server.stats.withLock { $0.requests } == 2 }
        #expect(server.stats.withLock { $0.requests } == 2)
        guard server.stats.withLock({ $0.requests }) == 2 else { return staying.cancel() }  // never hang
        #expect(try await staying.value == TestServer.json)
        // The busy request and the live waiter; never the one that left.
        #expect(server.stats.withLock { $0.requests } == 2)
        #expect(pool.waitingRequests == 0)
        #expect(pool.peakConnections == 1)
        await pool.shutdown()
        await server.stop()
    }

    /// Many waiters leaving while the one connection is busy: none is sent, and none is left in line.
    @Test func waitersLeavingInBulkAreNeverSent() async throws {
        let server = try await TestServer()
        let pool = try Base.pool(server, .init(maxConnections: 1))
        let busy = Task { try await Self.fetch(pool, "/silent", timeout: .seconds(60)) }
        try await Self.waitUntil { server.stats.withLock { $0.requests } == 1 }
        let leaving = (0..<50).map { _ in Task { try await Self.fetch(pool, "/json") } }
        try await Self.waitUntil { pool.waitingRequests == 50 }
        for task in leaving { task.cancel() }
        for task in leaving { _ = try? await task.value }
        #expect(pool.waitingRequests == 0)
        busy.cancel()
        _ = try? await busy.value
        #expect(try await Self.fetch(pool, "/json") == TestServer.json)
        #expect(server.stats.withLock { $0.requests } == 2)
        await pool.shutdown()
        await server.stop()
    }

    /// A wait for a connection is bounded by the request's timeout, and what timed out was never sent.
    @Test func aWaitLongerThanTheTimeoutFailsUnsent() async throws {
        let server = try await TestServer()
        let pool = try Base.pool(server, .init(maxConnections: 1))
        let busy = Task { try await Self.fetch(pool, "/silent", timeout: .seconds(30)) }
        try await Self.waitUntil { server.stats.withLock { $0.requests } == 1 }
        let started = ContinuousClock.now
        await #expect(throws: UpstreamHTTPError.poolTimeout) {
            _ = try await Self.fetch(pool, "/json", timeout: .milliseconds(300))
        }
        #expect(ContinuousClock.now - started < .seconds(10))
        #expect(server.stats.withLock { $0.requests } == 1)
        #expect(pool.waitingRequests == 0)
        busy.cancel()
        _ = try? await busy.value
        await pool.shutdown()
        await server.stop()
    }

    /// At the cap, a connection left idle on another loop is closed for a waiter rather than kept until it ages
    /// out (no exchange finishing on that loop would ever hand it over).
    @Test func anIdleConnectionOnAnotherLoopIsHandedOverAtTheCap() async throws {
        let server = try await TestServer()
        let pool = try Base.pool(server, .init(maxConnections: 1, idleTimeout: .seconds(60)))
        // Off the loops, each request lands on the next loop; every one must be served at once.
        for _ in 0..<(2 * Base.loopCount) {
            let started = ContinuousClock.now
            #expect(try await Self.fetch(pool, "/json") == TestServer.json)
            // Instead of the minute the idle connection would otherwise be kept.
            #expect(ContinuousClock.now - started < .seconds(10))
        }
        #expect(pool.peakConnections == 1)
        await pool.shutdown()
        await server.stop()
    }

    /// One loop, so the second request reuses the first one's connection: a read timeout there fails without
    /// sending the request again (issue #20: the upstream generated it twice).
    @Test func aReadTimeoutOnAReusedConnectionIsNotResent() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let server = try await TestServer()
        let pool = try UpstreamConnectionPool(
            endpoint: UpstreamEndpoint(baseURL: "http://127.0.0.1:\(server.port)")!, group: group)
        #expect(try await Self.fetch(pool, "/json") == TestServer.json)
        // The caller has the answer a moment before the connection is back in the pool: reuse needs it there.
        try await Self.waitUntil { pool.idleConnections == 1 }
        await #expect(throws: UpstreamHTTPError.readTimeout) {
            _ = try await Self.fetch(pool, "/silent", timeout: .milliseconds(300))
        }
        // What matters is that the timed-out request reached the server once. Whether it rode the first request's
        // connection is not asserted: on a loaded CI machine it twice did not (a second connection was accepted),
        // which the test cannot control; the retry rule itself is covered socket-free in WaitersTests.
        #expect(server.stats.withLock { $0.requests } == 2)
        await pool.shutdown()
        await server.stop()
        try await group.shutdownGracefully()
    }

    /// An upstream that read the request and hangs up later without answering does not get it twice.
    @Test func aLateHangUpOnAReusedConnectionIsNotResent() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let server = try await TestServer()
        let pool = try UpstreamConnectionPool(
            endpoint: UpstreamEndpoint(baseURL: "http://127.0.0.1:\(server.port)")!, group: group)
        #expect(try await Self.fetch(pool, "/json") == TestServer.json)
        try await Self.waitUntil { pool.idleConnections == 1 }
        let hangUp = ResendRule.crossedCloseWindow + .milliseconds(300)
        await #expect(throws: UpstreamHTTPError.connectionClosed) {
            _ = try await Self.fetch(pool, "/hangup/\(hangUp.nanoseconds / 1_000_000)")
        }
        #expect(server.stats.withLock { $0.requests } == 2)
        await pool.shutdown()
        await server.stop()
        try await group.shutdownGracefully()
    }
}
