import NIOCore
import NIOHTTP1

/// How a caller wants the body: collected whole up to a limit, or streamed.
public enum UpstreamResponseMode: Sendable {
    case collect(limit: Int)
    case stream
}

/// One request and the promise of its answer, from the caller's task to whichever connection serves it.
///
/// The immutable parts are set at creation; the mutable ones are touched only on `eventLoop` (the loop whose
/// pool took the request), except `ticket` and `isWaiting`, which only the pool's waiter line touches, under its
/// lock (see `PoolStateMachine`). Hence `@unchecked Sendable`.
final class Exchange: @unchecked Sendable {
    let head: HTTPRequestHead
    let body: ByteBuffer?
    let mode: UpstreamResponseMode
    let readTimeout: TimeAmount
    let promise: EventLoopPromise<UpstreamHTTPResponse>
    /// Set when the caller streams the body itself: fulfilled once the head is written on a connection.
    let bodyWriter: EventLoopPromise<UpstreamRequestBodyWriter>?
    let eventLoop: any EventLoop
    /// The index of `eventLoop`'s pool in the connection pool: which line it waits in at the cap.
    let loopIndex: Int

    /// The connection serving it, once one does (for cancellation).
    var connection: (any Channel)?
    var cancelled = false
    /// A reused keep-alive connection that closed before any byte of the request could have been read gets one
    /// retry on a fresh connection.
    var retried = false
    private(set) var completed = false
    /// Bounds the wait for a connection at the cap; set while it is in line (on `eventLoop`).
    var waitTimer: Scheduled<Void>?

    /// Its place in the waiter line (lower waited longer), and whether it still waits there: leaving the line
    /// only clears the flag, the entry is dropped later (`Waiters`). Guarded by the waiters' lock.
    var ticket: UInt64 = 0
    var isWaiting = false

    private var bodyWriterSettled = false

    /// `streamsBody`: the caller writes the body through an `UpstreamRequestBodyWriter`; such an exchange is
    /// never sent twice (part of its body may be gone), so it counts as retried from the start.
    init(
        head: HTTPRequestHead, body: ByteBuffer?, streamsBody: Bool = false, mode: UpstreamResponseMode,
        readTimeout: TimeAmount, eventLoop: any EventLoop, loopIndex: Int
    ) {
        self.head = head
        self.body = body
        self.mode = mode
        self.readTimeout = readTimeout
        self.eventLoop = eventLoop
        self.loopIndex = loopIndex
        self.promise = eventLoop.makePromise(of: UpstreamHTTPResponse.self)
        self.bodyWriter = streamsBody ? eventLoop.makePromise(of: UpstreamRequestBodyWriter.self) : nil
        self.retried = streamsBody
    }

    var streamsBody: Bool { bodyWriter != nil }

    /// The head is on the wire: the caller may write the body.
    func handOut(_ writer: UpstreamRequestBodyWriter) {
        guard let bodyWriter, !bodyWriterSettled else { return }
        bodyWriterSettled = true
        bodyWriter.succeed(writer)
    }

    func succeed(_ response: UpstreamHTTPResponse) {
        guard !completed else { return }
        completed = true
        settleBodyWriter(.connectionClosed)
        promise.succeed(response)
    }

    func fail(_ error: UpstreamHTTPError) {
        guard !completed else { return }
        completed = true
        settleBodyWriter(error)
        promise.fail(error)
    }

    /// Ended before a connection took it: nobody will hand out a writer.
    private func settleBodyWriter(_ error: UpstreamHTTPError) {
        guard let bodyWriter, !bodyWriterSettled else { return }
        bodyWriterSettled = true
        bodyWriter.fail(error)
    }

    /// It left the line (served, cancelled, timed out): its timer would otherwise keep it, body included,
    /// alive for the whole timeout.
    func stopWaitTimer() {
        waitTimer?.cancel()
        waitTimer = nil
    }
}

extension Exchange: PoolWaiter {
    /// A streamed body cannot be sent again, so it does not risk a kept-alive connection the upstream may be
    /// closing just now; a retry goes on a fresh connection too. Both count as retried.
    var wantsFresh: Bool { retried }
}
