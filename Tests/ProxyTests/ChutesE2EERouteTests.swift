import DevStubs
import Foundation
import Testing

@testable import VLLMProxy

/// SPEC §7 with `CHUTES_E2EE`: the Chutes route, same pipeline, completions sealed to the (dev) instance.
@Suite struct ChutesE2EERouteTests {
    static func body(stream: Bool) -> String {
        #"{"model":"stub-model","stream":\#(stream),"messages":[{"role":"user","content":"sealed hello"}]}"#
    }

    @Test(arguments: [false, true])
    func completionsTravelSealedAndReceiptsNameTheInstance(stream: Bool) async throws {
        try await ChutesHarness.run(e2ee: true) { chutes in
            try await ProxyHarness.run(environment: chutes.e2eeEnvironment) { proxy in
                let reply = try await proxy.post("/v1/chutes/chat/completions", json: Self.body(stream: stream))
                #expect(reply.status == 200)
                #expect(reply.headers.first(name: "X-Proxy-Upstream-Transport") == "e2ee")
                #expect(reply.text.contains("sealed") && reply.text.contains("Echo:"))
                let paths = chutes.chutes.requests.map(\.path)
                #expect(paths == ["/v1/models", "/e2e/instances/\(ChutesE2EEDevRelay.chuteID)", "/e2e/invoke"])
                let invoke = try #require(chutes.chutes.requests.last)
                #expect(invoke.header("Content-Type") == "application/octet-stream")
                #expect(invoke.header("X-E2E-Stream") == String(stream))
                #expect(!String(decoding: invoke.body, as: UTF8.self).contains("sealed hello"))

                let id = try #require(
                    reply.text.firstMatch(of: /"id":"(chatcmpl-dev-e2e-[0-9a-f-]+)"/).map { String($0.1) })
                let signature = try await proxy.request(.GET, "/v1/signature/\(id)")
                #expect(signature.json["chutes_transport"] as? String == "e2ee")
                #expect(signature.json["chutes_instance_id"] as? String == "dev-instance-1")
                #expect(
                    signature.json["text"] as? String == sha256Hex(Array(Self.body(stream: stream).utf8)) + ":"
                        + sha256Hex(reply.body))
            }
        }
    }

    @Test func tlsReceiptsSayTLS() async throws {
        try await ChutesHarness.run { chutes in
            try await ProxyHarness.run(environment: chutes.environment) { proxy in
                let reply = try await proxy.post("/v1/chutes/chat/completions", json: Self.body(stream: false))
                #expect(reply.headers.first(name: "X-Proxy-Upstream-Transport") == "tls")
                let id = try #require(reply.json["id"] as? String)
                let signature = try await proxy.request(.GET, "/v1/signature/\(id)")
                #expect(signature.json["chutes_transport"] as? String == "tls")
                #expect(signature.json["chutes_instance_id"] is NSNull)
            }
        }
    }

    @Test func theTransportNeverDescribesTheKey() async throws {
        let key = "cpk-never-printed-\(UUID().uuidString)"
        let config = try ProxyConfig(environment: [
            "TOKEN": "t", "MODEL_NAME": "m", "CHUTES_ENABLED": "1", "CHUTES_API_KEY": key, "CHUTES_E2EE": "1",
        ])
        let mode = ChutesMode.decide(config.chutes, timeout: .seconds(5))
        guard case .enabled(let upstream) = mode, case .chutesE2EE(let transport) = upstream.transport else {
            Issue.record("expected an E2EE Chutes upstream, got \(mode)")
            return
        }
        for text in [
            String(describing: mode), String(reflecting: mode), String(describing: transport),
            String(reflecting: transport), String(describing: transport.directory),
            String(reflecting: transport.directory), "\(Mirror(reflecting: transport).children.map(\.value))",
        ] {
            #expect(!text.contains("never-printed"), "\(text)")
        }
        #expect(mode.logLine == "chutes: enabled (https://llm.chutes.ai), e2ee via https://api.chutes.ai")
        await upstream.shutdown()
    }

    @Test func anE2EBaseURLThatIsNotHTTPSIsAMisconfiguration() async throws {
        try await ChutesHarness.run(e2ee: true) { chutes in
            var environment = chutes.e2eeEnvironment
            environment["CHUTES_E2E_BASE_URL"] = "http://localhost:1"
            try await ProxyHarness.run(environment: environment) { proxy in
                let reply = try await proxy.post("/v1/chutes/chat/completions", json: Self.body(stream: false))
                #expect(reply.status == 503)
                expectErrorShape(reply, type: "chutes_misconfigured")
                #expect(reply.text.contains("CHUTES_E2E_BASE_URL"))
                #expect(chutes.chutes.requests.isEmpty)
            }
        }
    }
}
