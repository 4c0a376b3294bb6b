import GuardedHTTP
import Logging

/// The proxy's configuration, read once from the environment at start-up and validated there.
public struct ProxyConfig: Sendable {
    public var host: String
    public var port: Int
    public var token: String
    public var modelName: String
    public var vllmBaseURL: String
    public var chatCacheExpiration: Duration
    public var e2eeReplayWindowSeconds: Int
    /// Most live E2EE v2 replay claims held; when full, v2 requests get `503 replay_store_full`.
    public var e2eeReplayStoreCapacity: Int
    /// Where shared state lives across replicas; nil keeps it in-process.
    public var redis: RedisSettings?
    public var dstackEndpoint: String?
    public var gpuNoHardwareMode: Bool
    public var nvmlLibraryPath: String?
    public var tlsCertPath: String?
    public var basicMaxRequest: Int
    public var metricsPollInterval: Duration
    public var metricsTimeout: Duration
    public var metricsMaxAge: Duration
    public var chutes: ChutesSettings
    public var upstreamTimeout: Duration
    public var maxBodyBytes: Int
    /// Server-side limits of each client connection (head, body, keep-alive idle).
    public var connectionLimits: ConnectionLimits
    /// Attestation requests that may wait for GPU evidence behind the one being collected.
    public var attestationMaxWaiting: Int
    /// Longest an attestation request waits for GPU evidence, queueing included.
    public var attestationTimeout: Duration
    public var logLevel: Logger.Level

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
    }

    /// Every variable the proxy reads, with its default and meaning; `--help` prints this table.
    public static let variables: [(name: String, defaultValue: String, meaning: String)] = [
        ("HOST", "0.0.0.0", "listen address"),
        ("PORT", "8000", "listen port"),
        ("TOKEN", "(required)", "bearer token clients must present (secret)"),
        ("MODEL_NAME", "(required)", "namespace for shared-state keys"),
        ("VLLM_BASE_URL", "http://vllm:8000", "local vLLM server"),
        ("CHAT_CACHE_EXPIRATION", "1200", "seconds a signature record is kept"),
        ("E2EE_REPLAY_WINDOW_SECONDS", "300", "allowed clock skew for E2EE v2 timestamps and replay-record lifetime"),
        (
            "E2EE_REPLAY_STORE_CAPACITY", "5000000",
            "most live E2EE v2 replay claims (1-50000000); when full, v2 requests get 503 replay_store_full"
        ),
        ("REDIS_HOST", "(unset)", "shared state across replicas; unset (and no REDIS_URL) = in-process only"),
        ("REDIS_PORT", "6379", "Redis port (1-65535)"),
        ("REDIS_PASSWORD", "(unset)", "Redis password (secret)"),
        ("REDIS_DB", "0", "Redis database number (0-15)"),
        (
            "REDIS_URL", "(unset)",
            "redis://[user:pass@]host:port/db or rediss:// (TLS); replaces the four above (secret)"
        ),
        ("REDIS_USERNAME", "(unset)", "Redis ACL user (needs a password)"),
        ("REDIS_TLS", "false", "1/true/yes: TLS to Redis, certificate and hostname verified"),
        ("REDIS_CA_FILE", "(unset)", "extra PEM trust roots for TLS to Redis"),
        ("REDIS_TIMEOUT_MS", "100", "bound on every Redis command, connecting included (1-60000)"),
        ("REDIS_RETRY_SECONDS", "10", "how long Redis is skipped after a failure (1-3600)"),
        (
            "E2EE_REPLAY_ON_REDIS_FAILURE", "reject",
            "while Redis fails: reject (v2 E2EE gets 503) or local (this replica's claims only; weaker)"
        ),
        (
            "DSTACK_SIMULATOR_ENDPOINT", "(unset)",
            "dstack guest agent: http(s) URL or unix-socket path; unset = /var/run/dstack.sock"
        ),
        ("GPU_NO_HW_MODE", "0", "1/true/yes: collect no GPU evidence (development only)"),
        ("NVML_LIBRARY_PATH", "libnvidia-ml.so.1", "NVML library to dlopen (tests point it at a fake)"),
        ("TLS_CERT_PATH", "(unset)", "PEM certificate whose key attestation v2 binds"),
        ("BASIC_MAX_REQUEST", "20", "max concurrent in-flight basic-tier requests"),
        ("METRICS_POLL_INTERVAL_SECONDS", "2", "vLLM congestion polling interval (clamped 0.5-10)"),
        ("METRICS_TIMEOUT_SECONDS", "2", "timeout of one vLLM /metrics poll"),
        ("METRICS_MAX_AGE_SECONDS", "30", "age after which a congestion reading is ignored (clamped 10-30)"),
        ("CHUTES_ENABLED", "false", "1/true/yes turns the /v1/chutes routes on"),
        ("CHUTES_BASE_URL", "https://llm.chutes.ai", "Chutes API base; must be https://"),
        ("CHUTES_API_KEY", "(unset)", "Chutes API key, required when enabled (secret)"),
        ("CHUTES_CA_FILE", "(unset)", "extra PEM trust roots for the Chutes TLS connection"),
        ("CHUTES_E2EE", "false", "send Chutes completions through Chutes' E2EE transport (ML-KEM-768 to the GPU)"),
        ("CHUTES_E2E_BASE_URL", "https://api.chutes.ai", "where /e2e/instances and /e2e/invoke live; must be https://"),
        ("CHUTES_TEE_ONLY", "false", "refuse Chutes models not marked confidential_compute (403)"),
        (
            "UPSTREAM_TIMEOUT_SECONDS", "600",
            "longest wait for an upstream response head, and between two stream chunks"
        ),
        ("MAX_BODY_BYTES", "10485760", "largest request body accepted"),
        ("HEADER_TIMEOUT_SECONDS", "10", "a request head must arrive within this (1-300)"),
        ("BODY_TIMEOUT_SECONDS", "60", "a whole request body must arrive within this, else 408 (1-3600)"),
        ("IDLE_TIMEOUT_SECONDS", "60", "an idle keep-alive connection is closed after this (1-3600)"),
        ("ATTESTATION_MAX_WAITING", "8", "attestation requests that may wait for GPU evidence; more get 503 (0-1000)"),
        ("ATTESTATION_TIMEOUT_SECONDS", "30", "longest wait for GPU evidence, queueing included, else 503 (1-600)"),
        ("LOG_LEVEL", "info", "trace, debug, info, notice, warning, error, critical"),
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
        func integer(_ name: String, _ defaultValue: Int, minimum: Int = 0) throws(ConfigError) -> Int {
            guard let text = string(name) else { return defaultValue }
            guard let value = Int(text.trimmingSpaces), value >= minimum else {
                throw .malformed(name, "must be an integer of at least \(minimum)")
            }
            return value
        }
        func seconds(_ name: String, _ defaultValue: Double, range: ClosedRange<Double>? = nil) throws(ConfigError)
            -> Duration
        {
            var value = defaultValue
            if let text = string(name) {
                guard let parsed = Double(text.trimmingSpaces), parsed.isFinite, parsed > 0 else {
                    throw .malformed(name, "must be a positive number of seconds")
                }
                value = parsed
            }
            if let range { value = min(max(value, range.lowerBound), range.upperBound) }
            return .milliseconds(Int64((value * 1000).rounded()))
        }
        /// Decimal seconds inside `range`; anything else (not a number, NaN, out of range) stops start-up.
        func boundedSeconds(_ name: String, _ defaultValue: Double, within range: ClosedRange<Double>)
            throws(ConfigError)
            -> Duration
        {
            guard let text = string(name) else { return .milliseconds(Int64((defaultValue * 1000).rounded())) }
            guard let value = Double(text.trimmingSpaces), value.isFinite, range.contains(value) else {
                throw .malformed(
                    name,
                    "must be a number of seconds from \(range.lowerBound.formatted) to \(range.upperBound.formatted)")
            }
            return .milliseconds(Int64((value * 1000).rounded()))
        }
        func boundedInteger(_ name: String, _ defaultValue: Int, within range: ClosedRange<Int>) throws(ConfigError)
            -> Int
        {
            guard let text = string(name) else { return defaultValue }
            guard let value = Int(text.trimmingSpaces), range.contains(value) else {
                throw .malformed(name, "must be an integer from \(range.lowerBound) to \(range.upperBound)")
            }
            return value
        }
        func flag(_ name: String) -> Bool {
            guard let value = string(name)?.trimmingSpaces.lowercased() else { return false }
            return ["1", "true", "yes"].contains(value)
        }

        self.host = string("HOST") ?? "0.0.0.0"
        self.port = try integer("PORT", 8000)
        guard port <= 65535 else { throw .malformed("PORT", "must be a port number (0-65535)") }
        self.token = try required("TOKEN")
        self.modelName = try required("MODEL_NAME")
        self.vllmBaseURL = Self.trimTrailingSlash(string("VLLM_BASE_URL") ?? "http://vllm:8000")
        guard vllmBaseURL.hasPrefix("http://") || vllmBaseURL.hasPrefix("https://") else {
            throw .malformed("VLLM_BASE_URL", "must be an http:// or https:// URL")
        }
        self.chatCacheExpiration = .seconds(try integer("CHAT_CACHE_EXPIRATION", 1200, minimum: 1))
        self.e2eeReplayWindowSeconds = try integer("E2EE_REPLAY_WINDOW_SECONDS", 300, minimum: 1)
        self.e2eeReplayStoreCapacity = try integer(
            "E2EE_REPLAY_STORE_CAPACITY", Self.defaultReplayStoreCapacity, minimum: 1)
        guard e2eeReplayStoreCapacity <= 50_000_000 else {
            throw .malformed("E2EE_REPLAY_STORE_CAPACITY", "must be an integer from 1 to 50000000")
        }
        self.redis = try RedisSettings.read(string)
        self.dstackEndpoint = string("DSTACK_SIMULATOR_ENDPOINT")
        self.gpuNoHardwareMode = flag("GPU_NO_HW_MODE")
        self.nvmlLibraryPath = string("NVML_LIBRARY_PATH")
        self.tlsCertPath = string("TLS_CERT_PATH")
        self.basicMaxRequest = try integer("BASIC_MAX_REQUEST", 20, minimum: 1)
        self.metricsPollInterval = try seconds("METRICS_POLL_INTERVAL_SECONDS", 2, range: 0.5...10)
        self.metricsTimeout = try seconds("METRICS_TIMEOUT_SECONDS", 2)
        self.metricsMaxAge = try seconds("METRICS_MAX_AGE_SECONDS", 30, range: 10...30)
        self.chutes = ChutesSettings(
            enabled: flag("CHUTES_ENABLED"),
            baseURL: Self.trimTrailingSlash(string("CHUTES_BASE_URL") ?? "https://llm.chutes.ai"),
            apiKey: string("CHUTES_API_KEY"),
            caFile: string("CHUTES_CA_FILE"),
            e2ee: flag("CHUTES_E2EE"),
            e2eBaseURL: Self.trimTrailingSlash(string("CHUTES_E2E_BASE_URL") ?? "https://api.chutes.ai"),
            teeOnly: flag("CHUTES_TEE_ONLY")
        )
        self.upstreamTimeout = try seconds("UPSTREAM_TIMEOUT_SECONDS", 600)
        self.maxBodyBytes = try integer("MAX_BODY_BYTES", 10_485_760, minimum: 1)
        self.connectionLimits = ConnectionLimits(
            header: try boundedSeconds("HEADER_TIMEOUT_SECONDS", 10, within: 1...300),
            body: try boundedSeconds("BODY_TIMEOUT_SECONDS", 60, within: 1...3600),
            idle: try boundedSeconds("IDLE_TIMEOUT_SECONDS", 60, within: 1...3600))
        self.attestationMaxWaiting = try boundedInteger("ATTESTATION_MAX_WAITING", 8, within: 0...1000)
        self.attestationTimeout = try boundedSeconds("ATTESTATION_TIMEOUT_SECONDS", 30, within: 1...600)
        let level = string("LOG_LEVEL")?.lowercased() ?? "info"
        guard let logLevel = Logger.Level(rawValue: level) else {
            throw .malformed("LOG_LEVEL", "must be one of trace, debug, info, notice, warning, error, critical")
        }
        self.logLevel = logLevel
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

extension Double {
    /// `10` rather than `10.0` in a range message.
    fileprivate var formatted: String {
        rounded() == self && abs(self) < 1e15 ? String(Int64(self)) : String(self)
    }
}
