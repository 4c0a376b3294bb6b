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

    /// Polls until graceful shutdown; being cancelled then is the normal way to stop, not a failure
    /// (rethrowing it would make the whole process exit non-zero on SIGTERM).
    func run() async throws {
        do {
            try await cancelWhenGracefulShutdown {
                while !Task.isCancelled {
                    await poll()
                    try await Task.sleep(for: interval)
                }
            }
        } catch is CancellationError {
            return
        }
    }

    func poll() async {
        do {
            // A down vLLM would otherwise warn on every poll; requests still warn, the poll logs at debug.
            var quiet = logger
            quiet.logLevel = .error
            let response = try await upstream.send(.GET, path: "/metrics", body: nil, timeout: timeout, logger: quiet)
            guard response.status == 200 else { return }
            let body = try await response.body.collect(upTo: 16 << 20)
            if let waiting = maxRequestsWaiting(inPrometheusText: Substring(String(buffer: body))) {
                trafficControl.record(waiting: waiting)
            }
        } catch {
            logger.debug("vLLM metrics poll failed")
        }
    }
}
