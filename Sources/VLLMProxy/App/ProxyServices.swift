import AsyncHTTPClient
import Attestation
import E2EE
import Logging
import SharedState
import Signing

/// Everything the proxy needs, built once at start-up and passed down; tests build the same graph.
public struct ProxyServices: Sendable {
    public let config: ProxyConfig
    public let keys: SigningKeys
    /// Signature records (a cache: when full, the record closest to expiry is evicted).
    public let store: any SharedStore
    /// E2EE v2 replay claims; separate from records so a flood of claims cannot evict receipts.
    public let replayStore: any SharedStore
    public let vllm: Upstream
    public let chutes: ChutesMode
    public let trafficControl: TrafficControl
    public let metrics: ProxyMetrics
    public let attestation: AttestationService
    public let logger: Logger
    /// For the dstack guest agent (unix socket or http); short timeouts are set per call.
    private let agentClient: HTTPClient

    /// `replayStore` defaults to an in-process store of `E2EE_REPLAY_STORE_CAPACITY` claims that refuses
    /// new claims when full rather than evict a live one (which would let its request replay).
    public init(
        config: ProxyConfig, keys: SigningKeys, store: any SharedStore = TTLStore(),
        replayStore: (any SharedStore)? = nil, metrics: ProxyMetrics = .init(),
        logger: Logger
    ) {
        self.config = config
        self.keys = keys
        self.store = store
        self.replayStore = replayStore ?? TTLStore(capacity: config.e2eeReplayStoreCapacity, whenFull: .refuse)
        self.vllm = Upstream(
            name: .vllm, baseURL: config.vllmBaseURL, authorization: nil,
            client: Upstream.makeClient(timeout: config.upstreamTimeout, retryConnect: false),
            timeout: config.upstreamTimeout)
        self.chutes = ChutesMode.decide(config.chutes, timeout: config.upstreamTimeout, metrics: metrics)
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
                noHardwareMode: config.gpuNoHardwareMode, libraryPath: config.nvmlLibraryPath, logger: logger),
            tlsCertPath: config.tlsCertPath, logger: logger)
    }

    var receipts: ReceiptIssuer {
        ReceiptIssuer(
            keys: keys, store: store, modelName: config.modelName, ttl: config.chatCacheExpiration,
            metrics: metrics)
    }

    var pipeline: CompletionPipeline {
        CompletionPipeline(
            maxBodyBytes: config.maxBodyBytes, receipts: receipts,
            e2ee: E2EECodec(keys: keys, replayWindow: config.e2eeReplayWindowSeconds), replayGuard: replayStore,
            modelName: config.modelName)
    }

    /// Closes the upstream connection pools; call once the server has stopped.
    public func shutdown() async throws {
        try await vllm.client.shutdown()
        if case .enabled(let upstream) = chutes { try await upstream.client.shutdown() }
        try await agentClient.shutdown()
    }
}
