import GuardedHTTP
import Hummingbird
import Logging
import NIOCore

/// The accept queue asked of the kernel (which caps it at `net.core.somaxconn`).
let listenBacklog = 65_535

/// Builds the HTTP application: routes, middleware and background services over one `ProxyServices`.
public func buildApplication(
    _ services: ProxyServices, onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }
) -> some ApplicationProtocol {
    let router = Router(context: BasicRequestContext.self)
    router.add(middleware: MetricsMiddleware(metrics: services.metrics))
    router.add(middleware: ErrorShapeMiddleware())
    addRoutes(to: router, services: services)
    var app = Application(
        router: router,
        // Time limits per connection, and a client that goes away cancels its request (SPEC §1, §2).
        server: .guardedHTTP1(limits: services.config.connectionLimits),
        // A burst of thousands of new connections (gateways opening streams at once) overflowed Hummingbird's
        // default accept queue of 256: the rest waited for SYN retries, seconds before their first token. The
        // kernel caps this at net.core.somaxconn.
        configuration: .init(
            address: .hostname(services.config.host, port: services.config.port), serverName: nil,
            backlog: listenBacklog),
        onServerRunning: onServerRunning,
        logger: services.logger
    )
    // First, so that it stops last: resources close once the server has drained (reverse order on shutdown).
    app.addServices(ResourcesService(services: services))
    app.addServices(
        CongestionPoller(
            upstream: services.vllm, trafficControl: services.trafficControl,
            interval: services.config.metricsPollInterval, timeout: services.config.metricsTimeout,
            logger: services.logger))
    return app
}
