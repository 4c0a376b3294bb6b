import Crypto
import Foundation
import JSON
import Signing
import Testing

@testable import E2EE

/// Shape of `Tests/Vectors/e2ee.json`.
struct E2EEVectors: Decodable {
    struct Party: Decodable {
        let secp256k1_private_key: String
        let secp256k1_public_key_64: String
        let ed25519_seed: String
        let ed25519_public_key: String
        let x25519_private_from_ed25519: String
        let x25519_public_from_ed25519: String

        func signingKeys() throws -> SigningKeys {
            SigningKeys(
                secp256k1: try Secp256k1PrivateKey(rawRepresentation: bytes(secp256k1_private_key)),
                ed25519: try Curve25519.Signing.PrivateKey(rawRepresentation: bytes(ed25519_seed)))
        }

        func publicKeyHex(_ algo: SigningAlgo) -> String {
            algo == .ecdsa ? secp256k1_public_key_64 : ed25519_public_key
        }
    }

    struct Case: Decodable, CustomTestStringConvertible {
        let algo: String
        let direction: String
        let aad: String?
        let plaintext: String
        let ephemeral_private: String
        let ephemeral_public: String
        let shared_secret: String
        let aes_key: String
        let gcm_nonce: String
        let ciphertext_field_hex: String

        var algorithm: SigningAlgo { SigningAlgo(rawValue: algo)! }
        var isRequest: Bool { direction == "request" }
        var testDescription: String { "\(algo) \(direction) \(aad == nil ? "v1" : "v2")" }

        func ephemeralKey() throws -> EphemeralKey {
            switch algorithm {
            case .ecdsa: .ecdsa(try Secp256k1PrivateKey(rawRepresentation: bytes(ephemeral_private)))
            case .ed25519: .ed25519(try Curve25519.KeyAgreement.PrivateKey(rawRepresentation: bytes(ephemeral_private)))
            }
        }
    }

    let server: Party
    let client: Party
    let cases: [Case]

    static let shared: E2EEVectors = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Vectors/e2ee.json")
        do {
            return try JSONDecoder().decode(E2EEVectors.self, from: Data(contentsOf: url))
        } catch {
            fatalError("cannot load \(url.path): \(error)")
        }
    }()
}

/// Hex to bytes for fixtures, where malformed hex is a bug in the test itself.
func bytes(_ hex: String) -> [UInt8] {
    guard let decoded = Hex.decode(hex) else { fatalError("bad hex in fixture: \(hex)") }
    return decoded
}

/// The vector nonce and timestamp the v2 cases were made with.
let vectorNonce = "0123456789abcdef"
let vectorTimestamp = 1_700_000_000

/// Server and client sides of an exchange built from the vector keys.
struct Parties {
    let serverKeys: SigningKeys
    let clientKeys: SigningKeys
    /// The proxy.
    let server: E2EESessionPolicy
    /// The client's view: it decrypts responses exactly as the server decrypts requests.
    let client: E2EESessionPolicy

    init() throws {
        let vectors = E2EEVectors.shared
        serverKeys = try vectors.server.signingKeys()
        clientKeys = try vectors.client.signingKeys()
        server = E2EESessionPolicy(keys: serverKeys, replayWindow: 300)
        client = E2EESessionPolicy(keys: clientKeys, replayWindow: 300)
    }

    /// Headers a well-behaved client sends.
    func headers(_ algo: SigningAlgo, v2: Bool = true, timestamp: Int = vectorTimestamp) -> E2EEHeaders {
        E2EEHeaders(
            signingAlgo: algo.rawValue, clientPublicKey: clientKeys.publicKeyHex(for: algo),
            modelPublicKey: serverKeys.publicKeyHex(for: algo), version: v2 ? "2" : nil,
            nonce: v2 ? vectorNonce : nil, timestamp: v2 ? String(timestamp) : nil)
    }

    func session(_ algo: SigningAlgo, v2: Bool = true) throws -> E2EESession {
        guard case .encrypted(let session) = try server.parse(headers(algo, v2: v2), now: vectorTimestamp) else {
            throw E2EEError.headerMissing("test expected an encrypted session")
        }
        return session
    }

    /// What a client puts in a content field: `text` encrypted to the server under `aad`.
    func clientEncrypt(_ text: String, algo: SigningAlgo, aad: String?) throws -> String {
        let serverKey = E2EEPublicKey(hex: serverKeys.publicKeyHex(for: algo), algorithm: algo)!
        let ephemeral: EphemeralKey =
            algo == .ecdsa ? .ecdsa(Secp256k1PrivateKey()) : .ed25519(Curve25519.KeyAgreement.PrivateKey())
        let field = try E2EECrypto.encrypt(
            plaintext: Array(text.utf8), to: serverKey, ephemeral: ephemeral, nonce: E2EECrypto.randomNonce(),
            aad: aad.map { Array($0.utf8) })
        return Hex.encode(field)
    }

    /// The client decrypting a response field.
    func clientDecrypt(_ field: String, algo: SigningAlgo, aad: String?) throws -> String {
        String(decoding: try client.decrypt(field: field, algorithm: algo, aad: aad), as: UTF8.self)
    }
}

func requestAAD(_ algo: SigningAlgo, model: String = "m", m: Int, c: Int? = nil) -> String {
    "v2|req|algo=\(algo.rawValue)|model=\(model)|m=\(m)|c=\(c.map(String.init) ?? "-")|n=\(vectorNonce)|ts=\(vectorTimestamp)"
}

func responseAAD(_ algo: SigningAlgo, model: String = "m", id: String = "chatcmpl-1", choice: Int = 0, field: String)
    -> String
{
    "v2|resp|algo=\(algo.rawValue)|model=\(model)|id=\(id)|choice=\(choice)|field=\(field)|n=\(vectorNonce)|ts=\(vectorTimestamp)"
}
