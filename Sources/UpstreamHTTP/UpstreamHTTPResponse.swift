import NIOCore
import NIOHTTP1

/// An upstream's answer: the head, and the body whole or as a stream, as the request asked.
public struct UpstreamHTTPResponse: Sendable {
    public let status: HTTPResponseStatus
    public let headers: HTTPHeaders
    public let body: UpstreamHTTPBody
}

/// How a response body arrives: whole (collected on the event loop, one wake-up for the caller) or streamed.
public enum UpstreamHTTPBody: Sendable {
    case complete(ByteBuffer)
    case stream(UpstreamBodyStream)

    /// The whole body, up to `limit` bytes.
    public func collect(upTo limit: Int) async throws -> ByteBuffer {
        switch self {
        case .complete(let buffer):
            guard buffer.readableBytes <= limit else { throw UpstreamHTTPError.bodyTooLarge(limit: limit) }
            return buffer
        case .stream(let stream):
            var collected = ByteBuffer()
            for try await chunk in stream {
                guard collected.readableBytes + chunk.readableBytes <= limit else {
                    throw UpstreamHTTPError.bodyTooLarge(limit: limit)
                }
                collected.writeImmutableBuffer(chunk)
            }
            return collected
        }
    }
}

/// A streamed response body with back-pressure: the connection stops reading while the consumer is behind.
/// Dropping it (or cancelling the task that iterates it) before the end closes the connection.
public struct UpstreamBodyStream: AsyncSequence, Sendable {
    public typealias Element = ByteBuffer
    typealias Producer = NIOThrowingAsyncSequenceProducer<
        ByteBuffer, any Error, NIOAsyncSequenceProducerBackPressureStrategies.HighLowWatermark, StreamDelegate
    >

    let producer: Producer

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: Producer.AsyncIterator

        public mutating func next() async throws -> ByteBuffer? {
            try await base.next()
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: producer.makeAsyncIterator())
    }
}

/// Tells the connection (on its event loop) when the consumer wants more or has gone.
/// Each stream names its exchange: the connection may serve a newer one by the time an old stream's consumer
/// lets go, and that one must not be disturbed.
struct StreamDelegate: NIOAsyncSequenceProducerDelegate {
    let handler: NIOLoopBound<UpstreamConnectionHandler>
    let exchange: Exchange

    func produceMore() {
        let (handler, exchange) = (self.handler, self.exchange)
        handler.eventLoop.execute { handler.value.resumeReading(for: exchange) }
    }

    func didTerminate() {
        let (handler, exchange) = (self.handler, self.exchange)
        handler.eventLoop.execute { handler.value.consumerGone(for: exchange) }
    }
}
