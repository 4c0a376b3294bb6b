import Crypto
import DevStubs
import Foundation
import JSON
import Signing
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
                // The instance's evidence is verified before anything is sealed to its key (SPEC §7.2).
                #expect(
                    paths == [
                        "/v1/models", "/chutes/\(ChutesE2EEDevRelay.chuteID)/evidence",
                        "/e2e/instances/\(ChutesE2EEDevRelay.chuteID)", "/e2e/invoke",
                    ])
                let invoke = try #require(chutes.chutes.requests.last)
                #expect(invoke.header("Content-Type") == "application/octet-stream")
                #expect(invoke.header("X-E2E-Stream") == String(stream))
                #expect(!String(decoding: invoke.body, as: UTF8.self).contains("sealed hello"))

                let id = try #require(
                    reply.text.firstMatch(of: /"id":"(chatcmpl-dev-e2e-[0-9a-f-]+)"/).map { String($0.1) })
                let signature = try await proxy.request(.GET, "/v1/signature/\(id)")
                #expect(signature.json["chutes_transport"] as? String == "e2ee")
                #expect(signature.json["chutes_instance_id"] as? String == "dev-instance-1")
                let record = try #require(signature.json["record"] as? [String: Any])
                let attestation = try #require(record["chutes_attestation"] as? [String: Any])
                #expect(attestation["verified"] as? Bool == true)
                #expect(attestation["instance_id"] as? String == "dev-instance-1")
                #expect(attestation["tcb_status"] as? String == "UpToDate")
                #expect((attestation["quote_sha256"] as? String)?.count == 64)
                #expect(
                    signature.json["text"] as? String == sha256Hex(Array(Self.body(stream: stream).utf8)) + ":"
                        + sha256Hex(reply.body))
            }
        }
    }

    /// `/v1/attestation/chain` end to end against the dev relay: the proxy's verdict signed with its key, and
    /// the passthrough evidence bound by hash.
    @Test func theChainVerifiesInBothModes() async throws {
        try await ChutesHarness.run(e2ee: true) { chutes in
            try await V3RouteTests.run(environment: chutes.e2eeEnvironment) { proxy in
                let nonce = String(repeating: "ab", count: 32)
                let reply = try await proxy.request(
                    .GET, "/v1/attestation/chain?model=stub-model&nonce=\(nonce)&signing_algo=ed25519")
                #expect(reply.status == 200)
                let receipt = try #require(reply.json["verification_receipt"] as? [String: Any])
                let payload = try #require(receipt["payload"] as? [String: Any])
                #expect(payload["result"] as? String == "pass" && payload["nonce"] as? String == nonce)
                let results = try #require(payload["instance_results"] as? [[String: Any]])
                #expect(results.count == 1 && results[0]["binding_verified"] as? Bool == true)
                // The signature covers the payload's canonical JSON as served: re-serialise it the Python way.
                let served = try #require(try JSONValue(parsing: reply.body)["verification_receipt"]?["payload"])
                let canonical = served.canonicalSerialized()
                let key = try Curve25519.Signing.PublicKey(
                    rawRepresentation: Hex.decode(try #require(receipt["signing_address"] as? String))!)
                #expect(
                    key.isValidSignature(Hex.decode(try #require(receipt["signature"] as? String))!, for: canonical))

                let pass = try await proxy.request(
                    .GET, "/v1/attestation/chain?model=stub-model&nonce=\(nonce)&verify_mode=passthrough")
                #expect(pass.status == 200)
                let upstream = try #require(pass.json["upstream"] as? [String: Any])
                #expect(upstream["attestation"] is [String: Any])
                #expect((upstream["attestation_sha256"] as? String)?.count == 64)
                #expect(pass.json["binding_proof"] is [String: Any])
                let report = try #require((pass.json["proxy"] as? [String: Any])?["attestation"] as? [String: Any])
                #expect(report["request_nonce"] as? String == nonce)

                let unknown = try await proxy.request(.GET, "/v1/attestation/chain?model=no-such-model")
                #expect(unknown.status == 404)
                let badMode = try await proxy.request(.GET, "/v1/attestation/chain?model=stub-model&verify_mode=x")
                #expect(badMode.status == 400)
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

    /// SPEC §7.2: verification without a measurement policy is no verification, so the routes refuse to serve.
    @Test(arguments: [
        ["CHUTES_E2EE": "1"], ["CHUTES_E2EE": "1", "CHUTES_VERIFY_ATTESTATION": "0", "CHUTES_TEE_ONLY": "1"],
        ["CHUTES_E2EE": "1", "CHUTES_TDX_MEASUREMENTS_FILE": "/nonexistent/m.json"],
    ])
    func verificationWithoutAMeasurementPolicyIsMisconfigured(extra: [String: String]) throws {
        let config = try ProxyConfig(
            environment: ["TOKEN": "t", "MODEL_NAME": "m", "CHUTES_ENABLED": "1", "CHUTES_API_KEY": "k"].merging(extra)
            {
                $1
            })
        let mode = ChutesMode.decide(config.chutes, timeout: .seconds(5))
        guard case .misconfigured(let reason) = mode else {
            Issue.record("expected misconfigured, got \(mode)")
            return
        }
        #expect(reason.hasPrefix("CHUTES_TDX_MEASUREMENTS_FILE"))
        #expect(throws: ProxyError.self) { try mode.upstream() }
    }

    @Test func aVerificationSwitchThatIsNotABooleanStopsStartUp() {
        #expect(throws: ConfigError.self) {
            try ProxyConfig(environment: ["TOKEN": "t", "MODEL_NAME": "m", "CHUTES_VERIFY_ATTESTATION": "ture"])
        }
    }

    @Test func theTransportNeverDescribesTheKey() async throws {
        let key = "cpk-never-printed-\(UUID().uuidString)"
        let config = try ProxyConfig(environment: [
            "TOKEN": "t", "MODEL_NAME": "m", "CHUTES_ENABLED": "1", "CHUTES_API_KEY": key, "CHUTES_E2EE": "1",
            "CHUTES_VERIFY_ATTESTATION": "0",
        ])
        let mode = ChutesMode.decide(config.chutes, timeout: .seconds(5))
        #expect(mode.warnings.count == 1 && mode.warnings[0].contains("CHUTES_VERIFY_ATTESTATION=false"))
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
        #expect(
            mode.logLine
                == "chutes: enabled (https://llm.chutes.ai), e2ee via https://api.chutes.ai, instances NOT verified")
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
