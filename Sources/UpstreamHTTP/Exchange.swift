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
/// lock. Hence `@unchecked Sendable`.
final class Exchange: @unchecked Sendable {
    let head: HTTPRequestHead
    let body: ByteBuffer?
    let mode: UpstreamResponseMode
    let readTimeout: TimeAmount
    let promise: EventLoopPromise<UpstreamHTTPResponse>
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

    init(
        head: HTTPRequestHead, body: ByteBuffer?, mode: UpstreamResponseMode, readTimeout: TimeAmount,
        eventLoop: any EventLoop, loopIndex: Int
    ) {
        self.head = head
        self.body = body
        self.mode = mode
        self.readTimeout = readTimeout
        self.eventLoop = eventLoop
        self.loopIndex = loopIndex
        self.promise = eventLoop.makePromise(of: UpstreamHTTPResponse.self)
    }

    func succeed(_ response: UpstreamHTTPResponse) {
        guard !completed else { return }
        completed = true
        promise.succeed(response)
    }

    func fail(_ error: UpstreamHTTPError) {
        guard !completed else { return }
        completed = true
        promise.fail(error)
    }

    /// It left the line (served, cancelled, timed out): its timer would otherwise keep it, body included,
    /// alive for the whole timeout.
    func stopWaitTimer() {
        waitTimer?.cancel()
        waitTimer = nil
    }
}
