import Foundation
import Testing

@testable import VLLMProxy

/// SPEC §7: Chutes is the same pipeline with another upstream, isolated from the vLLM routes.
@Suite struct ChutesTests {
    static let chat = #"{"model":"stub-model","messages":[{"role":"user","content":"hello chutes"}]}"#

    @Test func disabledAnswers503OnBothRoutesAndMarksThem() async throws {
        try await ProxyHarness.run { proxy in
            let chat = try await proxy.post("/v1/chutes/chat/completions", json: Self.chat)
            #expect(chat.status == 503)
            expectErrorShape(chat, type: "chutes_disabled")
            #expect(chat.headers.first(name: "X-Proxy-Upstream") == "chutes")
            let models = try await proxy.request(.GET, "/v1/chutes/models")
            #expect(models.status == 503)
            expectErrorShape(models, type: "chutes_disabled")
            let unauthorized = try await proxy.post("/v1/chutes/chat/completions", json: Self.chat, auth: false)
            #expect(unauthorized.status == 401)
            #expect(unauthorized.headers.first(name: "X-Proxy-Upstream") == "chutes")
            #expect(proxy.stub.requests.isEmpty)
        }
    }

    @Test(arguments: [
        (["CHUTES_ENABLED": "1"], "CHUTES_API_KEY"),
        (["CHUTES_ENABLED": "1", "CHUTES_API_KEY": ""], "CHUTES_API_KEY"),
        (
            ["CHUTES_ENABLED": "1", "CHUTES_API_KEY": "k-secret", "CHUTES_BASE_URL": "http://llm.chutes.ai"],
            "CHUTES_BASE_URL"
        ),
        (["CHUTES_ENABLED": "1", "CHUTES_API_KEY": "k-secret", "CHUTES_BASE_URL": "llm.chutes.ai"], "CHUTES_BASE_URL"),
        (
            ["CHUTES_ENABLED": "1", "CHUTES_API_KEY": "k-secret", "CHUTES_CA_FILE": "/nonexistent/ca.pem"],
            "CHUTES_CA_FILE"
        ),
    ])
    func misconfigurationIs503NamingTheProblemNeverTheKey(environment: [String: String], named: String) async throws {
        try await ProxyHarness.run(environment: environment) { proxy in
            for reply in [
                try await proxy.post("/v1/chutes/chat/completions", json: Self.chat),
                try await proxy.request(.GET, "/v1/chutes/models"),
            ] {
                #expect(reply.status == 503)
                expectErrorShape(reply, type: "chutes_misconfigured")
                #expect(reply.text.contains(named))
                #expect(!reply.text.contains("k-secret"))
            }
            // The vLLM routes keep serving whatever the Chutes configuration.
            #expect((try await proxy.post("/v1/chat/completions", json: Self.chat)).status == 200)
        }
    }

    @Test(arguments: [false, true])
    func enabledRelaysOverTLSWithTheKeyAndSignsAsChutes(stream: Bool) async throws {
        let body =
            #"{"model":"stub-model","stream":\#(stream),"messages":[{"role":"user","content":"hi chutes"}],"tool_calls":[]}"#
        try await ChutesHarness.run { chutes in
            try await ProxyHarness.run(environment: chutes.environment) { proxy in
                let reply = try await proxy.post(
                    "/v1/chutes/chat/completions", json: body,
                    headers: [("X-Request-Hash", String(repeating: "0", count: 64))])
                #expect(reply.status == 200)
                #expect(reply.headers.first(name: "X-Proxy-Upstream") == "chutes")
                #expect(reply.headers.first(name: "X-E2EE-Applied") == "false")
                #expect(reply.text.contains("Echo"))
                let received = try #require(chutes.chutes.requests.first)
                #expect(received.header("Authorization") == "Bearer \(ChutesHarness.apiKey)")
                #expect(received.header("X-Request-Hash") == nil)
                #expect(received.body == Array(body.utf8))
                #expect(proxy.stub.requests.isEmpty)

                let id = "chatcmpl-stub-" + sha256Hex(Array(body.utf8)).prefix(24)
                let signature = try await proxy.request(.GET, "/v1/signature/\(id)")
                #expect(signature.json["upstream"] as? String == "chutes")
                #expect(
                    signature.json["text"] as? String == String(repeating: "0", count: 64) + ":" + sha256Hex(reply.body)
                )
            }
        }
    }

    @Test func modelsComeFromChutesWithTheKey() async throws {
        try await ChutesHarness.run { chutes in
            try await ProxyHarness.run(environment: chutes.environment) { proxy in
                let reply = try await proxy.request(.GET, "/v1/chutes/models")
                #expect(reply.status == 200)
                #expect(reply.text.contains("stub-model"))
                #expect(reply.headers.first(name: "X-Proxy-Upstream") == "chutes")
                #expect(chutes.chutes.requests.first?.header("Authorization") == "Bearer \(ChutesHarness.apiKey)")
                #expect((try await proxy.request(.GET, "/v1/chutes/models", auth: false)).status == 401)
            }
        }
    }

    @Test func aRefusedKeyIsOurMisconfiguration() async throws {
        try await ChutesHarness.run(stubKey: "some-other-key") { chutes in
            try await ProxyHarness.run(environment: chutes.environment) { proxy in
                for reply in [
                    try await proxy.post("/v1/chutes/chat/completions", json: Self.chat),
                    try await proxy.request(.GET, "/v1/chutes/models"),
                ] {
                    #expect(reply.status == 503)
                    expectErrorShape(reply, type: "chutes_misconfigured")
                    #expect(!reply.text.contains(ChutesHarness.apiKey))
                }
            }
        }
    }

    /// SPEC §1/§7: no 12-character run of the key reaches the client, whatever form Chutes echoed it in; the
    /// status passes, the message is rebuilt from Chutes' own when it is clean, else generic.
    @Test func anEchoedKeyNeverReachesTheClientInAnyForm() async throws {
        try await ChutesHarness.run { chutes in
            try await ProxyHarness.run(environment: chutes.environment) { proxy in
                for form in ["", "-detail", "-escaped", "-url", "-split", "-masked", "-text", "-clean"] {
                    let reply = try await proxy.post(
                        "/v1/chutes/chat/completions", json: #"{"model":"stub-echo-auth\#(form)","messages":[]}"#)
                    #expect(reply.status == 400, "\(form)")
                    expectErrorShape(reply, type: "upstream_error")
                    let message = (reply.json["error"] as? [String: Any])?["message"] as? String ?? ""
                    let generic = "The chutes upstream answered HTTP 400"
                    let expected = form == "-clean" ? generic + ": model not found" : generic
                    #expect(message == expected, "\(form)")
                    let key = Array(ChutesHarness.apiKey)
                    for start in 0...(key.count - 12) {
                        #expect(!reply.text.contains(String(key[start..<(start + 12)])), "\(form)")
                    }
                }
            }
        }
    }

    @Test func cleanScrubberMessagesPassAndResemblingOnesDoNot() {
        let scrubber = CredentialScrubber(secret: "cpk_0123456789abcdefghij.klmnopqrstuv")
        #expect(scrubber.safeMessage(fromErrorBody: Array(#"{"detail":"rate limited"}"#.utf8)) == "rate limited")
        let nested = #"{"error":{"message":"no such model"}}"#
        #expect(scrubber.safeMessage(fromErrorBody: Array(nested.utf8)) == "no such model")
        for hostile in [
            #"{"detail":"key cpk_0123456789abcdef"}"#, #"{"detail":"key CPK-01234567-89ABCDEF"}"#,
            #"{"detail":"key cpk\u005f0123456789"}"#, #"{"detail":"k=cpk%5F0123456789ab"}"#,
            #"{"detail":"k=cpk%255F0123456789ab"}"#, #"{"detail":"x","a":"cpk_01","b":"23456789"}"#,
            #"{"detail":"cpk_0123…stuv"}"#, "not json", #"{"detail":"bell\u0007"}"#, #"{"detail":""}"#,
            #"{"detail":"a\u200bb"}"#,
        ] {
            #expect(scrubber.safeMessage(fromErrorBody: Array(hostile.utf8)) == nil, "\(hostile)")
        }
    }

    @Test func untrustedCertificateOrNoServerIs502AndSlownessIs504() async throws {
        try await ChutesHarness.run { chutes in
            var untrusted = chutes.environment
            untrusted["CHUTES_CA_FILE"] = nil
            try await ProxyHarness.run(environment: untrusted) { proxy in
                let reply = try await proxy.post("/v1/chutes/chat/completions", json: Self.chat)
                #expect(reply.status == 502)
                expectErrorShape(reply, type: "upstream_unavailable")
                #expect(chutes.chutes.requests.isEmpty)
            }
            var slow = chutes.environment
            slow["UPSTREAM_TIMEOUT_SECONDS"] = "0.3"
            try await ProxyHarness.run(environment: slow) { proxy in
                let reply = try await proxy.post(
                    "/v1/chutes/chat/completions", json: #"{"model":"stub-slow-3000","messages":[]}"#)
                #expect(reply.status == 504)
                expectErrorShape(reply, type: "upstream_timeout")
            }
        }
        var closed = ["CHUTES_ENABLED": "1", "CHUTES_API_KEY": "k", "CHUTES_BASE_URL": "https://127.0.0.1:1"]
        closed["CHUTES_CA_FILE"] = nil
        try await ProxyHarness.run(environment: closed) { proxy in
            let reply = try await proxy.post("/v1/chutes/chat/completions", json: Self.chat)
            #expect(reply.status == 502)
            expectErrorShape(reply, type: "upstream_unavailable")
        }
    }

    @Test func e2eeWorksOnChutesAndANonceSpentOnOneRouteIsSpentOnTheOther() async throws {
        try await ChutesHarness.run { chutes in
            try await ProxyHarness.run(environment: chutes.environment) { proxy in
                let client = ECDSAClient()
                let request = try E2EERouteTests.request(proxy, client, text: "private for chutes")
                let reply = try await proxy.post(
                    "/v1/chutes/chat/completions", json: request.body, headers: request.headers)
                #expect(reply.status == 200)
                #expect(reply.headers.first(name: "X-E2EE-Applied") == "true")
                #expect(!reply.text.contains("private for chutes"))
                let seen = String(decoding: try #require(chutes.chutes.requests.first).body, as: UTF8.self)
                #expect(seen.contains("private for chutes"))

                let again = try await proxy.post("/v1/chat/completions", json: request.body, headers: request.headers)
                #expect(again.status == 400)
                expectErrorShape(again, type: "e2ee_replay_detected")
                let other = try E2EERouteTests.request(proxy, client, text: "first on vllm")
                #expect(
                    (try await proxy.post("/v1/chat/completions", json: other.body, headers: other.headers)).status
                        == 200)
                let replayed = try await proxy.post(
                    "/v1/chutes/chat/completions", json: other.body, headers: other.headers)
                #expect(replayed.status == 400)
                expectErrorShape(replayed, type: "e2ee_replay_detected")
                #expect(chutes.chutes.requests.count == 1)
            }
        }
    }

    /// The existing routes answer the same whatever the Chutes configuration (ids and signatures aside:
    /// the stub is deterministic, so whole bodies compare).
    @Test func vllmRoutesAreIdenticalWithChutesDisabledMisconfiguredOrEnabled() async throws {
        try await ChutesHarness.run { chutes in
            var answers: [[String]] = []
            for environment in [[:], ["CHUTES_ENABLED": "yes"], chutes.environment] {
                let replies = try await ProxyHarness.run(environment: environment) { proxy in
                    [
                        try await proxy.post("/v1/chat/completions", json: Self.chat),
                        try await proxy.post(
                            "/v1/chat/completions", json: #"{"model":"stub-model","stream":true,"messages":[]}"#),
                        try await proxy.post("/v1/completions", json: #"{"model":"stub-model","prompt":"p"}"#),
                        try await proxy.post("/v1/chat/completions", json: #"{"model":"stub-error-422"}"#),
                        try await proxy.post("/v1/chat/completions", json: "oops"),
                        try await proxy.request(.GET, "/v1/models", auth: false),
                    ].map { "\($0.status) \($0.headers.first(name: "X-Proxy-Upstream") ?? "-") \($0.text)" }
                }
                answers.append(replies)
            }
            #expect(answers[0] == answers[1])
            #expect(answers[0] == answers[2])
            #expect(chutes.chutes.requests.isEmpty)
        }
    }
}

@Test func anUpstreamNeverDescribesItsKey() async throws {
    let mode = ChutesMode.decide(
        .init(enabled: true, baseURL: "https://chutes.example", apiKey: "sk-very-secret", caFile: nil),
        timeout: .seconds(5))
    guard case .enabled(let upstream) = mode else {
        Issue.record("expected enabled")
        return
    }
    var dumped = ""
    dump(upstream, to: &dumped)
    for text in [String(describing: upstream), String(reflecting: upstream), dumped, "\(mode)"] {
        #expect(!text.contains("sk-very-secret"))
    }
    await upstream.shutdown()
}
