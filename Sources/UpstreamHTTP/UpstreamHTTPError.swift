/// Why an upstream exchange failed, in the terms the proxy maps to its own errors.
public enum UpstreamHTTPError: Error, Sendable, Equatable {
    /// No connection could be made (refused, unreachable, DNS, TLS handshake); the text names the cause, never
    /// a credential.
    case connectFailed(String)
    case connectTimeout
    /// The connection closed (or failed) before the response was complete.
    case connectionClosed
    /// No byte arrived from the upstream for the read timeout.
    case readTimeout
    /// At the connection cap, no connection came free within the read timeout; nothing was sent.
    case poolTimeout
    /// A collected (non-streamed) body exceeded the caller's limit.
    case bodyTooLarge(limit: Int)
    /// The response was not valid HTTP/1.1.
    case invalidResponse
    /// The caller's task was cancelled (its client went away).
    case cancelled
    /// The pool was shut down.
    case shutDown
}
