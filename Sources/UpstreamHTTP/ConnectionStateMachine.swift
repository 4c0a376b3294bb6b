import NIOCore
import NIOHTTP1

/// What the connection state machine reads of an exchange: `Exchange` in production, a stand-in in tests.
protocol ConnectionExchange: AnyObject {
    var mode: UpstreamResponseMode { get }
    var readTimeout: TimeAmount { get }
    /// The caller writes the body (an upload): the connection is never reused after it.
    var streamsBody: Bool { get }
    var cancelled: Bool { get }
    /// Not sent twice yet and its caller still waits: it may go once more on a fresh connection.
    var mayBeResent: Bool { get }
    /// The request head allows keep-alive.
    var wantsKeepAlive: Bool { get }
}

/// One upstream HTTP/1.1 connection's life as a value, in the style of AsyncHTTPClient's
/// `HTTP1ConnectionStateMachine`: the channel handler feeds it events (a request to send, response parts,
/// a timer, the channel closing, the consumer's demand) and runs the action each returns. It holds every fact
/// a decision needs — which exchange, its serial number, keep-alive, whether the connection served before and
/// whether any answer byte came, when the upstream last spoke, back-pressure — and no channel, promise or clock
/// (time comes in as `now`), so every transition is tested without a socket.
struct ConnectionStateMachine<Request: ConnectionExchange> {
    enum State {
        /// In the pool (or just connected), no exchange.
        case idle
        case awaitingHead(Request)
        case collecting(Request, HTTPResponseHead, ByteBuffer, limit: Int)
        /// The head was delivered with a stream. Only the exchange's serial is kept, not the exchange: its promise
        /// holds the stream, and a stream still reachable from here would never be deinitialised when its consumer
        /// drops it unread (the upstream would then run to its end for nobody).
        case streaming(serial: UInt64)
        /// Closed, or being closed: never reused.
        case closed
    }

    /// What follows an exchange's end: `reuse` hands the connection back to its pool, else it is closed; `read`
    /// asks for the read the consumer's back-pressure held back.
    struct Finish: Equatable {
        let reuse: Bool
        let read: Bool
    }

    enum Action {
        case none
        /// Write the request's head, then its body and end unless the caller streams the body (it then gets a
        /// writer for `serial`); arm the read timer for `deadline`.
        case send(Request, serial: UInt64, deadline: NIODeadline)
        /// The exchange's caller left while it waited: fail it as cancelled; the connection stays idle.
        case abandon(Request)
        /// Send the exchange once more on a fresh connection (this one closes when `close`).
        case retry(Request, close: Bool)
        /// Fail the exchange; close the connection when `close`.
        case fail(Request, UpstreamHTTPError, close: Bool)
        /// Stream mode: make the stream of `serial` and deliver it with the head.
        case deliverStream(Request, HTTPResponseHead, serial: UInt64)
        /// Collect mode: deliver the whole answer.
        case deliverWhole(Request, HTTPResponseHead, ByteBuffer, Finish)
        /// Hand these chunks (one socket read's worth) to the stream.
        case yield(ByteBuffer)
        /// The stream ends well, after `chunks` when there are any.
        case finishStream(ByteBuffer?, Finish)
        /// The stream ends with `error`; close the connection when `close`.
        case failStream(UpstreamHTTPError, close: Bool)
        case read
        case close
        /// The timer fired early (the upstream spoke since, or the consumer held reads): wait until `deadline`.
        case rearm(NIODeadline)
    }

    private(set) var state = State.idle
    /// Numbers this connection's exchanges, so late callbacks of an old stream can tell they are no longer current.
    private(set) var serial: UInt64 = 0
    private var keepAlive = true
    /// Whether this connection already served an exchange (a stale keep-alive connection can fail at once).
    private var servedBefore = false
    private var responseBytesSeen = false
    /// When the upstream last spoke (or, for a streamed request body, when the caller last wrote a part).
    private var lastActivity: NIODeadline
    private var timeout: TimeAmount = .zero
    /// Back-pressure: the stream's consumer is behind, so reads wait; one was asked for meanwhile.
    private var readsPaused = false
    private var readPending = false
    /// Body parts of the current socket read, not yet handed to the stream.
    private var pendingChunks = ByteBuffer()

    init(now: NIODeadline) {
        lastActivity = now
    }

    var isIdle: Bool {
        if case .idle = state { true } else { false }
    }

    // MARK: Sending

    /// A request for this connection, taken from the pool; `active` is whether the channel is still open.
    mutating func start(_ request: Request, active: Bool, now: NIODeadline) -> Action {
        guard case .idle = state, active else {
            // Closed before a byte was written: the upstream cannot have read any of it.
            return retryOrFail(request, .connectionClosed, close: false)
        }
        // Its client left while it waited: never sent, and the connection serves someone else.
        guard !request.cancelled else { return .abandon(request) }
        serial &+= 1
        responseBytesSeen = false
        // What a caller streaming its body leaves unwritten must not be read as another exchange's request.
        keepAlive = request.wantsKeepAlive && !request.streamsBody
        timeout = request.readTimeout
        lastActivity = now
        state = .awaitingHead(request)
        return .send(request, serial: serial, deadline: now + timeout)
    }

    /// A part of a streamed request body is about to be written: allowed while exchange `serial` is current, and
    /// the read timeout's silence then starts after it.
    mutating func bodyPartWritten(serial: UInt64, now: NIODeadline) -> Bool {
        guard serial == self.serial else { return false }
        switch state {
        case .idle, .closed:
            return false
        case .awaitingHead, .collecting, .streaming:
            lastActivity = now
            return true
        }
    }

    /// The caller could not finish its body: before the answer's head, the upstream must not take what it got
    /// for a whole request; after it, the answer stands (the connection closes after it anyway).
    mutating func bodyAborted(serial: UInt64, _ error: UpstreamHTTPError, now: NIODeadline) -> Action {
        guard serial == self.serial, case .awaitingHead = state else { return .none }
        return fail(error, now: now)
    }

    // MARK: Receiving

    mutating func head(_ head: HTTPResponseHead, now: NIODeadline) -> Action {
        lastActivity = now
        responseBytesSeen = true
        switch state {
        case .awaitingHead(let request):
            if !head.isKeepAlive { keepAlive = false }
            switch request.mode {
            case .collect(let limit):
                state = .collecting(request, head, ByteBuffer(), limit: limit)
                return .none
            case .stream:
                state = .streaming(serial: serial)
                return .deliverStream(request, head, serial: serial)
            }
        case .closed:
            return .none
        case .idle, .collecting, .streaming:
            // An answer nobody asked for, or a second head: the connection's framing is lost.
            return fail(.invalidResponse, now: now)
        }
    }

    mutating func bodyPart(_ part: ByteBuffer, now: NIODeadline) -> Action {
        lastActivity = now
        responseBytesSeen = true
        switch state {
        case .collecting(let request, let head, var body, let limit):
            guard body.readableBytes + part.readableBytes <= limit else {
                return fail(.bodyTooLarge(limit: limit), now: now)
            }
            state = .idle  // lets `body` be uniquely referenced while it grows
            body.writeImmutableBuffer(part)
            state = .collecting(request, head, body, limit: limit)
            return .none
        case .streaming:
            // Parts decoded from one socket read go to the consumer together, at the read's end: a read holding
            // 64 small chunks then costs one hand-over (one hash update, one write to the client) instead of 64.
            if pendingChunks.readableBytes == 0 {
                pendingChunks = part
            } else {
                pendingChunks.writeImmutableBuffer(part)
            }
            return .none
        case .closed:
            return .none
        case .idle, .awaitingHead:
            return fail(.invalidResponse, now: now)
        }
    }

    mutating func end(now: NIODeadline) -> Action {
        lastActivity = now
        responseBytesSeen = true
        switch state {
        case .collecting(let request, let head, let body, _):
            return .deliverWhole(request, head, body, finish())
        case .streaming:
            let chunks = takePendingChunks()
            return .finishStream(chunks, finish())
        case .closed:
            return .none
        case .idle, .awaitingHead:
            return fail(.invalidResponse, now: now)
        }
    }

    /// The socket read is over: what it decoded for the stream goes to the consumer now.
    mutating func readComplete() -> Action {
        guard case .streaming = state, let chunks = takePendingChunks() else { return .none }
        return .yield(chunks)
    }

    /// The stream's buffer is over its high watermark: reads wait until its consumer asks for more.
    mutating func consumerIsBehind() {
        readsPaused = true
    }

    /// The channel wants to read: now, or once the consumer catches up.
    mutating func readRequested() -> Action {
        guard readsPaused else { return .read }
        readPending = true
        return .none
    }

    /// Stream `serial`'s consumer wants more.
    mutating func consumerWantsMore(serial: UInt64) -> Action {
        guard case .streaming(let current) = state, current == serial else { return .none }
        readsPaused = false
        guard readPending else { return .none }
        readPending = false
        return .read
    }

    /// Stream `serial`'s consumer went away before its end: nobody wants the rest, so the connection closes.
    mutating func consumerGone(serial: UInt64) -> Action {
        guard case .streaming(let current) = state, current == serial else { return .none }
        state = .closed
        pendingChunks = ByteBuffer()
        return .close
    }

    // MARK: Time, failure, retirement

    /// The read timer fired: the upstream was silent for the whole timeout, or it spoke since (or the consumer
    /// paused reads, so the silence is the client's) and the timer waits for the rest.
    mutating func timerFired(now: NIODeadline) -> Action {
        switch state {
        case .idle, .closed:
            return .none
        case .awaitingHead, .collecting, .streaming:
            if readsPaused || lastActivity + timeout > now { return .rearm(lastActivity + timeout) }
            return fail(.readTimeout, now: now)
        }
    }

    /// The channel closed (by either side).
    mutating func closed(now: NIODeadline) -> Action {
        fail(.connectionClosed, now: now)
    }

    mutating func errorCaught(malformedAnswer: Bool, now: NIODeadline) -> Action {
        fail(malformedAnswer ? .invalidResponse : .connectionClosed, now: now)
    }

    /// The pool does not keep this idle connection.
    mutating func retire() -> Action {
        guard case .idle = state else { return .none }
        state = .closed
        return .close
    }

    /// Ends the exchange in progress with `error` (or sends it again elsewhere) and closes the connection.
    private mutating func fail(_ error: UpstreamHTTPError, now: NIODeadline) -> Action {
        let previous = state
        state = .closed
        switch previous {
        case .awaitingHead(let request):
            guard
                ResendRule.mayHaveGoneUnread(after: error, answered: responseBytesSeen, sentFor: now - lastActivity)
            else {
                return .fail(request, request.cancelled ? .cancelled : error, close: true)
            }
            return retryOrFail(request, error, close: true)
        case .collecting(let request, _, _, _):
            return .fail(request, error, close: true)
        case .streaming:
            pendingChunks = ByteBuffer()
            return .failStream(error, close: true)
        case .idle:
            return .close
        case .closed:
            return .none
        }
    }

    /// A keep-alive connection the upstream closed while idle fails the next request before any answer: that
    /// request never reached the upstream's handler, so it goes once more on a fresh connection. Only once,
    /// never after its caller left, never a request whose body the caller streams.
    private func retryOrFail(_ request: Request, _ error: UpstreamHTTPError, close: Bool) -> Action {
        guard servedBefore, request.mayBeResent, !request.streamsBody else {
            return .fail(request, request.cancelled ? .cancelled : error, close: close)
        }
        return .retry(request, close: close)
    }

    private mutating func finish() -> Finish {
        servedBefore = true
        readsPaused = false
        let read = readPending
        readPending = false
        guard keepAlive else {
            state = .closed
            return Finish(reuse: false, read: read)
        }
        state = .idle
        return Finish(reuse: true, read: read)
    }

    private mutating func takePendingChunks() -> ByteBuffer? {
        guard pendingChunks.readableBytes > 0 else { return nil }
        let chunks = pendingChunks
        pendingChunks = ByteBuffer()
        return chunks
    }
}

/// SPEC §2's rule for sending a request twice.
enum ResendRule {
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
}
