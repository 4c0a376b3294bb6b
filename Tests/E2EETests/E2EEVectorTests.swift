import Crypto
import JSON
import Signing
import Testing

@testable import E2EE

@Suite struct E2EEVectorTests {
    static let cases = E2EEVectors.shared.cases

    @Test(arguments: ["server", "client"])
    func ed25519ToX25519Conversions(party name: String) throws {
        let party = name == "server" ? E2EEVectors.shared.server : E2EEVectors.shared.client
        let scalar = E2EECrypto.x25519PrivateKey(ed25519Seed: bytes(party.ed25519_seed))
        #expect(Hex.encode(scalar) == party.x25519_private_from_ed25519)
        let u = try #require(Ed25519ToX25519.publicKey(ed25519: bytes(party.ed25519_public_key)))
        #expect(Hex.encode(u) == party.x25519_public_from_ed25519)
        // The two maps agree: the converted private key's X25519 public key is the converted public key.
        let derived = try Curve25519.KeyAgreement.PrivateKey(rawRepresentation: scalar).publicKey
        #expect(Array(derived.rawRepresentation) == u)
    }

    @Test func serverCodecUsesConvertedKey() throws {
        let parties = try Parties()
        #expect(
            Hex.encode(parties.server.x25519PrivateKey.rawRepresentation)
                == E2EEVectors.shared.server.x25519_private_from_ed25519)
    }

    @Test func conversionAgreesForRandomKeys() throws {
        for _ in 0..<32 {
            let key = Curve25519.Signing.PrivateKey()
            let scalar = E2EECrypto.x25519PrivateKey(ed25519Seed: Array(key.rawRepresentation))
            let expected = try Curve25519.KeyAgreement.PrivateKey(rawRepresentation: scalar).publicKey
            let u = try #require(Ed25519ToX25519.publicKey(ed25519: Array(key.publicKey.rawRepresentation)))
            #expect(u == Array(expected.rawRepresentation))
        }
    }

    @Test(arguments: cases)
    func intermediateValuesAndCiphertext(vector: E2EEVectors.Case) throws {
        let vectors = E2EEVectors.shared
        let recipient = vector.isRequest ? vectors.server : vectors.client
        let peer = try #require(
            E2EEPublicKey(hex: recipient.publicKeyHex(vector.algorithm), algorithm: vector.algorithm))
        let ephemeral = try vector.ephemeralKey()
        #expect(Hex.encode(ephemeral.publicBytes) == vector.ephemeral_public)
        let secret = try ephemeral.sharedSecret(with: peer)
        #expect(Hex.encode(secret) == vector.shared_secret)
        let key = E2EECrypto.aesKey(sharedSecret: secret, algorithm: vector.algorithm)
        #expect(key.withUnsafeBytes { Hex.encode($0) } == vector.aes_key)
        let field = try E2EECrypto.encrypt(
            plaintext: Array(vector.plaintext.utf8), to: peer, ephemeral: ephemeral, nonce: bytes(vector.gcm_nonce),
            aad: vector.aad.map { Array($0.utf8) })
        #expect(Hex.encode(field) == vector.ciphertext_field_hex)
    }

    @Test(arguments: cases)
    func decryptsWithRecipientKey(vector: E2EEVectors.Case) throws {
        let parties = try Parties()
        let recipient = vector.isRequest ? parties.server : parties.client
        let plaintext = try recipient.decrypt(
            field: vector.ciphertext_field_hex, algorithm: vector.algorithm, aad: vector.aad)
        #expect(String(decoding: plaintext, as: UTF8.self) == vector.plaintext)
        // Upper-case hex is hex too.
        let upper = try recipient.decrypt(
            field: vector.ciphertext_field_hex.uppercased(), algorithm: vector.algorithm, aad: vector.aad)
        #expect(upper == plaintext)
    }

    @Test(arguments: cases)
    func aadIsBound(vector: E2EEVectors.Case) throws {
        let parties = try Parties()
        let recipient = vector.isRequest ? parties.server : parties.client
        let wrongAAD: [String?] =
            if let aad = vector.aad { [nil, aad + "x", aad.replacingOccurrences(of: "model=m", with: "model=n")] } else
            {
                ["v2|req|algo=\(vector.algo)|model=m|m=0|c=-|n=\(vectorNonce)|ts=\(vectorTimestamp)"]
            }
        for aad in wrongAAD {
            #expect(throws: E2EEError.decryptionFailed) {
                try recipient.decrypt(field: vector.ciphertext_field_hex, algorithm: vector.algorithm, aad: aad)
            }
        }
    }

    @Test(arguments: cases.filter(\.isRequest))
    func requestVectorsOpenThroughTheWalker(vector: E2EEVectors.Case) throws {
        let parties = try Parties()
        let session = try parties.session(vector.algorithm, v2: vector.aad != nil)
        var body: JSONValue = [
            "model": "m", "messages": [["role": "user", "content": .string(vector.ciphertext_field_hex)]],
        ]
        try parties.server.openRequest(&body, session: session)
        #expect(body["messages"]?.arrayValue?.first?["content"] == .string(vector.plaintext))
    }

    @Test(arguments: cases.filter { !$0.isRequest })
    func responseVectorsReproducedByTheSealer(vector: E2EEVectors.Case) throws {
        let parties = try Parties()
        let session = try parties.session(vector.algorithm, v2: vector.aad != nil)
        let sealer = try ResponseSealer(
            session: session, ephemeral: vector.ephemeralKey(), nonces: .fixed(bytes(vector.gcm_nonce)))
        var response: JSONValue = [
            "id": "chatcmpl-1", "object": "chat.completion", "model": "m",
            "choices": [["index": 0, "message": ["role": "assistant", "content": .string(vector.plaintext)]]],
        ]
        try sealer.seal(&response)
        let content = response["choices"]?.arrayValue?.first?["message"]?["content"]
        #expect(content == .string(vector.ciphertext_field_hex))
    }
}
