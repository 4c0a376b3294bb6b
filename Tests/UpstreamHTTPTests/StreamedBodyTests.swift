import NIOCore
import NIOHTTP1
import NIOPosix
import Testing

@testable import UpstreamHTTP

/// Request bodies the caller streams (uploads it never holds whole): sent whole, never twice, never on a
/// connection another exchange then reuses, and a body the caller cannot finish never reaches the upstream as
/// a whole request.
@Suite struct StreamedBodyTests {
    struct PumpFailed: Error {}

    static func post(_ path: String, length: Int?) -> HTTPRequestHead {
        var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: path)
        head.headers.add(name: "Content-Type", value: "multipart/form-data; boundary=x")
        if let length {
            head.headers.add(name: "Content-Length", value: String(length))
        } else {
            head.headers.add(name: "Transfer-Encoding", value: "chunked")
        }
        return head
    }

    @Test(arguments: [true, false])
    func aStreamedBodyArrivesWholeOnAConnectionNeverReused(declaredLength: Bool) async throws {
        let server = try await TestServer()
        let pool = try UpstreamConnectionPoolTests.pool(server)
        let part = ByteBuffer(repeating: 0x61, count: 10_000)
        let response = try await pool.execute(
            Self.post("/upload", length: declaredLength ? 100_000 : nil),
            streamingBody: { writer in
                for _ in 0..<10 { try await writer.write(part) }
            }, mode: .collect(limit: 1 << 20), readTimeout: .seconds(10))
        #expect(response.status == .ok)
        #expect(String(buffer: try await response.body.collect(upTo: 1024)) == #"{"bytes":100000}"#)
        try await UpstreamConnectionPoolTests.waitUntil { server.stats.withLock { $0.closed } == 1 }
        #expect(pool.idleConnections == 0, "what the caller writes on it is not another exchange's to read")
        await pool.shutdown()
        await server.stop()
    }

    @Test func aPumpThatFailsClosesTheConnectionAndItsErrorIsTheCallers() async throws {
        let server = try await TestServer()
        let pool = try UpstreamConnectionPoolTests.pool(server)
        await #expect(throws: PumpFailed.self) {
            _ = try await pool.execute(
                Self.post("/upload", length: 50_000),
                streamingBody: { writer in
                    try await writer.write(ByteBuffer(repeating: 0x61, count: 10_000))
                    throw PumpFailed()
                }, mode: .collect(limit: 1 << 20), readTimeout: .seconds(10))
        }
        try await UpstreamConnectionPoolTests.waitUntil { server.stats.withLock { $0.closed } == 1 }
        #expect(server.stats.withLock { $0.completeRequests } == 0, "the upstream never took a part for the whole")
        await pool.shutdown()
        await server.stop()
    }

    @Test func anAnswerBeforeTheBodyEndsStandsAndThePumpStops() async throws {
        let server = try await TestServer()
        let pool = try UpstreamConnectionPoolTests.pool(server)
        let response = try await pool.execute(
            Self.post("/early", length: nil),
            streamingBody: { writer in
                try await writer.write(ByteBuffer(string: "first"))
                try await Task.sleep(for: .seconds(3600))  // a client that never sends the rest
            }, mode: .collect(limit: 1 << 20), readTimeout: .seconds(10))
        #expect(response.status == .ok)
        #expect(String(buffer: try await response.body.collect(upTo: 1024)) == TestServer.json)
        await pool.shutdown()
        await server.stop()
    }

    @Test func cancellingTheCallerMidBodyClosesTheConnection() async throws {
        let server = try await TestServer()
        let pool = try UpstreamConnectionPoolTests.pool(server)
        let task = Task {
            try await pool.execute(
                Self.post("/upload", length: nil),
                streamingBody: { writer in
                    try await writer.write(ByteBuffer(string: "part"))
                    try await Task.sleep(for: .seconds(3600))
                }, mode: .collect(limit: 1 << 20), readTimeout: .seconds(10))
        }
        try await UpstreamConnectionPoolTests.waitUntil { server.stats.withLock { $0.bodyBytes } == 4 }
        task.cancel()
        await #expect(throws: (any Error).self) { _ = try await task.value }
        try await UpstreamConnectionPoolTests.waitUntil { server.stats.withLock { $0.closed } == 1 }
        #expect(server.stats.withLock { $0.completeRequests } == 0)
        await pool.shutdown()
        await server.stop()
    }

    @Test func theReadTimeoutCountsFromTheBodysEndNotTheHead() async throws {
        let server = try await TestServer()
        let pool = try UpstreamConnectionPoolTests.pool(server)
        // Parts for longer than the read timeout in all (6 s against 5 s): the upstream is not silent, the upload
        // is slow. Each gap is a 25th of the timeout, so a loaded machine stretching the sleeps does not make a gap
        // look like silence (the exact rule is ConnectionStateMachineTests', without a clock).
        let response = try await pool.execute(
            Self.post("/upload", length: nil),
            streamingBody: { writer in
                for _ in 0..<30 {
                    try await writer.write(ByteBuffer(string: "abcd"))
                    try await Task.sleep(for: .milliseconds(200))
                }
            }, mode: .collect(limit: 1 << 20), readTimeout: .seconds(5))
        #expect(String(buffer: try await response.body.collect(upTo: 1024)) == #"{"bytes":120}"#)
        await pool.shutdown()
        await server.stop()
    }
}
