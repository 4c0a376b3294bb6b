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
/// pool took the request), hence `@unchecked Sendable`.
final class Exchange: @unchecked Sendable {
    let head: HTTPRequestHead
    let body: ByteBuffer?
    let mode: UpstreamResponseMode
    let readTimeout: TimeAmount
    let promise: EventLoopPromise<UpstreamHTTPResponse>
    let eventLoop: any EventLoop

    /// The connection serving it, once one does (for cancellation).
    var connection: (any Channel)?
    var cancelled = false
    /// A reused keep-alive connection that failed before any answer gets one retry on a fresh connection.
    var retried = false
    private var completed = false

    init(
        head: HTTPRequestHead, body: ByteBuffer?, mode: UpstreamResponseMode, readTimeout: TimeAmount,
        eventLoop: any EventLoop
    ) {
        self.head = head
        self.body = body
        self.mode = mode
        self.readTimeout = readTimeout
        self.eventLoop = eventLoop
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

    /// The caller's task was cancelled: fail now, and drop the connection if one was serving (its state is
    /// unknown mid-exchange, so it is never reused).
    func cancel() {
        eventLoop.execute {
            // Already answered: the connection may be back in the pool serving someone else by now.
            guard !self.completed else { return }
            self.cancelled = true
            self.fail(.cancelled)
            self.connection?.close(promise: nil)
        }
    }
}
