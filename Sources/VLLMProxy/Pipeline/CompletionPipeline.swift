import Crypto
import E2EE
import Foundation
import GuardedHTTP
import HTTPTypes
import Hummingbird
import JSON
import Logging
import NIOCore
import SSE
import SharedState
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

/// The one pass every completion takes, front to back: admission → decode → E2EE open → upstream →
/// E2EE seal → receipt → write. Both chat routes run it; only the `Upstream` differs.
struct CompletionPipeline: Sendable {
    let maxBodyBytes: Int
    let receipts: ReceiptIssuer
    let e2ee: E2EECodec
    /// Where v2 nonces are claimed: one namespace for every chat route.
    let replayGuard: any SharedStore
    let modelName: String

    /// Runs the request in a child task and returns its response; a stream's body then runs in the caller's
    /// (the connection's) task.
    ///
    /// A task keeps the stack memory its deepest call needed until it ends. The request phase (decode, E2EE,
    /// the upstream call) is the deepest; run in the connection's task, its stack (~5 KB measured) stayed
    /// allocated for as long as a stream was open: at 10 000 streams, the difference to the 400 MB budget.
    func respond(
        to request: Request, logger: Logger, kind: CompletionKind, upstream: Upstream, admission: TrafficControl?
    ) async throws -> Response {
        try await withThrowingTaskGroup(of: Response.self) { group in
            group.addTask {
                try await run(request, logger: logger, kind: kind, upstream: upstream, admission: admission)
            }
            return try await group.next()!
        }
    }

    private func run(
        _ request: Request, logger: Logger, kind: CompletionKind, upstream: Upstream, admission: TrafficControl?
    ) async throws -> Response {
        var timing = UpstreamTiming(route: kind.route(via: upstream.name))
        let inFlight = receipts.metrics.completionStarted()
        let mode = try e2eeMode(request, kind: kind)
        let body = try await readBody(request)
        // Only a fully read request takes a slot: a client trickling its body holds none (SPEC §3).
        let ticket = try admission?.admit(premium: request.headers[.userTier]?.lowercased() == "premium")
        let requestHash = try requestHash(request, body: body)
        var decoded = try DecodedRequest(bytes: body)
        let sealer = try await open(&decoded, mode: mode)

        timing.upstreamWaitBegins()
        let answer = try await upstream.sendCompletion(
            path: kind.upstreamPath, body: decoded.forwardBytes, stream: decoded.isStream, logger: logger)
        receipts.metrics.recordUpstreamTTFB(upstream: upstream.name, timing.upstreamWaitEnds())
        let response = answer.response
        var headers = HTTPFields()
        if kind == .chat {
            for (name, value) in mode.responseHeaders { headers[HTTPField.Name(name)!] = value }
        }
        var chutes: ChutesReceipt?
        if upstream.name == .chutes {
            chutes = ChutesReceipt(transport: upstream.transport.name, instanceID: answer.instanceID)
            headers[.proxyUpstreamTransport] = upstream.transport.name
        }

        guard (200..<300).contains(response.status) else {
            return try await passThroughError(
                response, upstream: upstream, headers: headers, sealed: sealer != nil, logger: logger)
        }
        let context = ReceiptContext(requestHash: requestHash, upstream: upstream.name, chutes: chutes)
        if decoded.isStream {
            return relayStream(
                response, upstream: upstream, headers: headers, receipt: context, sealer: sealer,
                tickets: Tickets(slot: ticket, inFlight: inFlight), timing: timing, logger: logger)
        }
        return try await relayJSON(
            response, upstream: upstream, headers: headers, receipt: context, sealer: sealer,
            tickets: Tickets(slot: ticket, inFlight: inFlight), timing: timing, logger: logger)
    }

    // MARK: E2EE

    /// Validates the E2EE headers before the body is even read; only chat completions may carry them.
    private func e2eeMode(_ request: Request, kind: CompletionKind) throws(ProxyError) -> E2EEMode {
        let fields = request.headers
        let headers = E2EEHeaders(
            signingAlgo: fields[.signingAlgo], clientPublicKey: fields[.clientPublicKey],
            modelPublicKey: fields[.modelPublicKey], version: fields[.e2eeVersion], nonce: fields[.e2eeNonce],
            timestamp: fields[.e2eeTimestamp])
        guard kind == .chat else {
            guard headers.isEmpty else {
                throw ProxyError(
                    .badRequest, type: "invalid_e2ee_request",
                    message: "E2EE is only supported on /v1/chat/completions")
            }
            return .plain
        }
        do throws(E2EEError) {
            return try e2ee.parse(headers, now: Int(Date().timeIntervalSince1970))
        } catch {
            throw ProxyError(error)
        }
    }

    /// Decrypts the request in place, then claims the v2 nonce (only once decryption proved the request
    /// genuine, so garbage cannot burn a client's nonce); returns the sealer for the response.
    private func open(_ decoded: inout DecodedRequest, mode: E2EEMode) async throws(ProxyError) -> ResponseSealer? {
        guard case .encrypted(let session) = mode else { return nil }
        do {
            try decoded.update { json throws(E2EEError) in
                var value = JSONValue.object(json)
                try e2ee.openRequest(&value, session: session)
                json = value.objectValue ?? json
            }
            if let key = session.replayKey(modelName: modelName) {
                let lifetime = session.replayClaimSeconds(
                    now: Int(Date().timeIntervalSince1970), window: e2ee.replayWindow)
                switch await replayGuard.claim(key, ttl: .seconds(lifetime)) {
                case .claimed: break
                case .alreadyClaimed: throw E2EEError.replayDetected
                case .full: throw ProxyError.replayStoreFull
                case .unavailable: throw ProxyError.replayStoreUnavailable
                }
            }
            return try e2ee.responseSealer(for: session)
        } catch let error as E2EEError {
            throw ProxyError(error)
        } catch let error as ProxyError {
            throw error
        } catch {
            throw ProxyError.internalError
        }
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
        } catch is RequestBodyTimeout {
            throw .requestTimeout
        } catch {
            if Task.isCancelled { throw .clientClosedRequest }
            throw .invalidRequest("The request body could not be read")
        }
        // A connection that ends mid-body ends the body stream as if it were complete: never take a short
        // body for a whole one.
        if Task.isCancelled { throw .clientClosedRequest }
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), collected.readableBytes != length {
            throw .invalidRequest("The request body ended before its Content-Length")
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

    /// Relays an upstream's non-2xx answer; under E2EE (`sealed`) only its status, with our own body, since
    /// upstream errors echo the (decrypted) request.
    private func passThroughError(
        _ response: UpstreamResponse, upstream: Upstream, headers: HTTPFields, sealed: Bool, logger: Logger
    ) async throws -> Response {
        let body = try await upstream.collect(response, logger: logger)
        logger.info("upstream answered an error", metadata: ["status": "\(response.status)"])
        let status = response.status
        var headers = headers
        if sealed {
            try upstream.checkCredentialAccepted(status: status)
            var error = ProxyError.upstreamError(status: status)
            error.headers = headers
            throw error
        }
        let relayed: ByteBuffer
        do {
            relayed = try upstream.relayedError(status: status, body: body)
        } catch {
            var error = error  // Chutes: its status with a scrubbed message
            error.headers = headers
            throw error
        }
        headers[.contentType] = response.contentType ?? "application/json"
        return Response(
            status: .init(code: response.status), headers: headers, body: .init(byteBuffer: relayed))
    }

    private func relayJSON(
        _ response: UpstreamResponse, upstream: Upstream, headers: HTTPFields, receipt: ReceiptContext,
        sealer: ResponseSealer?, tickets: Tickets, timing: UpstreamTiming, logger: Logger
    ) async throws -> Response {
        var timing = timing
        timing.upstreamWaitBegins()
        var body = try await upstream.collect(response, logger: logger)
        timing.upstreamWaitEnds()
        let chatID: String?
        if let sealer {
            // Only what was sealed may leave: a body we cannot parse could carry plaintext.
            guard var sealed = try? JSONValue(parsing: body.readableBytesView) else {
                throw ProxyError.upstreamUnavailable(upstream.name.rawValue, "answered a body that is not JSON")
            }
            do throws(E2EEError) { try sealer.seal(&sealed) } catch { throw ProxyError(error) }
            body = ByteBuffer(bytes: sealed.serialized())
            chatID = sealed["id"]?.stringValue
        } else {
            // A plain answer passes as received: only its `id` is read, without building a tree.
            chatID = body.withUnsafeReadableBytes { topLevelID(in: $0) }
        }
        // A client that went away while the answer was generated gets no receipt (SPEC §2).
        if Task.isCancelled { throw ProxyError.clientClosedRequest }
        if let chatID {
            await receipts.issue(
                chatID: chatID, requestHash: receipt.requestHash,
                responseHash: SHA256.hash(data: body.readableBytesView).hex, upstream: receipt.upstream,
                chutes: receipt.chutes)
        }
        var headers = headers
        headers[.contentType] = response.contentType ?? "application/json"
        // Like its duration, a body of known length's overhead ends when the response is handed over; so does
        // its slot: the whole body is queued at once, and a buffer body is written in one pass (head, body and
        // end together) where a closure body takes three.
        receipts.metrics.recordOverhead(route: timing.route, timing.overhead())
        tickets.release()
        return Response(
            status: .init(code: response.status), headers: headers, body: ResponseBody(byteBuffer: body))
    }

    private func relayStream(
        _ response: UpstreamResponse, upstream: Upstream, headers: HTTPFields, receipt: ReceiptContext,
        sealer: ResponseSealer?, tickets: Tickets, timing: UpstreamTiming, logger: Logger
    ) -> Response {
        var headers = headers
        headers[.contentType] = "text/event-stream"
        headers[.cacheControl] = "no-cache"
        headers[.accelBuffering] = "no"
        let relay = StreamRelay(
            sealer: sealer, upstream: upstream, receipt: receipt, receipts: receipts, logger: logger)
        return Response(
            status: .init(code: response.status), headers: headers,
            body: ResponseBody { writer in
                defer { tickets.release() }
                try await relay.run(response.body, to: &writer, timing: timing)
            })
    }
}

/// What a request holds until its last byte is sent or it fails: its basic-tier slot, if any, and its unit of
/// the in-flight gauge.
struct Tickets: Sendable {
    let slot: InFlightTicket?
    let inFlight: GaugeTicket

    func release() {
        slot?.release()
        inFlight.release()
    }
}

/// What a receipt needs from the request side of the pipeline.
struct ReceiptContext: Sendable {
    let requestHash: String
    let upstream: Upstream.Name
    let chutes: ChutesReceipt?
}

/// Relays an event stream chunk by chunk, hashing exactly the bytes sent. Plain streams pass upstream
/// chunks untouched (events are only split out until the chat `id` is seen; after that the splitter only
/// enforces the event cap); sealed streams re-frame each event with its fields encrypted (an
/// unterminated partial event at the end is dropped). An event over the cap ends the stream.
///
/// A class, and its synchronous steps kept out of line, so that the task suspended between two chunks holds
/// only a small async frame: a struct with the hasher, splitter and sealer inlined made that frame ~14 KB per
/// open stream (measured with heaptrack), most of the proxy's memory at 10 000 streams.
final class StreamRelay: @unchecked Sendable {
    // Mutable state is touched only by the one task that runs the stream (`run`), hence `@unchecked`.
    private var hasher = SHA256()
    private var splitter = SSEEventSplitter()
    private let sealer: ResponseSealer?
    private let upstream: Upstream
    private let receipt: ReceiptContext
    private let receipts: ReceiptIssuer
    private let logger: Logger
    private(set) var chatID: String?
    /// Set once a sealed stream carried an upstream error event; nothing after it is relayed.
    private(set) var upstreamFailed = false

    init(
        sealer: ResponseSealer?, upstream: Upstream, receipt: ReceiptContext, receipts: ReceiptIssuer, logger: Logger
    ) {
        self.sealer = sealer
        self.upstream = upstream
        self.receipt = receipt
        self.receipts = receipts
        self.logger = logger
    }

    /// Relays the upstream's chunks to the client, then stores the receipt (only for a stream that ended well
    /// and whose client is still there) and records the proxy's overhead (waits for chunks excluded).
    func run(_ body: UpstreamResponse.Body, to writer: inout any ResponseBodyWriter, timing: UpstreamTiming)
        async throws
    {
        var timing = timing
        var chunks = body.makeAsyncIterator()
        while true {
            let chunk: ByteBuffer?
            do {
                timing.upstreamWaitBegins()
                chunk = try await chunks.next()
                timing.upstreamWaitEnds()
            } catch {
                // The client went away (its connection's task was cancelled): nobody to tell.
                if Task.isCancelled { throw CancellationError() }
                // The upstream broke mid-stream: tell the client in-band, store no receipt.
                try await writer.write(failureEvent(error))
                try await writer.finish(nil)
                return
            }
            guard let chunk else { break }
            switch step(chunk) {
            case .send(let out):
                // A write that throws means the client went away: returning drops the upstream iterator,
                // which closes the upstream connection, and stores nothing.
                if out.readableBytes > 0 { try await writer.write(out) }
                // The upstream reported an error in-band (relayed under E2EE as our own event): the stream
                // failed, so like any mid-stream failure it ends here with no receipt.
                if upstreamFailed {
                    try await writer.finish(nil)
                    return
                }
            case .fail(let event):
                try await writer.write(event)
                try await writer.finish(nil)
                return
            }
        }
        if Task.isCancelled { throw CancellationError() }
        if let chatID {
            await receipts.issue(
                chatID: chatID, requestHash: receipt.requestHash, responseHash: finalHash(),
                upstream: receipt.upstream, chutes: receipt.chutes)
        }
        try await writer.finish(nil)
        receipts.metrics.recordOverhead(route: timing.route, timing.overhead())
    }

    private enum Step {
        case send(ByteBuffer)
        /// The stream ends with this error event.
        case fail(ByteBuffer)
    }

    @inline(never)
    private func step(_ chunk: ByteBuffer) -> Step {
        do throws(ProxyError) {
            return .send(try pass(chunk))
        } catch {
            logger.warning("stream ended early", metadata: ["error.type": "\(error.type)"])
            return .fail(ByteBuffer(bytes: errorEvent(error)))
        }
    }

    @inline(never)
    private func failureEvent(_ error: any Error) -> ByteBuffer {
        ByteBuffer(bytes: errorEvent(upstream.mapError(error, logger: logger)))
    }

    func pass(_ chunk: ByteBuffer) throws(ProxyError) -> ByteBuffer {
        let events: [ByteBuffer]
        do {
            events = try splitter.append(chunk)
        } catch {
            throw .upstreamEventTooLarge(upstream.name.rawValue, limit: error.limit)
        }
        guard let sealer else { return passPlain(chunk, events: events) }
        var out = ByteBuffer()
        do throws(E2EEError) {
            for event in events where !upstreamFailed { try seal(event, with: sealer, into: &out) }
        } catch {
            throw ProxyError(error)
        }
        hasher.update(data: out.readableBytesView)
        return out
    }

    private func passPlain(_ chunk: ByteBuffer, events: [ByteBuffer]) -> ByteBuffer {
        for event in events {
            guard let data = sseData(of: event),
                let id = data.withUnsafeBytes({ topLevelID(in: $0) })
            else { continue }
            chatID = id
            splitter.keepsEvents = false
            break
        }
        hasher.update(data: chunk.readableBytesView)
        return chunk
    }

    private func seal(_ event: ByteBuffer, with sealer: ResponseSealer, into out: inout ByteBuffer)
        throws(E2EEError)
    {
        guard let data = sseData(of: event) else { return }  // comments and keep-alives carry nothing
        if data.elementsEqual("[DONE]".utf8) {
            out.writeString("data: [DONE]\n\n")
            return
        }
        // An event we cannot parse is dropped: it could carry plaintext we cannot seal.
        guard var json = try? JSONValue(parsing: data) else { return }
        // vLLM reports a failure mid-stream as `{"error": {...}}` (older versions: `{"object": "error", ...}`),
        // whose message may echo the request: the client gets our own error event instead.
        if json["error"] != nil || json["object"] == "error" {
            out.writeBytes(errorEvent(.upstreamFailedMidStream))
            upstreamFailed = true
            return
        }
        if chatID == nil { chatID = json["id"]?.stringValue }
        try sealer.sealChunk(&json)
        out.writeString("data: ")
        out.writeBytes(json.serialized())
        out.writeString("\n\n")
    }

    /// The in-band error that ends a stream. A plain stream may have passed part of an event already: a
    /// blank line first ends it, so the error arrives as an event of its own.
    func errorEvent(_ error: ProxyError) -> [UInt8] {
        let prefix = sealer == nil && splitter.hasPartialEvent ? "\n\ndata: " : "data: "
        return Array(prefix.utf8) + error.body + Array("\n\n".utf8)
    }

    func finalHash() -> String { hasher.finalize().hex }
}

/// The top-level `id` string of a JSON object, if the bytes are one and it has one.
func topLevelID(in bytes: UnsafeRawBufferPointer) -> String? {
    guard let scan = try? JSONScan(scanning: bytes, topLevelKeys: ["id"]), scan.rootKind == .object,
        let id = scan.members[0]
    else { return nil }
    return JSONScan.string(id, in: bytes)
}

extension HTTPField.Name {
    static let userTier = Self("X-User-Tier")!
    static let requestHash = Self("X-Request-Hash")!
    static let e2eeApplied = Self("X-E2EE-Applied")!
    static let e2eeVersion = Self(E2EEHeaders.versionName)!
    // Made once: a name built from a string per request validates and lower-cases it each time.
    static let signingAlgo = Self(E2EEHeaders.signingAlgoName)!
    static let clientPublicKey = Self(E2EEHeaders.clientPublicKeyName)!
    static let modelPublicKey = Self(E2EEHeaders.modelPublicKeyName)!
    static let e2eeNonce = Self(E2EEHeaders.nonceName)!
    static let e2eeTimestamp = Self(E2EEHeaders.timestampName)!
    static let e2eeAlgo = Self("X-E2EE-Algo")!
    static let accelBuffering = Self("X-Accel-Buffering")!
    static let proxyUpstream = Self("X-Proxy-Upstream")!
    static let proxyUpstreamTransport = Self("X-Proxy-Upstream-Transport")!
}
