import HTTPTypes
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
import UpstreamHTTP

/// Where a completion goes: the only thing that differs between the vLLM and the Chutes chat routes.
///
/// Built once at start-up with its own connection pool, so no request pays for client or TLS set-up. A class:
/// every request's async frames hold it, and a pointer is smaller than its fields.
public final class Upstream: Sendable {
    /// The upstream's name as receipts and metrics spell it.
    public enum Name: String, Sendable {
        case vllm, chutes
    }

    public let name: Name
    public let baseURL: String
    /// The full `Authorization` header value sent upstream, if any. A secret: never logged.
    let authorization: String?
    /// Keep-alive connections on the requesting task's own event loop (see `UpstreamConnectionPool`).
    let pool: UpstreamConnectionPool
    /// The idle-read timeout: the longest silence between two bytes of an answer (also between stream chunks).
    let timeout: TimeAmount
    /// How completions travel (Chutes: TLS, or Chutes' own E2EE to the GPU instance).
    public let transport: UpstreamTransport
    /// Largest answer held whole — non-streamed, to hash, sign, seal or read it (`UPSTREAM_MAX_RESPONSE_BYTES`);
    /// beyond it `502 upstream_unavailable`.
    let maxResponseBytes: Int

    public init(
        name: Name, baseURL: String, authorization: String?, pool: UpstreamConnectionPool, timeout: Duration,
        maxResponseBytes: Int = 16 << 20, transport: UpstreamTransport = .direct
    ) {
        self.name = name
        self.baseURL = baseURL
        self.authorization = authorization
        self.pool = pool
        self.timeout = TimeAmount(timeout)
        self.maxResponseBytes = maxResponseBytes
        self.transport = transport
    }

    /// Sends one request and returns once the response head has arrived — with the whole body when `stream`
    /// is false (collected on the event loop, up to `maxResponseBytes`), else with a stream of it.
    func send(
        _ method: HTTPMethod, path: String, body: ByteBuffer?, stream: Bool = false, timeout: Duration? = nil,
        logger: Logger
    ) async throws(ProxyError) -> UpstreamResponse {
        var headers = HTTPHeaders()
        if body != nil { headers.add(name: "Content-Type", value: "application/json") }
        if let authorization { headers.add(name: "Authorization", value: authorization) }
        let head = HTTPRequestHead(version: .http1_1, method: method, uri: path, headers: headers)
        do {
            return UpstreamResponse(
                try await pool.execute(
                    head, body: body, mode: stream ? .stream : .collect(limit: maxResponseBytes),
                    readTimeout: timeout.map(TimeAmount.init) ?? self.timeout))
        } catch {
            throw mapError(error, logger: logger)
        }
    }

    /// Sends a POST whose body `pump` streams (an upload, never held whole) and returns at the answer's head,
    /// its body streamed. The pump's own errors (the client's body too large, too slow, cut short) are what
    /// this throws; the upstream connection is then closed, so a partial body is never taken for a whole one.
    func sendStreamingBody(
        path: String, contentType: String, contentLength: Int?, logger: Logger,
        pump: @escaping @Sendable (UpstreamRequestBodyWriter) async throws -> Void
    ) async throws(ProxyError) -> UpstreamResponse {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        if let contentLength {
            headers.add(name: "Content-Length", value: String(contentLength))
        } else {
            headers.add(name: "Transfer-Encoding", value: "chunked")
        }
        if let authorization { headers.add(name: "Authorization", value: authorization) }
        let head = HTTPRequestHead(version: .http1_1, method: .POST, uri: path, headers: headers)
        do {
            return UpstreamResponse(
                try await pool.execute(head, streamingBody: pump, mode: .stream, readTimeout: timeout))
        } catch {
            throw mapError(error, logger: logger)
        }
    }

    /// Closes its connections (and the Chutes E2EE relay's, and its PCCS client); call once the server has stopped.
    public func shutdown() async {
        await pool.shutdown()
        if let relay = transport.relay {
            await relay.directory.relay.shutdown()
            try? await relay.pccsHTTP?.shutdown()
        }
    }

    /// Reads a whole (non-streamed) response body, up to `maxResponseBytes`; transport failures map like
    /// `send`'s.
    func collect(_ response: UpstreamResponse, logger: Logger) async throws(ProxyError) -> ByteBuffer {
        do {
            return try await response.body.collect(upTo: maxResponseBytes)
        } catch {
            throw mapError(error, logger: logger)
        }
    }

    /// What the client gets when this upstream answers non-2xx. vLLM (no credential of ours) passes
    /// through: its status and body. An upstream holding our API key (Chutes) could echo it in any form —
    /// raw, JSON-escaped, URL-encoded, masked, split across fields — so its body never passes: the client
    /// gets its status with a message rebuilt from the parsed `detail` / `error.message`, and a generic one
    /// whenever any part of the body resembles the key (`CredentialScrubber`). A refused credential
    /// (401/403) is our misconfiguration, not the client's: `503 {name}_misconfigured`.
    func relayedError(status: Int, body: ByteBuffer) throws(ProxyError) -> ByteBuffer {
        try checkCredentialAccepted(status: status)
        guard let authorization else { return body }
        let scrubber = CredentialScrubber(secret: String(authorization.dropFirst("Bearer ".count)))
        let generic = "The \(name.rawValue) upstream answered HTTP \(status)"
        let message = scrubber.safeMessage(fromErrorBody: Array(body.readableBytesView)).map { "\(generic): \($0)" }
        throw ProxyError(.init(code: status), type: "upstream_error", message: message ?? generic)
    }

    /// A 401/403 from an upstream holding our credential means the credential was refused: `503
    /// {name}_misconfigured`, whatever else the answer says and whether or not the request was E2EE.
    func checkCredentialAccepted(status: Int) throws(ProxyError) {
        guard authorization != nil, status == 401 || status == 403 else { return }
        throw ProxyError(
            .serviceUnavailable, type: "\(name.rawValue)_misconfigured",
            message: "The \(name.rawValue) upstream refused the configured API key (HTTP \(status))")
    }

    /// The one place transport failures become `502 upstream_unavailable` or `504 upstream_timeout`.
    func mapError(_ error: any Error, logger: Logger) -> ProxyError {
        if let error = error as? ProxyError { return error }  // already decided (E2EE stream failures)
        // Cancelled because the client went away: the upstream is fine, and the request is abandoned.
        if Task.isCancelled || error is CancellationError || (error as? UpstreamHTTPError) == .cancelled {
            logger.debug("upstream request cancelled: the client went away", metadata: ["upstream": "\(name.rawValue)"])
            return .clientClosedRequest
        }
        if (error as? UpstreamHTTPError) == .readTimeout {
            logger.warning("upstream timed out", metadata: ["upstream": "\(name.rawValue)"])
            return .upstreamTimeout(name.rawValue)
        }
        if (error as? UpstreamHTTPError) == .poolTimeout {
            // Nothing was sent: every connection stayed busy for the whole timeout (UPSTREAM_MAX_CONNECTIONS).
            logger.warning("no upstream connection came free in time", metadata: ["upstream": "\(name.rawValue)"])
            return .upstreamTimeout(name.rawValue)
        }
        if Self.isTooLarge(error) {
            logger.warning(
                "upstream answer over UPSTREAM_MAX_RESPONSE_BYTES",
                metadata: ["upstream": "\(name.rawValue)", "limit": "\(maxResponseBytes)"])
            return .upstreamUnavailable(name.rawValue, "answered a body over \(maxResponseBytes) bytes")
        }
        // The description of transport errors names hosts and OS errors, never credentials.
        logger.warning("upstream unreachable", metadata: ["upstream": "\(name.rawValue)", "error": "\(error)"])
        return .upstreamUnavailable(name.rawValue, Self.describe(error))
    }

    /// A whole answer over its limit.
    private static func isTooLarge(_ error: any Error) -> Bool {
        if case .bodyTooLarge = error as? UpstreamHTTPError { return true }
        return error is NIOTooManyBytesError
    }

    private static func describe(_ error: any Error) -> String {
        if let error = error as? UpstreamHTTPError {
            switch error {
            case .connectFailed(let reason): return reason
            case .connectTimeout: return "connection timed out"
            case .connectionClosed: return "connection closed by upstream"
            case .bodyTooLarge(let limit): return "answered a body over \(limit) bytes"
            case .invalidResponse: return "answered malformed HTTP"
            case .readTimeout, .poolTimeout, .cancelled, .shutDown: return "request failed"
            }
        }
        let text = String(describing: error).lowercased()
        if text.contains("refused") { return "connection refused" }
        if text.contains("ssl") || text.contains("tls") || text.contains("certificate") { return "TLS failure" }
        return "connection failed"
    }
}

extension Upstream: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// Never the credential: an `Upstream` may end up in a log line (service descriptions, debugging).
    public var description: String {
        "Upstream(\(name.rawValue), \(baseURL), authorization: \(authorization == nil ? "none" : "redacted"))"
    }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: ["description": description]) }
}
