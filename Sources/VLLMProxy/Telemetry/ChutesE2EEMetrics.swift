import ChutesE2EE
import Prometheus

extension ProxyMetrics {
    private static var e2eeRefills: MetricNameDescriptor {
        .init(
            namespace: "vllm_proxy", metricName: "chutes_e2ee_refills", unitName: "total",
            helpText: "Chutes E2EE instance/nonce listings fetched, ahead of exhaustion or on an empty pool")
    }
    private static var e2eeRefillFailures: MetricNameDescriptor {
        .init(
            namespace: "vllm_proxy", metricName: "chutes_e2ee_refill_failures", unitName: "total",
            helpText: "Chutes E2EE instance listings that failed")
    }
    private static var e2eeRetries: MetricNameDescriptor {
        .init(
            namespace: "vllm_proxy", metricName: "chutes_e2ee_retries", unitName: "total",
            helpText: "Chutes E2EE invokes retried once after 403 (nonce refused) or 410 (instance gone)")
    }
    private static var e2eeErrors: MetricNameDescriptor {
        .init(
            namespace: "vllm_proxy", metricName: "chutes_e2ee_errors", unitName: "total",
            helpText: "Chutes E2EE requests that failed, by kind")
    }

    /// Counts what the nonce pool and the retry logic report.
    var chutesE2EE: any ChutesE2EEObserver { ChutesE2EEMetricsObserver(metrics: self) }

    /// `kind`: one of a fixed few (`transport`, `timeout`, `discovery`, `no_instance`, `decrypt`, `truncated`: a stream
    /// ending before `[DONE]`, `after_done`: events after it).
    func chutesE2EEError(_ kind: String) {
        registry.makeCounter(descriptor: Self.e2eeErrors, labels: [("kind", kind)]).increment()
    }

    fileprivate func chutesE2EERefill(ahead: Bool) {
        registry.makeCounter(descriptor: Self.e2eeRefills, labels: [("when", ahead ? "ahead" : "empty")]).increment()
    }

    fileprivate func chutesE2EERefillFailed() {
        registry.makeCounter(descriptor: Self.e2eeRefillFailures).increment()
    }

    fileprivate func chutesE2EERetry(status: Int) {
        registry.makeCounter(descriptor: Self.e2eeRetries, labels: [("status", String(status))]).increment()
    }
}

private struct ChutesE2EEMetricsObserver: ChutesE2EEObserver {
    let metrics: ProxyMetrics
    func refilled(ahead: Bool) { metrics.chutesE2EERefill(ahead: ahead) }
    func refillFailed(_ error: ChutesE2EEError) { metrics.chutesE2EERefillFailed() }
    func retried(status: Int) { metrics.chutesE2EERetry(status: status) }
}
