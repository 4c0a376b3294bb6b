import AsyncHTTPClient
import NIOCore

/// The container health check (`vllm-proxy healthcheck`): one `GET /` to the proxy's own listener, so the
/// runtime image needs no curl or shell tooling to report liveness.
public enum LivenessProbe {
    /// The URL a probe on the same host uses for a proxy listening on `host:port`; a wildcard listener
    /// is reached over loopback.
    public static func url(host: String, port: Int) -> String {
        switch host {
        case "", "0.0.0.0": return "http://127.0.0.1:\(port)/"
        case "::", "[::]": return "http://[::1]:\(port)/"
        case let literal where literal.contains(":") && !literal.hasPrefix("["):
            return "http://[\(literal)]:\(port)/"
        default: return "http://\(host):\(port)/"
        }
    }

    /// True when `GET url` answers 200 within `timeout`; any error, other status or delay is false.
    public static func check(url: String, timeout: TimeAmount = .seconds(2)) async -> Bool {
        // One request per probe: closing the connection leaves no idle keep-alive socket in the shared
        // pool to outlive the server it points at.
        var request = HTTPClientRequest(url: url)
        request.headers.add(name: "Connection", value: "close")
        do {
            let response = try await HTTPClient.shared.execute(request, timeout: timeout)
            _ = try await response.body.collect(upTo: 4096)
            return response.status == .ok
        } catch {
            return false
        }
    }
}
