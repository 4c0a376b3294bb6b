import Testing

@testable import VLLMProxy

/// `vllm-proxy healthcheck`, the image's HEALTHCHECK: healthy only on a 200 from the proxy's own `GET /`.
@Suite struct LivenessProbeTests {
    @Test func aRunningProxyIsHealthy() async throws {
        try await ProxyHarness.run { proxy in
            #expect(await LivenessProbe.check(url: LivenessProbe.url(host: "127.0.0.1", port: proxy.proxyPort)))
        }
    }

    @Test func anotherStatusOrNoListenerIsUnhealthy() async throws {
        try await ProxyHarness.run { proxy in
            // The stub upstream has no `GET /` route: a 404 is not liveness.
            #expect(!(await LivenessProbe.check(url: "http://127.0.0.1:\(proxy.stubPort)/")))
        }
        #expect(!(await LivenessProbe.check(url: "http://127.0.0.1:1/")))
    }

    @Test(arguments: [
        ("0.0.0.0", "http://127.0.0.1:8000/"), ("", "http://127.0.0.1:8000/"), ("::", "http://[::1]:8000/"),
        ("127.0.0.1", "http://127.0.0.1:8000/"), ("fd00::5", "http://[fd00::5]:8000/"),
        ("proxy.internal", "http://proxy.internal:8000/"),
    ])
    func wildcardListenersAreProbedOverLoopback(host: String, url: String) {
        #expect(LivenessProbe.url(host: host, port: 8000) == url)
    }
}
