import AsyncHTTPClient
import Foundation
import NIOCore
import Testing

@testable import VLLMProxy

/// SPEC §3: basic-tier admission on the vLLM routes.
@Suite struct TrafficControlTests {
    static let chat = #"{"model":"stub-model","messages":[{"role":"user","content":"hi"}]}"#

    @Test func congestedBackendRefusesBasicButNotPremium() async throws {
        try await ProxyHarness.run { proxy in
            proxy.stub.setWaiting(3)
            // The poller reads /metrics every 0.5 s; wait (bounded) for it to notice.
            let deadline = ContinuousClock.now + .seconds(10)
            var reply = try await proxy.post("/v1/chat/completions", json: Self.chat)
            while reply.status == 200, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(100))
                reply = try await proxy.post("/v1/chat/completions", json: Self.chat)
            }
            #expect(reply.status == 429)
            expectErrorShape(reply, type: "rate_limit")
            #expect((reply.json["error"] as? [String: Any])?["message"] as? String == "Upstream vLLM is congested")
            let text = try await proxy.post("/v1/completions", json: #"{"model":"stub-model","prompt":"x"}"#)
            #expect(text.status == 429)
            let premium = try await proxy.post(
                "/v1/chat/completions", json: Self.chat, headers: [("X-User-Tier", "PREMIUM")])
            #expect(premium.status == 200)
        }
    }

    @Test func basicInFlightLimitHoldsUntilTheLastByte() async throws {
        try await ProxyHarness.run(environment: ["BASIC_MAX_REQUEST": "1"]) { proxy in
            var request = HTTPClientRequest(url: proxy.base + "/v1/chat/completions")
            request.method = .POST
            request.headers.add(name: "Authorization", value: "Bearer \(ProxyHarness.token)")
            request.body = .bytes(ByteBuffer(string: #"{"model":"stub-long","stream":true,"messages":[]}"#))
            let response = try await proxy.client.execute(request, timeout: .seconds(30))
            var iterator = response.body.makeAsyncIterator()
            _ = try await iterator.next()

            let refused = try await proxy.post("/v1/chat/completions", json: Self.chat)
            #expect(refused.status == 429)
            #expect((refused.json["error"] as? [String: Any])?["message"] as? String == "Too many concurrent requests")
            let premium = try await proxy.post(
                "/v1/chat/completions", json: Self.chat, headers: [("X-User-Tier", "premium")])
            #expect(premium.status == 200)

            while try await iterator.next() != nil {}
            // The slot is released once the stream's last byte went out.
            let deadline = ContinuousClock.now + .seconds(10)
            var after = try await proxy.post("/v1/chat/completions", json: Self.chat)
            while after.status == 429, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
                after = try await proxy.post("/v1/chat/completions", json: Self.chat)
            }
            #expect(after.status == 200)
        }
    }

    @Test func failedRequestsReleaseTheirSlot() async throws {
        try await ProxyHarness.run(environment: ["BASIC_MAX_REQUEST": "1"]) { proxy in
            for _ in 0..<3 {
                let malformed = try await proxy.post("/v1/chat/completions", json: "nope")
                #expect(malformed.status == 400)
                let failed = try await proxy.post("/v1/chat/completions", json: #"{"model":"stub-error-500"}"#)
                #expect(failed.status == 500)
            }
            #expect((try await proxy.post("/v1/chat/completions", json: Self.chat)).status == 200)
        }
    }

    @Test func metricsParsingTakesTheLargestSampleOfTheRightFamily() {
        let text = """
            # HELP vllm:num_requests_waiting x
            vllm:num_requests_waiting{engine="0",model_name="M"} 0.0
            vllm:num_requests_waiting{engine="1",model_name="M"} 2.0
            vllm:num_requests_waiting_by_reason{reason="capacity"} 9.0
            """
        #expect(maxRequestsWaiting(inPrometheusText: Substring(text)) == 2)
        #expect(maxRequestsWaiting(inPrometheusText: "vllm:num_requests_waiting_by_reason{a=\"b\"} 4") == nil)
        #expect(maxRequestsWaiting(inPrometheusText: "vllm:num_requests_waiting 1.5") == 1.5)
    }

    @Test func staleReadingsNeverBlock() {
        let control = TrafficControl(maxBasicInFlight: 5, maxAge: .seconds(10))
        control.record(waiting: 4, at: .now - .seconds(11))
        #expect(control.isCongested() == false)
        control.record(waiting: 4)
        #expect(control.isCongested())
    }
}

/// SPEC §1: configuration is validated once, with one clear line naming the variable.
@Suite struct ConfigTests {
    static let base = ["TOKEN": "secret-token-value", "MODEL_NAME": "m"]

    @Test func defaultsMatchTheSpec() throws {
        let config = try ProxyConfig(environment: Self.base)
        #expect(config.host == "0.0.0.0" && config.port == 8000)
        #expect(config.vllmBaseURL == "http://vllm:8000")
        #expect(config.chatCacheExpiration == .seconds(1200))
        #expect(config.e2eeReplayWindowSeconds == 300)
        #expect(config.basicMaxRequest == 20)
        #expect(config.maxBodyBytes == 10_485_760)
        #expect(config.upstreamTimeout == .seconds(600))
        #expect(config.chutes.enabled == false && config.chutes.baseURL == "https://llm.chutes.ai")
        #expect(config.redis == nil)
        #expect(config.metricsPollInterval == .seconds(2) && config.metricsMaxAge == .seconds(30))
    }

    @Test(arguments: ["TOKEN", "MODEL_NAME"])
    func missingRequiredVariablesAreNamed(name: String) {
        var environment = Self.base
        environment[name] = nil
        #expect(throws: ConfigError.self) { try ProxyConfig(environment: environment) }
        do {
            _ = try ProxyConfig(environment: environment)
        } catch {
            #expect(error.description.contains(name))
        }
    }

    @Test(arguments: [
        "PORT", "CHAT_CACHE_EXPIRATION", "BASIC_MAX_REQUEST", "MAX_BODY_BYTES", "UPSTREAM_TIMEOUT_SECONDS",
        "METRICS_POLL_INTERVAL_SECONDS", "REDIS_PORT", "E2EE_REPLAY_WINDOW_SECONDS",
    ])
    func malformedNumbersAreNamed(name: String) {
        var environment = Self.base
        environment[name] = "12abc"
        do {
            _ = try ProxyConfig(environment: environment)
            Issue.record("accepted a malformed \(name)")
        } catch {
            #expect(error.description.contains(name))
            #expect(!error.description.contains("secret-token-value"))
        }
    }

    @Test func booleansAndClampsFollowTheSpec() throws {
        var environment = Self.base
        environment["GPU_NO_HW_MODE"] = "Yes"
        environment["CHUTES_ENABLED"] = "on"
        environment["METRICS_POLL_INTERVAL_SECONDS"] = "0.1"
        environment["METRICS_MAX_AGE_SECONDS"] = "99"
        let config = try ProxyConfig(environment: environment)
        #expect(config.gpuNoHardwareMode)
        #expect(config.chutes.enabled == false)
        #expect(config.metricsPollInterval == .milliseconds(500))
        #expect(config.metricsMaxAge == .seconds(30))
    }
}
