import Hummingbird
import NIOCore
import Prometheus
import SharedState
import Synchronization

/// The proxy's own Prometheus metrics, kept in a registry owned by the app (no global metrics system).
public struct ProxyMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    /// Per-request series, created once per label set (see `LatencyMetrics.swift`).
    let handles: MetricHandles
    /// Touched twice by every completion, so made once (it reads 0 from start-up on).
    private let completionsInFlightGauge: Gauge
    /// Once the record store is full it evicts on every insert: made once, and it reads 0 from start-up on.
    private let receiptsEvictedCounter: Counter

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        self.handles = MetricHandles()
        self.completionsInFlightGauge = registry.makeGauge(descriptor: Self.completionsInFlight)
        self.receiptsEvictedCounter = registry.makeCounter(descriptor: Self.receiptsEvicted)
    }

    // Computed: the descriptor type is not Sendable, so it cannot be a stored static.
    static var requests: MetricNameDescriptor {
        .init(
            namespace: "vllm_proxy", metricName: "http_requests", unitName: "total",
            helpText: "Responses by route template and status")
    }
    private static var receipts: MetricNameDescriptor {
        .init(
            namespace: "vllm_proxy", metricName: "receipts", unitName: "total", helpText: "Receipts signed and stored")
    }
    private static var receiptsDuplicateID: MetricNameDescriptor {
        .init(
            namespace: "vllm_proxy", metricName: "receipts_duplicate_id", unitName: "total",
            helpText: "Answers that got no receipt because their chat id already had a record (never overwritten)")
    }
    private static var receiptsEvicted: MetricNameDescriptor {
        .init(
            namespace: "vllm_proxy", metricName: "receipts_evicted", unitName: "total",
            helpText:
                "Signature records evicted from this replica's memory before they expired (RECEIPT_STORE_CAPACITY)")
    }
    private static var inFlight: MetricNameDescriptor {
        .init(
            namespace: "vllm_proxy", metricName: "basic_inflight", unitName: "requests",
            helpText: "Basic-tier requests in flight")
    }

    private static var completionsInFlight: MetricNameDescriptor {
        .init(
            namespace: "vllm_proxy", metricName: "completions_inflight", unitName: "requests",
            helpText: "Completion requests in flight, every tier and upstream (until the last byte or failure)")
    }

    /// Counts one completion as in flight until the returned ticket is released (or dropped).
    func completionStarted() -> InFlightTicket {
        completionsInFlightGauge.increment()
        return ReleaseTicket(completionsInFlightGauge)
    }

    /// Counts one response under `vllm_proxy_http_requests_total` (no duration: see `recordRequest`).
    func requestFinished(route: String, status: Int) {
        requestSeries(route: route, status: status).count.increment()
    }

    func receiptIssued(upstream: String) {
        handles.receipts.handle(upstream) {
            registry.makeCounter(descriptor: Self.receipts, labels: [("upstream", upstream)])
        }.increment()
    }

    /// Rare (a client reusing a `request_id`), so the series is looked up each time rather than cached.
    func receiptDuplicateID(upstream: String) {
        registry.makeCounter(descriptor: Self.receiptsDuplicateID, labels: [("upstream", upstream)]).increment()
    }

    func receiptEvicted() {
        receiptsEvictedCounter.increment()
    }

    func basicInFlight(_ value: Int) {
        registry.makeGauge(descriptor: Self.inFlight).set(Double(value))
    }

    private static var redisUp: MetricNameDescriptor {
        .init(
            namespace: "vllm_proxy", metricName: "redis_up", unitName: "",
            helpText: "1 while Redis is used, 0 while it is skipped after a failure (absent: no Redis configured)")
    }
    private static var redisOperations: MetricNameDescriptor {
        .init(
            namespace: "vllm_proxy", metricName: "redis_operations", unitName: "total",
            helpText: "Shared-store operations on Redis by operation and result (ok, failed, skipped while down)")
    }
    private static var redisFailures: MetricNameDescriptor {
        .init(
            namespace: "vllm_proxy", metricName: "redis_failures", unitName: "total",
            helpText: "Failed Redis commands by kind (timeout, connection, tls, auth, server, protocol)")
    }
    private static var redisLatency: MetricNameDescriptor {
        .init(
            namespace: "vllm_proxy", metricName: "redis_command_duration", unitName: "seconds",
            helpText: "Round trip of Redis commands by operation, failures included")
    }
    private static let redisBuckets: [Duration] = [
        .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2),
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(1000),
    ]

    /// The exposition text, as `/v1/metrics` serves it before vLLM's own.
    func exposition() -> [UInt8] {
        var out: [UInt8] = []
        registry.emit(into: &out)
        return out
    }
}

/// Counts every response by route template (bounded cardinality) and status when its head is ready, and
/// records its duration: a body of known length when the whole response is handed to the server, a stream
/// once its last chunk is written (or the write failed: a client that went away).
struct MetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics: ProxyMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response)
        async throws -> Response
    {
        let start = NIODeadline.now()
        var response = try await next(request, context)
        let series = metrics.requestSeries(route: context.endpointPath ?? "unmatched", status: response.status.code)
        series.count.increment()
        // Wrapping every body would cost Hummingbird's fast path (a buffer body goes out with its head in one
        // write) and a task still writing when a satisfied client hangs up; only streams need it.
        guard response.body.contentLength == nil else {
            series.duration.record(.since(start))
            return response
        }
        let body = response.body
        response.body = ResponseBody(contentLength: body.contentLength) { writer in
            defer { series.duration.record(.since(start)) }
            try await body.write(writer)
        }
        return response
    }
}

extension ProxyMetrics: RedisStoreMonitor {
    public func redisAvailability(up: Bool) {
        registry.makeGauge(descriptor: Self.redisUp).set(up ? 1.0 : 0.0)
    }

    public func redisOperation(_ operation: RedisStore.Operation, result: RedisStore.Result, duration: Duration?) {
        let resultLabel: String
        switch result {
        case .ok: resultLabel = "ok"
        case .skipped: resultLabel = "skipped"
        case .failed(let kind):
            resultLabel = "failed"
            registry.makeCounter(descriptor: Self.redisFailures, labels: [("kind", kind)]).increment()
        }
        registry.makeCounter(
            descriptor: Self.redisOperations, labels: [("operation", operation.rawValue), ("result", resultLabel)]
        ).increment()
        if let duration {
            registry.makeDurationHistogram(
                descriptor: Self.redisLatency, labels: [("operation", operation.rawValue)], buckets: Self.redisBuckets
            ).record(duration)
        }
    }
}
