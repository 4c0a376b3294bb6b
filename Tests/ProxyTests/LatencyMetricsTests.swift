import Foundation
import NIOCore
import Testing

@testable import VLLMProxy

/// `/v1/metrics`' request duration, upstream time to first byte and proxy overhead histograms, read back
/// through the real app in front of the real stub. Timings are checked only as lower bounds the stub's
/// pauses guarantee, never as upper bounds.
@Suite struct LatencyMetricsTests {
    static let chatRoute = "/v1/chat/completions"

    static func chat(model: String, stream: Bool) -> String {
        #"{"model":"\#(model)","stream":\#(stream),"messages":[{"role":"user","content":"time me"}]}"#
    }

    @Test func completionsFillTheThreeHistogramsWithTheRightLabels() async throws {
        try await ProxyHarness.run { proxy in
            // One of each: JSON and streamed, each with a 200 ms pause upstream (a stream pauses after its
            // first chunk), an upstream error (reaches the upstream, not relayed whole), and a refusal.
            let json = try await proxy.post(Self.chatRoute, json: Self.chat(model: "stub-pause-200", stream: false))
            #expect(json.status == 200)
            let stream = try await proxy.post(Self.chatRoute, json: Self.chat(model: "stub-pause-200", stream: true))
            #expect(stream.status == 200 && stream.text.hasSuffix("data: [DONE]\n\n"))
            let failed = try await proxy.post(Self.chatRoute, json: Self.chat(model: "stub-error-503", stream: false))
            #expect(failed.status == 503)
            let refused = try await proxy.post(Self.chatRoute, json: Self.chat(model: "x", stream: false), auth: false)
            #expect(refused.status == 401)
            _ = try await proxy.request(.GET, "/v1/no-such-route", auth: false)

            let duration = "vllm_proxy_request_duration_seconds"
            let ok = #"route="/v1/chat/completions",status="200""#
            // Durations and overheads are recorded once the body is written, maybe after the client has it.
            let samples = try await metrics(of: proxy) { samples in
                samples["\(duration)_count{\(ok)}"] == 2
                    && samples[#"vllm_proxy_proxy_overhead_seconds_count{route="/v1/chat/completions"}"#] == 2
            }
            #expect(samples[#"\#(duration)_count{route="/v1/chat/completions",status="503"}"#] == 1)
            #expect(samples[#"\#(duration)_count{route="/v1/chat/completions",status="401"}"#] == 1)
            // Hummingbird names the route of an unknown path `NotFound`: still one series, whatever the path.
            #expect(samples[#"\#(duration)_count{route="NotFound",status="404"}"#] == 1)
            #expect(samples["vllm_proxy_http_requests_total{\(ok)}"] == 2)

            // Every response head from the upstream counts, the error's too; the JSON answer came ≥ 200 ms late.
            let ttfb = #"vllm_proxy_upstream_ttfb_seconds"#
            #expect(samples[#"\#(ttfb)_count{upstream="vllm"}"#] == 3)
            #expect(try #require(samples[#"\#(ttfb)_sum{upstream="vllm"}"#]) >= 0.2)
            #expect(try #require(samples[#"\#(ttfb)_bucket{upstream="vllm",le="0.1"}"#]) <= 2)

            // Overhead excludes the waits on the upstream: both 200 ms pauses lie between the two sums.
            let overheadSum = #"vllm_proxy_proxy_overhead_seconds_sum{route="/v1/chat/completions"}"#
            let overhead = try #require(samples[overheadSum])
            let total = try #require(samples["\(duration)_sum{\(ok)}"])
            #expect(overhead >= 0 && total - overhead >= 0.4, "overhead \(overhead) s of \(total) s")
            for name in [duration, ttfb, "vllm_proxy_proxy_overhead_seconds"] {
                #expect(samples.keys.contains { $0.hasPrefix(name + "_bucket{") && $0.contains(#"le="+Inf""#) })
            }
        }
    }

    @Test func timingSubtractsEveryUpstreamWait() async throws {
        let start = NIODeadline.now()
        var timing = UpstreamTiming(route: Self.chatRoute, start: start)
        timing.upstreamWaitBegins()
        try await Task.sleep(for: .milliseconds(30))
        #expect(timing.upstreamWaitEnds() >= .milliseconds(30))
        timing.upstreamWaitBegins()
        try await Task.sleep(for: .milliseconds(30))
        timing.upstreamWaitEnds()
        let end = NIODeadline.now()
        let overhead = timing.overhead(until: end)
        #expect(overhead >= .zero)
        #expect(overhead <= .nanoseconds((end - start).nanoseconds) - .milliseconds(60))

        // Time before the first wait is overhead too.
        var early = UpstreamTiming(route: Self.chatRoute, start: .now() - .milliseconds(100))
        early.upstreamWaitBegins()
        early.upstreamWaitEnds()
        #expect(early.overhead() >= .milliseconds(100))
    }

    @Test func overheadIsLabelledWithTheRouteTemplate() {
        #expect(ProxyRoute.chat.path == "/v1/chat/completions")
        #expect(ProxyRoute.completions.path == "/v1/completions")
        #expect(ProxyRoute.chutesChat.path == "/v1/chutes/chat/completions")
        #expect(ProxyRoute.chutesChat.upstreamPath == "/v1/chat/completions")
        #expect(ProxyRoute.tokenize.upstreamPath == "/tokenize")
    }
}

/// Our own `/v1/metrics` samples as `name{labels}` → value, read until `ready` holds (at most ~10 s).
func metrics(of proxy: ProxyHarness, until ready: ([String: Double]) -> Bool) async throws -> [String: Double] {
    var samples: [String: Double] = [:]
    for _ in 0..<100 {
        let text = try await proxy.request(.GET, "/v1/metrics", auth: false).text
        let ours = text.components(separatedBy: "# --- vLLM Backend Metrics ---\n")[0]
        samples = [:]
        for line in ours.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
                continue
            }
            samples[String(line[..<space])] = value
        }
        if ready(samples) { return samples }
        try await Task.sleep(for: .milliseconds(100))
    }
    Issue.record("metrics never reached the expected state")
    return samples
}
