import NIOCore
import UpstreamHTTP

/// An upstream's answer as the pipeline relays it, whichever transport fetched it.
struct UpstreamResponse: Sendable {
    let status: Int
    let contentType: String?
    let body: Body

    /// The body: as the pooled client received it (vLLM, Chutes over TLS, the Chutes relay's errors and opened
    /// JSON answers), or a Chutes E2EE stream opened event by event.
    enum Body: Sendable, AsyncSequence {
        typealias Element = ByteBuffer

        case pooled(UpstreamHTTPBody)
        case decrypted(DecryptedEventStream)

        func collect(upTo limit: Int) async throws -> ByteBuffer {
            switch self {
            case .pooled(let body): return try await body.collect(upTo: limit)
            // NIOCore's; over the limit it throws NIOTooManyBytesError, which `Upstream.mapError` reads as too large.
            case .decrypted(let stream): return try await stream.collect(upTo: limit)
            }
        }

        struct AsyncIterator: AsyncIteratorProtocol {
            fileprivate enum Source {
                case whole(ByteBuffer?)
                case pooled(UpstreamBodyStream.AsyncIterator)
                case decrypted(DecryptedEventStream.AsyncIterator)
            }
            fileprivate var source: Source

            mutating func next() async throws -> ByteBuffer? {
                switch source {
                case .whole(let buffer):
                    source = .whole(nil)
                    return buffer
                case .pooled(var iterator):
                    defer { source = .pooled(iterator) }
                    return try await iterator.next()
                case .decrypted(var iterator):
                    defer { source = .decrypted(iterator) }
                    return try await iterator.next()
                }
            }
        }

        func makeAsyncIterator() -> AsyncIterator {
            switch self {
            case .pooled(.complete(let buffer)): return AsyncIterator(source: .whole(buffer))
            case .pooled(.stream(let stream)): return AsyncIterator(source: .pooled(stream.makeAsyncIterator()))
            case .decrypted(let stream): return AsyncIterator(source: .decrypted(stream.makeAsyncIterator()))
            }
        }
    }
}

extension UpstreamResponse {
    /// An answer of the pooled client, as the pipeline relays it.
    init(_ response: UpstreamHTTPResponse) {
        self.init(
            status: Int(response.status.code), contentType: response.headers.first(name: "Content-Type"),
            body: .pooled(response.body))
    }
}
