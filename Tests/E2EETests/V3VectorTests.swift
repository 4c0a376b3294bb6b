import Crypto
import Foundation
import JSON
import Signing
import Testing

@testable import E2EE

/// Shape of the E2EE v3 known-answer files: `e2ee_v3_independent.json` (from shared/vectors, made with
/// pyhpke by an independent implementation) and `e2ee_v3.json` (made by this project's Python client).
struct V3Vectors: Decodable {
    struct Recipient: Decodable {
        let skR: String
        let pkR: String
    }
    struct Chunk: Decodable {
        let plaintext_utf8: String
        let nonce: String
        let aad_utf8: String
        let ciphertext_b64: String
    }
    struct Case: Decodable, CustomTestStringConvertible {
        let name: String
        let route: String
        let hdr: String
        let model: String
        let stream: Bool
        let ts: Int64
        let info: String
        let request_plaintext_utf8: String
        let enc: String
        let ct: String
        let envelope: JSONAny
        let response_nonce: String
        let exported_secret: String
        let response_key: String
        let response_nonce_base: String
        let response_chunks: [Chunk]
        var testDescription: String { name }
    }
    let recipient_x25519: Recipient
    let K: String
    let kc: String
    let cases: [Case]

    static func load(_ file: String) throws -> V3Vectors {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Vectors/\(file)")
        return try JSONDecoder().decode(V3Vectors.self, from: Data(contentsOf: url))
    }

    static let files = ["e2ee_v3_independent.json", "e2ee_v3.json"].filter { file in
        FileManager.default.fileExists(
            atPath: URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .appendingPathComponent("Vectors/\(file)").path)
    }
    static let allCases: [(file: String, vector: Case)] = files.flatMap { file in
        ((try? load(file))?.cases ?? []).map { (file, $0) }
    }
}

/// Any JSON value, kept as its serialised bytes (the envelope is re-parsed by the code under test).
struct JSONAny: Decodable {
    let bytes: [UInt8]
    init(from decoder: Decoder) throws {
        let value = try decoder.singleValueContainer()
        bytes = Array(try JSONSerialization.data(withJSONObject: try value.decode(AnyJSON.self).value))
    }
}

private struct AnyJSON: Decodable {
    let value: Any
    init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let bool = try? container.decode(Bool.self) {
            value = bool
        } else if let int = try? container.decode(Int64.self) {
            value = int
        } else if let string = try? container.decode(String.self) {
            value = string
        } else if let object = try? container.decode([String: AnyJSON].self) {
            value = object.mapValues(\.value)
        } else {
            value = NSNull()
        }
    }
}

@Suite struct V3VectorTests {
    /// `K` from the vector's X25519 key and the X-Wing public key it lists (whose private key is not given).
    @Test(arguments: V3Vectors.files)
    func keyConfigAndID(file: String) throws {
        let vectors = try V3Vectors.load(file)
        let k = try #require(Hex.decode(vectors.K))
        // Config 0 is 2 + 45 bytes; config 1's key follows its length, key_id and kem_id and ends 6 bytes early.
        let start: Int = 47 + 5
        let xwingPublic = Array(k[start..<(k.count - 6)])
        #expect(xwingPublic.count == 1216)
        let built = V3KeyPair.keyConfig(
            x25519PublicKey: try #require(Hex.decode(vectors.recipient_x25519.pkR)), xwingPublicKey: xwingPublic)
        #expect(Hex.encode(built) == vectors.K)
        #expect(V3KeyPair.keyConfigID(of: built) == vectors.kc)
    }

    @Test(arguments: V3Vectors.allCases.map(\.vector))
    func openAndSeal(vector: V3Vectors.Case) throws {
        let file = try #require(V3Vectors.allCases.first { $0.vector.name == vector.name }?.file)
        let vectors = try V3Vectors.load(file)
        let x25519 = try Curve25519.KeyAgreement.PrivateKey(
            rawRepresentation: try #require(Hex.decode(vectors.recipient_x25519.skR)))
        let pair = V3KeyPair(x25519: x25519, xwing: try XWingMLKEM768X25519.PrivateKey.generate())
        let ring = try V3KeyRing(lifetime: 86_400, grace: 300, now: Int(vector.ts)) { pair }

        // The envelope parses to the vector's parts, and `info` is byte for byte the client's.
        let envelope = try V3Envelope(parsing: vector.envelope.bytes)
        #expect(envelope.model == vector.model)
        #expect(envelope.stream == vector.stream)
        #expect(envelope.timestamp == vector.ts)
        #expect(Hex.encode(envelope.suite.header) == vector.hdr)
        #expect(Hex.encode(envelope.enc) == vector.enc)
        #expect(Hex.encode(envelope.ciphertext) == vector.ct)
        let info = V3Envelope.info(
            suite: envelope.suite, route: vector.route, model: vector.model, stream: vector.stream,
            timestamp: vector.ts)
        #expect(Hex.encode(info) == vector.info)

        // Opened with the vector's recipient key (the X-Wing half is ours, so the `kc` is re-pointed at it:
        // `kc` is not in the key schedule).
        let opened = try V3Envelope(parsing: repoint(vector.envelope.bytes, to: pair.keyConfigID))
        let (request, session) = try V3Codec(keys: ring, replayWindow: 300).open(
            opened, route: vector.route, now: Int(vector.ts))
        let expected = try JSONValue(parsing: Array(vector.request_plaintext_utf8.utf8))
        #expect(JSONValue.object(request) == expected)
        #expect(session.secret.withUnsafeBytes { Hex.encode(Array($0)) } == vector.exported_secret)

        // The answer, under the vector's response nonce: every chunk's ciphertext as the client computed it.
        var sealer = V3ResponseSealer(session: session, responseNonce: try #require(Hex.decode(vector.response_nonce)))
        for (index, chunk) in vector.response_chunks.enumerated() {
            let final = index == vector.response_chunks.count - 1
            #expect(chunk.aad_utf8 == (final ? "final" : ""))
            let sealed = sealer.seal(Array(chunk.plaintext_utf8.utf8), final: final)
            #expect(Data(sealed).base64EncodedString() == chunk.ciphertext_b64)
        }

        // The same envelope on another route, or with another clear model, does not open.
        #expect(throws: E2EEError.decryptionFailed) {
            _ = try V3Codec(keys: ring, replayWindow: 300).open(opened, route: "/v1/other", now: Int(vector.ts))
        }
    }

    /// RFC 9180 Appendix A.2.1 (DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305, base mode): the
    /// suite v3 names `0x0020/0x0001/0x0003` is the RFC's, seq 0 opens, and the exporter gives the RFC's values.
    @Test func rfc9180ChaChaBaseVector() throws {
        let suite = V3Suite.x25519ChaCha20Poly1305
        #expect(suite.header == [0, 0x00, 0x20, 0x00, 0x01, 0x00, 0x03])
        func hex(_ text: String) throws -> [UInt8] { try #require(Hex.decode(text)) }
        var recipient = try HPKE.Recipient(
            privateKey: try Curve25519.KeyAgreement.PrivateKey(
                rawRepresentation: try hex("8057991eef8f1f1af18f4a9491d16a1ce333f695d4db8e38da75975c4478e0fb")),
            ciphersuite: suite.ciphersuite, info: Data(try hex("4f6465206f6e2061204772656369616e2055726e")),
            encapsulatedKey: Data(try hex("1afa08d3dec047a643885163f1180476fa7ddb54c6a8029ea33f95796bf2ac4a")))
        let opened = try recipient.open(
            try hex("1c5250d8034ec2b784ba2cfd69dbdb8af406cfe3ff938e131f0def8c8b60b4db21993c62ce81883d2dd1b51a28"),
            authenticating: try hex("436f756e742d30"))
        #expect(Array(opened) == (try hex("4265617574792069732074727574682c20747275746820626561757479")))
        for (context, value) in [
            ("", "4bbd6243b8bb54cec311fac9df81841b6fd61f56538a775e7c80a9f40160606e"),
            ("00", "8c1df14732580e5501b00f82b10a1647b40713191b7c1240ac80e2b68808ba69"),
            ("54657374436f6e74657874", "5acb09211139c43b3090489a9da433e8a30ee7188ba8b0a9a1ccf0c229283e53"),
        ] {
            let secret = try recipient.exportSecret(context: try hex(context), outputByteCount: 32)
            #expect(secret.withUnsafeBytes { Hex.encode(Array($0)) } == value)
        }
    }

    private func repoint(_ envelope: [UInt8], to kc: String) throws -> [UInt8] {
        guard case .object(var root) = try JSONValue(parsing: envelope), case .object(var e2ee)? = root["e2ee"] else {
            throw E2EEError.v3Malformed
        }
        e2ee["kc"] = .string(kc)
        root["e2ee"] = .object(e2ee)
        return JSONValue.object(root).serialized()
    }
}
