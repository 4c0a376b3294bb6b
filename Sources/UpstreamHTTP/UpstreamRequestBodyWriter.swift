import NIOCore
import NIOHTTP1
import Synchronization

/// Writes a request body the caller streams (an upload it does not hold whole) on the connection that sent
/// the head; each write completes once the part is handed to the socket, so a slow upstream slows the
/// caller's reads (back-pressure) instead of filling memory.
public struct UpstreamRequestBodyWriter: Sendable {
    let handler: NIOLoopBound<UpstreamConnectionHandler>
    let serial: UInt64

    public func write(_ part: ByteBuffer) async throws {
        try await send(.body(.byteBuffer(part)))
    }

    /// The body is complete.
    func end() async throws {
        try await send(.end(nil))
    }

    /// The body cannot be completed: the connection closes, so the upstream never takes a part for the whole.
    func abort(_ error: UpstreamHTTPError) {
        let handler = self.handler
        let serial = self.serial
        handler.eventLoop.execute { handler.value.abortBody(serial: serial, error) }
    }

    private func send(_ part: HTTPClientRequestPart) async throws {
        let handler = self.handler
        let serial = self.serial
        try await handler.eventLoop.flatSubmit {
            handler.value.writeBodyPart(part, serial: serial)
                ?? handler.eventLoop.makeFailedFuture(UpstreamHTTPError.connectionClosed)
        }.get()
    }
}

/// Why a streamed body could not be finished, kept for the caller: the exchange itself then only fails with
/// the abort it caused.
final class PumpFailure: Sendable {
    private let value = Mutex<(any Error)?>(nil)

    func record(_ error: any Error) { value.withLock { $0 = error } }
    var error: (any Error)? { value.withLock { $0 } }
}
