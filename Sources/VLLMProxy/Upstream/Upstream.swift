import AsyncHTTPClient
import HTTPTypes
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL

/// Where a completion goes: the only thing that differs between the vLLM and the Chutes chat routes.
///
/// Built once at start-up with its own pooled `HTTPClient`, so no request pays for client or TLS set-up.
public struct Upstream: Sendable {
    /// The upstream's name as receipts and metrics spell it.
    public enum Name: String, Sendable {
        case vllm, chutes
    }

    public let name: Name
    public let baseURL: String
    /// The full `Authorization` header value sent upstream, if any. A secret: never logged.
    let authorization: String?
    let client: HTTPClient
    let timeout: TimeAmount
    /// How completions travel (Chutes: TLS, or Chutes' own E2EE to the GPU instance).
    public let transport: UpstreamTransport

    public init(
        name: Name, baseURL: String, authorization: String?, client: HTTPClient, timeout: Duration,
        transport: UpstreamTransport = .direct
    ) {
        self.name = name
        self.baseURL = baseURL
        self.authorization = authorization
        self.client = client
        self.timeout = TimeAmount(timeout)
        self.transport = transport
    }

    /// A client configured for one upstream: pooled keep-alive connections, an idle-read timeout that bounds
    /// the silence between two stream chunks, and no automatic decompression (bytes pass through as sent).
    ///
    /// `retryConnect: false` suits a local upstream (vLLM beside us): a refused connection means it is down,
    /// and the client should get its 502 at once rather than after the connect timeout's worth of retries.
    public static func makeClient(timeout: Duration, retryConnect: Bool, tls: TLSConfigurationChoice = .system)
        -> HTTPClient
    {
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: .seconds(10), read: TimeAmount(timeout))
        configuration.connectionPool = .init(
            idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 1024)
        configuration.connectionPool.retryConnectionEstablishment = retryConnect
        configuration.decompression = .disabled
        configuration.redirectConfiguration = .disallow
        if case .custom(let tlsConfiguration) = tls { configuration.tlsConfiguration = tlsConfiguration }
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }

    /// Sends one request and returns once the response head has arrived; the body streams afterwards.
    func send(_ method: HTTPMethod, path: String, body: ByteBuffer?, timeout: Duration? = nil, logger: Logger)
        async throws(ProxyError) -> HTTPClientResponse
    {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(body)
        }
        if let authorization { request.headers.add(name: "Authorization", value: authorization) }
        do {
            return try await client.execute(
                request, timeout: timeout.map(TimeAmount.init) ?? self.timeout, logger: Self.clientLogger(logger))
        } catch {
            throw mapError(error, logger: logger)
        }
    }

    /// Largest non-streamed body held whole (to hash, sign or seal it).
    static let maxBodyBytes = 64 << 20

    /// Reads a whole (non-streamed) response body; transport failures map like `send`'s.
    func collect(_ response: HTTPClientResponse, logger: Logger) async throws(ProxyError) -> ByteBuffer {
        do {
            return try await response.body.collect(upTo: Self.maxBodyBytes)
        } catch {
            throw mapError(error, logger: logger)
        }
    }

    /// What the client gets when this upstream answers non-2xx: its status and body, with any occurrence of
    /// our credential scrubbed out; a refused credential (401/403) is our misconfiguration, not the
    /// client's, so it becomes `503 {name}_misconfigured`.
    func relayedError(status: Int, body: ByteBuffer) throws(ProxyError) -> ByteBuffer {
        guard let authorization else { return body }
        if status == 401 || status == 403 {
            throw ProxyError(
                .serviceUnavailable, type: "\(name.rawValue)_misconfigured",
                message: "The \(name.rawValue) upstream refused the configured API key (HTTP \(status))")
        }
        let secret = Array(authorization.dropFirst("Bearer ".count).utf8)
        return ByteBuffer(bytes: Self.redact(secret, in: Array(body.readableBytesView)))
    }

    static func redact(_ secret: [UInt8], in bytes: [UInt8]) -> [UInt8] {
        guard !secret.isEmpty, bytes.count >= secret.count else { return bytes }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var index = 0
        while index < bytes.count {
            if bytes[index] == secret[0], bytes.count - index >= secret.count,
                bytes[index..<(index + secret.count)].elementsEqual(secret)
            {
                out.append(contentsOf: "[REDACTED]".utf8)
                index += secret.count
            } else {
                out.append(bytes[index])
                index += 1
            }
        }
        return out
    }

    /// AsyncHTTPClient logs excerpts of every HTTP part at trace level — body bytes that may hold E2EE
    /// plaintext or a credential an upstream echoed. Its logger therefore never goes below debug.
    static func clientLogger(_ logger: Logger) -> Logger {
        guard logger.logLevel < .debug else { return logger }
        var clamped = logger
        clamped.logLevel = .debug
        return clamped
    }

    /// The one place transport failures become `502 upstream_unavailable` or `504 upstream_timeout`.
    func mapError(_ error: any Error, logger: Logger) -> ProxyError {
        if let error = error as? ProxyError { return error }  // already decided (E2EE stream failures)
        // Cancelled because the client went away: the upstream is fine, and the request is abandoned.
        if Task.isCancelled || error is CancellationError || (error as? HTTPClientError) == .cancelled {
            logger.debug("upstream request cancelled: the client went away", metadata: ["upstream": "\(name.rawValue)"])
            return .clientClosedRequest
        }
        if let error = error as? HTTPClientError, error == .readTimeout || error == .deadlineExceeded {
            logger.warning("upstream timed out", metadata: ["upstream": "\(name.rawValue)"])
            return .upstreamTimeout(name.rawValue)
        }
        // The description of transport errors names hosts and OS errors, never credentials.
        logger.warning("upstream unreachable", metadata: ["upstream": "\(name.rawValue)", "error": "\(error)"])
        return .upstreamUnavailable(name.rawValue, Self.describe(error))
    }

    private static func describe(_ error: any Error) -> String {
        if let error = error as? HTTPClientError {
            switch error {
            case .connectTimeout: return "connection timed out"
            case .remoteConnectionClosed: return "connection closed by upstream"
            default: return "request failed"
            }
        }
        let text = String(describing: error).lowercased()
        if text.contains("refused") { return "connection refused" }
        if text.contains("ssl") || text.contains("tls") || text.contains("certificate") { return "TLS failure" }
        return "connection failed"
    }
}

/// How an upstream client establishes trust: the system roots, or an explicit configuration.
public enum TLSConfigurationChoice: Sendable {
    case system
    case custom(TLSConfiguration)
}

extension TimeAmount {
    init(_ duration: Duration) {
        self = .nanoseconds(Int64(duration / .nanoseconds(1)))
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
