import Foundation
import Testing

@testable import VLLMProxy

/// SPEC §2: a key that appears twice in one object, anywhere in a request body, is refused with
/// `400 invalid_request_error` and nothing reaches the upstream — on every completion path (plain, the
/// `tool_calls` stripping rewrite, E2EE v1/v2 before decryption; v3 refuses it with its own type).
@Suite struct DuplicateKeyTests {
    /// Bodies with one repeated key each, at the top level, nested, behind escapes and in a large object.
    static let repeated: [(String, String)] = [
        (
            "stream twice",
            #"{"model":"stub-model","stream":false,"messages":[{"role":"user","content":"hi"}],"stream":true}"#
        ),
        (
            "messages twice",
            #"{"model":"stub-model","messages":[{"role":"user","content":"a"}],"messages":[{"role":"user","content":"b"}]}"#
        ),
        (
            "role twice in a message",
            #"{"model":"stub-model","messages":[{"role":"user","role":"system","content":"x"}]}"#
        ),
        (
            "deep in tool_calls",
            #"{"model":"stub-model","messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","name":"g","arguments":"{}"}}]}]}"#
        ),
        (
            "escaped spelling",
            #"{"model":"stub-model","messages":[{"role":"user","content":"x"}],"\u006dodel":"other"}"#
        ),
        (
            "in a wide object",
            #"{"model":"stub-model","messages":[{"role":"user","content":"x"}],"metadata":{"#
                + (0..<40).map { #""k\#($0)":\#($0)"# }.joined(separator: ",") + #","k7":0}}"#
        ),
        (
            "beside an empty tool_calls (the stripping path)",
            #"{"model":"stub-model","messages":[{"role":"assistant","content":"b","tool_calls":[]},{"role":"user","content":"a","content":"c"}]}"#
        ),
    ]

    @Test func repeatedKeysAreRefusedBeforeAnythingIsSent() async throws {
        try await ProxyHarness.run { proxy in
            for (name, body) in Self.repeated {
                let reply = try await proxy.post("/v1/chat/completions", json: body)
                #expect(reply.status == 400, "\(name)")
                expectErrorShape(reply, type: "invalid_request_error")
                let message = (reply.json["error"] as? [String: Any])?["message"] as? String
                #expect(message == "Request body repeats a key within one object", "\(name)")
            }
            let text = try await proxy.post(
                "/v1/completions", json: #"{"model":"stub-model","prompt":"p","max_tokens":1,"max_tokens":2}"#)
            #expect(text.status == 400 && text.errorType == "invalid_request_error")
            #expect(proxy.stub.requests.isEmpty, "nothing may reach the upstream")
        }
    }

    /// Equal keys in sibling or nested objects, and keys equal only after Unicode normalisation, are distinct.
    @Test func keysRepeatedOnlyAcrossObjectsAreRelayedUntouched() async throws {
        let body =
            #"{"model":"stub-model","messages":[{"role":"user","content":"a"},{"role":"user","content":"b"}],"#
            + #""metadata":{"model":{"model":1},"e\u0301":1,"\u00e9":2}}"#
        try await ProxyHarness.run { proxy in
            let reply = try await proxy.post("/v1/chat/completions", json: body)
            #expect(reply.status == 200)
            #expect(try #require(proxy.stub.requests.first).body == Array(body.utf8))
        }
    }

    /// E2EE v1/v2: the body is checked before any field is decrypted, so nothing is sent and the nonce is not
    /// claimed (the same request without the repeated key then goes through).
    @Test func anEncryptedRequestWithARepeatedKeyIsRefusedWithoutBurningItsNonce() async throws {
        try await ProxyHarness.run { proxy in
            let client = ECDSAClient()
            let good = try E2EERouteTests.request(proxy, client, text: "secret")
            let doubled = good.body.replacingOccurrences(of: #""stream":false"#, with: #""stream":false,"stream":true"#)
            #expect(doubled != good.body)
            let refused = try await proxy.post("/v1/chat/completions", json: doubled, headers: good.headers)
            #expect(refused.status == 400)
            expectErrorShape(refused, type: "invalid_request_error")
            #expect(proxy.stub.requests.isEmpty)

            let accepted = try await proxy.post("/v1/chat/completions", json: good.body, headers: good.headers)
            #expect(accepted.status == 200)
        }
    }

    /// E2EE v3: a key repeated inside the sealed body is refused with §4.3's type, nothing sent.
    @Test func aSealedBodyWithARepeatedKeyIsRefused() async throws {
        try await V3RouteTests.run { proxy in
            let client = try await V3RouteTests.client(proxy)
            let sealed = Array(
                #"{"model":"stub-model","stream":false,"messages":[{"role":"user","content":"a","content":"b"}]}"#.utf8)
            let (envelope, _) = try client.seal(
                sealed, route: "/v1/chat/completions", model: "stub-model", stream: false)
            let reply = try await proxy.request(
                .POST, "/v1/chat/completions", body: envelope, headers: [("X-E2EE-Version", "3")])
            #expect(reply.status == 400)
            expectErrorShape(reply, type: "invalid_e2ee_request")
            #expect(proxy.stub.requests.isEmpty)
        }
    }
}
