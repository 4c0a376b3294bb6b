import ChutesAttestation
import Prometheus

extension ProxyMetrics {
    private static var verifications: MetricNameDescriptor {
        .init(
            namespace: "vllm_proxy", metricName: "chutes_attestation_verifications", unitName: "total",
            helpText: "Chutes instance evidence judged (SPEC 7.2), by result and the first failed check")
    }
    private static var evidenceFetch: MetricNameDescriptor {
        .init(
            namespace: "vllm_proxy", metricName: "chutes_evidence_fetch_duration", unitName: "seconds",
            helpText: "Chutes evidence fetches, by outcome")
    }
    private static var cached: MetricNameDescriptor {
        .init(
            namespace: "vllm_proxy", metricName: "chutes_attested_instances", unitName: "",
            helpText: "Verified Chutes instance keys cached, over every chute")
    }

    /// Counts what the Chutes attestor reports.
    var chutesAttestation: any ChutesAttestationObserver { ChutesAttestationMetricsObserver(metrics: self) }

    fileprivate func chutesInstanceVerified(result: String, reason: String) {
        registry.makeCounter(descriptor: Self.verifications, labels: [("result", result), ("reason", reason)])
            .increment()
    }

    fileprivate func chutesEvidenceFetched(seconds: Double, outcome: String) {
        registry.makeDurationHistogram(
            descriptor: Self.evidenceFetch, labels: [("outcome", outcome)],
            buckets: [
                .milliseconds(10), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
                .seconds(1), .seconds(2.5), .seconds(5), .seconds(10), .seconds(30),
            ]
        ).record(.milliseconds(Int64(seconds * 1000)))
    }

    fileprivate func chutesAttestedInstances(_ count: Int) {
        registry.makeGauge(descriptor: Self.cached).set(Double(count))
    }
}

private struct ChutesAttestationMetricsObserver: ChutesAttestationObserver {
    let metrics: ProxyMetrics
    func instanceVerified(result: String, reason: String) {
        metrics.chutesInstanceVerified(result: result, reason: reason)
    }
    func evidenceFetched(seconds: Double, outcome: String) {
        metrics.chutesEvidenceFetched(seconds: seconds, outcome: outcome)
    }
    func cachedInstances(_ count: Int) { metrics.chutesAttestedInstances(count) }
}
