import AsyncHTTPClient
import ChutesAttestation
import ChutesE2EE
import JSON
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
import SSE
import UpstreamHTTP

/// How completions travel to an upstream: as plain HTTP(S), or sealed by Chutes' E2EE transport to the GPU
/// instance. The pipeline does not know which: either way it gets a plain answer back.
public enum UpstreamTransport: Sendable {
    case direct
    /// Sealed to the instance; the transport also enforces `CHUTES_TEE_ONLY`.
    case chutesE2EE(ChutesE2EETransport)
    /// TLS to Chutes, but only models listed as `confidential_compute` (`CHUTES_TEE_ONLY` without E2EE).
    case teeOnlyDirect(ChutesE2EETransport)
    /// TLS to Chutes; the relay client serves only discovery and evidence for `/v1/attestation/chain`.
    case chutesTLS(ChutesE2EETransport)

    /// As receipts and `X-Proxy-Upstream-Transport` spell it.
    var name: String {
        switch self {
        case .direct, .teeOnlyDirect, .chutesTLS: return "tls"
        case .chutesE2EE: return "e2ee"
        }
    }

    /// The Chutes relay client, whatever carries completions.
    var relay: ChutesE2EETransport? {
        switch self {
        case .direct: return nil
        case .chutesE2EE(let relay), .teeOnlyDirect(let relay), .chutesTLS(let relay): return relay
        }
    }
}

extension Upstream {
    /// Sends a request by this upstream's transport; the answer is plain either way. The request is the
    /// pipeline's decoded one: bytes for HTTP, the object for Chutes E2EE, so no body is parsed twice.
    func sendCompletion(path: String, request: DecodedRequest, logger: Logger) async throws(ProxyError)
        -> UpstreamAnswer
    {
        switch transport {
        case .direct, .chutesTLS:
            break
        case .chutesE2EE(let e2ee):
            return try await e2ee.complete(
                request.object, stream: request.isStream, path: path, upstream: self, logger: logger)
        case .teeOnlyDirect(let gate):
            try await gate.admit(request.object, logger: logger)
        }
        return UpstreamAnswer(
            response: try await send(
                .POST, path: path, body: request.forwardBytes, stream: request.isStream, logger: logger),
            instanceID: nil)
    }
}

/// A completion's answer as the pipeline relays it, and how it travelled.
struct UpstreamAnswer: Sendable {
    let response: UpstreamResponse
    /// The Chutes instance that served it under E2EE.
    let instanceID: String?
    /// Under E2EE, the receipt's `chutes_attestation` (SPEC §7.2): what was verified, or `{"verified": false}`.
    var attestation: JSONValue? = nil
}

/// How the Chutes relay client verifies instances (SPEC §7.2), decided at start-up.
struct ChutesAttestationSetup: Sendable {
    let verifier: ChutesEvidenceVerifier
    let ttl: Duration
    /// Requests are sealed only to verified instances (CHUTES_E2EE with verification on); otherwise the
    /// verifier serves only `/v1/attestation/chain`.
    let gatesInstances: Bool
    /// The PCCS client the verifier's collateral comes through (TDXCollateral's, AsyncHTTPClient: collateral is
    /// fetched rarely and cached); owned here so shutdown closes it.
    let pccsHTTP: HTTPClient
}

/// Chutes' E2EE transport over HTTPS: discovery (`/v1/models`, `/e2e/instances`) and `/e2e/invoke`, with
/// the nonce pool and chute cache shared by every request. Answers are opened here and handed on as plain
/// JSON or a plain event stream; anything that does not open is a 502, never relayed.
public struct ChutesE2EETransport: Sendable {
    let e2eBaseURL: String
    let client: ChutesE2EEClient
    let directory: ChutesHTTPDirectory
    let metrics: ProxyMetrics
    /// Fetches and judges instance evidence; nil without a measurement policy (`CHUTES_TDX_MEASUREMENTS_FILE`).
    let attestor: ChutesAttestor?
    /// Whether completions go only to instances the attestor admitted.
    let gatesInstances: Bool
    let pccsHTTP: HTTPClient?

    /// `api` serves `CHUTES_BASE_URL` (the Chutes upstream's own pool), `relay` `CHUTES_E2E_BASE_URL`: every
    /// byte of discovery, evidence and `/e2e/invoke` goes through UpstreamHTTP, like every other upstream byte.
    init(
        api: UpstreamConnectionPool, relay: UpstreamConnectionPool, e2eBaseURL: String, authorization: String,
        timeout: Duration, teeOnly: Bool, metrics: ProxyMetrics, attestation: ChutesAttestationSetup? = nil
    ) {
        self.e2eBaseURL = e2eBaseURL
        let directory = ChutesHTTPDirectory(
            api: api, relay: relay, e2eBaseURL: e2eBaseURL, authorization: authorization,
            timeout: min(ChutesHTTPDirectory.maxTimeout, timeout))
        self.directory = directory
        let attestor = attestation.map { setup in
            ChutesAttestor(
                verifier: setup.verifier, ttl: setup.ttl, observer: metrics.chutesAttestation
            ) { chuteID, nonce throws(ChutesE2EEError) in
                try await directory.fetchEvidence(chuteID: chuteID, nonce: nonce)
            }
        }
        self.attestor = attestor
        self.gatesInstances = attestation?.gatesInstances ?? false
        self.pccsHTTP = attestation?.pccsHTTP
        self.client = ChutesE2EEClient(
            directory: directory, teeOnly: teeOnly, gate: gatesInstances ? attestor : nil,
            observer: metrics.chutesE2EE)
        self.metrics = metrics
    }

    /// `chutes_attestation` for a receipt: what the gate verified, or `{"verified": false}` without a gate.
    func receiptAttestation(_ attested: AttestedInstance?) -> JSONValue {
        guard gatesInstances, let attested else { return ["verified": false] }
        return [
            "verified": true, "instance_id": .string(attested.instanceID), "mr_td": .string(attested.mrTD),
            "tcb_status": .string(attested.tcbStatus), "quote_sha256": .string(attested.quoteSHA256),
            "verified_at": .string(attested.verifiedAt),
        ]
    }

    /// `CHUTES_TEE_ONLY` for the TLS transport: the model must be listed as confidential before anything is sent.
    func admit(_ payload: JSONObject, logger: Logger) async throws(ProxyError) {
        do throws(ChutesE2EEError) {
            _ = try await client.chute(for: payload)
        } catch {
            throw failure(error, logger: logger)
        }
    }

    /// Sends one completion through the transport; `upstream` supplies the client, key and error mapping.
    func complete(_ payload: JSONObject, stream: Bool, path: String, upstream: Upstream, logger: Logger)
        async throws(ProxyError) -> UpstreamAnswer
    {
        let invocation: Invocation<UpstreamHTTPResponse>
        do {
            let chute = try await client.chute(for: payload)
            invocation = try await client.invoke(
                payload, chute: chute, stream: stream, path: path,
                send: { request in try await invoke(request, stream: stream, upstream: upstream) },
                status: { Int($0.status.code) })
        } catch let error as ChutesE2EEError {
            throw failure(error, logger: logger)
        } catch let error as ProxyError {
            throw error
        } catch {
            metrics.chutesE2EEError("transport")
            throw upstream.mapError(error, logger: logger)
        }
        let response = invocation.response
        switch response.status.code {
        case 200..<300:
            break
        case 403, 410:
            // Refused again after the one retry: the relay's own refusal, not the client's request.
            throw failure(.noInstances, logger: logger)
        default:
            return UpstreamAnswer(
                response: UpstreamResponse(response), instanceID: invocation.instanceID,
                attestation: receiptAttestation(invocation.attestation))
        }
        if stream {
            let decrypted = DecryptedEventStream(
                upstream: response.body, decoder: ChutesE2EEStreamDecoder(responseKey: invocation.responseKey),
                metrics: metrics)
            let plain = UpstreamResponse(status: 200, contentType: "text/event-stream", body: .decrypted(decrypted))
            return UpstreamAnswer(
                response: plain, instanceID: invocation.instanceID,
                attestation: receiptAttestation(invocation.attestation))
        }
        let sealed = try await upstream.collect(UpstreamResponse(response), logger: logger)
        let json: [UInt8]
        do throws(ChutesE2EEError) {
            // The opened answer is held whole like any other (SPEC §2, UPSTREAM_MAX_RESPONSE_BYTES), however well
            // it compressed: the inflation stops there, so a small blob cannot cost more memory than that.
            json = try invocation.responseKey.openResponse(sealed.readableBytesView, limit: upstream.maxResponseBytes)
        } catch {
            throw failure(error, logger: logger)
        }
        let plain = UpstreamResponse(
            status: 200, contentType: "application/json", body: .pooled(.complete(ByteBuffer(bytes: json))))
        return UpstreamAnswer(
            response: plain, instanceID: invocation.instanceID, attestation: receiptAttestation(invocation.attestation))
    }

    /// One POST to `/e2e/invoke`: a sealed answer is held whole (at most `UPSTREAM_MAX_RESPONSE_BYTES`, like
    /// any answer), a sealed stream is streamed; the read timeout is the upstream's.
    private func invoke(_ request: InvokeRequest, stream: Bool, upstream: Upstream) async throws
        -> UpstreamHTTPResponse
    {
        var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: "/e2e/invoke")
        head.headers.add(name: "Authorization", value: directory.authorization)
        for header in request.headers { head.headers.add(name: header.name, value: header.value) }
        return try await directory.relay.execute(
            head, body: ByteBuffer(bytes: request.blob),
            mode: stream ? .stream : .collect(limit: upstream.maxResponseBytes), readTimeout: upstream.timeout)
    }

    /// The one place E2EE transport failures become HTTP; messages name no key, nonce or plaintext.
    private func failure(_ error: ChutesE2EEError, logger: Logger) -> ProxyError {
        logger.warning("chutes e2ee failed", metadata: ["reason": "\(error)"])
        switch error {
        case .unknownModel:
            return ProxyError(.notFound, type: "model_not_found", message: "The model is not served by Chutes")
        case .notConfidential:
            return ProxyError(
                .forbidden, type: "chutes_model_not_confidential",
                message: "The model does not run in confidential compute on Chutes (CHUTES_TEE_ONLY is set)")
        case .directoryStatus(let status) where status == 401 || status == 403:
            return ProxyError(
                .serviceUnavailable, type: "chutes_misconfigured",
                message: "The chutes upstream refused the configured API key (HTTP \(status))")
        case .directoryStatus(let status):
            metrics.chutesE2EEError("discovery")
            return .upstreamUnavailable("chutes", "E2EE discovery answered HTTP \(status)")
        case .timeout:
            metrics.chutesE2EEError("timeout")
            return .upstreamTimeout("chutes")
        case .transport(let why):
            metrics.chutesE2EEError("transport")
            return .upstreamUnavailable("chutes", why)
        case .noInstances:
            metrics.chutesE2EEError("no_instance")
            return .upstreamUnavailable("chutes", "no E2EE instance accepted the request")
        case .attestationFailed:
            metrics.chutesE2EEError("attestation")
            return .chutesAttestationFailed
        case .malformed, .decryptionFailed, .sealFailed:
            metrics.chutesE2EEError("decrypt")
            return .upstreamUnavailable("chutes", "its E2EE answer could not be opened")
        }
    }
}

/// `/v1/models`, `/e2e/instances` and instance evidence over HTTPS with the Chutes key, through the pooled
/// client; nothing of a listing or the key is logged.
struct ChutesHTTPDirectory: ChutesE2EEDirectory {
    /// `CHUTES_BASE_URL` (the Chutes upstream's pool): `/v1/models`.
    let api: UpstreamConnectionPool
    /// `CHUTES_E2E_BASE_URL`: `/e2e/instances`, `/chutes/{id}/evidence`, `/e2e/invoke`.
    let relay: UpstreamConnectionPool
    let e2eBaseURL: String
    /// `Bearer <key>`: a secret.
    let authorization: String
    /// `UPSTREAM_TIMEOUT_SECONDS`, but at most `maxTimeout`: a listing is small, and requests wait for it.
    let timeout: Duration
    static let maxTimeout: Duration = .seconds(30)
    static let maxListingBytes = 8 << 20

    func fetchModels() async throws(ChutesE2EEError) -> [ChuteModel] {
        try ChuteModel.parseListing(try await get(api, "/v1/models").readableBytesView)
    }

    func fetchInstances(chuteID: String) async throws(ChutesE2EEError) -> InstanceListing {
        try InstanceListing.parse(try await get(relay, "/e2e/instances/" + chuteID).readableBytesView)
    }

    /// `GET {CHUTES_E2E_BASE_URL}/chutes/{chute_id}/evidence?nonce=` (SPEC §7.2). The chute id is a checked
    /// token (from the listing, or refused by the route) and the nonce is hex, so the URL needs no escaping.
    func fetchEvidence(chuteID: String, nonce: String) async throws(ChutesE2EEError) -> [UInt8] {
        let path = "/chutes/" + chuteID + "/evidence?nonce=" + nonce
        return Array(try await get(relay, path, limit: ChutesEvidence.maxBytes).readableBytesView)
    }

    private func get(_ pool: UpstreamConnectionPool, _ path: String, limit: Int = maxListingBytes)
        async throws(ChutesE2EEError) -> ByteBuffer
    {
        var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: path)
        head.headers.add(name: "Authorization", value: authorization)
        do {
            let response = try await pool.execute(
                head, body: nil, mode: .collect(limit: limit), readTimeout: TimeAmount(timeout))
            guard (200..<300).contains(response.status.code) else {
                throw ChutesE2EEError.directoryStatus(Int(response.status.code))
            }
            return try await response.body.collect(upTo: limit)
        } catch let error as ChutesE2EEError {
            throw error
        } catch let error as UpstreamHTTPError where error == .readTimeout || error == .poolTimeout {
            throw .timeout
        } catch {
            throw .transport("E2EE discovery request failed")
        }
    }
}

/// An E2EE event stream from `/e2e/invoke`, opened event by event into the plain events the instance wrote.
/// A chunk that does not open ends the stream with an error (the pipeline turns it into its in-band error
/// event and stores no receipt); an unterminated event at the end is dropped.
struct DecryptedEventStream: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let upstream: UpstreamHTTPBody
    let decoder: ChutesE2EEStreamDecoder
    let metrics: ProxyMetrics

    /// The relay's body, read the way the pooled client hands it over.
    struct Chunks {
        var whole: ByteBuffer?
        var stream: UpstreamBodyStream.AsyncIterator?

        mutating func next() async throws -> ByteBuffer? {
            if let buffer = whole {
                whole = nil
                return buffer
            }
            return try await stream?.next()
        }
    }

    struct AsyncIterator: AsyncIteratorProtocol {
        var upstream: Chunks
        var decoder: ChutesE2EEStreamDecoder
        var splitter = SSEEventSplitter()
        let metrics: ProxyMetrics
        /// `[DONE]` arrived (clear or sealed): nothing but the stream's normal end may follow.
        var sawDone = false
        var finished = false

        mutating func next() async throws -> ByteBuffer? {
            if finished { return nil }
            while let chunk = try await upstream.next() {
                var out = ByteBuffer()
                let events: [ByteBuffer]
                do {
                    events = try splitter.append(chunk)
                } catch {
                    throw ProxyError.upstreamEventTooLarge("chutes", limit: error.limit)
                }
                for event in events {
                    guard let data = sseData(of: event) else { continue }
                    let output: ChutesE2EEStreamDecoder.Output
                    do throws(ChutesE2EEError) {
                        output = try decoder.decode(data)
                    } catch {
                        metrics.chutesE2EEError("decrypt")
                        throw ProxyError.upstreamUnavailable("chutes", "its E2EE stream could not be opened")
                    }
                    switch output {
                    case .nothing: break
                    case .done: sawDone = true
                    case .event(let bytes), .error(let bytes):
                        // After [DONE] the instance sends nothing more: anything else is the relay's.
                        guard !sawDone else {
                            metrics.chutesE2EEError("after_done")
                            throw ProxyError.upstreamUnavailable("chutes", "its E2EE stream went on after [DONE]")
                        }
                        out.writeBytes(bytes)
                    }
                }
                if out.readableBytes > 0 { return out }
            }
            // The upstream ended normally. The client's [DONE] is the proxy's, written only now, and only when the
            // stream announced its end: one that stops short of it was cut, and gets no receipt (SPEC §7.2).
            finished = true
            guard sawDone else {
                metrics.chutesE2EEError("truncated")
                throw ProxyError.upstreamUnavailable("chutes", "its E2EE stream ended before [DONE]")
            }
            return ByteBuffer(string: "data: [DONE]\n\n")
        }
    }

    func makeAsyncIterator() -> AsyncIterator {
        let chunks =
            switch upstream {
            case .complete(let buffer): Chunks(whole: buffer)
            case .stream(let stream): Chunks(stream: stream.makeAsyncIterator())
            }
        return AsyncIterator(upstream: chunks, decoder: decoder, metrics: metrics)
    }
}

extension ChutesE2EETransport: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// Never the key: the transport holds it (through its directory) and may end up in a log line.
    public var description: String { "ChutesE2EETransport(\(e2eBaseURL), teeOnly: \(client.teeOnly))" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: ["description": description]) }
}

extension ChutesHTTPDirectory: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    var description: String { "ChutesHTTPDirectory(\(api.endpoint), \(e2eBaseURL), authorization: redacted)" }
    var debugDescription: String { description }
    var customMirror: Mirror { Mirror(self, children: ["description": description]) }
}
