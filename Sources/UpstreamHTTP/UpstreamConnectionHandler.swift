import NIOCore
import NIOHTTP1

extension Exchange: ConnectionExchange {
    var mayBeResent: Bool { !retried && !cancelled }
    var wantsKeepAlive: Bool { head.isKeepAlive }
}

/// Runs one keep-alive HTTP/1.1 connection to the upstream on its event loop: every event goes to the
/// `ConnectionStateMachine`, which decides; this handler only carries out what it returns (writes, deliveries,
/// the stream, the timer, closing, the pool's callbacks).
///
/// `@unchecked Sendable`: the pool's state machine (behind its lock) holds references to idle handlers of every
/// loop, but each handler is only ever called on its own channel's loop (`retire` is sent there).
final class UpstreamConnectionHandler: ChannelDuplexHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = HTTPClientRequestPart

    /// Called (on the loop) when the connection may serve another exchange, or when it is gone for good.
    struct Callbacks: Sendable {
        let reusable: @Sendable (UpstreamConnectionHandler) -> Void
        let closed: @Sendable (UpstreamConnectionHandler) -> Void
        /// Sends an exchange again on a fresh connection.
        let retry: @Sendable (Exchange) -> Void
    }

    private var machine = ConnectionStateMachine<Exchange>(now: .now())
    private var context: ChannelHandlerContext?
    private let callbacks: Callbacks
    private var timer: Scheduled<Void>?
    /// The current exchange's stream, while it is being fed (a resource, not a decision: the machine decides).
    private var source: UpstreamBodyStream.Producer.Source?

    init(callbacks: Callbacks) {
        self.callbacks = callbacks
    }

    var channel: (any Channel)? { context?.channel }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    // MARK: Events

    /// Starts an exchange on this (idle) connection.
    func start(_ exchange: Exchange) {
        let active = context?.channel.isActive ?? false
        run(machine.start(exchange, active: active, now: .now()))
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let now = NIODeadline.now()
        switch unwrapInboundIn(data) {
        case .head(let head): run(machine.head(head, now: now))
        case .body(let part): run(machine.bodyPart(part, now: now))
        case .end: run(machine.end(now: now))
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        run(machine.readComplete())
        context.fireChannelReadComplete()
    }

    func read(context: ChannelHandlerContext) {
        run(machine.readRequested())
    }

    func channelInactive(context: ChannelHandlerContext) {
        run(machine.closed(now: .now()))
        callbacks.closed(self)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        run(machine.errorCaught(malformedAnswer: error is HTTPParserError, now: .now()))
    }

    /// Closes an idle connection the pool does not keep.
    func retire() {
        run(machine.retire())
    }

    func resumeReading(for serial: UInt64) {
        run(machine.consumerWantsMore(serial: serial))
    }

    /// The stream's consumer went away before the end.
    func consumerGone(for serial: UInt64) {
        run(machine.consumerGone(serial: serial))
    }

    /// A part of a streamed request body (see `UpstreamRequestBodyWriter`), or nil when this connection no
    /// longer serves that exchange.
    func writeBodyPart(_ part: HTTPClientRequestPart, serial: UInt64) -> EventLoopFuture<Void>? {
        guard let context, machine.bodyPartWritten(serial: serial, now: .now()) else { return nil }
        return context.writeAndFlush(wrapOutboundOut(part))
    }

    /// The caller could not finish its body (see `ConnectionStateMachine.bodyAborted`).
    func abortBody(serial: UInt64, _ error: UpstreamHTTPError) {
        run(machine.bodyAborted(serial: serial, error, now: .now()))
    }

    // MARK: Actions

    private func run(_ action: ConnectionStateMachine<Exchange>.Action) {
        switch action {
        case .none:
            break
        case .send(let exchange, let serial, let deadline):
            send(exchange, serial: serial, deadline: deadline)
        case .abandon(let exchange):
            exchange.fail(.cancelled)
            callbacks.reusable(self)
        case .retry(let exchange, let close):
            // Without `close` the exchange never was this connection's (it could not take it): its own
            // exchange, if any, and that one's timer are untouched.
            if close { closeChannel() }
            exchange.retried = true
            callbacks.retry(exchange)
        case .fail(let exchange, let error, let close):
            if close { closeChannel() }
            exchange.fail(error)
        case .deliverStream(let exchange, let head, let serial):
            guard let context else { return }
            let sequence = UpstreamBodyStream.Producer.makeSequence(
                backPressureStrategy: .init(lowWatermark: 2, highWatermark: 8), finishOnDeinit: true,
                delegate: StreamDelegate(handler: NIOLoopBound(self, eventLoop: context.eventLoop), serial: serial))
            source = sequence.source
            exchange.succeed(
                UpstreamHTTPResponse(
                    status: head.status, headers: head.headers,
                    body: .stream(UpstreamBodyStream(producer: sequence.sequence))))
        case .deliverWhole(let exchange, let head, let body, let finish):
            exchange.succeed(UpstreamHTTPResponse(status: head.status, headers: head.headers, body: .complete(body)))
            finished(finish)
        case .yield(let chunks):
            if source?.yield(chunks) == .stopProducing { machine.consumerIsBehind() }
        case .finishStream(let chunks, let finish):
            if let chunks { _ = source?.yield(chunks) }
            source?.finish()
            source = nil
            finished(finish)
        case .failStream(let error, let close):
            source?.finish(error)
            source = nil
            if close { closeChannel() }
        case .read:
            context?.read()
        case .close:
            source = nil
            closeChannel()
        case .rearm(let deadline):
            armTimer(deadline)
        }
    }

    private func send(_ exchange: Exchange, serial: UInt64, deadline: NIODeadline) {
        guard let context else { return }
        exchange.connection = context.channel
        armTimer(deadline)
        context.write(wrapOutboundOut(.head(exchange.head)), promise: nil)
        if exchange.streamsBody {
            context.flush()
            exchange.handOut(
                UpstreamRequestBodyWriter(handler: NIOLoopBound(self, eventLoop: context.eventLoop), serial: serial))
            return
        }
        if let body = exchange.body, body.readableBytes > 0 {
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    private func finished(_ finish: ConnectionStateMachine<Exchange>.Finish) {
        cancelTimer()
        if finish.read { context?.read() }
        if finish.reuse {
            callbacks.reusable(self)
        } else {
            context?.close(promise: nil)
        }
    }

    /// One timer per exchange, pushed back lazily: a read only records its time in the machine, and the timer
    /// re-arms for the remainder when it fires early (cheaper than rescheduling on every chunk).
    private func armTimer(_ deadline: NIODeadline) {
        guard let context else { return }
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [weak self] in
            guard let self else { return }
            self.run(self.machine.timerFired(now: .now()))
        }
    }

    private func closeChannel() {
        cancelTimer()
        context?.close(promise: nil)
    }

    private func cancelTimer() {
        timer?.cancel()
        timer = nil
    }
}
