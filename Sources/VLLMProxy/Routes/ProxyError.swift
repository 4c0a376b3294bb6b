import Attestation
import E2EE
import HTTPTypes
import Hummingbird
import JSON
import NIOCore

/// An error answered with the one error shape of SPEC §2; the only place a failure becomes HTTP.
public struct ProxyError: Error, HTTPResponseError, Sendable {
    public let status: HTTPResponse.Status
    /// The machine-readable `error.type`.
    public let type: String
    /// For people: never contains internals, plaintext or secrets.
    public let message: String
    /// Extra response headers (e.g. `X-Proxy-Upstream`).
    public var headers: HTTPFields = [:]

    public init(_ status: HTTPResponse.Status, type: String, message: String) {
        self.status = status
        self.type = type
        self.message = message
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var fields = headers
        fields[.contentType] = "application/json"
        return Response(status: status, headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    /// `{"error": {"message", "type", "param": null, "code": null}}`
    public var body: [UInt8] {
        let error: JSONValue = ["message": .string(message), "type": .string(type), "param": nil, "code": nil]
        return JSONValue.object(["error": error]).serialized()
    }
}

extension ProxyError {
    static let unauthorized = ProxyError(
        .unauthorized, type: "authentication_error", message: "Missing or invalid bearer token")
    static func invalidRequest(_ message: String) -> ProxyError {
        ProxyError(.badRequest, type: "invalid_request_error", message: message)
    }
    static func tooLarge(limit: Int) -> ProxyError {
        ProxyError(
            .contentTooLarge, type: "request_too_large", message: "Request body exceeds the limit of \(limit) bytes")
    }
    static func upstreamUnavailable(_ upstream: String, _ why: String) -> ProxyError {
        ProxyError(.badGateway, type: "upstream_unavailable", message: "Upstream \(upstream) is unavailable: \(why)")
    }
    /// No Chutes instance passed attestation (SPEC §7.2): nothing was sent.
    static let chutesAttestationFailed = ProxyError(
        .badGateway, type: "chutes_attestation_failed",
        message: "No Chutes instance of this model passed attestation; nothing was sent")
    static func upstreamTimeout(_ upstream: String) -> ProxyError {
        ProxyError(.gatewayTimeout, type: "upstream_timeout", message: "Upstream \(upstream) did not answer in time")
    }
    /// An upstream stream event outgrew the cap (SPEC §2): the stream ends rather than memory growing.
    static func upstreamEventTooLarge(_ upstream: String, limit: Int) -> ProxyError {
        ProxyError(
            .badGateway, type: "upstream_event_too_large",
            message: "Upstream \(upstream) sent a stream event larger than \(limit) bytes")
    }
    static func notFound(_ message: String) -> ProxyError {
        ProxyError(.notFound, type: "not_found", message: message)
    }
    static func rateLimited(_ message: String) -> ProxyError {
        ProxyError(.tooManyRequests, type: "rate_limit", message: message)
    }
    /// An upstream's non-2xx answer under E2EE: the status only, since upstream error bodies echo the request.
    static func upstreamError(status: Int) -> ProxyError {
        ProxyError(.init(code: status), type: "upstream_error", message: "Upstream answered \(status)")
    }
    /// An error event an upstream sent mid-stream under E2EE, relayed without its text.
    static let upstreamFailedMidStream = ProxyError(
        .badGateway, type: "upstream_error", message: "Upstream reported an error mid-stream")
    /// The replay-claim store is full of unexpired claims; evicting one would let its request replay.
    static let replayStoreFull = ProxyError(
        .serviceUnavailable, type: "replay_store_full",
        message: "The E2EE replay store is full; retry shortly")
    /// The shared replay-claim store (Redis) cannot answer and the policy is to fail closed.
    static let replayStoreUnavailable = ProxyError(
        .serviceUnavailable, type: "replay_store_unavailable",
        message: "The E2EE replay store is unavailable; retry shortly")
    init(_ error: E2EEError) {
        self.init(.init(code: error.httpStatus), type: error.type, message: error.message)
    }
    init(_ error: AttestationError) {
        self.init(.init(code: error.status), type: error.type, message: error.message)
    }
    /// The body did not arrive within `BODY_TIMEOUT_SECONDS` (the connection closes as well).
    static let requestTimeout = ProxyError(
        .requestTimeout, type: "request_timeout", message: "The request body did not arrive in time")
    /// The client went away before its answer: never sent (nobody reads it), but counted in metrics with
    /// nginx's 499 so abandoned requests are visible.
    static let clientClosedRequest = ProxyError(
        .init(code: 499), type: "client_closed_request", message: "The client closed the connection")
    static let internalError = ProxyError(
        .internalServerError, type: "internal_error", message: "The proxy failed to handle this request")
}

/// Renders every error — ours, Hummingbird's (unknown route, wrong method) or unexpected — in the one
/// shape, so no response ever carries a stack trace or framework text.
struct ErrorShapeMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response)
        async throws -> Response
    {
        do {
            return try await next(request, context)
        } catch {
            return try Self.render(error, request: request, context: context)
        }
    }

    static func render(_ error: any Error, request: Request, context: Context) throws -> Response {
        switch error {
        case let error as ProxyError:
            return try error.response(from: request, context: context)
        case is CancellationError:
            context.logger.debug("request cancelled: the client went away")
            return try ProxyError.clientClosedRequest.response(from: request, context: context)
        case let error as HTTPError:
            let type: String
            switch error.status {
            case .notFound: type = "not_found"
            case .methodNotAllowed: type = "method_not_allowed"
            default: type = error.status.code >= 500 ? "internal_error" : "invalid_request_error"
            }
            let message = error.status == .notFound ? "Not found" : error.status.reasonPhrase
            return try ProxyError(error.status, type: type, message: message).response(from: request, context: context)
        default:
            context.logger.error("unhandled error", metadata: ["error.type": "\(Swift.type(of: error))"])
            return try ProxyError.internalError.response(from: request, context: context)
        }
    }
}

/// Marks every response of a route group, errors included, with the upstream it belongs to
/// (`X-Proxy-Upstream`), so a gateway can tell Chutes answers from vLLM ones.
struct UpstreamHeaderMiddleware<Context: RequestContext>: RouterMiddleware {
    let name: String

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response)
        async throws -> Response
    {
        var response: Response
        do {
            response = try await next(request, context)
        } catch {
            response = try ErrorShapeMiddleware.render(error, request: request, context: context)
        }
        response.headers[.proxyUpstream] = name
        return response
    }
}
