import GuardedHTTP
import Logging
import UpstreamHTTP

/// The proxy's configuration, read once from the environment at start-up and validated there.
public struct ProxyConfig: Sendable {
    /// Every variable of `variables` as the environment set it (or its default), secrets redacted: what
    /// `description` shows, so a new setting appears there without anyone remembering to add it.
    private let rendered: [(name: String, value: String)]
    public var host: String
    public var port: Int
    public var token: String
    public var modelName: String
    public var vllmBaseURL: String
    public var chatCacheExpiration: Duration
    public var e2eeReplayWindowSeconds: Int
    /// Most live E2EE v2 replay claims held; when full, v2 requests get `503 replay_store_full`.
    public var e2eeReplayStoreCapacity: Int
    /// Most signature records this replica keeps (the soonest-expiring is evicted beyond it).
    public var receiptStoreCapacity: Int
    /// E2EE v3 (SPEC §4.3): seconds a key pair is used before a fresh one replaces it.
    public var e2eeV3KeyLifetimeSeconds: Int
    /// E2EE v3 streams: gather upstream reads this long before sealing a chunk (0: one chunk per read).
    public var e2eeV3CoalesceMilliseconds: Int
    /// E2EE v3: pad sealed plaintexts to a multiple of this many bytes (0: no padding).
    public var e2eeV3PadBytes: Int
    /// E2EE requests below this version are refused (`400 e2ee_version_not_allowed`).
    public var e2eeMinVersion: Int
    /// Where shared state lives across replicas; nil keeps it in-process.
    public var redis: RedisSettings?
    public var dstackEndpoint: String?
    public var gpuNoHardwareMode: Bool
    public var nvmlLibraryPath: String?
    public var tlsCertPath: String?
    /// Where the signing keys come from (`SIGNING_KEY_SOURCE`, SPEC §5).
    public var signingKeySource: SigningKeySource
    public var basicMaxRequest: Int
    public var metricsPollInterval: Duration
    public var metricsTimeout: Duration
    public var metricsMaxAge: Duration
    public var chutes: ChutesSettings
    public var upstreamTimeout: Duration
    /// Most open connections to one upstream (each upstream has its own pool).
    public var upstreamMaxConnections: Int
    public var maxBodyBytes: Int
    /// Largest multipart upload (audio routes), streamed to the upstream, never held whole.
    public var maxUploadBytes: Int
    /// Largest upstream answer held whole (non-streamed: to hash, sign, seal or read it); beyond it 502.
    public var upstreamMaxResponseBytes: Int
    /// Server-side limits of each client connection (head, body, keep-alive idle).
    public var connectionLimits: ConnectionLimits
    /// Attestation requests that may wait for GPU evidence behind the one being collected.
    public var attestationMaxWaiting: Int
    /// Longest an attestation request waits for GPU evidence, queueing included.
    public var attestationTimeout: Duration
    public var logLevel: Logger.Level
    /// Collateral source, accepted TCB statuses and trust roots for verifying other TEEs (SPEC §6.2).
    public var verification: VerificationSettings

    /// The raw Chutes variables; judged once into a `ChutesMode`, never fatal (SPEC §7).
    public struct ChutesSettings: Sendable {
        public var enabled: Bool
        public var baseURL: String
        public var apiKey: String?
        public var caFile: String?
        /// Completions through Chutes' E2EE transport (`CHUTES_E2EE`).
        public var e2ee: Bool = false
        /// Where `/e2e/instances` and `/e2e/invoke` live (`CHUTES_E2E_BASE_URL`).
        public var e2eBaseURL: String = "https://api.chutes.ai"
        /// Refuse models not marked `confidential_compute` (`CHUTES_TEE_ONLY`).
        public var teeOnly: Bool = false
        /// With E2EE, seal only to instances whose TDX quote verified (`CHUTES_VERIFY_ATTESTATION`, SPEC §7.2).
        public var verifyAttestation: Bool = true
        /// The allowed MRTD/RTMR0–2 sets (`CHUTES_TDX_MEASUREMENTS_FILE`); read when verification is on.
        public var measurementsFile: String?
        /// How long a verified instance key is trusted (`CHUTES_ATTESTATION_TTL_SECONDS`).
        public var attestationTTL: Duration = .seconds(3600)
        /// Refuse instances whose evidence has no GPU report (`CHUTES_REQUIRE_GPU_EVIDENCE`).
        public var requireGPUEvidence: Bool = false

        /// Whether instance keys are used only after verification: on by default, and forced by
        /// `CHUTES_TEE_ONLY` (SPEC §7.2). Without E2EE the proxy does not choose the instance: nothing to verify.
        public var verifiesInstances: Bool { e2ee && (verifyAttestation || teeOnly) }
    }

    /// Every variable the proxy reads, with its default, meaning and, for numbers, the accepted range.
    /// `--help` and the README's tables show this. A new numeric setting is one row here (`.integer` or
    /// `.seconds` with its bounds) read in `init` through `integer(_:)` / `seconds(_:)`: the bounds are
    /// then checked at start-up with the one-line error, and nothing else needs to know them.
    public static let variables: [Variable] = [
        .text("HOST", "0.0.0.0", "listen address"),
        .integer("PORT", 8000, 0...65535, "listen port (0: any free port)"),
        .text("TOKEN", "(required)", "bearer token clients must present (secret)"),
        .text("MODEL_NAME", "(required)", "namespace for shared-state keys"),
        .text("VLLM_BASE_URL", "http://vllm:8000", "local vLLM server"),
        .integer("CHAT_CACHE_EXPIRATION", 1200, 1...31_536_000, "seconds a signature record is kept"),
        .integer(
            "E2EE_REPLAY_WINDOW_SECONDS", 300, 1...86_400,
            "allowed clock skew for E2EE v2/v3 timestamps; replay claims live twice this plus one second"),
        .integer(
            "RECEIPT_STORE_CAPACITY", 100_000, 1...50_000_000,
            "most signature records kept in this replica's memory; beyond it the soonest-expiring is evicted"),
        .integer(
            "E2EE_REPLAY_STORE_CAPACITY", defaultReplayStoreCapacity, 1...50_000_000,
            "most live E2EE v2/v3 replay claims; when full, those requests get 503 replay_store_full"),
        .integer(
            "E2EE_V3_KEY_LIFETIME_SECONDS", 86_400, 600...2_592_000,
            "seconds an E2EE v3 key pair is used before a new random one replaces it"),
        .integer(
            "E2EE_V3_COALESCE_MS", 0, 0...10_000,
            "E2EE v3 streams: gather upstream reads this long before sealing a chunk (token-length side channel)"),
        .integer(
            "E2EE_V3_PAD_BYTES", 0, 0...65_536,
            "E2EE v3: pad each sealed chunk's plaintext to a multiple of this many bytes (0: off)"),
        .integer("E2EE_MIN_VERSION", 1, 1...3, "E2EE requests below this version get 400 e2ee_version_not_allowed"),
        .text("REDIS_HOST", "(unset)", "shared state across replicas; unset (and no REDIS_URL) = in-process only"),
        .integer("REDIS_PORT", 6379, 1...65535, "Redis port"),
        .text("REDIS_PASSWORD", "(unset)", "Redis password (secret)"),
        .integer("REDIS_DB", 0, 0...15, "Redis database number"),
        .text(
            "REDIS_URL", "(unset)",
            "redis://[user:pass@]host:port/db or rediss:// (TLS); replaces the four above (secret)"),
        .text("REDIS_USERNAME", "(unset)", "Redis ACL user (needs a password)"),
        .text("REDIS_TLS", "false", "1/true/yes: TLS to Redis, certificate and hostname verified"),
        .text("REDIS_CA_FILE", "(unset)", "extra PEM trust roots for TLS to Redis"),
        .integer("REDIS_TIMEOUT_MS", 100, 1...60_000, "bound on every Redis command, connecting included"),
        .integer("REDIS_RETRY_SECONDS", 10, 1...3600, "how long Redis is skipped after a failure"),
        .text(
            "E2EE_REPLAY_ON_REDIS_FAILURE", "reject",
            "while Redis fails: reject (v2 E2EE gets 503) or local (this replica's claims only; weaker)"),
        .text(
            "DSTACK_SIMULATOR_ENDPOINT", "(unset)",
            "dstack guest agent: http(s) URL or unix-socket path; unset = /var/run/dstack.sock"),
        .text("GPU_NO_HW_MODE", "0", "1/true/yes: collect no GPU evidence (development only)"),
        .text("NVML_LIBRARY_PATH", "libnvidia-ml.so.1", "NVML library to dlopen (tests point it at a fake)"),
        .text("TLS_CERT_PATH", "(unset)", "PEM certificate whose key attestation v2 binds"),
        .text(
            "SIGNING_KEY_SOURCE", "random",
            "random (per process) or kms: derive the signing keys through dstack's GetKey, shared by all replicas"),
        .integer("BASIC_MAX_REQUEST", 20, 1...1_000_000, "max concurrent in-flight basic-tier requests"),
        .seconds(
            "METRICS_POLL_INTERVAL_SECONDS", 2, 0.001...3600, clampedTo: 0.5...10,
            "vLLM congestion polling interval"),
        .seconds("METRICS_TIMEOUT_SECONDS", 2, 0.01...60, "timeout of one vLLM /metrics poll"),
        .seconds(
            "METRICS_MAX_AGE_SECONDS", 30, 0.001...86_400, clampedTo: 10...30,
            "age after which a congestion reading is ignored"),
        .text("CHUTES_ENABLED", "false", "1/true/yes turns the /v1/chutes routes on"),
        .text("CHUTES_BASE_URL", "https://llm.chutes.ai", "Chutes API base; must be https://"),
        .text("CHUTES_API_KEY", "(unset)", "Chutes API key, required when enabled (secret)"),
        .text("CHUTES_CA_FILE", "(unset)", "extra PEM trust roots for the Chutes TLS connection"),
        .text("CHUTES_E2EE", "false", "send Chutes completions through Chutes' E2EE transport (ML-KEM-768 to the GPU)"),
        .text(
            "CHUTES_E2E_BASE_URL", "https://api.chutes.ai",
            "where /e2e/instances and /e2e/invoke live; must be https://"),
        .text("CHUTES_TEE_ONLY", "false", "refuse Chutes models not marked confidential_compute (403)"),
        .text(
            "CHUTES_VERIFY_ATTESTATION", "true",
            "with CHUTES_E2EE: seal only to instances whose TDX quote verified (false: warned)"),
        .text(
            "CHUTES_TDX_MEASUREMENTS_FILE", "(unset)",
            "JSON list of allowed {mr_td, rtmr0, rtmr1, rtmr2} for Chutes instances; required while verifying"),
        .seconds(
            "CHUTES_ATTESTATION_TTL_SECONDS", 3600, 60...86_400,
            "how long a verified Chutes instance key is trusted before re-verification"),
        .text("CHUTES_REQUIRE_GPU_EVIDENCE", "false", "refuse Chutes instances whose evidence has no GPU report"),
        .seconds(
            "UPSTREAM_TIMEOUT_SECONDS", 600, 0.01...86_400,
            "longest wait for an upstream response head, and between two stream chunks"),
        .integer(
            "UPSTREAM_MAX_CONNECTIONS", 16384, 1...1_048_576,
            "most concurrent connections to one upstream; more requests wait for one"),
        .integer("MAX_BODY_BYTES", 10_485_760, 1...268_435_456, "largest request body accepted"),
        .integer(
            "MAX_UPLOAD_BYTES", 104_857_600, 1...4_294_967_296,
            "largest multipart upload (audio routes), streamed to the upstream, never held whole"),
        .integer(
            "UPSTREAM_MAX_RESPONSE_BYTES", 16_777_216, 1024...1_073_741_824,
            "largest upstream answer held whole (non-streamed); beyond it 502 upstream_unavailable"),
        .seconds("HEADER_TIMEOUT_SECONDS", 10, 1...300, "a request head must arrive within this"),
        .seconds("BODY_TIMEOUT_SECONDS", 60, 1...3600, "a whole request body must arrive within this, else 408"),
        .seconds("IDLE_TIMEOUT_SECONDS", 60, 1...3600, "an idle keep-alive connection is closed after this"),
        .integer(
            "ATTESTATION_MAX_WAITING", 8, 0...1000, "attestation requests that may wait for GPU evidence; more get 503"
        ),
        .seconds(
            "ATTESTATION_TIMEOUT_SECONDS", 30, 1...600, "longest wait for GPU evidence, queueing included, else 503"),
        .text("LOG_LEVEL", "info", "trace, debug, info, notice, warning, error, critical"),
        .text("PCCS_URL", "https://pccs.phala.network", "where TDX collateral is fetched; http:// only on loopback"),
        .text("TDX_ACCEPTED_TCB_STATUSES", "UpToDate,SWHardeningNeeded", "TCB statuses a verified quote may have"),
        .text("TDX_ROOT_CA_FILE", "(unset: Intel's pinned root)", "replaces the Intel SGX root (tests; warned)"),
        .text("NVIDIA_ROOT_CA_FILE", "(unset: NVIDIA's pinned root)", "replaces the NVIDIA device root (warned)"),
    ]

    /// Reads and validates the configuration; the error names the offending variable and never a secret.
    public init(environment env: [String: String]) throws(ConfigError) {
        func string(_ name: String) -> String? {
            guard let value = env[name], !value.isEmpty else { return nil }
            return value
        }
        func required(_ name: String) throws(ConfigError) -> String {
            guard let value = string(name) else { throw .missing(name) }
            return value
        }
        func integer(_ name: String) throws(ConfigError) -> Int {
            Int(try Self.bounds(of: name).read(name, string(name)))
        }
        func seconds(_ name: String) throws(ConfigError) -> Duration {
            .milliseconds(Int64((try Self.bounds(of: name).read(name, string(name)) * 1000).rounded()))
        }
        func flag(_ name: String) -> Bool {
            guard let value = string(name)?.trimmingSpaces.lowercased() else { return false }
            return ["1", "true", "yes"].contains(value)
        }
        // A security switch that defaults on: a typo must not turn it off.
        func strictFlag(_ name: String, default defaultValue: Bool) throws(ConfigError) -> Bool {
            guard let value = string(name)?.trimmingSpaces.lowercased() else { return defaultValue }
            if ["1", "true", "yes"].contains(value) { return true }
            if ["0", "false", "no"].contains(value) { return false }
            throw .malformed(name, "must be one of 1, true, yes, 0, false, no")
        }

        self.rendered = Self.variables.map { variable in
            let given = string(variable.name)
            guard !Self.isSecret(variable.name) else { return (variable.name, given == nil ? "(unset)" : redacted) }
            return (variable.name, given ?? variable.defaultValue)
        }
        self.host = string("HOST") ?? "0.0.0.0"
        self.port = try integer("PORT")
        self.token = try required("TOKEN")
        self.modelName = try required("MODEL_NAME")
        self.vllmBaseURL = Self.trimTrailingSlash(string("VLLM_BASE_URL") ?? "http://vllm:8000")
        guard UpstreamEndpoint(baseURL: vllmBaseURL) != nil else {
            throw .malformed("VLLM_BASE_URL", "must be an http:// or https:// URL")
        }
        self.chatCacheExpiration = .seconds(try integer("CHAT_CACHE_EXPIRATION"))
        self.e2eeReplayWindowSeconds = try integer("E2EE_REPLAY_WINDOW_SECONDS")
        self.e2eeReplayStoreCapacity = try integer("E2EE_REPLAY_STORE_CAPACITY")
        self.receiptStoreCapacity = try integer("RECEIPT_STORE_CAPACITY")
        self.e2eeV3KeyLifetimeSeconds = try integer("E2EE_V3_KEY_LIFETIME_SECONDS")
        self.e2eeV3CoalesceMilliseconds = try integer("E2EE_V3_COALESCE_MS")
        self.e2eeV3PadBytes = try integer("E2EE_V3_PAD_BYTES")
        self.e2eeMinVersion = try integer("E2EE_MIN_VERSION")
        self.redis = try RedisSettings.read(string)
        self.dstackEndpoint = string("DSTACK_SIMULATOR_ENDPOINT")
        self.gpuNoHardwareMode = flag("GPU_NO_HW_MODE")
        self.nvmlLibraryPath = string("NVML_LIBRARY_PATH")
        self.tlsCertPath = string("TLS_CERT_PATH")
        // A typo must not quietly give random keys to an operator who asked for one identity across replicas.
        switch string("SIGNING_KEY_SOURCE")?.trimmingSpaces.lowercased() {
        case nil, "random": self.signingKeySource = .random
        case "kms": self.signingKeySource = .kms
        default: throw .malformed("SIGNING_KEY_SOURCE", "must be random or kms")
        }
        self.basicMaxRequest = try integer("BASIC_MAX_REQUEST")
        self.metricsPollInterval = try seconds("METRICS_POLL_INTERVAL_SECONDS")
        self.metricsTimeout = try seconds("METRICS_TIMEOUT_SECONDS")
        self.metricsMaxAge = try seconds("METRICS_MAX_AGE_SECONDS")
        self.chutes = ChutesSettings(
            enabled: flag("CHUTES_ENABLED"),
            baseURL: Self.trimTrailingSlash(string("CHUTES_BASE_URL") ?? "https://llm.chutes.ai"),
            apiKey: string("CHUTES_API_KEY"),
            caFile: string("CHUTES_CA_FILE"),
            e2ee: flag("CHUTES_E2EE"),
            e2eBaseURL: Self.trimTrailingSlash(string("CHUTES_E2E_BASE_URL") ?? "https://api.chutes.ai"),
            teeOnly: flag("CHUTES_TEE_ONLY"),
            verifyAttestation: try strictFlag("CHUTES_VERIFY_ATTESTATION", default: true),
            measurementsFile: string("CHUTES_TDX_MEASUREMENTS_FILE"),
            attestationTTL: try seconds("CHUTES_ATTESTATION_TTL_SECONDS"),
            requireGPUEvidence: flag("CHUTES_REQUIRE_GPU_EVIDENCE")
        )
        self.upstreamTimeout = try seconds("UPSTREAM_TIMEOUT_SECONDS")
        self.upstreamMaxConnections = try integer("UPSTREAM_MAX_CONNECTIONS")
        self.maxBodyBytes = try integer("MAX_BODY_BYTES")
        self.maxUploadBytes = try integer("MAX_UPLOAD_BYTES")
        self.upstreamMaxResponseBytes = try integer("UPSTREAM_MAX_RESPONSE_BYTES")
        self.connectionLimits = ConnectionLimits(
            header: try seconds("HEADER_TIMEOUT_SECONDS"), body: try seconds("BODY_TIMEOUT_SECONDS"),
            idle: try seconds("IDLE_TIMEOUT_SECONDS"))
        self.attestationMaxWaiting = try integer("ATTESTATION_MAX_WAITING")
        self.attestationTimeout = try seconds("ATTESTATION_TIMEOUT_SECONDS")
        let level = string("LOG_LEVEL")?.lowercased() ?? "info"
        guard let logLevel = Logger.Level(rawValue: level) else {
            throw .malformed("LOG_LEVEL", "must be one of trace, debug, info, notice, warning, error, critical")
        }
        self.logLevel = logLevel
        self.verification = try VerificationSettings.read(string)
    }

    /// The declared bounds of a numeric variable; reading an undeclared one is a programming error.
    static func bounds(of name: String) -> Bounds {
        guard let bounds = variables.first(where: { $0.name == name })?.bounds else {
            preconditionFailure("\(name) is not declared as a numeric variable in ProxyConfig.variables")
        }
        return bounds
    }

    /// 8 300 claims a second, above what this proxy can decrypt and claim on 2 cores (measured ≤ ~6 500), for
    /// the longest a claim lives (601 s with the default window): see README "Replay claims and their store".
    public static let defaultReplayStoreCapacity = 5_000_000

    private static func trimTrailingSlash(_ url: String) -> String {
        var url = url
        while url.hasSuffix("/") { url.removeLast() }
        return url
    }
}

extension ProxyConfig {
    /// One environment variable as `--help` and the README list it.
    public struct Variable: Sendable {
        public let name: String
        /// The default as shown to operators (`(unset)`, `(required)` or a value).
        public let defaultValue: String
        public let meaning: String
        /// The values a numeric variable accepts; nil for text, URLs and flags.
        public let bounds: Bounds?

        public static func text(_ name: String, _ defaultValue: String, _ meaning: String) -> Variable {
            Variable(name: name, defaultValue: defaultValue, meaning: meaning, bounds: nil)
        }

        public static func integer(_ name: String, _ defaultValue: Int, _ range: ClosedRange<Int>, _ meaning: String)
            -> Variable
        {
            let bounds = Bounds(
                kind: .integer, defaultValue: Double(defaultValue),
                range: Double(range.lowerBound)...Double(range.upperBound), clamp: nil)
            return Variable(name: name, defaultValue: String(defaultValue), meaning: meaning, bounds: bounds)
        }

        public static func seconds(
            _ name: String, _ defaultValue: Double, _ range: ClosedRange<Double>,
            clampedTo clamp: ClosedRange<Double>? = nil, _ meaning: String
        ) -> Variable {
            let bounds = Bounds(kind: .seconds, defaultValue: defaultValue, range: range, clamp: clamp)
            return Variable(
                name: name, defaultValue: Bounds.format(defaultValue), meaning: meaning, bounds: bounds)
        }

        /// `meaning [default: X] [range: A-B]`, the line `--help` prints after the name.
        public var helpText: String {
            var text = "\(meaning) [default: \(defaultValue)]"
            if let bounds { text += " [range: \(bounds.rangeText)]" }
            return text
        }
    }

    /// The accepted values of a numeric variable: anything else, malformed, `nan` or infinite, stops
    /// start-up. Bounds keep every later conversion (to nanoseconds, to `Int64` sums) from trapping.
    public struct Bounds: Sendable {
        public enum Kind: Sendable {
            /// Decimal digits with an optional sign.
            case integer
            /// A decimal number of seconds (fractions allowed).
            case seconds
        }

        public let kind: Kind
        public let defaultValue: Double
        public let range: ClosedRange<Double>
        /// In-range values are then clamped to this narrower range (SPEC §1's polling limits).
        public let clamp: ClosedRange<Double>?

        /// `A-B`, with the clamp when there is one.
        public var rangeText: String {
            let text = "\(Self.format(range.lowerBound))-\(Self.format(range.upperBound))"
            guard let clamp else { return text }
            return text + ", clamped to \(Self.format(clamp.lowerBound))-\(Self.format(clamp.upperBound))"
        }

        /// The value of `text` (nil or empty: the default), or the one-line error naming `name` and the range.
        func read(_ name: String, _ text: String?) throws(ConfigError) -> Double {
            guard let text else { return defaultValue }
            let trimmed = text.trimmingSpaces
            let parsed: Double?
            switch kind {
            case .integer: parsed = Int(trimmed).map(Double.init)
            case .seconds: parsed = Self.decimal(trimmed)
            }
            guard let value = parsed, value.isFinite, range.contains(value) else {
                let what = kind == .integer ? "an integer" : "a number of seconds"
                throw .malformed(name, "must be \(what) in the range \(rangeText)")
            }
            guard let clamp else { return value }
            return min(max(value, clamp.lowerBound), clamp.upperBound)
        }

        /// A plain decimal (`2`, `0.5`, `1e3`): `Double(_:)` alone would also take `nan`, `inf` and hex.
        private static func decimal(_ text: String) -> Double? {
            guard !text.isEmpty,
                text.utf8.allSatisfy({
                    ($0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9")) || "+-.eE".utf8.contains($0)
                })
            else { return nil }
            return Double(text)
        }

        static func format(_ value: Double) -> String {
            value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
        }
    }
}

/// Where the signing keys come from (SPEC §5); the E2EE v3 keys are random per process either way.
public enum SigningKeySource: String, Sendable {
    /// Fresh keys from the system's RNG at every start (the Python implementation's behaviour).
    case random
    /// Derived through the dstack guest agent's `GetKey`: one identity for every replica and restart of the app.
    case kms
}

/// A start-up configuration problem; its description is the one line printed before exiting.
public enum ConfigError: Error, Sendable, CustomStringConvertible {
    case missing(String)
    case malformed(String, String)

    public var description: String {
        switch self {
        case .missing(let name): return "configuration error: \(name) is required but not set"
        case .malformed(let name, let why): return "configuration error: \(name) \(why)"
        }
    }
}

extension String {
    fileprivate var trimmingSpaces: String {
        String(drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
    }
}

// The configuration holds TOKEN, CHUTES_API_KEY and REDIS_PASSWORD: `"\(config)"`, `String(reflecting:)` and
// `dump` must show its shape for debugging without ever printing a secret (SPEC §1).
private let redacted = "<redacted>"

extension ProxyConfig: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// Variables whose values are secrets (SPEC §1): shown only as set or unset.
    static func isSecret(_ name: String) -> Bool {
        ["TOKEN", "API_KEY", "PASSWORD", "SECRET"].contains { name.hasSuffix($0) }
    }

    public var customMirror: Mirror {
        Mirror(self, children: rendered.map { (label: $0.name, value: $0.value as Any) }, displayStyle: .struct)
    }
    public var description: String { describeRedacted("ProxyConfig", customMirror) }
    public var debugDescription: String { description }
}

extension ProxyConfig.ChutesSettings: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var customMirror: Mirror {
        Mirror(
            self,
            children: [
                "enabled": enabled, "baseURL": baseURL, "apiKey": apiKey == nil ? "none" : redacted,
                "caFile": caFile as Any, "e2ee": e2ee, "e2eBaseURL": e2eBaseURL, "teeOnly": teeOnly,
            ], displayStyle: .struct)
    }
    public var description: String { describeRedacted("ChutesSettings", customMirror) }
    public var debugDescription: String { description }
}

/// `Name(label: value, …)` from an already-redacted mirror, so description and mirror cannot disagree.
private func describeRedacted(_ name: String, _ mirror: Mirror) -> String {
    let fields = mirror.children.map { child in
        let value: String
        switch child.value {
        case let text as String: value = text
        case let nested as CustomStringConvertible: value = nested.description
        default: value = String(describing: child.value)
        }
        return "\(child.label ?? "_"): \(value)"
    }
    return "\(name)(\(fields.joined(separator: ", ")))"
}
