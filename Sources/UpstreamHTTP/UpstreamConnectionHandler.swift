import NIOCore
import NIOHTTP1

/// Drives one keep-alive HTTP/1.1 connection to the upstream, one exchange at a time, as an explicit state
/// machine on the connection's event loop: send the request, deliver the head (with the whole body, or a
/// stream of it), then hand the connection back to its pool or close it.
final class UpstreamConnectionHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = HTTPClientRequestPart

    private enum State {
        /// In the pool (or just connected), no exchange.
        case idle
        case awaitingHead(Exchange)
        case collecting(Exchange, HTTPResponseHead, ByteBuffer, limit: Int)
        /// The head was delivered. Only the exchange's serial is kept, not the exchange: its promise holds the
        /// stream, and a stream still reachable from here would never be deinitialised when its consumer drops
        /// it unread (the upstream would then run to its end for nobody).
        case streaming(serial: UInt64, UpstreamBodyStream.Producer.Source)
        /// Closed, or being closed: never reused.
        case closed
    }

    /// Called (on the loop) when the connection may serve another exchange, or when it is gone for good.
    struct Callbacks: Sendable {
        let reusable: @Sendable (UpstreamConnectionHandler) -> Void
        let closed: @Sendable (UpstreamConnectionHandler) -> Void
        /// Sends an exchange again on a fresh connection.
        let retry: @Sendable (Exchange) -> Void
    }

    private var state = State.idle
    private var context: ChannelHandlerContext?
    private let callbacks: Callbacks
    private(set) var idleSince = NIODeadline.now()
    /// Whether this connection already served an exchange (a stale keep-alive connection can fail at once).
    private var servedBefore = false
    private var responseBytesSeen = false
    /// Numbers this connection's exchanges, so a stream's late callbacks can tell whether they are still its.
    private var serial: UInt64 = 0
    private var keepAlive = true
    private var lastRead = NIODeadline.now()
    private var timer: Scheduled<Void>?
    /// Back-pressure: a read the channel asked for while the stream's consumer is behind.
    private var readsPaused = false
    /// Body parts of the current socket read, not yet handed to the stream.
    private var pendingChunks = ByteBuffer()
    private var readPending = false

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

    // MARK: Sending

    /// Starts an exchange on this (idle) connection.
    func start(_ exchange: Exchange) {
        guard case .idle = state, let context, context.channel.isActive else {
            // Closed before a byte was written: the upstream cannot have read any of it.
            retryOrFail(exchange, .connectionClosed)
            return
        }
        // Its client left while it waited: never sent, and the connection serves someone else.
        guard !exchange.cancelled else {
            exchange.fail(.cancelled)
            callbacks.reusable(self)
            return
        }
        exchange.connection = context.channel
        serial &+= 1
        responseBytesSeen = false
        keepAlive = exchange.head.isKeepAlive
        state = .awaitingHead(exchange)
        lastRead = .now()
        armTimer(context, timeout: exchange.readTimeout)
        context.write(wrapOutboundOut(.head(exchange.head)), promise: nil)
        if exchange.streamsBody {
            // The body (and its end) is the caller's to write; the connection is never handed to another
            // exchange, since what the caller leaves unwritten would be read as the next request's.
            keepAlive = false
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

    /// A part of a streamed request body (see `UpstreamRequestBodyWriter`), or nil when this connection no
    /// longer serves that exchange; the read timeout's silence starts after the last part, not at the head.
    func writeBodyPart(_ part: HTTPClientRequestPart, serial: UInt64) -> EventLoopFuture<Void>? {
        guard let context, serial == self.serial else { return nil }
        switch state {
        case .idle, .closed:
            return nil
        case .awaitingHead, .collecting, .streaming:
            lastRead = .now()
            return context.writeAndFlush(wrapOutboundOut(part))
        }
    }

    /// The caller could not finish the body (its own client's body failed): the upstream must not take what
    /// it got for a whole request, so the connection closes and the exchange fails with `error`.
    /// Once the answer's head is in, the answer stands: the body's end no longer matters (the connection closes
    /// after the answer, never reused).
    func abortBody(serial: UInt64, _ error: UpstreamHTTPError) {
        guard let context, serial == self.serial, case .awaitingHead = state else { return }
        fail(context, error)
    }

    // MARK: Receiving

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        lastRead = .now()
        responseBytesSeen = true
        switch (unwrapInboundIn(data), state) {
        case (.head(let head), .awaitingHead(let exchange)):
            if !head.isKeepAlive { keepAlive = false }
            switch exchange.mode {
            case .collect(let limit):
                state = .collecting(exchange, head, ByteBuffer(), limit: limit)
            case .stream:
                let sequence = UpstreamBodyStream.Producer.makeSequence(
                    backPressureStrategy: .init(lowWatermark: 2, highWatermark: 8), finishOnDeinit: true,
                    delegate: StreamDelegate(
                        handler: NIOLoopBound(self, eventLoop: context.eventLoop), serial: serial))
                state = .streaming(serial: serial, sequence.source)
                exchange.succeed(
                    UpstreamHTTPResponse(
                        status: head.status, headers: head.headers,
                        body: .stream(UpstreamBodyStream(producer: sequence.sequence))))
            }
        case (.body(let part), .collecting(let exchange, let head, var body, let limit)):
            guard body.readableBytes + part.readableBytes <= limit else {
                fail(context, .bodyTooLarge(limit: limit))
                return
            }
            state = .idle  // lets `body` be uniquely referenced while it grows
            body.writeImmutableBuffer(part)
            state = .collecting(exchange, head, body, limit: limit)
        case (.body(let part), .streaming):
            // Parts decoded from one socket read go to the consumer together, at the read's end: a read holding
            // 64 small chunks then costs one hand-over (one hash update, one write to the client) instead of 64,
            // and nothing waits for a later read.
            if pendingChunks.readableBytes == 0 {
                pendingChunks = part
            } else {
                pendingChunks.writeImmutableBuffer(part)
            }
        case (.end, .collecting(let exchange, let head, let body, _)):
            exchange.succeed(UpstreamHTTPResponse(status: head.status, headers: head.headers, body: .complete(body)))
            finishExchange(context)
        case (.end, .streaming(_, let source)):
            flushChunks(to: source)
            source.finish()
            finishExchange(context)
        case (_, .closed):
            break
        default:
            // A part out of order, or an answer nobody asked for: the connection's framing is lost.
            fail(context, .invalidResponse)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if case .streaming(_, let source) = state { flushChunks(to: source) }
        context.fireChannelReadComplete()
    }

    private func flushChunks(to source: UpstreamBodyStream.Producer.Source) {
        guard pendingChunks.readableBytes > 0 else { return }
        let chunks = pendingChunks
        pendingChunks = ByteBuffer()
        if source.yield(chunks) == .stopProducing { readsPaused = true }
    }

    private func finishExchange(_ context: ChannelHandlerContext) {
        cancelTimer()
        servedBefore = true
        readsPaused = false
        if readPending {
            readPending = false
            context.read()
        }
        guard keepAlive else {
            state = .closed
            context.close(promise: nil)
            return
        }
        state = .idle
        idleSince = .now()
        callbacks.reusable(self)
    }

    // MARK: Failure

    func channelInactive(context: ChannelHandlerContext) {
        fail(context, .connectionClosed)
        callbacks.closed(self)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(context, error is HTTPParserError ? .invalidResponse : .connectionClosed)
    }

    /// Ends the exchange in progress with `error` (or retries it elsewhere) and closes the connection.
    private func fail(_ context: ChannelHandlerContext, _ error: UpstreamHTTPError) {
        let previous = state
        state = .closed
        cancelTimer()
        switch previous {
        case .awaitingHead(let exchange):
            if Self.mayHaveGoneUnread(after: error, answered: responseBytesSeen, sentFor: NIODeadline.now() - lastRead)
            {
                retryOrFail(exchange, error)
            } else {
                exchange.fail(error)
            }
        case .collecting(let exchange, _, _, _):
            exchange.fail(error)
        case .streaming(_, let source):
            pendingChunks = ByteBuffer()
            source.finish(error)
        case .idle, .closed:
            break
        }
        if case .closed = previous { return }
        context.close(promise: nil)
    }

    /// How soon after sending a request the close of its reused connection must come for the request to be
    /// sent again. The upstream closing an idle keep-alive connection just as a request is sent on it (uvicorn
    /// after 5 s) shows up within a round trip; a close long after is an upstream that read the request and then
    /// hung up (crashed, or a middlebox gave up on it), which must not get it twice.
    static let crossedCloseWindow: TimeAmount = .seconds(1)

    /// Whether a request sent on a reused connection, which then failed with `error` before its answer
    /// completed, may not have been read by the upstream — the one case it is sent again (SPEC §2). Only the
    /// upstream hanging up, with no byte of an answer, soon after the request was sent: a read timeout, a
    /// malformed answer or any answer byte means it was read, and may be running.
    static func mayHaveGoneUnread(after error: UpstreamHTTPError, answered: Bool, sentFor elapsed: TimeAmount) -> Bool {
        error == .connectionClosed && !answered && elapsed < crossedCloseWindow
    }

    /// A keep-alive connection the upstream closed while idle fails the next request before any answer: that
    /// request never reached the upstream's handler, so it is sent once more on a fresh connection. Only once,
    /// and never after the caller cancelled.
    private func retryOrFail(_ exchange: Exchange, _ error: UpstreamHTTPError) {
        guard servedBefore, !exchange.retried, !exchange.cancelled else {
            exchange.fail(exchange.cancelled ? .cancelled : error)
            return
        }
        exchange.retried = true
        callbacks.retry(exchange)
    }

    /// Closes an idle connection the pool does not keep.
    func retire() {
        guard case .idle = state, let context else { return }
        state = .closed
        context.close(promise: nil)
    }

    // MARK: Back-pressure

    func read(context: ChannelHandlerContext) {
        if readsPaused {
            readPending = true
        } else {
            context.read()
        }
    }

    func resumeReading(for serial: UInt64) {
        guard case .streaming(let current, _) = state, current == serial else { return }
        readsPaused = false
        guard readPending, let context else { return }
        readPending = false
        context.read()
    }

    /// The stream's consumer went away before the end: nobody wants the rest, so the connection closes.
    func consumerGone(for serial: UInt64) {
        guard case .streaming(let current, _) = state, current == serial, let context else { return }
        state = .closed
        pendingChunks = ByteBuffer()
        cancelTimer()
        context.close(promise: nil)
    }

    // MARK: Read timeout

    /// One timer per exchange, pushed back lazily: a read only records its time, and the timer re-arms for
    /// the remainder when it fires early (cheaper than rescheduling on every chunk).
    private func armTimer(_ context: ChannelHandlerContext, timeout: TimeAmount) {
        let deadline = lastRead + timeout
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [weak self] in
            self?.timerFired(timeout: timeout)
        }
    }

    private func timerFired(timeout: TimeAmount) {
        guard let context else { return }
        switch state {
        case .idle, .closed:
            return
        case .awaitingHead, .collecting, .streaming:
            // A consumer that is behind paused our reads: the silence is the client's, not the upstream's.
            if readsPaused || lastRead + timeout > .now() {
                armTimer(context, timeout: timeout)
            } else {
                fail(context, .readTimeout)
            }
        }
    }

    private func cancelTimer() {
        timer?.cancel()
        timer = nil
    }
}
