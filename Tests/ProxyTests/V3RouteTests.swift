import E2EE
import Foundation
import JSON
import Testing

@testable import VLLMProxy

/// E2EE v3 through the real app on a socket (SPEC §4.3): a client sealing to the attested key list, the stub
/// vLLM behind, and a gateway's edits refused before anything goes upstream.
@Suite struct V3RouteTests {
    /// The harness with a dev attestation agent, so the v3 key list can be read from a `version=3` report.
    static func run(environment: [String: String] = [:], _ body: (ProxyHarness) async throws -> Void) async throws {
        try await AttestationRouteTests.withAgent { socket, _ in
            try await ProxyHarness.run(
                environment: ["DSTACK_SIMULATOR_ENDPOINT": socket, "GPU_NO_HW_MODE": "1"].merging(environment) { $1 },
                body)
        }
    }

    /// The v3 client of this proxy, from its attestation `version=3` report.
    static func client(_ proxy: ProxyHarness) async throws -> V3Client {
        let report = try await proxy.request(.GET, "/v1/attestation/report?version=3")
        #expect(report.status == 200)
        let k = try #require((report.json["e2ee_v3_key_config"] as? String).flatMap { Data(base64Encoded: $0) })
        let client = try V3Client(keyConfig: Array(k))
        #expect(report.json["e2ee_v3_key_config_id"] as? String == client.keyConfigID)
        #expect(report.json["e2ee_versions"] as? [Int] == [1, 2, 3])
        return client
    }

    static func chat(_ text: String, stream: Bool, extra: String = "") -> [UInt8] {
        Array(
            #"{"model":"stub-model","stream":\#(stream),"messages":[{"role":"user","content":"\#(text)"}]\#(extra)}"#
                .utf8)
    }

    @Test(arguments: [V3Suite.x25519AES256GCM, .x25519ChaCha20Poly1305, .xwingAES256GCM])
    func jsonRoundTrip(suite: V3Suite) async throws {
        try await Self.run { proxy in
            let client = try await Self.client(proxy)
            let (envelope, opener) = try client.seal(
                Self.chat("v3 secret", stream: false), route: "/v1/chat/completions", model: "stub-model",
                stream: false, suite: suite)
            // A gateway's X-Request-Hash counts for nothing under E2EE: the receipt hashes the envelope received.
            let reply = try await proxy.request(
                .POST, "/v1/chat/completions", body: envelope,
                headers: [("X-E2EE-Version", "3"), ("X-Request-Hash", String(repeating: "0", count: 64))])
            #expect(reply.status == 200)
            #expect(reply.headers.first(name: "X-E2EE-Version") == "3")
            #expect(reply.headers.first(name: "X-E2EE-Algo") == suite.algoName)
            #expect(!reply.text.contains("v3 secret"))
            let body = try opener.openJSON(reply.body)
            let answer = try JSONValue(parsing: body)
            #expect(answer["choices"]?.arrayValue?.first?["message"]?["content"] == "Echo: v3 secret")
            // Clear usage: numbers only.
            #expect(
                reply.json["usage"] as? [String: Int] == [
                    "prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8,
                ])

            // Upstream got the opened request with a fresh cache salt.
            let forwarded = try JSONValue(parsing: try #require(proxy.stub.requests.last).body)
            #expect(forwarded["messages"]?.arrayValue?.first?["content"] == "v3 secret")
            #expect(forwarded["cache_salt"]?.stringValue?.utf8.count == 64)

            // The receipt: request hash over the envelope, response hash over the bytes received.
            let id = try #require(answer["id"]?.stringValue)
            let record = try await proxy.request(.GET, "/v1/signature/\(id)")
            #expect(record.json["text"] as? String == "\(sha256Hex(envelope)):\(sha256Hex(reply.body))")
        }
    }

    @Test func streamRoundTripCarriesUsage() async throws {
        try await Self.run { proxy in
            let client = try await Self.client(proxy)
            let (envelope, opener) = try client.seal(
                Self.chat("streamed secret", stream: true, extra: #","cache_salt":"mine""#),
                route: "/v1/chat/completions", model: "stub-model", stream: true)
            let reply = try await proxy.request(
                .POST, "/v1/chat/completions", body: envelope, headers: [("X-E2EE-Version", "3")])
            #expect(reply.status == 200)
            #expect(reply.headers.first(name: "Content-Type") == "text/event-stream")
            #expect(!reply.text.contains("streamed secret"))
            #expect(reply.text.hasSuffix("data: [DONE]\n\n"))
            #expect(reply.text.contains(#""object":"e2ee.v3.usage""#))
            let body = String(decoding: try opener.openStream(reply.body), as: UTF8.self)
            #expect(body.contains("streamed"))
            #expect(body.hasSuffix("data: [DONE]\n\n"))
            let forwarded = try JSONValue(parsing: try #require(proxy.stub.requests.last).body)
            #expect(forwarded["cache_salt"] == "mine")  // the client's own salt is kept under v3
            #expect(forwarded["stream_options"]?["include_usage"] == true)
        }
    }

    @Test func textCompletionsTakeV3() async throws {
        try await Self.run { proxy in
            let client = try await Self.client(proxy)
            let request = Array(#"{"model":"stub-model","prompt":"complete me"}"#.utf8)
            let (envelope, opener) = try client.seal(
                request, route: "/v1/completions", model: "stub-model", stream: false)
            let reply = try await proxy.request(
                .POST, "/v1/completions", body: envelope, headers: [("X-E2EE-Version", "3")])
            #expect(reply.status == 200)
            let answer = try JSONValue(parsing: try opener.openJSON(reply.body))
            #expect(answer["object"] == "text_completion")
        }
    }

    /// What a hostile gateway may try, each refused with SPEC §4.3's type and nothing sent upstream.
    @Test func gatewayEditsAreRefusedBeforeUpstream() async throws {
        try await Self.run { proxy in
            let client = try await Self.client(proxy)
            let route = "/v1/chat/completions"
            let v3Header = [("X-E2EE-Version", "3")]
            func sealed(
                _ body: [UInt8] = Self.chat("x", stream: false), model: String = "stub-model",
                stream: Bool = false, timestamp: Int64 = Int64(Date().timeIntervalSince1970)
            ) throws -> [UInt8] {
                try client.seal(body, route: route, model: model, stream: stream, timestamp: timestamp).envelope
            }
            func edit(_ envelope: [UInt8], _ change: (inout JSONObject) -> Void) throws -> [UInt8] {
                var root = try #require(try JSONValue(parsing: envelope).objectValue)
                change(&root)
                return JSONValue.object(root).serialized()
            }
            let cases: [(String, String, [UInt8], [(String, String)])] = [
                (
                    "clear model changed", "e2ee_decryption_failed",
                    try edit(try sealed()) { $0["model"] = "other-model" }, v3Header
                ),
                (
                    "stream flag flipped", "e2ee_decryption_failed",
                    try edit(try sealed()) { $0["stream"] = true }, v3Header
                ),
                (
                    "ts changed", "e2ee_decryption_failed",
                    try edit(try sealed()) { root in
                        var e2ee = root["e2ee"]!.objectValue!
                        e2ee["ts"] = .number(String(Int(Date().timeIntervalSince1970) - 1))
                        root["e2ee"] = .object(e2ee)
                    }, v3Header
                ),
                (
                    "unknown kc", "e2ee_key_unknown",
                    try edit(try sealed()) { root in
                        var e2ee = root["e2ee"]!.objectValue!
                        e2ee["kc"] = "00000000000000000000000000000000"
                        root["e2ee"] = .object(e2ee)
                    }, v3Header
                ),
                ("extra member", "invalid_e2ee_request", try edit(try sealed()) { $0["max_tokens"] = 1 }, v3Header),
                (
                    "stale ts", "e2ee_invalid_timestamp",
                    try sealed(timestamp: Int64(Date().timeIntervalSince1970) - 3600), v3Header
                ),
                ("sealed model differs", "invalid_e2ee_request", try sealed(model: "other-model"), v3Header),
                ("envelope without the header", "invalid_e2ee_request", try sealed(), []),
                (
                    "v2 headers beside v3", "invalid_e2ee_request", try sealed(),
                    v3Header + [("X-Signing-Algo", "ecdsa")]
                ),
                ("header without an envelope", "invalid_e2ee_request", Self.chat("plain", stream: false), v3Header),
                (
                    "repeated key", "invalid_e2ee_request",
                    Array(#"{"model":"a","model":"b","e2ee":{"v":3,"kc":"x","ts":1,"req":"AAAA"}}"#.utf8), v3Header
                ),
            ]
            for (name, type, body, headers) in cases {
                let before = proxy.stub.requests.count
                let reply = try await proxy.request(.POST, route, body: body, headers: headers)
                #expect(reply.status == 400, "\(name)")
                #expect(reply.errorType == type, "\(name)")
                #expect(proxy.stub.requests.count == before, "\(name): nothing may go upstream")
            }

            // Moved to another route: the route is in the key schedule.
            let moved = try await proxy.request(.POST, "/v1/completions", body: try sealed(), headers: v3Header)
            #expect(moved.errorType == "e2ee_decryption_failed")

            // A replay of a genuine request: the second is refused.
            let genuine = try sealed()
            let first = try await proxy.request(.POST, route, body: genuine, headers: v3Header)
            #expect(first.status == 200)
            let replay = try await proxy.request(.POST, route, body: genuine, headers: v3Header)
            #expect(replay.errorType == "e2ee_replay_detected")
        }
    }

    @Test func minimumVersionRefusesOlderOnes() async throws {
        try await Self.run(environment: ["E2EE_MIN_VERSION": "3"]) { proxy in
            let v2 = try E2EERouteTests.request(proxy, ECDSAClient(), text: "old")
            let reply = try await proxy.post("/v1/chat/completions", json: v2.body, headers: v2.headers)
            #expect(reply.status == 400)
            #expect(reply.errorType == "e2ee_version_not_allowed")
            let report = try await proxy.request(.GET, "/v1/attestation/report?version=3")
            #expect(report.json["e2ee_versions"] as? [Int] == [3])
            // Plain requests are unaffected.
            let plain = try await proxy.post(
                "/v1/chat/completions", json: String(decoding: Self.chat("hi", stream: false), as: UTF8.self))
            #expect(plain.status == 200)
        }
    }

    @Test func upstreamErrorsAreSealed() async throws {
        try await Self.run { proxy in
            let client = try await Self.client(proxy)
            // A message without a role: the stub answers 400 quoting it, as vLLM does.
            let request = Array(#"{"model":"stub-model","messages":[{"content":"quoted secret"}]}"#.utf8)
            let (envelope, opener) = try client.seal(
                request, route: "/v1/chat/completions", model: "stub-model", stream: false)
            let reply = try await proxy.request(
                .POST, "/v1/chat/completions", body: envelope, headers: [("X-E2EE-Version", "3")])
            #expect(reply.status == 400)
            #expect(!reply.text.contains("quoted secret"))
            let body = String(decoding: try opener.openJSON(reply.body), as: UTF8.self)
            #expect(body.contains("quoted secret"))
        }
    }
}

@Suite struct UsageProbeTests {
    @Test(arguments: [
        (#"data: {"choices":[],"usage":{"prompt_tokens":1}}"#, true),
        ("data: {\"usage\" : \t{\"total_tokens\":2}}", true),
        (#"data: {"choices":[{"delta":{"content":"usage"}}],"usage":null}"#, false),
        (#"data: {"x":"\"usage\": {"}"#, false),  // inside a string, escaped: not the key
        (#"data: {"x":"\"usage\"","usage":{}}"#, true),
        (#"data: {"usage""#, false),
        ("", false),
    ])
    func findsUsageObjects(event: String, expected: Bool) {
        #expect(Array(event.utf8).withUnsafeBytes { carriesUsageObject($0) } == expected)
    }
}
