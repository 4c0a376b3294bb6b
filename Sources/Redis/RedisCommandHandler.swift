import NIOCore

/// A command and the promise its reply completes.
struct RedisRequest: Sendable {
    let command: RESPCommand
    let promise: EventLoopPromise<RESPValue>
}

/// Pipelines commands on one connection: each is written at once, and replies complete the waiting
/// promises in FIFO order (Redis answers in order). Anything that breaks the stream fails every waiter
/// and closes the connection, so a reply can never be handed to the wrong command.
final class RedisCommandHandler: ChannelDuplexHandler {
    typealias InboundIn = RESPValue
    typealias OutboundIn = RedisRequest
    typealias OutboundOut = RESPCommand

    private var waiting = CircularBuffer<EventLoopPromise<RESPValue>>(initialCapacity: 16)
    private var failure: RedisError?

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        if let failure {
            request.promise.fail(failure)
            promise?.fail(failure)
            return
        }
        waiting.append(request.promise)
        context.write(wrapOutboundOut(request.command), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let value = unwrapInboundIn(data)
        guard let promise = waiting.popFirst() else {
            fail(context: context, .protocolViolation("a reply nobody asked for"))
            return
        }
        promise.succeed(value)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(context: context, RedisError.from(error))
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(failure ?? .connection("closed by the server"))
        context.fireChannelInactive()
    }

    private func fail(context: ChannelHandlerContext, _ error: RedisError) {
        failAll(error)
        context.close(promise: nil)
    }

    private func failAll(_ error: RedisError) {
        if failure == nil { failure = error }
        while let promise = waiting.popFirst() { promise.fail(error) }
    }
}
