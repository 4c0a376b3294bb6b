import AsyncHTTPClient
import NIOCore
import UpstreamHTTP

/// An upstream's answer as the pipeline relays it, whichever client fetched it.
struct UpstreamResponse: Sendable {
    let status: Int
    let contentType: String?
    let body: Body

    /// The body: from the pooled client (vLLM, Chutes over TLS), or opened from Chutes' E2EE relay.
    enum Body: Sendable, AsyncSequence {
        typealias Element = ByteBuffer

        case pooled(UpstreamHTTPBody)
        case relayed(HTTPClientResponse.Body)

        func collect(upTo limit: Int) async throws -> ByteBuffer {
            switch self {
            case .pooled(let body): return try await body.collect(upTo: limit)
            case .relayed(let body): return try await body.collect(upTo: limit)
            }
        }

        struct AsyncIterator: AsyncIteratorProtocol {
            fileprivate enum Source {
                case whole(ByteBuffer?)
                case pooled(UpstreamBodyStream.AsyncIterator)
                case relayed(HTTPClientResponse.Body.AsyncIterator)
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
                case .relayed(var iterator):
                    defer { source = .relayed(iterator) }
                    return try await iterator.next()
                }
            }
        }

        func makeAsyncIterator() -> AsyncIterator {
            switch self {
            case .pooled(.complete(let buffer)): return AsyncIterator(source: .whole(buffer))
            case .pooled(.stream(let stream)): return AsyncIterator(source: .pooled(stream.makeAsyncIterator()))
            case .relayed(let body): return AsyncIterator(source: .relayed(body.makeAsyncIterator()))
            }
        }
    }
}

extension UpstreamResponse {
    /// An answer of Chutes' E2EE relay (AsyncHTTPClient), as the pipeline relays it.
    init(_ response: HTTPClientResponse) {
        self.init(
            status: Int(response.status.code), contentType: response.headers.first(name: "Content-Type"),
            body: .relayed(response.body))
    }
}
