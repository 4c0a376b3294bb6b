import AsyncHTTPClient
import Crypto
import DevStubs
import Foundation
import NIOCore
import Signing
import Testing

@testable import VLLMProxy

/// Chat and text completions through the real app and the real stub, plain (non-E2EE) traffic.
@Suite struct CompletionTests {
    static let chat = #"{"model":"stub-model","messages":[{"role":"user","content":"hello proxy"}]}"#

    @Test func nonStreamedChatIsRelayedVerbatimAndSigned() async throws {
        try await ProxyHarness.run { proxy in
            let reply = try await proxy.post("/v1/chat/completions", json: Self.chat)
            #expect(reply.status == 200)
            #expect(reply.headers.first(name: "X-E2EE-Applied") == "false")
            #expect(reply.headers.first(name: "Content-Type") == "application/json")
            // The stub answers deterministically: its own answer to the same bytes must be ours, byte for byte.
            let direct = try await directStub(proxy, path: "/v1/chat/completions", body: Self.chat)
            #expect(reply.body == direct)
            // What the stub received is exactly what we sent, and never the client's credential.
            let received = try #require(proxy.stub.requests.first)
            #expect(received.body == Array(Self.chat.utf8))
            #expect(received.header("Authorization") == nil)

            let id = try #require(reply.json["id"] as? String)
            try await expectReceipt(proxy, id: id, request: Array(Self.chat.utf8), response: reply.body)
        }
    }

    @Test func streamedChatIsRelayedChunkByChunkAndSignedOverEveryByte() async throws {
        let body = #"{"model":"stub-model","stream":true,"messages":[{"role":"user","content":"one two three"}]}"#
        try await ProxyHarness.run { proxy in
            let reply = try await proxy.post("/v1/chat/completions", json: body)
            #expect(reply.status == 200)
            #expect(reply.headers.first(name: "Content-Type") == "text/event-stream")
            #expect(reply.headers.first(name: "Cache-Control") == "no-cache")
            #expect(reply.headers.first(name: "X-Accel-Buffering") == "no")
            #expect(reply.body == (try await directStub(proxy, path: "/v1/chat/completions", body: body)))
            #expect(reply.text.hasSuffix("data: [DONE]\n\n"))
            let firstEvent = try #require(reply.text.components(separatedBy: "\n\n").first)
            let json = try JSONSerialization.jsonObject(with: Data(firstEvent.dropFirst(6).utf8)) as? [String: Any]
            let id = try #require(json?["id"] as? String)
            try await expectReceipt(proxy, id: id, request: Array(body.utf8), response: reply.body)
        }
    }

    @Test(arguments: [false, true])
    func textCompletionsAreRelayedAndSigned(stream: Bool) async throws {
        let body = #"{"model":"stub-model","prompt":"complete me","stream":\#(stream)}"#
        try await ProxyHarness.run { proxy in
            let reply = try await proxy.post("/v1/completions", json: body)
            #expect(reply.status == 200)
            #expect(reply.headers.first(name: "X-E2EE-Applied") == nil)
            #expect(reply.body == (try await directStub(proxy, path: "/v1/completions", body: body)))
            let id = "cmpl-stub-" + sha256Hex(Array(body.utf8)).prefix(24)
            try await expectReceipt(proxy, id: id, request: Array(body.utf8), response: reply.body)
        }
    }

    @Test func gatewayRequestHashIsSignedInsteadOfOurs() async throws {
        let given = String(repeating: "ab", count: 32)
        try await ProxyHarness.run { proxy in
            let reply = try await proxy.post(
                "/v1/chat/completions", json: Self.chat, headers: [("X-Request-Hash", given)])
            let id = try #require(reply.json["id"] as? String)
            let signature = try await proxy.request(.GET, "/v1/signature/\(id)")
            #expect(signature.json["text"] as? String == given + ":" + sha256Hex(reply.body))
            // Exactly 64 lowercase hex characters, as the receipt text spells it (SPEC §5).
            for malformed in ["xyz", given.uppercased(), String(given.dropLast())] {
                let bad = try await proxy.post(
                    "/v1/chat/completions", json: Self.chat, headers: [("X-Request-Hash", malformed)])
                #expect(bad.status == 400)
                #expect(bad.errorType == "invalid_request_error")
            }
        }
    }

    @Test func emptyToolCallsAreStrippedAndOnlyThen() async throws {
        let body = #"""
            {"model":"stub-model","messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b","tool_calls":[]},{"role":"assistant","content":"c","tool_calls":[{"id":"x","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"user","content":"d","tool_calls":[]}],"temperature":0.70}
            """#
        try await ProxyHarness.run { proxy in
            let reply = try await proxy.post("/v1/chat/completions", json: body)
            #expect(reply.status == 200)
            let forwarded = String(decoding: try #require(proxy.stub.requests.first).body, as: UTF8.self)
            #expect(
                forwarded == #"""
                    {"model":"stub-model","messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"assistant","content":"c","tool_calls":[{"id":"x","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"user","content":"d","tool_calls":[]}],"temperature":0.70}
                    """#)
            // The receipt still hashes the bytes the client sent, not the rewritten ones.
            let id = try #require(reply.json["id"] as? String)
            try await expectReceipt(proxy, id: id, request: Array(body.utf8), response: reply.body)
        }
    }

    @Test func modelsArePassedThroughWithoutAuth() async throws {
        try await ProxyHarness.run { proxy in
            let reply = try await proxy.request(.GET, "/v1/models", auth: false)
            #expect(reply.status == 200)
            #expect(reply.body == (try await directStub(proxy, path: "/v1/models", body: nil)))
        }
    }

    @Test func livenessAnswersEmptyObject() async throws {
        try await ProxyHarness.run { proxy in
            let reply = try await proxy.request(.GET, "/", auth: false)
            #expect(reply.status == 200)
            #expect(reply.text == "{}")
        }
    }

    @Test func metricsCarryOursThenVLLMs() async throws {
        try await ProxyHarness.run { proxy in
            _ = try await proxy.post("/v1/chat/completions", json: Self.chat)
            let reply = try await proxy.request(.GET, "/v1/metrics", auth: false)
            #expect(reply.status == 200)
            let parts = reply.text.components(separatedBy: "# --- vLLM Backend Metrics ---\n")
            #expect(parts.count == 2)
            #expect(parts[0].contains("vllm_proxy_http_requests_total"))
            #expect(parts[0].contains("vllm_proxy_receipts_total{upstream=\"vllm\"} 1"))
            #expect(parts[1].contains("vllm:num_requests_waiting{"))
        }
        try await ProxyHarness.run(environment: ["VLLM_BASE_URL": "http://127.0.0.1:1"]) { proxy in
            let reply = try await proxy.request(.GET, "/v1/metrics", auth: false)
            #expect(reply.status == 200)
            #expect(reply.text.contains("# --- vLLM Backend Metrics ---\n# vLLM /metrics could not be fetched"))
        }
    }
}

/// Sends `body` straight to the stub, bypassing the proxy.
func directStub(_ proxy: ProxyHarness, path: String, body: String?) async throws -> [UInt8] {
    var request = HTTPClientRequest(url: "http://127.0.0.1:\(proxy.stubPort)\(path)")
    if let body {
        request.method = .POST
        request.body = .bytes(ByteBuffer(string: body))
    }
    let response = try await proxy.client.execute(request, timeout: .seconds(30))
    return Array(buffer: try await response.body.collect(upTo: 1 << 24))
}

/// Fetches the receipt for `id` with both algorithms and checks hashes, addresses and signatures.
func expectReceipt(_ proxy: ProxyHarness, id: String, request: [UInt8], response: [UInt8]) async throws {
    let text = sha256Hex(request) + ":" + sha256Hex(response)
    let ecdsa = try await proxy.request(.GET, "/v1/signature/\(id)")
    #expect(ecdsa.status == 200)
    #expect(ecdsa.json["text"] as? String == text)
    #expect(ecdsa.json["signing_algo"] as? String == "ecdsa")
    #expect(ecdsa.json["signing_address"] as? String == proxy.keys.ecdsaAddress)
    #expect(ecdsa.json["upstream"] as? String == "vllm")
    let signature = try #require(ecdsa.json["signature"] as? String)
    #expect(signature.hasPrefix("0x") && signature.count == 132)

    let ed = try await proxy.request(.GET, "/v1/signature/\(id)?signing_algo=ED25519")
    #expect(ed.json["signing_address"] as? String == proxy.keys.ed25519Address)
    let key = try Curve25519.Signing.PublicKey(rawRepresentation: Hex.decode(proxy.keys.ed25519Address)!)
    let edSignature = try #require(Hex.decode(ed.json["signature"] as? String ?? ""))
    #expect(key.isValidSignature(edSignature, for: Array(text.utf8)))
}
