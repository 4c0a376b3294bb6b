import ServiceLifecycle

/// Stops what `ProxyServices` holds (upstream pools, Redis, the attestation client, NVML) as part of the
/// application's service group: added before the server, and a group shuts its services down in reverse order,
/// so this runs once the server has drained its requests — or at once when the group is cancelled.
struct ResourcesService: Service {
    let services: ProxyServices

    func run() async throws {
        try? await gracefulShutdown()
        try await services.shutdown()
    }
}

extension ResourcesService: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// The service group logs its services by description: the default one would reflect every key, credential
    /// and client `ProxyServices` holds (SPEC §1: no secret in a log line).
    var description: String { "ResourcesService" }
    var debugDescription: String { description }
    var customMirror: Mirror { Mirror(self, children: [:]) }
}
