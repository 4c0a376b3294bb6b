import AsyncHTTPClient
import Crypto
import HTTPTypes
import Hummingbird
import JSON
import Logging
import NIOCore
import Signing

/// Which completion endpoint a request arrived on.
enum CompletionKind: Sendable {
    case chat, text

    var upstreamPath: String {
        switch self {
        case .chat: return "/v1/chat/completions"
        case .text: return "/v1/completions"
        }
    }
}

/// The one pass every completion takes, front to back:
/// admission → decode → upstream → receipt → write. Both chat routes run it; only the `Upstream` differs.
struct CompletionPipeline: Sendable {
    let maxBodyBytes: Int
    let receipts: ReceiptIssuer
    /// Non-streamed upstream bodies are held whole (to hash and sign them); this bounds that memory.
    static let maxResponseBytes = 64 << 20

    func run(
        _ request: Request, context: some RequestContext, kind: CompletionKind, upstream: Upstream,
        admission: TrafficControl?
    ) async throws -> Response {
        let logger = context.logger
        let ticket = try admission?.admit(premium: request.headers[.userTier]?.lowercased() == "premium")
        let body = try await readBody(request)
        let requestHash = try requestHash(request, body: body)
        let decoded = try DecodedRequest(bytes: body)

        let response = try await upstream.send(
            .POST, path: kind.upstreamPath, body: decoded.forwardBytes, logger: logger)
        var headers = HTTPFields()
        if kind == .chat { headers[.e2eeApplied] = "false" }

        guard (200..<300).contains(response.status.code) else {
            return try await passThroughError(response, upstream: upstream, headers: headers, logger: logger)
        }
        let context = ReceiptContext(requestHash: requestHash, upstream: upstream.name)
        if decoded.isStream {
            return relayStream(response, upstream: upstream, headers: headers, receipt: context, ticket: ticket)
        }
        return try await relayJSON(response, upstream: upstream, headers: headers, receipt: context, ticket: ticket)
    }

    // MARK: Admission and decode

    private func readBody(_ request: Request) async throws(ProxyError) -> ByteBuffer {
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > maxBodyBytes {
            throw .tooLarge(limit: maxBodyBytes)
        }
        var collected = ByteBuffer()
        do {
            for try await part in request.body {
                guard collected.readableBytes + part.readableBytes <= maxBodyBytes else {
                    throw ProxyError.tooLarge(limit: maxBodyBytes)
                }
                collected.writeImmutableBuffer(part)
            }
        } catch let error as ProxyError {
            throw error
        } catch {
            throw .invalidRequest("The request body could not be read")
        }
        return collected
    }

    /// `X-Request-Hash` from a trusted gateway, else SHA-256 of the exact bytes received.
    private func requestHash(_ request: Request, body: ByteBuffer) throws(ProxyError) -> String {
        if let given = request.headers[.requestHash] {
            let hash = given.lowercased()
            guard hash.utf8.count == 64, Hex.decode(hash) != nil else {
                throw .invalidRequest("X-Request-Hash must be a SHA-256 digest as 64 hex characters")
            }
            return hash
        }
        return SHA256.hash(data: body.readableBytesView).hex
    }

    // MARK: Responses

    private func passThroughError(
        _ response: HTTPClientResponse, upstream: Upstream, headers: HTTPFields, logger: Logger
    ) async throws -> Response {
        let body: ByteBuffer
        do {
            body = try await response.body.collect(upTo: Self.maxResponseBytes)
        } catch {
            throw upstream.mapError(error, logger: logger)
        }
        var headers = headers
        headers[.contentType] = response.headers.first(name: "Content-Type") ?? "application/json"
        logger.info("upstream answered an error", metadata: ["status": "\(response.status.code)"])
        return Response(status: .init(code: Int(response.status.code)), headers: headers, body: .init(byteBuffer: body))
    }

    private func relayJSON(
        _ response: HTTPClientResponse, upstream: Upstream, headers: HTTPFields, receipt: ReceiptContext,
        ticket: InFlightTicket?
    ) async throws -> Response {
        let body: ByteBuffer
        do {
            body = try await response.body.collect(upTo: Self.maxResponseBytes)
        } catch {
            throw upstream.mapError(error, logger: receipts.logger)
        }
        let json = try? JSONValue(parsing: body.readableBytesView)
        if let chatID = json?["id"]?.stringValue {
            await receipts.issue(
                chatID: chatID, requestHash: receipt.requestHash,
                responseHash: SHA256.hash(data: body.readableBytesView).hex, upstream: receipt.upstream)
        }
        var headers = headers
        headers[.contentType] = response.headers.first(name: "Content-Type") ?? "application/json"
        return Response(
            status: .init(code: Int(response.status.code)), headers: headers,
            body: ResponseBody(contentLength: body.readableBytes) { writer in
                defer { ticket?.release() }
                try await writer.write(body)
                try await writer.finish(nil)
            })
    }

    private func relayStream(
        _ response: HTTPClientResponse, upstream: Upstream, headers: HTTPFields, receipt: ReceiptContext,
        ticket: InFlightTicket?
    ) -> Response {
        var headers = headers
        headers[.contentType] = "text/event-stream"
        headers[.cacheControl] = "no-cache"
        headers[.accelBuffering] = "no"
        let receipts = self.receipts
        return Response(
            status: .init(code: Int(response.status.code)), headers: headers,
            body: ResponseBody { writer in
                defer { ticket?.release() }
                var relay = StreamRelay()
                var chunks = response.body.makeAsyncIterator()
                while true {
                    let chunk: ByteBuffer?
                    do {
                        chunk = try await chunks.next()
                    } catch {
                        // The upstream broke mid-stream: tell the client in-band, store no receipt.
                        let failure = upstream.mapError(error, logger: receipts.logger)
                        try await writer.write(ByteBuffer(bytes: relay.errorEvent(failure)))
                        try await writer.finish(nil)
                        return
                    }
                    guard let chunk else { break }
                    // A write that throws means the client went away: returning drops the upstream
                    // iterator, which cancels the upstream request, and stores nothing.
                    try await writer.write(relay.pass(chunk))
                }
                if let chatID = relay.chatID {
                    await receipts.issue(
                        chatID: chatID, requestHash: receipt.requestHash, responseHash: relay.finalHash(),
                        upstream: receipt.upstream)
                }
                try await writer.finish(nil)
            })
    }
}

/// What a receipt needs from the request side of the pipeline.
struct ReceiptContext: Sendable {
    let requestHash: String
    let upstream: Upstream.Name
}

/// Relays an event stream chunk by chunk: bytes pass untouched and are hashed as they go; events are only
/// split out until the first one carrying the chat `id` is seen.
struct StreamRelay {
    private var hasher = SHA256()
    private var splitter: SSEEventSplitter? = SSEEventSplitter()
    private(set) var chatID: String?

    mutating func pass(_ chunk: ByteBuffer) -> ByteBuffer {
        if var splitter {
            for event in splitter.append(chunk) {
                guard let data = sseData(of: event), let json = try? JSONValue(parsing: data),
                    let id = json["id"]?.stringValue
                else { continue }
                chatID = id
                break
            }
            self.splitter = chatID == nil ? splitter : nil
        }
        hasher.update(data: chunk.readableBytesView)
        return chunk
    }

    mutating func errorEvent(_ error: ProxyError) -> [UInt8] {
        Array("data: ".utf8) + error.body + Array("\n\n".utf8)
    }

    func finalHash() -> String { hasher.finalize().hex }
}

extension HTTPField.Name {
    static let userTier = Self("X-User-Tier")!
    static let requestHash = Self("X-Request-Hash")!
    static let e2eeApplied = Self("X-E2EE-Applied")!
    static let e2eeVersion = Self("X-E2EE-Version")!
    static let e2eeAlgo = Self("X-E2EE-Algo")!
    static let accelBuffering = Self("X-Accel-Buffering")!
    static let proxyUpstream = Self("X-Proxy-Upstream")!
}
