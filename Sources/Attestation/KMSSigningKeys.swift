import JSON
import Signing

/// `SIGNING_KEY_SOURCE=kms` (SPEC §5): both signing keys derived through the dstack guest agent's `GetKey`, so every
/// replica and every restart of one app holds the same signing identity, with the chains the report publishes.
public enum KMSSigningKeys {
    /// The purpose every signing key is requested with; it is part of the message the app key signs.
    public static let purpose = "signing"

    /// `{MODEL_NAME}/ecdsa-signing-key` and `{MODEL_NAME}/ed25519-signing-key`, as NEAR's Rust proxy names them,
    /// so both implementations of one app derive the same keys.
    public static func paths(modelName: String) -> (ecdsa: String, ed25519: String) {
        ("\(modelName)/ecdsa-signing-key", "\(modelName)/ed25519-signing-key")
    }

    /// Derives both keys, one `GetKey` after the other, and checks everything the proxy can check alone: 32-byte
    /// keys, a secp256k1 scalar in range, well-formed chains, and that both chains were signed by one app key over
    /// the very public keys served (the KMS root is the verifier's to pin, so it is not judged here).
    /// - Throws: `Failure`, naming the path that failed; the caller stops start-up with it.
    public static func derive(modelName: String, agent: DstackClient) async throws(Failure) -> (
        keys: SigningKeys, provenance: KeyProvenance
    ) {
        let paths = paths(modelName: modelName)
        let ecdsa = try await fetch(paths.ecdsa, algorithm: "secp256k1", agent: agent)
        let ed25519 = try await fetch(paths.ed25519, algorithm: "ed25519", agent: agent)
        let keys: SigningKeys
        do {
            keys = try SigningKeys(secp256k1Secret: ecdsa.key, ed25519Seed: ed25519.key)
        } catch {
            // Only the secp256k1 scalar can be out of range: both lengths were checked by the client.
            throw Failure(path: paths.ecdsa, reason: "\(error)")
        }

        // Each chain must vouch for the key this proxy will serve; recovering the signer of the app message is
        // exact only when the message names that key, so both chains leading to one app key proves both. A guest
        // agent that ignores `algorithm` signs the secp256k1 point of the Ed25519 seed instead: refused here.
        let ecdsaApp: Secp256k1PublicKey
        do {
            ecdsaApp = try DstackKeyChain.appKey(
                chain: ecdsa.signatureChain, purpose: purpose, key: .secp256k1(keys.secp256k1.publicKey))
        } catch {
            throw Failure(path: paths.ecdsa, reason: "\(error)")
        }
        do {
            let ed25519App = try DstackKeyChain.appKey(
                chain: ed25519.signatureChain, purpose: purpose,
                key: .ed25519(Array(keys.ed25519.publicKey.rawRepresentation)))
            guard ed25519App == ecdsaApp, ed25519.signatureChain[1] == ecdsa.signatureChain[1] else {
                throw Failure(
                    path: paths.ed25519,
                    reason:
                        "its signature chain does not vouch for this Ed25519 key (another app key than the ecdsa "
                        + "key's chain: a guest agent without GetKey's algorithm parameter signs a secp256k1 key)")
            }
        } catch let failure as Failure {
            throw failure
        } catch {
            throw Failure(path: paths.ed25519, reason: "\(error)")
        }
        let provenance = KeyProvenance(entries: [
            .init(path: paths.ecdsa, purpose: purpose, signatureChain: ecdsa.signatureChain),
            .init(path: paths.ed25519, purpose: purpose, signatureChain: ed25519.signatureChain),
        ])
        return (keys, provenance)
    }

    private static func fetch(_ path: String, algorithm: String, agent: DstackClient) async throws(Failure)
        -> DstackClient.DerivedKey
    {
        do {
            return try await agent.getKey(path: path, purpose: purpose, algorithm: algorithm)
        } catch {
            throw Failure(path: path, reason: error.reason)
        }
    }

    /// Why the keys could not be derived: the path and one clause, never key material.
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public let path: String
        public let reason: String

        public var description: String { "GetKey for \(path) failed: \(reason)" }
    }
}

/// The report's `key_provenance` (SPEC §5): for every KMS-derived key, `{path: {"purpose", "signature_chain"}}`.
public struct KeyProvenance: Sendable, Equatable {
    /// One derived key's chain.
    public struct Entry: Sendable, Equatable {
        public let path: String
        public let purpose: String
        public let signatureChain: [[UInt8]]

        public init(path: String, purpose: String, signatureChain: [[UInt8]]) {
            self.path = path
            self.purpose = purpose
            self.signatureChain = signatureChain
        }
    }

    public let entries: [Entry]

    public init(entries: [Entry]) {
        self.entries = entries
    }

    /// The object the report carries; signatures as lowercase hex, as dstack sends them.
    public var json: JSONValue {
        var object = JSONObject()
        for entry in entries {
            object[entry.path] = [
                "purpose": .string(entry.purpose),
                "signature_chain": .array(entry.signatureChain.map { .string(Hex.encode($0)) }),
            ]
        }
        return .object(object)
    }
}
