import HTTPTypes
import NIOCore
import NIOHTTPTypes

/// Fired by `InboundBytesObserver` for every read from the socket, before the HTTP decoder sees the bytes.
struct InboundBytesRead: Sendable {}

/// First handler of a connection: announces each socket read, so the guard can start a request's header
/// clock at its first byte, long before the HTTP decoder has a whole head to hand on.
final class InboundBytesObserver: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireUserInboundEventTriggered(InboundBytesRead())
        context.fireChannelRead(data)
    }
}

/// Why a request body was abandoned: surfaced to the request's body reader so a half-read body is never
/// mistaken for a whole one.
public struct RequestBodyTimeout: Error, Sendable {}

/// Enforces `ConnectionLimits` on one HTTP/1.1 connection and tells its `ClientWatch` when the client goes
/// away mid-request. Sits between the HTTP codec and the server's request handling, so it sees request parts
/// as they are decoded and response parts as they are written; every callback runs on the channel's event loop.
///
/// At most one timer runs, for the phase the connection is in:
/// - waiting for the next request (kept alive after a response): the idle limit, which the first byte of a
///   request replaces with the header limit;
/// - a head begun but not complete (and, on a new connection, from accept): the header limit → close;
/// - a body begun but not complete: the body limit → `408 request_timeout` (when no response has started) and
///   close, since the connection's framing is lost;
/// - a request read and being answered: no limit here (the upstream's own timeouts apply).
/// A pipelined request's clocks start only once the responses before it have ended.
final class ConnectionGuardHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private enum Reading {
        case idle(since: NIODeadline)
        case head(since: NIODeadline)
        case body(since: NIODeadline)

        func restarted(at now: NIODeadline) -> Reading {
            switch self {
            case .idle: return .idle(since: now)
            case .head: return .head(since: now)
            case .body: return .body(since: now)
            }
        }
    }

    private let limits: ConnectionLimits
    private let header: TimeAmount?
    private let body: TimeAmount?
    private let idle: TimeAmount?
    private let watch: ClientWatch
    /// A new connection owes its first head from the moment it was accepted.
    private var reading = Reading.head(since: .now())
    /// Requests whose head was read and whose response has not ended.
    private var unanswered = 0
    /// Whether the oldest unanswered request's response head has gone out.
    private var responseStarted = false
    private var timer: Scheduled<Void>?
    private var timerDeadline: NIODeadline?

    init(limits: ConnectionLimits, watch: ClientWatch) {
        self.limits = limits
        self.header = limits.header.map(Self.timeAmount)
        self.body = limits.body.map(Self.timeAmount)
        self.idle = limits.idle.map(Self.timeAmount)
        self.watch = watch
    }

    func handlerAdded(context: ChannelHandlerContext) {
        rearm(context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        cancelTimer()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let now = NIODeadline.now()
        switch unwrapInboundIn(data) {
        case .head:
            unanswered += 1
            reading = .body(since: now)
        case .body:
            break
        case .end:
            reading = .idle(since: now)
        }
        rearm(context)
        context.fireChannelRead(data)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is InboundBytesRead {
            if case .idle = reading {
                reading = .head(since: .now())
                rearm(context)
            }
            return  // ours alone
        }
        // The server lets clients half-close; one that shuts its side mid-request has abandoned it
        // (as nginx treats it), and its request must stop costing upstream work.
        if let event = event as? ChannelEvent, event == .inputClosed, unanswered > 0 {
            watch.clientGone()
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        cancelTimer()
        if unanswered > 0 { watch.clientGone() }
        context.fireChannelInactive()
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head:
            responseStarted = true
        case .body:
            break
        case .end:
            unanswered = max(0, unanswered - 1)
            responseStarted = false
            reading = reading.restarted(at: .now())
            rearm(context)
        }
        context.write(data, promise: promise)
    }

    // MARK: Timer

    private var deadline: NIODeadline? {
        switch reading {
        case .idle(let since): return unanswered == 0 ? idle.map { since + $0 } : nil
        case .head(let since): return unanswered == 0 ? header.map { since + $0 } : nil
        case .body(let since): return unanswered <= 1 ? body.map { since + $0 } : nil
        }
    }

    /// Settings are bounded at start-up (hours at most), so the nanosecond count cannot overflow.
    private static func timeAmount(_ duration: Duration) -> TimeAmount {
        let (seconds, attoseconds) = duration.components
        return .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }

    /// Makes sure a timer fires no later than the current phase's deadline. A timer already due earlier is
    /// kept and re-arms itself when it fires, so a request costs about one timer, not one per phase change.
    private func rearm(_ context: ChannelHandlerContext) {
        guard let deadline else { return }  // a pending timer finds nothing to do when it fires
        if let timerDeadline, timerDeadline <= deadline { return }
        cancelTimer()
        schedule(deadline, context)
    }

    private func schedule(_ deadline: NIODeadline, _ context: ChannelHandlerContext) {
        timerDeadline = deadline
        timer = context.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(deadline: deadline) {
            self.fired(context)
        }
    }

    private func cancelTimer() {
        timer?.cancel()
        timer = nil
        timerDeadline = nil
    }

    private func fired(_ context: ChannelHandlerContext) {
        timer = nil
        timerDeadline = nil
        guard context.channel.isActive, let deadline else { return }
        guard deadline <= .now() else {
            schedule(deadline, context)
            return
        }
        if case .body = reading {
            // The reader of this body fails instead of seeing a short body end as if complete.
            context.fireErrorCaught(RequestBodyTimeout())
            if !responseStarted { writeRequestTimeout(context) }
        }
        context.close(promise: nil)
    }

    /// `408` in the one error shape of SPEC §2, then the connection closes.
    private func writeRequestTimeout(_ context: ChannelHandlerContext) {
        let seconds = limits.body.map { "\($0.components.seconds)" } ?? "?"
        let body = ByteBuffer(
            string: #"{"error":{"message":"The request body did not arrive within "#
                + seconds + #" seconds","type":"request_timeout","param":null,"code":null}}"#)
        let head = HTTPResponse(
            status: .requestTimeout,
            headerFields: [
                .contentType: "application/json", .contentLength: "\(body.readableBytes)", .connection: "close",
            ])
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(body)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }
}
