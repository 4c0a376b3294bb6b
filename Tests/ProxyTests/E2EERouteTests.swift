import Crypto
import Foundation
import Signing
import Testing

@testable import VLLMProxy

/// A client written from SPEC §4 with the test's own primitives (not the E2EE module): secp256k1 ECDH,
/// HKDF-SHA256 with no salt, AES-256-GCM, `ephemeral ‖ nonce ‖ ciphertext ‖ tag`.
struct ECDSAClient {
    let key = Secp256k1PrivateKey()
    var publicKeyHex: String { Hex.encode(key.publicKey.raw64) }

    static func aesKey(_ secret: [UInt8]) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(
            inputKeyMaterial: SymmetricKey(data: secret), info: Array("ecdsa_encryption".utf8), outputByteCount: 32)
    }

    func encrypt(_ text: String, to server: Secp256k1PublicKey, aad: String?) throws -> String {
        let ephemeral = Secp256k1PrivateKey()
        let box = try AES.GCM.seal(
            Array(text.utf8), using: Self.aesKey(try ephemeral.sharedSecret(with: server)),
            authenticating: Array((aad ?? "").utf8))
        return Hex.encode(ephemeral.publicKey.uncompressed65 + Array(box.nonce) + box.ciphertext + box.tag)
    }

    func decrypt(_ field: String, aad: String?) throws -> String {
        let bytes = try #require(Hex.decode(field))
        let ephemeral = try Secp256k1PublicKey(bytes: Array(bytes[0..<65]))
        let box = try AES.GCM.SealedBox(
            nonce: AES.GCM.Nonce(data: bytes[65..<77]), ciphertext: bytes[77..<(bytes.count - 16)],
            tag: bytes[(bytes.count - 16)...])
        let plaintext = try AES.GCM.open(
            box, using: Self.aesKey(try key.sharedSecret(with: ephemeral)), authenticating: Array((aad ?? "").utf8))
        return String(decoding: plaintext, as: UTF8.self)
    }
}

@Suite struct E2EERouteTests {
    struct Request {
        var body: String
        var headers: [(String, String)]
    }

    /// A v2 (or v1) encrypted chat request whose one message is `text`.
    static func request(
        _ proxy: ProxyHarness, _ client: ECDSAClient, text: String, stream: Bool = false, v2: Bool = true,
        model: String = "stub-model", nonce: String = UUID().uuidString,
        timestamp: Int = Int(Date().timeIntervalSince1970)
    ) throws -> Request {
        let aad = v2 ? "v2|req|algo=ecdsa|model=\(model)|m=0|c=-|n=\(nonce)|ts=\(timestamp)" : nil
        let field = try client.encrypt(text, to: proxy.keys.secp256k1.publicKey, aad: aad)
        var headers = [
            ("X-Signing-Algo", "ecdsa"), ("X-Client-Pub-Key", client.publicKeyHex),
            ("X-Model-Pub-Key", proxy.keys.ecdsaPublicKeyHex),
        ]
        if v2 { headers += [("X-E2EE-Version", "2"), ("X-E2EE-Nonce", nonce), ("X-E2EE-Timestamp", "\(timestamp)")] }
        let body = #"{"model":"\#(model)","stream":\#(stream),"messages":[{"role":"user","content":"\#(field)"}]}"#
        return Request(body: body, headers: headers)
    }

    @Test(arguments: [true, false])
    func nonStreamedRoundTripDecryptsOnlyInsideAndSealsTheAnswer(v2: Bool) async throws {
        try await ProxyHarness.run { proxy in
            let client = ECDSAClient()
            let nonce = "nonce-\(UUID().uuidString)"
            let timestamp = Int(Date().timeIntervalSince1970)
            let request = try Self.request(
                proxy, client, text: "secret question", v2: v2, model: "stub-reasoning", nonce: nonce,
                timestamp: timestamp)
            let reply = try await proxy.post("/v1/chat/completions", json: request.body, headers: request.headers)
            #expect(reply.status == 200)
            #expect(reply.headers.first(name: "X-E2EE-Applied") == "true")
            #expect(reply.headers.first(name: "X-E2EE-Version") == (v2 ? "2" : "1"))
            #expect(reply.headers.first(name: "X-E2EE-Algo") == "ecdsa")
            // The upstream saw plaintext; the client sees none.
            let forwarded = String(decoding: try #require(proxy.stub.requests.first).body, as: UTF8.self)
            #expect(forwarded.contains(#""content":"secret question""#))
            #expect(!reply.text.contains("secret question"))

            let id = try #require(reply.json["id"] as? String)
            let message = try #require(
                ((reply.json["choices"] as? [[String: Any]])?.first)?["message"] as? [String: Any])
            for field in ["content", "reasoning_content", "reasoning"] {
                let aad =
                    v2
                    ? "v2|resp|algo=ecdsa|model=stub-reasoning|id=\(id)|choice=0|field=\(field)|n=\(nonce)|ts=\(timestamp)"
                    : nil
                let plaintext = try client.decrypt(try #require(message[field] as? String), aad: aad)
                #expect(plaintext.hasSuffix("secret question"))
            }
            try await expectReceipt(proxy, id: id, request: Array(request.body.utf8), response: reply.body)
        }
    }

    @Test func streamedRoundTripSealsEveryDeltaAndDropsEmptyContent() async throws {
        try await ProxyHarness.run { proxy in
            let client = ECDSAClient()
            let request = try Self.request(proxy, client, text: "stream me please", stream: true)
            let reply = try await proxy.post("/v1/chat/completions", json: request.body, headers: request.headers)
            #expect(reply.status == 200)
            #expect(reply.headers.first(name: "X-E2EE-Applied") == "true")
            #expect(reply.text.hasSuffix("data: [DONE]\n\n"))
            var text = ""
            var id: String?
            for event in reply.text.components(separatedBy: "\n\n") where event.hasPrefix("data: {") {
                let json = try #require(
                    try JSONSerialization.jsonObject(with: Data(event.dropFirst(6).utf8)) as? [String: Any])
                id = id ?? json["id"] as? String
                let delta = try #require(((json["choices"] as? [[String: Any]])?.first)?["delta"] as? [String: Any])
                #expect(delta["content"] as? String != "")
                if let field = delta["content"] as? String {
                    let nonce = try #require(request.headers.first { $0.0 == "X-E2EE-Nonce" }?.1)
                    let ts = try #require(request.headers.first { $0.0 == "X-E2EE-Timestamp" }?.1)
                    text += try client.decrypt(
                        field,
                        aad: "v2|resp|algo=ecdsa|model=stub-model|id=\(id!)|choice=0|field=content|n=\(nonce)|ts=\(ts)")
                }
            }
            #expect(text == "Echo: stream me please")
            try await expectReceipt(
                proxy, id: try #require(id), request: Array(request.body.utf8), response: reply.body)
        }
    }

    @Test func aReplayedRequestIsRefusedAndNeverForwarded() async throws {
        try await ProxyHarness.run { proxy in
            let request = try Self.request(proxy, ECDSAClient(), text: "once")
            let first = try await proxy.post("/v1/chat/completions", json: request.body, headers: request.headers)
            #expect(first.status == 200)
            let second = try await proxy.post("/v1/chat/completions", json: request.body, headers: request.headers)
            #expect(second.status == 400)
            expectErrorShape(second, type: "e2ee_replay_detected")
            #expect(proxy.stub.requests.count == 1)
        }
    }

    @Test func everyValidationFailureIs400WithItsTypeAndNothingReachesUpstream() async throws {
        try await ProxyHarness.run { proxy in
            let client = ECDSAClient()
            let good = try Self.request(proxy, client, text: "x")
            func with(_ changes: [String: String] = [:], without removed: String? = nil) -> [(String, String)] {
                good.headers.filter { changes[$0.0] == nil && $0.0 != removed } + changes.map { ($0.key, $0.value) }
            }
            let now = Int(Date().timeIntervalSince1970)
            let cases: [(String, [(String, String)], String)] = [
                ("e2ee_header_missing", with(without: "X-Model-Pub-Key"), good.body),
                ("e2ee_header_missing", with(without: "X-E2EE-Timestamp"), good.body),
                ("e2ee_invalid_signing_algo", with(["X-Signing-Algo": "rsa"]), good.body),
                ("e2ee_invalid_public_key", with(["X-Client-Pub-Key": "abc"]), good.body),
                ("e2ee_invalid_public_key", with(["X-Client-Pub-Key": String(repeating: "0", count: 128)]), good.body),
                ("e2ee_model_key_mismatch", with(["X-Model-Pub-Key": client.publicKeyHex]), good.body),
                ("e2ee_invalid_version", with(["X-E2EE-Version": "4"]), good.body),
                ("e2ee_invalid_nonce", with(["X-E2EE-Nonce": "short"]), good.body),
                ("e2ee_invalid_timestamp", with(["X-E2EE-Timestamp": "soon"]), good.body),
                ("e2ee_invalid_timestamp", with(["X-E2EE-Timestamp": "\(now - 301)"]), good.body),
                (
                    "invalid_e2ee_request", good.headers,
                    #"{"model":"stub-model","messages":[{"role":"user","content":"not hex!"}]}"#
                ),
                (
                    "e2ee_decryption_failed", good.headers,
                    #"{"model":"stub-model","messages":[{"role":"user","content":"abcd"}]}"#
                ),
                (
                    "e2ee_decryption_failed", good.headers,
                    good.body.replacingOccurrences(of: "stub-model", with: "other-model")
                ),
            ]
            for (type, headers, body) in cases {
                let reply = try await proxy.post("/v1/chat/completions", json: body, headers: headers)
                #expect(reply.status == 400, "\(type)")
                expectErrorShape(reply, type: type)
            }
            #expect(proxy.stub.requests.isEmpty)
            let text = try await proxy.post(
                "/v1/completions", json: #"{"model":"stub-model","prompt":"x"}"#, headers: [("X-Signing-Algo", "ecdsa")]
            )
            #expect(text.status == 400)
            expectErrorShape(text, type: "invalid_e2ee_request")
            #expect(
                (text.json["error"] as? [String: Any])?["message"] as? String
                    == "E2EE v1/v2 is only supported on /v1/chat/completions")
            #expect(proxy.stub.requests.isEmpty)
        }
    }

    /// A v2 request whose one message is `text`, with the message's members and the body's extra members
    /// given as JSON text (`role` left out when `role` is nil).
    static func custom(
        _ proxy: ProxyHarness, _ client: ECDSAClient, text: String, model: String = "stub-model",
        role: String? = "user",
        stream: Bool = false, nonce: String = UUID().uuidString
    ) throws -> Request {
        let timestamp = Int(Date().timeIntervalSince1970)
        let aad = "v2|req|algo=ecdsa|model=\(model)|m=0|c=-|n=\(nonce)|ts=\(timestamp)"
        let field = try client.encrypt(text, to: proxy.keys.secp256k1.publicKey, aad: aad)
        let message = role.map { #"{"role":"\#($0)","content":"\#(field)"}"# } ?? #"{"content":"\#(field)"}"#
        return Request(
            body: #"{"model":"\#(model)","stream":\#(stream),"messages":[\#(message)]}"#,
            headers: [
                ("X-Signing-Algo", "ecdsa"), ("X-Client-Pub-Key", client.publicKeyHex),
                ("X-Model-Pub-Key", proxy.keys.ecdsaPublicKeyHex), ("X-E2EE-Version", "2"), ("X-E2EE-Nonce", nonce),
                ("X-E2EE-Timestamp", "\(timestamp)"),
            ])
    }

    @Test func anUpstreamErrorKeepsItsStatusButNotItsBodyWhichEchoesThePlaintext() async throws {
        try await ProxyHarness.run { proxy in
            // vLLM's 400 for a message without `role` quotes the decrypted message.
            let request = try Self.custom(proxy, ECDSAClient(), text: "secret prompt", role: nil)
            let reply = try await proxy.post("/v1/chat/completions", json: request.body, headers: request.headers)
            #expect(reply.status == 400)
            expectErrorShape(reply, type: "upstream_error")
            #expect((reply.json["error"] as? [String: Any])?["message"] as? String == "Upstream answered 400")
            #expect(reply.headers.first(name: "X-E2EE-Applied") == "true")
            #expect(!reply.text.contains("secret prompt"))
            let forwarded = String(decoding: try #require(proxy.stub.requests.first).body, as: UTF8.self)
            #expect(forwarded.contains("secret prompt"), "the stub did receive (and would echo) the plaintext")
        }
    }

    @Test func aMidStreamUpstreamErrorBecomesOurOwnEventAndStoresNoReceipt() async throws {
        try await ProxyHarness.run { proxy in
            let request = try Self.custom(
                proxy, ECDSAClient(), text: "secret stream", model: "stub-stream-error", stream: true)
            let reply = try await proxy.post("/v1/chat/completions", json: request.body, headers: request.headers)
            #expect(reply.status == 200)
            #expect(!reply.text.contains("secret") && !reply.text.contains("Echo"))
            let events = reply.text.components(separatedBy: "\n\n").filter { !$0.isEmpty }
            let last = try #require(events.last)
            #expect(
                last
                    == #"data: {"error":{"message":"Upstream reported an error mid-stream","type":"upstream_error","param":null,"code":null}}"#
            )
            let first = try #require(events.first)
            let id = try #require(
                (try JSONSerialization.jsonObject(with: Data(first.dropFirst(6).utf8)) as? [String: Any])?["id"]
                    as? String)
            #expect(try await proxy.request(.GET, "/v1/signature/\(id)").status == 404)
        }
    }

    @Test func aFullClaimStoreRefusesNewRequestsAndNeverForgetsACapturedOne() async throws {
        try await ProxyHarness.run(environment: ["E2EE_REPLAY_STORE_CAPACITY": "2"]) { proxy in
            let client = ECDSAClient()
            let captured = try Self.request(proxy, client, text: "captured")
            #expect(
                try await proxy.post("/v1/chat/completions", json: captured.body, headers: captured.headers).status
                    == 200)
            let filler = try Self.request(proxy, client, text: "filler")
            #expect(
                try await proxy.post("/v1/chat/completions", json: filler.body, headers: filler.headers).status == 200)
            for index in 0..<5 {
                let fresh = try Self.request(proxy, client, text: "fresh \(index)")
                let reply = try await proxy.post("/v1/chat/completions", json: fresh.body, headers: fresh.headers)
                #expect(reply.status == 503)
                expectErrorShape(reply, type: "replay_store_full")
            }
            let replayed = try await proxy.post("/v1/chat/completions", json: captured.body, headers: captured.headers)
            #expect(replayed.status == 400)
            expectErrorShape(replayed, type: "e2ee_replay_detected")
            #expect(proxy.stub.requests.count == 2)
        }
    }

    @Test func aRequestWithNothingEncryptedIsRefusedAndSpendsNoNonce() async throws {
        try await ProxyHarness.run { proxy in
            let client = ECDSAClient()
            let nonce = "nonce-\(UUID().uuidString)"
            let good = try Self.request(proxy, client, text: "real one", nonce: nonce)
            for body in ["{}", #"{"model":"stub-model","messages":[{"role":"user","content":null}]}"#] {
                let reply = try await proxy.post("/v1/chat/completions", json: body, headers: good.headers)
                #expect(reply.status == 400)
                expectErrorShape(reply, type: "invalid_e2ee_request")
            }
            let refused = try Self.custom(proxy, client, text: "x", nonce: nonce)
            let withLogprobs = refused.body.replacingOccurrences(
                of: #""stream":false"#, with: #""stream":false,"logprobs":true"#)
            let reply = try await proxy.post("/v1/chat/completions", json: withLogprobs, headers: refused.headers)
            #expect(reply.status == 400)
            expectErrorShape(reply, type: "e2ee_unsupported_parameter")
            #expect(proxy.stub.requests.isEmpty)
            #expect(try await proxy.post("/v1/chat/completions", json: good.body, headers: good.headers).status == 200)
        }
    }
}
