import HummingbirdCore
import Logging
import NIOCore
import NIOHTTPTypes

/// Hummingbird's HTTP/1.1 child channel with `ConnectionLimits` enforced and client disconnects turned into
/// task cancellation: a request whose client is gone stops (upstream request, silent stream, anything it
/// awaits) instead of running to completion for nobody.
///
/// Hummingbird's own `RequestBody.consumeWithCancellationOnInboundClose` does the latter per request but
/// reads ahead into the next request, so it ends keep-alive; watching the connection here keeps it.
public struct GuardedHTTP1Channel: ServerChildChannel {
    /// The decoded connection and the watch that cancels its task.
    public struct Value: ServerChildChannelValue {
        let connection: HTTP1Channel.Value
        let watch: ClientWatch
        public var channel: any Channel { connection.channel }
    }

    private let responder: HTTPChannelHandler.Responder
    private let limits: ConnectionLimits

    public init(responder: @escaping HTTPChannelHandler.Responder, limits: ConnectionLimits) {
        self.responder = responder
        self.limits = limits
    }

    public func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let watch = ClientWatch()
        let limits = self.limits
        let http1 = HTTP1Channel(
            responder: responder,
            configuration: .init(additionalChannelHandlers: [ConnectionGuardHandler(limits: limits, watch: watch)]))
        do {
            // Each connection keeps its receive buffer for reuse: NIO's default first size, 2 KiB, was ~5 % of
            // the memory an open stream holds. Requests bigger than this grow it after the first full read.
            try channel.syncOptions?.setOption(.recvAllocator, value: smallReceiveBuffers)
            try channel.pipeline.syncOperations.addHandler(InboundBytesObserver(), position: .first)
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        return http1.setup(channel: channel, logger: logger).map { Value(connection: $0, watch: watch) }
    }

    public func handle(value: Value, logger: Logger) async {
        // Hummingbird starts this task wherever the accept loop ran. Waiting once on the connection's own event
        // loop moves it there when NIO runs Swift concurrency (the proxy's main.swift): every later resumption
        // then stays on that thread instead of crossing to another loop for each read and write.
        try? await value.channel.eventLoop.submit {}.get()
        let http1 = HTTP1Channel(responder: responder)
        await value.watch.guarding {
            await http1.handle(value: value.connection, logger: logger)
        }
    }
}

/// Receive buffers that start small and adapt (up to 64 KiB) to what the peer sends.
private let smallReceiveBuffers = AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 512, maximum: 65536)

extension HTTPServerBuilder {
    /// HTTP/1.1 with `limits` enforced and requests cancelled when their client goes away.
    public static func guardedHTTP1(limits: ConnectionLimits) -> HTTPServerBuilder {
        .init { responder in GuardedHTTP1Channel(responder: responder, limits: limits) }
    }
}
