import Crypto
import E2EE
import Foundation
import GuardedHTTP
import HTTPTypes
import Hummingbird
import JSON
import Logging
import NIOCore
import SharedState
import Signing
import Synchronization
import UpstreamHTTP

/// The one pass every request to a model takes, front to back: admission → decode → E2EE open → upstream →
/// E2EE seal → receipt → write. Every POST route of SPEC §2 runs it; only the `ProxyRoute` and the `Upstream`
/// differ.
struct CompletionPipeline: Sendable {
    let maxBodyBytes: Int
    /// `MAX_UPLOAD_BYTES`: multipart bodies, streamed upstream as they arrive.
    let maxUploadBytes: Int
    let receipts: ReceiptIssuer
    let e2ee: E2EESessionPolicy
    /// Opens E2EE v3 envelopes with the rotating v3 keys.
    let v3: V3Codec
    /// How v3 answers are framed (`E2EE_V3_PAD_BYTES`, `E2EE_V3_COALESCE_MS`).
    let v3Framing: V3FramingSettings
    /// `E2EE_MIN_VERSION`.
    let minE2EEVersion: Int
    /// Where v2 nonces and v3 encapsulations are claimed: one namespace for every route.
    let replayGuard: any SharedStore
    let modelName: String

    /// Runs the request in a child task and returns its response; a stream's body then runs in the caller's
    /// (the connection's) task.
    ///
    /// A task keeps the stack memory its deepest call needed until it ends. The request phase (decode, E2EE,
    /// the upstream call) is the deepest; run in the connection's task, its stack (~5 KB measured) stayed
    /// allocated for as long as a stream was open: at 10 000 streams, the difference to the 400 MB budget.
    func respond(
        to request: Request, logger: Logger, route: ProxyRoute, upstream: Upstream, admission: TrafficControl?
    ) async throws -> Response {
        try await withThrowingTaskGroup(of: Response.self) { group in
            group.addTask {
                try await run(request, logger: logger, route: route, upstream: upstream, admission: admission)
            }
            return try await group.next()!
        }
    }

    private func run(
        _ request: Request, logger: Logger, route: ProxyRoute, upstream: Upstream, admission: TrafficControl?
    ) async throws -> Response {
        var timing = UpstreamTiming(route: route.path)
        let inFlight = receipts.metrics.completionStarted()
        let sent =
            switch route.body {
            case .json:
                try await sendJSON(
                    request, route: route, upstream: upstream, admission: admission, timing: &timing, logger: logger)
            case .multipart:
                try await sendUpload(
                    request, route: route, upstream: upstream, admission: admission, timing: &timing, logger: logger)
            }
        let answer = sent.answer
        let protection = sent.protection
        let response = answer.response
        var headers = HTTPFields()
        for (name, value) in sent.e2eeHeaders { headers[HTTPField.Name(name)!] = value }
        var chutes: ChutesReceipt?
        if upstream.name == .chutes {
            chutes = ChutesReceipt(
                transport: upstream.transport.name, instanceID: answer.instanceID, attestation: answer.attestation)
            headers[.proxyUpstreamTransport] = upstream.transport.name
        }

        // A status that cannot carry a body where a completion was expected (SPEC §2): relaying it with one
        // would desynchronise the client's keep-alive connection.
        if response.status < 200 || response.status == 204 || response.status == 304 {
            var error = ProxyError.upstreamUnavailable(
                upstream.name.rawValue, "answered HTTP \(response.status) without a body")
            error.headers = headers
            throw error
        }
        guard (200..<300).contains(response.status) else {
            if case .whole(let session) = protection {
                return try await sealedError(
                    response, session: session, upstream: upstream, headers: headers, logger: logger)
            }
            return try await passThroughError(
                response, upstream: upstream, headers: headers, sealed: protection.isEncrypted, logger: logger)
        }
        // Answers without an id of their own are named by the proxy, before the head goes out.
        var fixedChatID: String?
        if case .proxyMade(let prefix) = route.receipt {
            let chatID = prefix + "-" + Hex.encode(SecureRandom.bytes(16))
            headers[.chatID] = chatID
            fixedChatID = chatID
        }
        let context: ReceiptContext? =
            if case .none = route.receipt { nil } else {
                ReceiptContext(
                    requestHash: sent.requestHash, upstream: upstream.name, chutes: chutes, fixedChatID: fixedChatID)
            }
        // Under v3, and for uploads (whose form the proxy does not read), the envelope follows what the
        // upstream sent (SPEC §4.3); otherwise what the request asked.
        let streams =
            if let asked = sent.streamRequested { asked } else {
                response.contentType?.lowercased().hasPrefix("text/event-stream") ?? false
            }
        let tickets = Tickets(slot: sent.ticket, inFlight: inFlight)
        if streams {
            return relayStream(
                response, upstream: upstream, headers: headers, receipt: context, protection: protection,
                tickets: tickets, timing: timing, logger: logger)
        }
        // A whole answer is held by each of these until they go out of scope: handed over instead, it can be
        // let go of as soon as relayJSON has read it (issue #20).
        _ = consume sent
        _ = consume answer
        return try await relayJSON(
            consume response, upstream: upstream, headers: headers, receipt: context, protection: protection,
            tickets: tickets, timing: timing, logger: logger)
    }

    /// A request on its way: what the rest of the pipeline needs from the request side.
    private struct Sent {
        let answer: UpstreamAnswer
        let protection: ResponseProtection
        let e2eeHeaders: [(name: String, value: String)]
        /// Of the exact bytes received; for an upload, nil when its body did not reach its end (no receipt).
        let requestHash: String?
        let ticket: SlotTicket?
        /// Whether the request asked for a stream; nil: the answer's content type decides.
        let streamRequested: Bool?
    }

    /// A JSON body: read whole (up to `MAX_BODY_BYTES`), validated, opened when sealed, then sent.
    private func sendJSON(
        _ request: Request, route: ProxyRoute, upstream: Upstream, admission: TrafficControl?,
        timing: inout UpstreamTiming, logger: Logger
    ) async throws -> Sent {
        let mode = try e2eeMode(request, route: route)
        let body = try await readBody(request)
        // Only a fully read request takes a slot: a client trickling its body holds none (SPEC §3).
        let ticket = try admission?.admit(premium: request.headers[.userTier]?.lowercased() == "premium")
        // Under E2EE the request hash is always over the bytes received: an `X-Request-Hash` would be the
        // gateway's word, and the gateway is the party E2EE guards against (SPEC §5).
        let requestHash: String
        var decoded: DecodedRequest
        let protection: ResponseProtection
        switch mode {
        case .plain:
            requestHash = try self.requestHash(request) ?? SHA256.hash(data: body.readableBytesView).hex
            decoded = try DecodedRequest(bytes: body)
            protection = .none
        case .encrypted(let session):
            requestHash = SHA256.hash(data: body.readableBytesView).hex
            decoded = try DecodedRequest(bytes: body)
            protection = .fields(try await open(&decoded, session: session))
            decoded.saltCache(keepClient: false)
        case .sealedV3:
            requestHash = SHA256.hash(data: body.readableBytesView).hex
            let session: V3Session
            (decoded, session) = try await openV3(body, route: route.path)
            protection = .whole(session)
            if route.prefixCache { decoded.saltCache(keepClient: true) }
            if decoded.isStream, route.streamUsage { decoded.requestStreamUsage() }
        }

        timing.upstreamWaitBegins()
        let answer = try await upstream.sendCompletion(path: route.upstreamPath, request: decoded, logger: logger)
        receipts.metrics.recordUpstreamTTFB(upstream: upstream.name, timing.upstreamWaitEnds())
        let e2eeHeaders: [(name: String, value: String)] =
            if case .whole(let session) = protection { session.responseHeaders } else if route.fieldE2EE {
                mode.responseHeaders
            } else { [] }
        return Sent(
            answer: answer, protection: protection, e2eeHeaders: e2eeHeaders, requestHash: requestHash,
            ticket: ticket,
            streamRequested: protection.isWhole ? nil : decoded.isStream)
    }

    /// A multipart upload (audio): streamed to the upstream as it arrives, hashed on the way, never held whole
    /// or parsed (the upstream reads the form). It takes its slot before its body: it cannot be read first.
    private func sendUpload(
        _ request: Request, route: ProxyRoute, upstream: Upstream, admission: TrafficControl?,
        timing: inout UpstreamTiming, logger: Logger
    ) async throws -> Sent {
        let fields = request.headers
        let e2eeNames: [HTTPField.Name] = [
            .e2eeVersion, .signingAlgo, .clientPublicKey, .modelPublicKey, .e2eeNonce, .e2eeTimestamp,
        ]
        if e2eeNames.contains(where: { fields[$0] != nil }) {
            throw ProxyError(
                .badRequest, type: "invalid_e2ee_request", message: "E2EE is not supported on \(route.path)")
        }
        guard let contentType = fields[.contentType], Self.isMultipartFormData(contentType) else {
            throw ProxyError.invalidRequest("Request body must be multipart/form-data with a boundary")
        }
        let declared = try declaredLength(request, limit: maxUploadBytes)
        let givenHash = try requestHash(request)
        let ticket = try admission?.admit(premium: fields[.userTier]?.lowercased() == "premium")
        let upload = UploadDigest()
        let limit = maxUploadBytes
        timing.upstreamWaitBegins()
        let response = try await upstream.sendStreamingBody(
            path: route.upstreamPath, contentType: contentType, contentLength: declared, logger: logger
        ) { writer in
            var hasher = SHA256()
            try await forEachBodyPart(request, limit: limit, declared: declared) { part in
                hasher.update(data: part.readableBytesView)
                try await writer.write(part)
            }
            upload.finish(hasher.finalize().hex)
        }
        receipts.metrics.recordUpstreamTTFB(upstream: upstream.name, timing.upstreamWaitEnds())
        return Sent(
            answer: UpstreamAnswer(response: response, instanceID: nil), protection: .none, e2eeHeaders: [],
            requestHash: upload.digest.map { givenHash ?? $0 }, ticket: ticket, streamRequested: nil)
    }

    /// `multipart/form-data` with a non-empty boundary parameter (any case, optional whitespace).
    static func isMultipartFormData(_ contentType: String) -> Bool {
        let parts = contentType.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
        guard let type = parts.first, type.lowercased() == "multipart/form-data" else { return false }
        return parts.dropFirst().contains { parameter in
            let pair = parameter.split(separator: "=", maxSplits: 1)
            return pair.count == 2 && pair[0].trimmingCharacters(in: .whitespaces).lowercased() == "boundary"
                && !pair[1].trimmingCharacters(in: CharacterSet(charactersIn: "\" ")).isEmpty
        }
    }

    // MARK: E2EE

    /// Validates the E2EE headers before the body is even read: v1/v2 only on chat completions, v3 on every
    /// route, and nothing below `E2EE_MIN_VERSION`.
    private func e2eeMode(_ request: Request, route: ProxyRoute) throws(ProxyError) -> E2EEMode {
        let fields = request.headers
        let headers = E2EEHeaders(
            signingAlgo: fields[.signingAlgo], clientPublicKey: fields[.clientPublicKey],
            modelPublicKey: fields[.modelPublicKey], version: fields[.e2eeVersion], nonce: fields[.e2eeNonce],
            timestamp: fields[.e2eeTimestamp])
        if !route.fieldE2EE, !headers.isVersion3, !headers.isEmpty {
            throw ProxyError(
                .badRequest, type: "invalid_e2ee_request",
                message: "E2EE v1/v2 is only supported on /v1/chat/completions")
        }
        let mode: E2EEMode
        do throws(E2EEError) {
            mode = try e2ee.parse(headers, now: Int(Date().timeIntervalSince1970))
            if let version = mode.version, version < minE2EEVersion {
                throw E2EEError.versionNotAllowed(minimum: minE2EEVersion)
            }
        } catch {
            throw ProxyError(error)
        }
        return mode
    }

    /// The replay claims' lifetime (v2 and v3): a timestamp up to a window ahead of the clock stays acceptable
    /// until a window after that, so a shorter claim could expire while its request can still be replayed.
    private var replayClaimLifetime: Duration { .seconds(2 * e2ee.replayWindow + 1) }

    /// SPEC §4.3's protocol errors in order: the envelope's shape, time, key, HPKE open and the opened object
    /// (all in `V3Codec`), then the replay claim, made only once the request proved genuine.
    private func openV3(_ body: ByteBuffer, route: String) async throws(ProxyError) -> (DecodedRequest, V3Session) {
        let envelope: V3Envelope
        let object: JSONObject
        let session: V3Session
        do throws(E2EEError) {
            envelope = try V3Envelope(parsing: body.readableBytesView)
            (object, session) = try v3.open(envelope, route: route, now: Int(Date().timeIntervalSince1970))
        } catch {
            throw ProxyError(error)
        }
        try await claim(session.replayKey(modelName: modelName))
        return (DecodedRequest(opened: object, envelope: body, stream: envelope.stream), session)
    }

    private func claim(_ key: String) async throws(ProxyError) {
        switch await replayGuard.claim(key, ttl: replayClaimLifetime) {
        case .claimed: return
        case .alreadyClaimed: throw ProxyError(E2EEError.replayDetected)
        case .full: throw ProxyError.replayStoreFull
        case .unavailable: throw ProxyError.replayStoreUnavailable
        }
    }

    /// Decrypts a v1/v2 request in place, then claims the v2 nonce (only once decryption proved the request
    /// genuine, so garbage cannot burn a client's nonce); returns the sealer for the response.
    private func open(_ decoded: inout DecodedRequest, session: E2EESession) async throws(ProxyError)
        -> ResponseSealer
    {
        do throws(E2EEError) {
            try decoded.update { json throws(E2EEError) in
                var value = JSONValue.object(json)
                try e2ee.openRequest(&value, session: session)
                json = value.objectValue ?? json
            }
        } catch {
            throw ProxyError(error)
        }
        if let key = session.replayKey(modelName: modelName) { try await claim(key) }
        do throws(E2EEError) {
            return try e2ee.responseSealer(for: session)
        } catch {
            throw ProxyError(error)
        }
    }

    // MARK: Admission and decode

    /// The `Content-Length` a request declares, refused at once when over `limit` (nothing of it is read).
    private func declaredLength(_ request: Request, limit: Int) throws(ProxyError) -> Int? {
        guard let length = request.headers[.contentLength].flatMap({ Int($0) }) else { return nil }
        if length > limit { throw .tooLarge(limit: limit) }
        return length
    }

    private func readBody(_ request: Request) async throws(ProxyError) -> ByteBuffer {
        let declared = try declaredLength(request, limit: maxBodyBytes)
        var collected = ByteBuffer()
        do {
            try await forEachBodyPart(request, limit: maxBodyBytes, declared: declared) {
                collected.writeImmutableBuffer($0)
            }
        } catch let error as ProxyError {
            throw error
        } catch {
            throw .invalidRequest("The request body could not be read")  // `consume` above cannot throw
        }
        return collected
    }

    /// Reads a request body part by part (at most `limit` bytes in all), handing each to `consume`, with SPEC
    /// §2's errors for a body too large, too slow, cut short or unreadable; what `consume` throws (a failed write
    /// upstream) passes as it is. JSON bodies are collected through it, uploads streamed.
    private func forEachBodyPart(
        _ request: Request, limit: Int, declared: Int?, _ consume: (ByteBuffer) async throws -> Void
    ) async throws {
        var total = 0
        do {
            for try await part in request.body {
                total += part.readableBytes
                guard total <= limit else { throw ProxyError.tooLarge(limit: limit) }
                try await consume(part)
            }
        } catch let error as ProxyError {
            throw error
        } catch is RequestBodyTimeout {
            throw ProxyError.requestTimeout
        } catch let error as UpstreamHTTPError {
            throw error
        } catch {
            if Task.isCancelled { throw ProxyError.clientClosedRequest }
            throw ProxyError.invalidRequest("The request body could not be read")
        }
        // A connection that ends mid-body ends the body stream as if it were complete: never take a short
        // body for a whole one.
        if Task.isCancelled { throw ProxyError.clientClosedRequest }
        if let declared, total != declared {
            throw ProxyError.invalidRequest("The request body ended before its Content-Length")
        }
    }

    /// `X-Request-Hash` from a trusted gateway (plain requests only; else SHA-256 of the exact bytes received).
    private func requestHash(_ request: Request) throws(ProxyError) -> String? {
        if let hash = request.headers[.requestHash] {
            // Exactly as the receipt text spells it: 64 lowercase hex characters.
            guard hash.utf8.count == 64,
                hash.utf8.allSatisfy({
                    (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0)
                        || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0)
                })
            else {
                throw .invalidRequest("X-Request-Hash must be a SHA-256 digest as 64 lowercase hex characters")
            }
            return hash
        }
        return nil
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

    /// An upstream's non-2xx answer to a v3 request, sealed whole with its status (SPEC §4.3): upstream errors
    /// echo the request, so they are content. An upstream holding our credential (Chutes) has its body
    /// replaced by the scrubbed message first: the key must not reach the client, sealed or not.
    private func sealedError(
        _ response: UpstreamResponse, session: V3Session, upstream: Upstream, headers: HTTPFields, logger: Logger
    ) async throws -> Response {
        let body = try await upstream.collect(response, logger: logger)
        logger.info("upstream answered an error", metadata: ["status": "\(response.status)"])
        var headers = headers
        do throws(ProxyError) {
            try upstream.checkCredentialAccepted(status: response.status)
        } catch {
            var error = error
            error.headers = headers
            throw error
        }
        var sealer = session.responseSealer()
        func envelope(_ plaintext: some DataProtocol) -> [UInt8] {
            V3Framing.jsonEnvelope(body: plaintext, sealer: &sealer, usage: nil, padBytes: v3Framing.padBytes)
        }
        let sealed: [UInt8]
        do throws(ProxyError) {
            // Sealed where it lies: an error body can be as large as any answer.
            sealed = envelope(try upstream.relayedError(status: response.status, body: body).readableBytesView)
        } catch {
            sealed = envelope(error.body)
        }
        headers[.contentType] = "application/json"
        return Response(
            status: .init(code: response.status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: sealed))
        )
    }

    private func relayJSON(
        _ response: consuming UpstreamResponse, upstream: Upstream, headers: HTTPFields, receipt: ReceiptContext?,
        protection: ResponseProtection, tickets: Tickets, timing: UpstreamTiming, logger: Logger
    ) async throws -> Response {
        var timing = timing
        timing.upstreamWaitBegins()
        var body = try await upstream.collect(response, logger: logger)
        timing.upstreamWaitEnds()
        let status = response.status
        var headers = headers
        headers[.contentType] = response.contentType ?? "application/json"
        _ = consume response  // `body` is now the answer's only holder (see `.fields`)
        let chatID: String?
        switch protection {
        case .whole(let session):
            // The whole body is sealed as the upstream sent it; only its id (for the receipt) and its usage's
            // numbers (shown in clear for billing) are read.
            let (id, usage) = body.withUnsafeReadableBytes { idAndUsage(in: $0) }
            chatID = id
            var sealer = session.responseSealer()
            let envelope = V3Framing.jsonEnvelope(
                body: body.readableBytesView, sealer: &sealer, usage: usage, padBytes: v3Framing.padBytes)
            // Into the clear answer's storage, which is not needed any more: not a third buffer the answer's size.
            body.clear()
            body.writeBytes(envelope)
            headers[.contentType] = "application/json"
        case .fields(let sealer):
            // Only what was sealed may leave: a body we cannot parse could carry plaintext.
            guard var sealed = try? JSONValue(parsing: body.readableBytesView) else {
                throw ProxyError.upstreamUnavailable(upstream.name.rawValue, "answered a body that is not JSON")
            }
            // An answer may be tens of MB and its sealed form twice that, so each form goes once the next is
            // made (issue #20): the upstream's bytes once parsed, the clear tree once sealed (`seal` replaces
            // it), the sealed tree once written into bytes of its exact size, before they are copied to the
            // buffer that is sent.
            body = ByteBuffer()
            do throws(E2EEError) { try sealer.seal(&sealed) } catch { throw ProxyError(error) }
            chatID = sealed["id"]?.stringValue
            var bytes: [UInt8] = []
            bytes.reserveCapacity(sealed.serializedCount)
            sealed.serialize(into: &bytes)
            sealed = .null
            body = ByteBuffer(bytes: bytes)
        case .none:
            // A plain answer passes as received: only its `id` is read, without building a tree.
            chatID = receipt?.fixedChatID == nil ? body.withUnsafeReadableBytes { answerID(in: $0) } : nil
        }
        // A client that went away while the answer was generated gets no receipt (SPEC §2).
        if Task.isCancelled { throw ProxyError.clientClosedRequest }
        if let receipt, let requestHash = receipt.requestHash, let chatID = receipt.fixedChatID ?? chatID {
            await receipts.issue(
                chatID: chatID, requestHash: requestHash,
                responseHash: SHA256.hash(data: body.readableBytesView).hex, upstream: receipt.upstream,
                chutes: receipt.chutes)
        }
        // Like its duration, a body of known length's overhead ends when the response is handed over; so does
        // its slot: the whole body is queued at once, and a buffer body is written in one pass (head, body and
        // end together) where a closure body takes three.
        receipts.metrics.recordOverhead(route: timing.route, timing.overhead())
        tickets.release()
        return Response(status: .init(code: status), headers: headers, body: ResponseBody(byteBuffer: body))
    }

    private func relayStream(
        _ response: UpstreamResponse, upstream: Upstream, headers: HTTPFields, receipt: ReceiptContext?,
        protection: ResponseProtection, tickets: Tickets, timing: UpstreamTiming, logger: Logger
    ) -> Response {
        var headers = headers
        headers[.contentType] = "text/event-stream"
        headers[.cacheControl] = "no-cache"
        headers[.accelBuffering] = "no"
        let relay = StreamRelay(
            protection: protection, framing: v3Framing, upstream: upstream, receipt: receipt, receipts: receipts,
            logger: logger)
        return Response(
            status: .init(code: response.status), headers: headers,
            body: ResponseBody { writer in
                defer { tickets.release() }
                try await relay.run(response.body, to: &writer, timing: timing)
            })
    }
}

/// How an answer leaves: as received, with v1/v2's generated-text fields sealed, or whole under v3.
enum ResponseProtection: Sendable {
    case none
    case fields(ResponseSealer)
    case whole(V3Session)

    var isEncrypted: Bool {
        if case .none = self { false } else { true }
    }

    var isWhole: Bool {
        if case .whole = self { true } else { false }
    }
}

/// `E2EE_V3_PAD_BYTES` and `E2EE_V3_COALESCE_MS`, as the v3 framing uses them.
struct V3FramingSettings: Sendable {
    let padBytes: Int
    let coalesce: Duration
}

/// What a request holds until its last byte is sent or it fails: its basic-tier slot, if any, and its unit of
/// the in-flight gauge.
struct Tickets: Sendable {
    let slot: SlotTicket?
    let inFlight: InFlightTicket

    func release() {
        slot?.release()
        inFlight.release()
    }
}

/// The SHA-256 of an upload's body, set by the task streaming it once the body reached its end.
final class UploadDigest: Sendable {
    private let value = Mutex<String?>(nil)

    func finish(_ digest: String) { value.withLock { $0 = digest } }
    var digest: String? { value.withLock { $0 } }
}

/// What a receipt needs from the request side of the pipeline.
struct ReceiptContext: Sendable {
    /// nil when an upload's body did not reach its end: such an answer gets no receipt.
    let requestHash: String?
    let upstream: Upstream.Name
    let chutes: ChutesReceipt?
    /// The id the proxy made for a route whose answers have none (`ProxyRoute.ReceiptID.proxyMade`).
    var fixedChatID: String? = nil
}
