import AsyncHTTPClient
import DevStubs
import Foundation
import NIOCore
import Testing

@testable import VLLMProxy

/// SPEC §2's upstream rules (issue #20) through the real app and the stub: what is sent upstream, and how
/// often, when requests wait for a connection, time out or get an answer too large to hold.
@Suite struct UpstreamLimitsTests {
    static func chat(_ text: String, model: String = "stub-model", stream: Bool = false) -> String {
        #"{"model":"\#(model)","stream":\#(stream),"messages":[{"role":"user","content":"\#(text)"}]}"#
    }

    /// Requests the stub received whose body carries `marker`.
    static func received(_ proxy: ProxyHarness, _ marker: String) -> Int {
        proxy.stub.requests.filter { String(decoding: $0.body, as: UTF8.self).contains(marker) }.count
    }

    /// Posts a chat completion from its own task, as a client that can leave (cancelling closes its connection).
    static func post(_ proxy: ProxyHarness, _ json: String) -> Task<ProxyHarness.Reply, any Error> {
        Task { try await proxy.post("/v1/chat/completions", json: json) }
    }

    static func waitUntil(_ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(20)
        while !condition(), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
    }

    /// One connection, busy: a request whose client leaves while it waits for it never reaches the upstream,
    /// and the live request queued behind it is served once the connection frees up.
    @Test func aRequestWhoseClientLeftWhileWaitingIsNeverSent() async throws {
        try await ProxyHarness.run(environment: ["UPSTREAM_MAX_CONNECTIONS": "1"]) { proxy in
            // Busy for 8 s: ample time, even on a loaded machine, for the others to queue and for the proxy to
            // notice that one left, before the connection frees up.
            let busy = Self.post(proxy, Self.chat("busy", model: "stub-pause-8000"))
            try await Self.waitUntil { Self.received(proxy, "busy") == 1 }
            #expect(Self.received(proxy, "busy") == 1)
            let leaving = Self.post(proxy, Self.chat("leaving"))
            try await Task.sleep(for: .seconds(1))
            let staying = Self.post(proxy, Self.chat("staying"))
            try await Task.sleep(for: .milliseconds(500))
            leaving.cancel()  // AsyncHTTPClient closes the connection
            _ = try? await leaving.value
            #expect(try await busy.value.status == 200)
            let served = try await staying.value
            #expect(served.status == 200)
            #expect(served.text.contains("Echo: staying"))
            // Anything sent for the client that left would have arrived by now.
            try await Task.sleep(for: .milliseconds(300))
            #expect(Self.received(proxy, "leaving") == 0)
            #expect(proxy.stub.completionCounts.started == 2)
        }
    }

    /// One connection, held by a stream: a request waiting for it longer than UPSTREAM_TIMEOUT_SECONDS gets
    /// `504 upstream_timeout`, and was never sent.
    @Test func aWaitForAConnectionIsBoundedByTheUpstreamTimeout() async throws {
        let environment = ["UPSTREAM_MAX_CONNECTIONS": "1", "UPSTREAM_TIMEOUT_SECONDS": "1"]
        try await ProxyHarness.run(environment: environment) { proxy in
            var request = HTTPClientRequest(url: proxy.base + "/v1/chat/completions")
            request.method = .POST
            request.headers.add(name: "Authorization", value: "Bearer \(ProxyHarness.token)")
            request.body = .bytes(ByteBuffer(string: Self.chat("holding", model: "stub-long", stream: true)))
            let holding = try await proxy.client.execute(request, timeout: .seconds(30))
            #expect(holding.status == .ok)
            let started = ContinuousClock.now
            let waited = try await proxy.post("/v1/chat/completions", json: Self.chat("waited"))
            #expect(waited.status == 504)
            expectErrorShape(waited, type: "upstream_timeout")
            #expect(ContinuousClock.now - started < .seconds(10))
            #expect(Self.received(proxy, "waited") == 0)
            // Leaving the loop drops the body stream: AsyncHTTPClient closes the connection.
            for try await _ in holding.body { break }
        }
    }

    /// A read timeout on a kept-alive connection: exactly one upstream request and a 504, not a second
    /// generation of the same request (issue #20).
    @Test func aReadTimeoutSendsTheRequestOnce() async throws {
        try await ProxyHarness.run(environment: ["UPSTREAM_TIMEOUT_SECONDS": "1"]) { proxy in
            // Kept-alive connections on every event loop, so the slow request reuses one whichever loop it runs
            // on: the case that used to be sent again.
            try await withThrowingTaskGroup(of: Int.self) { group in
                for index in 0..<16 {
                    group.addTask {
                        try await proxy.post(
                            "/v1/chat/completions", json: Self.chat("warm \(index)", model: "stub-slow-200")
                        ).status
                    }
                }
                for try await status in group { #expect(status == 200) }
            }
            let reply = try await proxy.post("/v1/chat/completions", json: Self.chat("once", model: "stub-slow-3000"))
            #expect(reply.status == 504)
            expectErrorShape(reply, type: "upstream_timeout")
            // A second attempt would have been sent as the first timed out, and answered 504 only after its own.
            try await Task.sleep(for: .milliseconds(1500))
            #expect(Self.received(proxy, "once") == 1)
        }
    }

    /// UPSTREAM_MAX_RESPONSE_BYTES caps every answer held whole: a completion over it is a 502 (its request was
    /// sent once); a stream of the same size is not held whole, so it passes, as does a small listing.
    @Test func anAnswerOverTheCapIs502() async throws {
        try await ProxyHarness.run(environment: ["UPSTREAM_MAX_RESPONSE_BYTES": "1024"]) { proxy in
            let long = String(repeating: "x", count: 2000)
            let tooLarge = try await proxy.post("/v1/chat/completions", json: Self.chat(long))
            #expect(tooLarge.status == 502)
            expectErrorShape(tooLarge, type: "upstream_unavailable")
            #expect(Self.received(proxy, long) == 1)
            #expect(try await proxy.post("/v1/chat/completions", json: Self.chat("short")).status == 200)
            let streamed = try await proxy.post("/v1/chat/completions", json: Self.chat(long, stream: true))
            #expect(streamed.status == 200)
            #expect(streamed.text.contains("[DONE]"))
            #expect(try await proxy.request(.GET, "/v1/models", auth: false).status == 200)
        }
    }

    @Test func theCapIsConfiguredWithinItsRange() throws {
        let base = ["TOKEN": "t", "MODEL_NAME": "m"]
        #expect(try ProxyConfig(environment: base).upstreamMaxResponseBytes == 16 << 20)
        var small = base
        small["UPSTREAM_MAX_RESPONSE_BYTES"] = "1023"
        #expect(throws: ConfigError.self) { try ProxyConfig(environment: small) }
        small["UPSTREAM_MAX_RESPONSE_BYTES"] = "1024"
        #expect(try ProxyConfig(environment: small).upstreamMaxResponseBytes == 1024)
    }
}
