import Logging
import NIOCore
import Signing
import Testing

@testable import VLLMProxy

/// The application's service group stops the proxy's resources after its server (ResourcesService), once.
@Suite struct ResourcesServiceTests {
    @Test func theServiceGroupStopsTheResourcesOnceTheServerHasStopped() async throws {
        let config = try ProxyConfig(environment: [
            "TOKEN": ProxyHarness.token, "MODEL_NAME": "test-model", "HOST": "127.0.0.1", "PORT": "0",
            "VLLM_BASE_URL": "http://127.0.0.1:9",
        ])
        let services = try ProxyServices(config: config, keys: SigningKeys(), logger: Logger(label: "test"))
        _ = try await withRunningApp({ buildApplication(services, onServerRunning: $0) }) { _ in
            // While serving, the upstream pool takes requests (this one fails to connect: nothing listens on 9).
            await #expect(throws: ProxyError.self) {
                _ = try await services.vllm.send(.GET, path: "/v1/models", body: nil, logger: Logger(label: "test"))
            }
        }
        // The server has stopped: so have the pools, and by the group, not by the caller.
        do {
            _ = try await services.vllm.send(.GET, path: "/v1/models", body: nil, logger: Logger(label: "test"))
            Issue.record("a stopped pool took a request")
        } catch {
            #expect(error.type == "upstream_unavailable")
        }
        #expect(services.vllm.pool.isShutDown)
        // A second stop (a caller that does not know) does nothing, and does not throw.
        try await services.shutdown()
    }

    @Test func theServiceGroupsLogLineNamesNoKeyOrSecret() async throws {
        let config = try ProxyConfig(environment: [
            "TOKEN": "tok-SECRETSECRET", "MODEL_NAME": "test-model", "VLLM_BASE_URL": "http://127.0.0.1:9",
            "REDIS_HOST": "127.0.0.1", "REDIS_PASSWORD": "pw-SECRETSECRET",
        ])
        let keys = SigningKeys()
        let services = try ProxyServices(config: config, keys: keys, logger: Logger(label: "test"))
        let service = ResourcesService(services: services)
        var dumped = ""
        dump(service, to: &dumped)
        // ServiceLifecycle logs `sl-services=[…]` with each service's description.
        for text in ["\(service)", String(reflecting: service), dumped, "\([service])"] {
            #expect(!text.contains("SECRET"), "\(text)")
            #expect(!text.contains(keys.ed25519Address), "not even a public key: nothing of ProxyServices")
        }
        try await services.shutdown()
    }
}
