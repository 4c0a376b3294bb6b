import Logging
import NIOCore
import ServiceLifecycle

/// Polls vLLM's `/metrics` in the background and feeds `TrafficControl` (SPEC §3). A failed poll records
/// nothing, so the last reading ages out and never blocks traffic.
struct CongestionPoller: Service {
    let upstream: Upstream
    let trafficControl: TrafficControl
    let interval: Duration
    let timeout: Duration
    let logger: Logger

    func run() async throws {
        try await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await poll()
                try await Task.sleep(for: interval)
            }
        }
    }

    func poll() async {
        do {
            let response = try await upstream.send(.GET, path: "/metrics", body: nil, timeout: timeout, logger: logger)
            guard response.status.code == 200 else { return }
            let body = try await response.body.collect(upTo: 16 << 20)
            if let waiting = maxRequestsWaiting(inPrometheusText: Substring(String(buffer: body))) {
                trafficControl.record(waiting: waiting)
            }
        } catch {
            logger.debug("vLLM metrics poll failed")
        }
    }
}
