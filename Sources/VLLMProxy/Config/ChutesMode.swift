import AsyncHTTPClient
import ChutesAttestation
import Foundation
import NIOSSL
import TDXCollateral
import UpstreamHTTP

/// Whether the Chutes routes serve, decided once at start-up. Misconfiguration never stops the proxy:
/// the vLLM routes keep serving and the Chutes routes answer `503` with the reason (SPEC §7).
public enum ChutesMode: Sendable {
    case disabled
    /// Why Chutes cannot serve; names the problem, never the key.
    case misconfigured(String)
    case enabled(Upstream)

    /// Judges the settings; only a fully valid configuration builds an upstream (and its one pooled client).
    public static func decide(
        _ settings: ProxyConfig.ChutesSettings, verification: VerificationSettings? = nil, timeout: Duration,
        maxConnections: Int = 16384, maxResponseBytes: Int = 16 << 20, metrics: ProxyMetrics = .init()
    ) -> ChutesMode {
        guard settings.enabled else { return .disabled }
        guard let key = settings.apiKey, !key.isEmpty else { return .misconfigured("CHUTES_API_KEY is not set") }
        guard let endpoint = UpstreamEndpoint(baseURL: settings.baseURL), endpoint.isTLS else {
            return .misconfigured("CHUTES_BASE_URL must be an absolute https:// URL")
        }
        if settings.e2ee {
            guard let url = URL(string: settings.e2eBaseURL), url.scheme?.lowercased() == "https", url.host != nil
            else {
                return .misconfigured("CHUTES_E2E_BASE_URL must be an absolute https:// URL")
            }
        }
        var tls = TLSConfiguration.makeClientConfiguration()
        if let caFile = settings.caFile {
            guard let roots = try? NIOSSLCertificate.fromPEMFile(caFile), !roots.isEmpty else {
                return .misconfigured("CHUTES_CA_FILE (\(caFile)) cannot be read as PEM certificates")
            }
            tls.additionalTrustRoots = [.certificates(roots)]
        }
        let pool: UpstreamConnectionPool
        do {
            pool = try UpstreamConnectionPool(
                endpoint: endpoint,
                configuration: .init(maxConnections: maxConnections, idleTimeout: .seconds(30), tls: tls))
        } catch {
            return .misconfigured("CHUTES_CA_FILE (\(settings.caFile ?? "")) cannot be used for TLS")
        }
        // Verification without a measurement policy is no verification (SPEC §7.2): the routes refuse to serve.
        var policy: MeasurementPolicy?
        if let path = settings.measurementsFile {
            do throws(MeasurementPolicy.PolicyError) {
                policy = try MeasurementPolicy(path: path)
            } catch {
                return .misconfigured("CHUTES_TDX_MEASUREMENTS_FILE (\(path)) \(error.message)")
            }
        } else if settings.verifiesInstances {
            return .misconfigured(
                "CHUTES_TDX_MEASUREMENTS_FILE is not set: verifying Chutes instances (CHUTES_VERIFY_ATTESTATION, "
                    + "CHUTES_TEE_ONLY) needs the measurements they may run")
        }
        let attestation = policy.map { policy in
            Self.attestationSetup(settings, policy: policy, verification: verification)
        }
        // The relay's own pool (CHUTES_E2E_BASE_URL, same trust roots); `decide` checked it is an https URL. An
        // unusable one is only a problem when E2EE is on (it then serves completions); otherwise discovery and
        // evidence use it, and the API pool stands in.
        let relayPool: UpstreamConnectionPool
        if let relayEndpoint = UpstreamEndpoint(baseURL: settings.e2eBaseURL), relayEndpoint.isTLS,
            let made = try? UpstreamConnectionPool(
                endpoint: relayEndpoint,
                configuration: .init(maxConnections: maxConnections, idleTimeout: .seconds(30), tls: tls))
        {
            relayPool = made
        } else if settings.e2ee {
            return .misconfigured("CHUTES_E2E_BASE_URL must be an absolute https:// URL")
        } else {
            relayPool = pool
        }
        let chutesTransport = ChutesE2EETransport(
            api: pool, relay: relayPool, e2eBaseURL: settings.e2eBaseURL, authorization: "Bearer \(key)",
            timeout: timeout, teeOnly: settings.teeOnly, metrics: metrics, attestation: attestation)
        let transport: UpstreamTransport =
            settings.e2ee
            ? .chutesE2EE(chutesTransport)
            : settings.teeOnly ? .teeOnlyDirect(chutesTransport) : .chutesTLS(chutesTransport)
        return .enabled(
            Upstream(
                name: .chutes, baseURL: settings.baseURL, authorization: "Bearer \(key)", pool: pool,
                timeout: timeout, maxResponseBytes: maxResponseBytes, transport: transport))
    }

    /// The instance verifier: quotes against the TDX root with collateral from `PCCS_URL` (its own client, with
    /// the system's trust roots only), GPU reports against the NVIDIA root.
    private static func attestationSetup(
        _ settings: ProxyConfig.ChutesSettings, policy: MeasurementPolicy, verification: VerificationSettings?
    ) -> ChutesAttestationSetup {
        // The pinned roots and Phala's PCCS when the caller has no settings (tests of other parts).
        let verification = verification ?? (try! VerificationSettings.read { _ in nil })
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: .seconds(10), read: .seconds(30))
        configuration.redirectConfiguration = .disallow
        let pccsHTTP = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
        let source = PCCSCollateralSource(baseURL: verification.pccsURL, httpClient: pccsHTTP) {
            Int64(Date().timeIntervalSince1970)
        }
        let verifier = ChutesEvidenceVerifier(
            policy: policy, acceptedStatuses: verification.acceptedTCBStatuses, tdxRoot: verification.tdxRoot,
            nvidiaRoot: verification.nvidiaRoot, requireGPUEvidence: settings.requireGPUEvidence
        ) { quote throws(TDXCollateralError) in try await source.collateral(for: quote) }
        return ChutesAttestationSetup(
            verifier: verifier, ttl: settings.attestationTTL, gatesInstances: settings.verifiesInstances,
            pccsHTTP: pccsHTTP)
    }

    /// Start-up warnings about how Chutes instances are trusted (SPEC §7.2).
    public var warnings: [String] {
        guard case .enabled(let upstream) = self, case .chutesE2EE(let relay) = upstream.transport,
            !relay.gatesInstances
        else { return [] }
        return [
            "CHUTES_VERIFY_ATTESTATION=false: Chutes requests are sealed to whatever instance keys the relay lists, "
                + "unverified (receipts say \"chutes_attestation\": {\"verified\": false})"
        ]
    }

    /// The one start-up log line (SPEC §7).
    public var logLine: String {
        switch self {
        case .disabled: return "chutes: disabled"
        case .misconfigured(let reason): return "chutes: misconfigured (\(reason))"
        case .enabled(let upstream):
            let host = URL(string: upstream.baseURL).flatMap { url in url.host.map { "https://\($0)" } }
            var line = "chutes: enabled (\(host ?? upstream.baseURL))"
            switch upstream.transport {
            case .direct, .chutesTLS: break
            case .chutesE2EE(let transport):
                let e2eHost = URL(string: transport.e2eBaseURL).flatMap { url in url.host.map { "https://\($0)" } }
                line += ", e2ee via \(e2eHost ?? transport.e2eBaseURL)"
                if transport.client.teeOnly { line += ", tee-only" }
                line += transport.gatesInstances ? ", instances verified" : ", instances NOT verified"
            case .teeOnlyDirect:
                line += ", tee-only"
            }
            return line
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
