import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// A scripted HTTP/1.1 server on loopback for the pool's tests: it counts connections and answers by path.
///   /json            200 with a small JSON body (Content-Length)
///   /chunked/N       200 with N chunks (chunked encoding), then end
///   /big             200 with a 64 KiB body
///   /close-after     200, then closes the connection WITHOUT saying `Connection: close` (a keep-alive race)
///   /silent          never answers
///   /stall           a chunked head and one chunk, then nothing
///   /slow/MS         answers /json's body after MS milliseconds
///   /hangup/MS       reads the request, then closes the connection after MS milliseconds without answering
///   /upload          at the request's end, 200 `{"bytes":N}`: how many body bytes this request carried
///   /early           answers /json's body on the head, before any of the request's body
final class TestServer: Sendable {
    let port: Int
    private let channel: any Channel
    private let counters = Counters()

    /// What the server saw so far.
    var stats: Counters { counters }

    final class Counters: Sendable {
        private let state = Mutex(Stats())
        func withLock<T>(_ body: (inout Stats) -> T) -> T { state.withLock { body(&$0) } }
    }

    struct Stats {
        var accepted = 0
        var open = 0
        var maxOpen = 0
        var closed = 0
        var requests = 0
        /// Requests whose end arrived (a whole request, body included).
        var completeRequests = 0
        var bodyBytes = 0
    }

    static let json = #"{"id":"chatcmpl-1","ok":true}"#

    init() async throws {
        let stats = counters
        channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(Handler(stats: stats))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        port = channel.localAddress!.port!
    }

    func stop() async {
        try? await channel.close()
    }

    private final class Handler: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let stats: Counters
        var path = ""
        var requestBytes = 0
        var answered = false

        init(stats: Counters) { self.stats = stats }

        func channelActive(context: ChannelHandlerContext) {
            stats.withLock {
                $0.accepted += 1
                $0.open += 1
                $0.maxOpen = max($0.maxOpen, $0.open)
            }
            context.fireChannelActive()
        }

        func channelInactive(context: ChannelHandlerContext) {
            stats.withLock {
                $0.open -= 1
                $0.closed += 1
            }
            context.fireChannelInactive()
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head):
                path = head.uri
                requestBytes = 0
                answered = false
                stats.withLock { $0.requests += 1 }
                if path == "/early" {
                    answered = true
                    send(context, body: TestServer.json)
                }
            case .body(let part):
                requestBytes += part.readableBytes
                stats.withLock { $0.bodyBytes += part.readableBytes }
            case .end:
                stats.withLock { $0.completeRequests += 1 }
                if !answered { answer(context) }
            }
        }

        private func answer(_ context: ChannelHandlerContext) {
            // A query only tells requests apart in a test; the answer depends on the path.
            let parts = path.prefix { $0 != "?" }.split(separator: "/")
            switch parts.first {
            case "json"?:
                send(context, body: TestServer.json)
            case "upload"?:
                send(context, body: #"{"bytes":\#(requestBytes)}"#)
            case "big"?:
                send(context, body: String(repeating: "x", count: 64 << 10))
            case "close-after"?:
                send(context, body: TestServer.json)
                context.close(promise: nil)
            case "silent"?:
                break
            case "stall"?:
                var head = HTTPResponseHead(version: .http1_1, status: .ok)
                head.headers.add(name: "Transfer-Encoding", value: "chunked")
                context.write(wrapOutboundOut(.head(head)), promise: nil)
                context.writeAndFlush(
                    wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: "data: 0\n\n")))), promise: nil)
            case "slow"?:
                let delay = parts.count > 1 ? Int64(parts[1]) ?? 100 : 100
                let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
                context.eventLoop.scheduleTask(in: .milliseconds(delay)) {
                    let (handler, context) = loopBound.value
                    handler.send(context, body: TestServer.json)
                }
            case "hangup"?:
                let delay = parts.count > 1 ? Int64(parts[1]) ?? 100 : 100
                let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
                context.eventLoop.scheduleTask(in: .milliseconds(delay)) { loopBound.value.close(promise: nil) }
            case "chunked"?:
                let count = parts.count > 1 ? Int(parts[1]) ?? 3 : 3
                var head = HTTPResponseHead(version: .http1_1, status: .ok)
                head.headers.add(name: "Transfer-Encoding", value: "chunked")
                head.headers.add(name: "Content-Type", value: "text/event-stream")
                context.write(wrapOutboundOut(.head(head)), promise: nil)
                for index in 0..<count {
                    let chunk = ByteBuffer(string: "data: \(index)\n\n")
                    context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(chunk))), promise: nil)
                }
                context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            default:
                var head = HTTPResponseHead(version: .http1_1, status: .notFound)
                head.headers.add(name: "Content-Length", value: "0")
                context.write(wrapOutboundOut(.head(head)), promise: nil)
                context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            }
        }

        func send(_ context: ChannelHandlerContext, body: String) {
            var head = HTTPResponseHead(version: .http1_1, status: .ok)
            head.headers.add(name: "Content-Length", value: String(body.utf8.count))
            head.headers.add(name: "Content-Type", value: "application/json")
            context.write(wrapOutboundOut(.head(head)), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }
}
