import Prometheus
import Synchronization

/// Request duration, upstream time to first byte and proxy overhead (README "Metrics"). Recording looks a
/// handle up in a small table under one short lock: no registry lookup, label array or string per request.
extension ProxyMetrics {
    private static var requestDuration: MetricNameDescriptor {
        .init(
            namespace: "vllm_proxy", metricName: "request_duration", unitName: "seconds",
            helpText: "From the request reaching the router to its last response byte written, by route and status")
    }
    private static var upstreamTTFB: MetricNameDescriptor {
        .init(
            namespace: "vllm_proxy", metricName: "upstream_ttfb", unitName: "seconds",
            helpText: "From sending a completion upstream to its response head, by upstream")
    }
    private static var proxyOverhead: MetricNameDescriptor {
        .init(
            namespace: "vllm_proxy", metricName: "proxy_overhead", unitName: "seconds",
            helpText: "Completions relayed whole (2xx): wall time not spent waiting on the upstream, by route template")
    }

    // Durations run from fast refusals to streams of many minutes.
    static let durationBuckets: [Duration] = [
        .microseconds(500), .milliseconds(1), .microseconds(2500), .milliseconds(5), .milliseconds(10),
        .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
        .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30), .seconds(60), .seconds(120),
        .seconds(300), .seconds(600),
    ]
    // A non-streamed answer's head comes after the whole generation: up to the 600 s default upstream timeout.
    static let ttfbBuckets: [Duration] = [
        .milliseconds(1), .microseconds(2500), .milliseconds(5), .milliseconds(10), .milliseconds(25),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
        .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30), .seconds(60), .seconds(120), .seconds(300),
        .seconds(600),
    ]
    // What the proxy itself adds: tens of microseconds when lean, a second is already an incident.
    static let overheadBuckets: [Duration] = [
        .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1),
        .microseconds(2500), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
        .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
    ]

    /// Records one finished response: counts it (`vllm_proxy_http_requests_total`) and records its duration.
    /// For a path that knows both only at the end; the middleware counts at the head and times at the end.
    func recordRequest(route: String, status: Int, duration: Duration) {
        let series = requestSeries(route: route, status: status)
        series.count.increment()
        series.duration.record(duration)
    }

    /// Records the time from sending a completion upstream to its response head (any status).
    func recordUpstreamTTFB(upstream: Upstream.Name, _ duration: Duration) {
        handles.ttfb.handle(upstream) {
            registry.makeDurationHistogram(
                descriptor: Self.upstreamTTFB, labels: [("upstream", upstream.rawValue)], buckets: Self.ttfbBuckets)
        }.record(duration)
    }

    /// Records the proxy's overhead for one completion relayed whole (see `UpstreamTiming`).
    func recordOverhead(route: String, _ duration: Duration) {
        handles.overhead.handle(route) {
            registry.makeDurationHistogram(
                descriptor: Self.proxyOverhead, labels: [("route", route)], buckets: Self.overheadBuckets)
        }.record(duration)
    }

    /// The counter and duration histogram of one (route template, status), made on first use.
    func requestSeries(route: String, status: Int) -> RequestSeries {
        handles.requests.handle(RouteStatus(route: route, status: status)) {
            let labels = [("route", route), ("status", String(status))]
            return RequestSeries(
                count: registry.makeCounter(descriptor: Self.requests, labels: labels),
                duration: registry.makeDurationHistogram(
                    descriptor: Self.requestDuration, labels: labels, buckets: Self.durationBuckets))
        }
    }
}

/// The series of one (route template, status).
struct RequestSeries: Sendable {
    let count: Counter
    let duration: DurationHistogram
}

struct RouteStatus: Hashable, Sendable {
    let route: String
    let status: Int
}

/// The handles of `ProxyMetrics`' per-request series. Label values are bounded (route templates, HTTP
/// statuses, upstream names), so the tables stay small.
final class MetricHandles: Sendable {
    let requests = HandleCache<RouteStatus, RequestSeries>()
    let ttfb = HandleCache<Upstream.Name, DurationHistogram>()
    let overhead = HandleCache<String, DurationHistogram>()
    let receipts = HandleCache<String, Counter>()
}

/// Metric handles by label value, each made once (the registry would hand back the same one anyway).
final class HandleCache<Key: Hashable & Sendable, Handle: Sendable>: Sendable {
    private let table = Mutex<[Key: Handle]>([:])

    func handle(_ key: Key, make: () -> Handle) -> Handle {
        table.withLock { table in
            if let found = table[key] { return found }
            let made = make()
            table[key] = made
            return made
        }
    }
}
