import AsyncHTTPClient
import Attestation
import E2EE
import Foundation
import Logging
import Redis
import SharedState
import Signing
import Synchronization
import UpstreamHTTP

/// Everything the proxy needs, built once at start-up and passed down; tests build the same graph.
public struct ProxyServices: Sendable {
    public let config: ProxyConfig
    public let keys: SigningKeys
    /// Signature records (a cache: when full, the record closest to expiry is evicted); with Redis
    /// configured, this replica's store and Redis together (see `ReplicatedStore`).
    public let store: any SharedStore
    /// E2EE v2 replay claims; separate from records so a flood of claims cannot evict receipts.
    public let replayStore: any SharedStore
    /// The Redis side of both stores, when configured; owns the connections and the circuit breaker.
    public let redis: RedisStore?
    public let vllm: Upstream
    public let chutes: ChutesMode
    public let trafficControl: TrafficControl
    public let metrics: ProxyMetrics
    public let attestation: AttestationService
    /// The E2EE v3 keys (random, in memory, rotating; never derived from the signing keys).
    public let v3Keys: V3KeyRing
    public let logger: Logger
    /// For the dstack guest agent (unix socket or http); short timeouts are set per call.
    private let agentClient: HTTPClient
    /// One per process, so the throttle holds across requests.
    private let duplicateReceiptLog = LogThrottle(burst: 10, per: .seconds(10))
    /// Shutting down happens once, whoever asks first (the service group, or a test that built no app).
    private let stopped = OnceLatch()

    /// `replayStore` defaults to an in-process store of `E2EE_REPLAY_STORE_CAPACITY` claims that refuses
    /// new claims when full rather than evict a live one (which would let its request replay).
    /// `store` and `replayStore` are this replica's own; with Redis configured each is paired with it.
    /// `keyProvenance` is the KMS chains of `keys` when they were derived (`SIGNING_KEY_SOURCE=kms`), for attestation.
    public init(
        config: ProxyConfig, keys: SigningKeys, keyProvenance: KeyProvenance? = nil,
        store: (any SharedStore)? = nil,
        replayStore: (any SharedStore)? = nil, metrics: ProxyMetrics = .init(),
        logger: Logger
    ) throws {
        self.config = config
        self.keys = keys
        let v3Keys = try V3KeyRing(
            lifetime: config.e2eeV3KeyLifetimeSeconds, grace: config.e2eeReplayWindowSeconds,
            now: Int(Date().timeIntervalSince1970))
        self.v3Keys = v3Keys
        // Records are a cache: at RECEIPT_STORE_CAPACITY the soonest-expiring goes, and the metric says so.
        let store = store ?? TTLStore(capacity: config.receiptStoreCapacity, onEvict: { metrics.receiptEvicted() })
        let replayStore = replayStore ?? TTLStore(capacity: config.e2eeReplayStoreCapacity, whenFull: .refuse)
        if let settings = config.redis {
            let redis = RedisStore(
                client: RedisClient(configuration: settings.connection, logger: logger),
                retryInterval: settings.retryInterval, monitor: metrics,
                outageConsequence: Self.outageConsequence(settings.replayFallback), logger: logger)
            self.redis = redis
            self.store = ReplicatedStore(local: store, redis: redis, fallback: settings.replayFallback)
            self.replayStore = ReplicatedStore(local: replayStore, redis: redis, fallback: settings.replayFallback)
        } else {
            self.redis = nil
            self.store = store
            self.replayStore = replayStore
        }
        // ProxyConfig already checked the URL, and a plain-HTTP pool needs no TLS context, so this cannot throw.
        let vllmPool = try! UpstreamConnectionPool(
            endpoint: UpstreamEndpoint(baseURL: config.vllmBaseURL)!,
            configuration: .init(maxConnections: config.upstreamMaxConnections))
        self.vllm = Upstream(
            name: .vllm, baseURL: config.vllmBaseURL, authorization: nil, pool: vllmPool,
            timeout: config.upstreamTimeout, maxResponseBytes: config.upstreamMaxResponseBytes)
        self.chutes = ChutesMode.decide(
            config.chutes, verification: config.verification, timeout: config.upstreamTimeout,
            maxConnections: config.upstreamMaxConnections, maxResponseBytes: config.upstreamMaxResponseBytes,
            metrics: metrics)
        self.trafficControl = TrafficControl(maxBasicInFlight: config.basicMaxRequest, maxAge: config.metricsMaxAge)
        self.metrics = metrics
        self.logger = logger
        // The agent is local: a refused or missing socket should be a 503 at once, not after retries.
        var agentConfiguration = HTTPClient.Configuration()
        agentConfiguration.timeout = .init(connect: .seconds(2), read: .seconds(10))
        agentConfiguration.connectionPool.retryConnectionEstablishment = false
        self.agentClient = HTTPClient(
            eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: agentConfiguration)
        self.attestation = AttestationService(
            identity: AttestationIdentity(
                ecdsaAddress: keys.ecdsaAddress, ecdsaAddressBytes: keys.ecdsaAddressBytes,
                ecdsaPublicKeyHex: keys.ecdsaPublicKeyHex, ed25519PublicKey: Hex.decode(keys.ed25519Address)!),
            agent: DstackClient(
                endpoint: .init(parsing: config.dstackEndpoint), httpClient: agentClient, logger: logger),
            gpu: makeGPUEvidenceProvider(
                noHardwareMode: config.gpuNoHardwareMode, libraryPath: config.nvmlLibraryPath,
                limits: .init(maxWaiting: config.attestationMaxWaiting, timeout: config.attestationTimeout),
                logger: logger),
            tlsCertPath: config.tlsCertPath,
            e2ee: E2EEAttestation(
                keyList: {
                    let pair = v3Keys.current(now: Int(Date().timeIntervalSince1970))
                    return (pair.keyConfig, pair.keyConfigID)
                },
                versions: Array(config.e2eeMinVersion...3)),
            keyProvenance: keyProvenance,
            logger: logger)
    }

    var receipts: ReceiptIssuer {
        ReceiptIssuer(
            keys: keys, store: store, modelName: config.modelName, ttl: config.chatCacheExpiration,
            metrics: metrics, logger: logger, duplicateIDLog: duplicateReceiptLog)
    }

    var pipeline: CompletionPipeline {
        CompletionPipeline(
            maxBodyBytes: config.maxBodyBytes, maxUploadBytes: config.maxUploadBytes, receipts: receipts,
            e2ee: E2EESessionPolicy(keys: keys, replayWindow: config.e2eeReplayWindowSeconds),
            v3: V3Codec(keys: v3Keys, replayWindow: config.e2eeReplayWindowSeconds),
            v3Framing: V3FramingSettings(
                padBytes: config.e2eeV3PadBytes, coalesce: .milliseconds(config.e2eeV3CoalesceMilliseconds)),
            minE2EEVersion: config.e2eeMinVersion, replayGuard: replayStore, modelName: config.modelName)
    }

    /// What a Redis outage means for traffic, said once in the warning that opens it.
    private static func outageConsequence(_ fallback: ReplayFallback) -> String {
        switch fallback {
        case .reject:
            return "Meanwhile records stay in this replica only and E2EE v2 requests are refused "
                + "(503 replay_store_unavailable; E2EE_REPLAY_ON_REDIS_FAILURE=reject)."
        case .local:
            return "Meanwhile records stay in this replica only and E2EE v2 replay claims are checked by this "
                + "replica alone (E2EE_REPLAY_ON_REDIS_FAILURE=local: a request can be replayed once per replica)."
        }
    }

    /// Checks Redis once before serving, so a wrong password or an unreachable server is reported at
    /// start-up; the proxy serves either way.
    public func start() async {
        await redis?.start()
    }

    /// Closes the upstream connection pools and Redis, and releases NVML, once the server has stopped: the
    /// application's `ResourcesService` calls it; only the first call does anything.
    public func shutdown() async throws {
        guard stopped.pass() else { return }
        await redis?.shutdown()
        await attestation.shutdown()
        await vllm.shutdown()
        if case .enabled(let upstream) = chutes { await upstream.shutdown() }
        try await agentClient.shutdown()
    }
}

/// True for the first caller of `pass()` only.
final class OnceLatch: Sendable {
    private let passed = Atomic<Bool>(false)

    func pass() -> Bool { !passed.exchange(true, ordering: .acquiringAndReleasing) }
}
