import NIOCore
import NIOHTTP1
import NIOPosix
import Testing

@testable import UpstreamHTTP

@Suite struct UpstreamConnectionPoolTests {
    static func pool(_ server: TestServer, _ configuration: UpstreamConnectionPool.Configuration = .init()) throws
        -> UpstreamConnectionPool
    {
        try UpstreamConnectionPool(
            endpoint: UpstreamEndpoint(baseURL: "http://127.0.0.1:\(server.port)")!, configuration: configuration)
    }

    static let loopCount = MultiThreadedEventLoopGroup.singleton.makeIterator().reduce(0) { count, _ in count + 1 }

    static func get(_ path: String) -> HTTPRequestHead {
        HTTPRequestHead(version: .http1_1, method: .GET, uri: path)
    }

    static func collect(_ pool: UpstreamConnectionPool, _ path: String, timeout: TimeAmount = .seconds(10))
        async throws -> (UpstreamHTTPResponse, String)
    {
        let response = try await pool.execute(
            get(path), body: nil, mode: .collect(limit: 1 << 20), readTimeout: timeout)
        return (response, String(buffer: try await response.body.collect(upTo: 1 << 20)))
    }

    /// The caller has an answer a moment before its connection is back in the pool; reuse tests wait for that
    /// (generously: the machine may be loaded) rather than race it.
    static func untilAllIdle(_ pool: UpstreamConnectionPool) async throws {
        let deadline = ContinuousClock.now + .seconds(15)
        while pool.idleConnections != pool.openConnections, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(2))
        }
    }

    @Test func sequentialRequestsReuseOneConnection() async throws {
        let server = try await TestServer()
        // Idle connections are swept after the idle timeout (4 s by default): a loaded machine can be that slow
        // between two requests, and the swept connection's replacement would look like no reuse.
        let pool = try Self.pool(server, .init(idleTimeout: .seconds(120)))
        for _ in 0..<50 {
            let (response, body) = try await Self.collect(pool, "/json")
            #expect(response.status == .ok)
            #expect(body == TestServer.json)
            try await Self.untilAllIdle(pool)
        }
        // A caller off the event loops (as tests are) is spread over them: at most one connection per loop.
        #expect(server.stats.withLock { $0.accepted } <= Self.loopCount)
        #expect(server.stats.withLock { $0.requests } == 50)
        await pool.shutdown()
        await server.stop()
    }

    @Test func aChunkedBodyStreamsChunkByChunkAndTheConnectionIsReused() async throws {
        let server = try await TestServer()
        // Idle connections are swept after the idle timeout (4 s by default): a loaded machine can be that slow
        // between two requests, and the swept connection's replacement would look like no reuse.
        let pool = try Self.pool(server, .init(idleTimeout: .seconds(120)))
        for _ in 0..<3 {
            let response = try await pool.execute(
                Self.get("/chunked/5"), body: nil, mode: .stream, readTimeout: .seconds(10))
            guard case .stream(let stream) = response.body else {
                Issue.record("expected a stream")
                return
            }
            var text = ""
            for try await chunk in stream { text += String(buffer: chunk) }
            #expect(text == (0..<5).map { "data: \($0)\n\n" }.joined())
            try await Self.untilAllIdle(pool)
        }
        #expect(server.stats.withLock { $0.accepted } <= Self.loopCount)
        await pool.shutdown()
        await server.stop()
    }

    @Test func aBodyOverTheLimitFails() async throws {
        let server = try await TestServer()
        let pool = try Self.pool(server)
        await #expect(throws: UpstreamHTTPError.bodyTooLarge(limit: 1024)) {
            _ = try await pool.execute(
                Self.get("/big"), body: nil, mode: .collect(limit: 1024), readTimeout: .seconds(5))
        }
        // The connection whose framing was abandoned is closed, not reused; the next request still works.
        let (_, body) = try await Self.collect(pool, "/json")
        #expect(body == TestServer.json)
        #expect(server.stats.withLock { $0.closed } >= 1)
        await pool.shutdown()
        await server.stop()
    }

    @Test func silenceBeyondTheReadTimeoutFailsAndClosesTheConnection() async throws {
        let server = try await TestServer()
        let pool = try Self.pool(server)
        await #expect(throws: UpstreamHTTPError.readTimeout) {
            _ = try await Self.collect(pool, "/silent", timeout: .milliseconds(300))
        }
        try await Self.waitUntil { server.stats.withLock { $0.closed } == 1 }
        await pool.shutdown()
        await server.stop()
    }

    @Test func aRefusedConnectionFailsAtOnce() async throws {
        // Port 1 (tcpmux) has no listener: a closed test server's port could be taken by another test's.
        let pool = try UpstreamConnectionPool(endpoint: UpstreamEndpoint(baseURL: "http://127.0.0.1:1")!)
        await #expect(throws: UpstreamHTTPError.connectFailed("connection refused")) {
            _ = try await pool.execute(Self.get("/json"), body: nil, mode: .stream, readTimeout: .seconds(5))
        }
        #expect(pool.openConnections == 0)
        await pool.shutdown()
    }

    @Test func cancellingTheCallerClosesItsConnection() async throws {
        let server = try await TestServer()
        let pool = try Self.pool(server)
        let task = Task { try await Self.collect(pool, "/silent") }
        try await Self.waitUntil { server.stats.withLock { $0.requests } == 1 }
        task.cancel()
        await #expect(throws: UpstreamHTTPError.cancelled) { _ = try await task.value }
        try await Self.waitUntil { server.stats.withLock { $0.closed } == 1 }
        #expect(pool.openConnections == 0)
        await pool.shutdown()
        await server.stop()
    }

    @Test func droppingAStreamMidwayClosesItsConnection() async throws {
        let server = try await TestServer()
        let pool = try Self.pool(server)
        do {
            // A stream whose rest never comes: once its consumer lets go, only closing can end it. (A stream
            // read to its end before being dropped goes back to the pool instead.)
            let response = try await pool.execute(
                Self.get("/stall"), body: nil, mode: .stream, readTimeout: .seconds(10))
            guard case .stream(let stream) = response.body else { return }
            var iterator = stream.makeAsyncIterator()
            _ = try await iterator.next()
        }
        try await Self.waitUntil { server.stats.withLock { $0.closed } == 1 }
        await pool.shutdown()
        await server.stop()
    }

    /// A caller that drops a streamed answer without reading it (its client went away before the head could
    /// be relayed) must still close the connection: the stream may not stay reachable from the connection.
    @Test func aStreamDroppedUnreadClosesItsConnection() async throws {
        let server = try await TestServer()
        let pool = try Self.pool(server)
        do {
            let response = try await pool.execute(
                Self.get("/stall"), body: nil, mode: .stream, readTimeout: .seconds(30))
            #expect(response.status == .ok)
        }
        try await Self.waitUntil { server.stats.withLock { $0.closed } == 1 }
        await pool.shutdown()
        await server.stop()
    }

    @Test func aKeepAliveConnectionClosedByTheUpstreamIsRetriedOnceOnAFreshOne() async throws {
        let server = try await TestServer()
        let pool = try Self.pool(server)
        for _ in 0..<5 {
            // The server closes after each answer without announcing it; the pool may only learn on reuse.
            let (response, body) = try await Self.collect(pool, "/close-after")
            #expect(response.status == .ok && body == TestServer.json)
        }
        #expect(server.stats.withLock { $0.accepted } >= 5)
        await pool.shutdown()
        await server.stop()
    }

    @Test func connectionsNeverExceedTheCapAndWaitersAreServed() async throws {
        let server = try await TestServer()
        let pool = try Self.pool(server, .init(maxConnections: 2))
        try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<8 { group.addTask { try await Self.collect(pool, "/slow/50").1 } }
            for try await body in group { #expect(body == TestServer.json) }
        }
        // The pool's own count: the server may see a closed connection go a moment after its successor came.
        #expect(pool.peakConnections == 2)
        #expect(server.stats.withLock { $0.requests } == 8)
        await pool.shutdown()
        await server.stop()
    }

    @Test func manyConcurrentRequestsEachGetTheirOwnAnswer() async throws {
        let server = try await TestServer()
        let pool = try Self.pool(server)
        try await withThrowingTaskGroup(of: String.self) { group in
            for index in 0..<200 {
                group.addTask { try await Self.collect(pool, index.isMultiple(of: 2) ? "/json" : "/slow/5").1 }
            }
            for try await body in group { #expect(body == TestServer.json) }
        }
        #expect(server.stats.withLock { $0.requests } == 200)
        await pool.shutdown()
        await server.stop()
    }

    static func waitUntil(_ condition: () -> Bool) async throws {
        for _ in 0..<200 where !condition() { try await Task.sleep(for: .milliseconds(20)) }
        #expect(condition())
    }
}

@Suite struct UpstreamEndpointTests {
    @Test func parsesTheForms() throws {
        let plain = try #require(UpstreamEndpoint(baseURL: "http://vllm:8000"))
        #expect(!plain.isTLS && plain.host == "vllm" && plain.port == 8000 && plain.hostHeader == "vllm:8000")
        let tls = try #require(UpstreamEndpoint(baseURL: "https://llm.chutes.ai/"))
        #expect(tls.isTLS && tls.port == 443 && tls.hostHeader == "llm.chutes.ai" && tls.pathPrefix == "")
        let prefixed = try #require(UpstreamEndpoint(baseURL: "http://10.0.0.1/api/v1/"))
        #expect(prefixed.port == 80 && prefixed.pathPrefix == "/api/v1")
        let v6 = try #require(UpstreamEndpoint(baseURL: "http://[::1]:9000"))
        #expect(v6.host == "::1" && v6.port == 9000 && v6.hostHeader == "[::1]:9000")
    }

    @Test(arguments: [
        "ftp://x", "http://", "http://h:0", "http://h:70000", "http://h:x", "http://u@h", "http://h?q=1", "vllm:8000",
    ])
    func refusesWhatItCannotServe(_ url: String) {
        #expect(UpstreamEndpoint(baseURL: url) == nil)
    }
}
