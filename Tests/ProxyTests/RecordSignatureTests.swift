import AsyncHTTPClient
import Crypto
import Foundation
import JSON
import Logging
import NIOCore
import Signing
import Testing

@testable import VLLMProxy

/// SPEC §5: `record_signature` covers the whole record (upstream, Chutes transport, instance, attestation),
/// which the `text` signature does not.
@Suite struct RecordSignatureTests {
    static let chat = #"{"model":"stub-model","messages":[{"role":"user","content":"sign the record"}]}"#

    @Test func vllmRecordSignatureVerifiesForBothAlgorithms() async throws {
        try await ProxyHarness.run { proxy in
            let reply = try await proxy.post("/v1/chat/completions", json: Self.chat)
            #expect(reply.status == 200)
            let id = try #require(reply.json["id"] as? String)
            let text = sha256Hex(Array(Self.chat.utf8)) + ":" + sha256Hex(reply.body)
            for algo in SigningAlgo.allCases {
                let answer = try await signatureAnswer(proxy, id: id, algo: algo)
                let record = try #require(answer["record"]?.objectValue)
                #expect(
                    record.keys.sorted() == [
                        "signature_ecdsa", "signature_ed25519", "signing_address_ecdsa", "signing_address_ed25519",
                        "text", "upstream",
                    ])
                #expect(record["text"] == .string(text))
                #expect(record["upstream"] == "vllm")
                try expectRecordSignature(answer, algo: algo, keys: proxy.keys)
            }
        }
    }

    @Test func chutesRecordSignatureCoversTheTransport() async throws {
        try await ChutesHarness.run { chutes in
            try await ProxyHarness.run(environment: chutes.environment) { proxy in
                let reply = try await proxy.post("/v1/chutes/chat/completions", json: Self.chat)
                #expect(reply.status == 200)
                let id = try #require(reply.json["id"] as? String)
                for algo in SigningAlgo.allCases {
                    let answer = try await signatureAnswer(proxy, id: id, algo: algo)
                    let record = try #require(answer["record"]?.objectValue)
                    #expect(record["upstream"] == "chutes")
                    #expect(record["chutes_transport"] == "tls" && answer["chutes_transport"] == "tls")
                    #expect(record["chutes_instance_id"] == .null)
                    #expect(record["chutes_attestation"] == nil && answer["chutes_attestation"] == nil)
                    try expectRecordSignature(answer, algo: algo, keys: proxy.keys)
                }
            }
        }
    }

    @Test func attestationIsStoredSignedAndServedAtTopLevel() async throws {
        let services = try Self.services()
        let outcome = await capture { try await Self.expectAttestedRecord(services) }
        try await services.shutdown()
        try outcome.get()
    }

    static func expectAttestedRecord(_ services: ProxyServices) async throws {
        let attestation: JSONValue = [
            "verified": true, "instance_id": "inst-é", "mr_td": "ab", "tcb_status": "UpToDate",
            "quote_sha256": "00", "verified_at": "2025-01-01T00:00:00Z",
        ]
        await services.receipts.issue(
            chatID: "chatcmpl-attested", requestHash: "aa", responseHash: "bb", upstream: .chutes,
            chutes: ChutesReceipt(transport: "e2ee", instanceID: "inst-é", attestation: attestation))
        let stored = try #require(await services.receipts.record(chatID: "chatcmpl-attested"))
        // Stored as signed: in canonical (sorted) order, so compared as canonical JSON.
        func same(_ value: JSONValue?) -> Bool { value?.canonicalSerialized() == attestation.canonicalSerialized() }
        #expect(same(stored["chutes_attestation"]))
        #expect(stored["record_signature_ecdsa"] != nil && stored["record_signature_ed25519"] != nil)
        for algo in SigningAlgo.allCases {
            let answer = JSONValue.object(SignatureAnswer.body(for: stored, algo: algo))
            #expect(same(answer["chutes_attestation"]))
            #expect(same(answer["record"]?["chutes_attestation"]))
            #expect(answer["record"]?["chutes_instance_id"] == "inst-é")
            try expectRecordSignature(answer, algo: algo, keys: services.keys)

            // The signature is over the record as stored: changing what it says about the transport breaks it.
            var forged = try #require(answer.objectValue)
            var record = try #require(forged["record"]?.objectValue)
            record["chutes_transport"] = "tls"
            forged["record"] = .object(record)
            #expect(!(try recordSignatureVerifies(.object(forged), algo: algo, keys: services.keys)))
        }
    }

    @Test func recordWithoutRecordSignatureIsServedWithRecordButNoSignature() async throws {
        let services = try Self.services()
        // As the Python implementation writes it to a shared Redis: its default separators, no upstream.
        let written = #"""
            {"text": "aa:bb", "signature_ecdsa": "0x01", "signing_address_ecdsa": "0xAbC", \#
            "signature_ed25519": "02", "signing_address_ed25519": "03"}
            """#
        await services.store.put("test-model:chat:chatcmpl-python", Array(written.utf8), ttl: .seconds(60))
        let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup)
        let outcome = await capture {
            try await withRunningApp({ buildApplication(services, onServerRunning: $0) }) { port in
                for algo in SigningAlgo.allCases {
                    var request = HTTPClientRequest(
                        url: "http://127.0.0.1:\(port)/v1/signature/chatcmpl-python?signing_algo=\(algo.rawValue)")
                    request.headers.add(name: "Authorization", value: "Bearer \(ProxyHarness.token)")
                    let response = try await client.execute(request, timeout: .seconds(30))
                    #expect(response.status == .ok)
                    let body = try await response.body.collect(upTo: 1 << 20)
                    let answer = try JSONValue(parsing: Array(buffer: body))
                    let suffix = algo == .ecdsa ? ["0x01", "0xAbC"] : ["02", "03"]
                    #expect(
                        answer == [
                            "text": "aa:bb", "signature": .string(suffix[0]), "signing_address": .string(suffix[1]),
                            "signing_algo": .string(algo.rawValue), "upstream": "vllm",
                            "record": try JSONValue(parsing: Array(written.utf8)),
                        ])
                    #expect(answer["record_signature"] == nil)
                }
            }
        }
        try await client.shutdown()
        try await services.shutdown()
        try outcome.get()
    }

    /// A proxy's services with the harness's token and model, for tests that reach into the store.
    static func services() throws -> ProxyServices {
        let config = try ProxyConfig(environment: [
            "TOKEN": ProxyHarness.token, "MODEL_NAME": "test-model", "HOST": "127.0.0.1", "PORT": "0",
            // Never contacted: these tests serve records only.
            "VLLM_BASE_URL": "http://127.0.0.1:9",
        ])
        return try ProxyServices(
            config: config, keys: SigningKeys(),
            logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
    }
}

/// `/v1/signature/{id}` in `algo`, parsed keeping strings and key order exactly as sent.
private func signatureAnswer(_ proxy: ProxyHarness, id: String, algo: SigningAlgo) async throws -> JSONValue {
    let reply = try await proxy.request(.GET, "/v1/signature/\(id)?signing_algo=\(algo.rawValue)")
    #expect(reply.status == 200)
    return try JSONValue(parsing: reply.body)
}

/// The answer's addresses are the proxy's, its record carries no `record_signature_*`, and `record_signature`
/// verifies over the record's canonical JSON.
private func expectRecordSignature(_ answer: JSONValue, algo: SigningAlgo, keys: SigningKeys) throws {
    #expect(answer["signing_algo"] == .string(algo.rawValue))
    #expect(answer["signing_address"] == .string(keys.address(for: algo)))
    let record = try #require(answer["record"]?.objectValue)
    #expect(!record.keys.contains { $0.hasPrefix("record_signature") })
    #expect(try recordSignatureVerifies(answer, algo: algo, keys: keys))
}

/// Whether `answer.record_signature` is `keys`' `algo` signature over the canonical JSON of `answer.record`.
private func recordSignatureVerifies(_ answer: JSONValue, algo: SigningAlgo, keys: SigningKeys) throws -> Bool {
    let record = try #require(answer["record"])
    let signature = try #require(answer["record_signature"]?.stringValue)
    let canonical = record.canonicalSerialized()
    switch algo {
    case .ecdsa:
        #expect(signature.hasPrefix("0x") && signature.count == 132)
        let bytes = try #require(Hex.decode(String(signature.dropFirst(2))))
        let key = try Secp256k1PublicKey.recover(signature: bytes, digest: EIP191.digest(canonical))
        return EthereumAddress.checksummed(EthereumAddress.bytes(of: key)) == keys.ecdsaAddress
    case .ed25519:
        let key = try Curve25519.Signing.PublicKey(rawRepresentation: try #require(Hex.decode(keys.ed25519Address)))
        return key.isValidSignature(try #require(Hex.decode(signature)), for: canonical)
    }
}
