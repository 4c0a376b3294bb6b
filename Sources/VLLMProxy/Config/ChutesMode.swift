import AsyncHTTPClient
import Foundation
import NIOSSL

/// Whether the Chutes routes serve, decided once at start-up. Misconfiguration never stops the proxy:
/// the vLLM routes keep serving and the Chutes routes answer `503` with the reason (SPEC §7).
public enum ChutesMode: Sendable {
    case disabled
    /// Why Chutes cannot serve; names the problem, never the key.
    case misconfigured(String)
    case enabled(Upstream)

    /// Judges the settings; only a fully valid configuration builds an upstream (and its one pooled client).
    public static func decide(_ settings: ProxyConfig.ChutesSettings, timeout: Duration) -> ChutesMode {
        guard settings.enabled else { return .disabled }
        guard let key = settings.apiKey, !key.isEmpty else { return .misconfigured("CHUTES_API_KEY is not set") }
        guard let url = URL(string: settings.baseURL), url.scheme?.lowercased() == "https", url.host != nil else {
            return .misconfigured("CHUTES_BASE_URL must be an absolute https:// URL")
        }
        var tls = TLSConfiguration.makeClientConfiguration()
        if let caFile = settings.caFile {
            guard let roots = try? NIOSSLCertificate.fromPEMFile(caFile), !roots.isEmpty else {
                return .misconfigured("CHUTES_CA_FILE (\(caFile)) cannot be read as PEM certificates")
            }
            tls.additionalTrustRoots = [.certificates(roots)]
        }
        let client = Upstream.makeClient(timeout: timeout, retryConnect: true, tls: .custom(tls))
        return .enabled(
            Upstream(
                name: .chutes, baseURL: settings.baseURL, authorization: "Bearer \(key)", client: client,
                timeout: timeout))
    }

    /// The one start-up log line (SPEC §7).
    public var logLine: String {
        switch self {
        case .disabled: return "chutes: disabled"
        case .misconfigured(let reason): return "chutes: misconfigured (\(reason))"
        case .enabled(let upstream):
            let host = URL(string: upstream.baseURL).flatMap { url in url.host.map { "https://\($0)" } }
            return "chutes: enabled (\(host ?? upstream.baseURL))"
        }
    }

    /// The upstream to use, or the `503` a Chutes route answers instead.
    func upstream() throws(ProxyError) -> Upstream {
        switch self {
        case .disabled:
            throw ProxyError(
                .serviceUnavailable, type: "chutes_disabled", message: "The Chutes upstream is not enabled")
        case .misconfigured(let reason):
            throw ProxyError(
                .serviceUnavailable, type: "chutes_misconfigured",
                message: "The Chutes upstream is misconfigured: \(reason)")
        case .enabled(let upstream):
            return upstream
        }
    }
}
