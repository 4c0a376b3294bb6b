import AsyncHTTPClient
import Attestation
import Crypto
import JSON
import Logging
import Signing
import Testing

@testable import DevStubs

/// SPEC §5 `SIGNING_KEY_SOURCE=kms` against the dev agent's `GetKey`: the dev KMS signs in dstack's form, its
/// chains verify with `DstackKeyChain`, and the proxy's derivation
/// gives one identity per app with provenance the report carries.
@Suite struct KMSKeyDerivationTests {
    /// `body`'s result or error, so the client can be shut down on both paths.
    func capture<T>(_ body: () async throws -> T) async -> Result<T, any Error> {
        do {
            return .success(try await body())
        } catch {
            return .failure(error)
        }
    }

    let logger = Logger(label: "kms-test")
    /// The dev guest's app id (fixed: the first 20 bytes of its compose hash).
    let appID = DevTDXGuest().appID

    // MARK: The dev KMS's signatures in dstack's form

    @Test func devSignaturesCarryTheBareRecoveryIDAndRecover() throws {
        for index in 0..<4 {
            let secret = Array(SHA256.hash(data: Array("dev key \(index)".utf8)))
            let reference = try Secp256k1PrivateKey(rawRepresentation: secret)
            #expect(try DevKMS.publicKey(secret) == reference.publicKey.compressed33)
            let message = Array("message \(index)".utf8)
            let signature = try DevKMS.sign(message, secret: secret)
            #expect(signature[64] <= 3)
            #expect(
                try Secp256k1PublicKey.recover(signature: signature, digest: Keccak256.hash(message))
                    == reference.publicKey)
        }
    }

    @Test func devRootIsTheRootLibsecp256k1Derives() throws {
        #expect(
            try Secp256k1PrivateKey(rawRepresentation: DevKMS.rootSecret).publicKey.compressed33 == DevKMS.rootPublicKey
        )
    }

    // MARK: The dev KMS's chains

    @Test(arguments: ["interop-model", "dev-model", "", "a/b/c", "ünïcödé"])
    func devChainsVerifyForBothAlgorithms(model: String) throws {
        let kms = DevKMS(appID: appID)
        let root = try Secp256k1PublicKey(compressed: DevKMS.rootPublicKey)
        let paths = KMSSigningKeys.paths(modelName: model)
        let ecdsa = try kms.getKey(path: paths.ecdsa, purpose: "signing", algorithm: "secp256k1")
        let ed25519 = try kms.getKey(path: paths.ed25519, purpose: "signing", algorithm: "ed25519")
        let keys = try SigningKeys(secp256k1Secret: ecdsa.key, ed25519Seed: ed25519.key)
        let ecdsaSigners = try DstackKeyChain.verify(
            chain: ecdsa.signatureChain, purpose: "signing", key: .secp256k1(keys.secp256k1.publicKey), appID: appID,
            kmsRoot: root)
        let ed25519Signers = try DstackKeyChain.verify(
            chain: ed25519.signatureChain, purpose: "signing",
            key: .ed25519(Array(keys.ed25519.publicKey.rawRepresentation)), appID: appID, kmsRoot: root)
        #expect(ecdsaSigners == ed25519Signers)
        // The path alone chooses the bytes (as in dstack): the algorithm only chooses the key the chain signs.
        #expect(try kms.getKey(path: paths.ecdsa, purpose: "signing", algorithm: "ed25519").key == ecdsa.key)
        #expect(try kms.getKey(path: paths.ecdsa, purpose: "other", algorithm: "k256").key == ecdsa.key)
        #expect(ecdsa.key != ed25519.key)
    }

    @Test func devKMSIsDeterministicPerAppAndPath() throws {
        let first = try DevKMS(appID: appID).getKey(path: "m/ecdsa-signing-key", purpose: "signing", algorithm: "")
        let second = try DevKMS(appID: appID).getKey(path: "m/ecdsa-signing-key", purpose: "signing", algorithm: "")
        #expect(first.key == second.key && first.signatureChain == second.signatureChain)
        let otherApp = try DevKMS(appID: [UInt8](repeating: 0x42, count: 20))
            .getKey(path: "m/ecdsa-signing-key", purpose: "signing", algorithm: "")
        #expect(otherApp.key != first.key)
        // Another app's chain does not lead to the root for this app's id.
        let key = try Secp256k1PrivateKey(rawRepresentation: otherApp.key).publicKey
        #expect(throws: DstackKeyChain.Failure.self) {
            try DstackKeyChain.verify(
                chain: otherApp.signatureChain, purpose: "signing", key: .secp256k1(key), appID: appID,
                kmsRoot: try Secp256k1PublicKey(compressed: DevKMS.rootPublicKey))
        }
        #expect(throws: DevKMS.Refusal.unsupportedAlgorithm("rsa")) {
            try DevKMS(appID: appID).getKey(path: "p", purpose: "signing", algorithm: "rsa")
        }
    }

    // MARK: The proxy's derivation, over HTTP, against the dev agent

    @Test(arguments: Transport.allCases)
    func derivationGivesOneIdentityWithVerifiableProvenance(transport: Transport) async throws {
        try await withAgent(transport) { agent, _ in
            let first = try await KMSSigningKeys.derive(modelName: "interop-model", agent: agent)
            let again = try await KMSSigningKeys.derive(modelName: "interop-model", agent: agent)
            #expect(first.keys.ecdsaAddress == again.keys.ecdsaAddress)
            #expect(first.keys.ed25519Address == again.keys.ed25519Address)
            #expect(first.provenance == again.provenance)
            let other = try await KMSSigningKeys.derive(modelName: "another-model", agent: agent)
            #expect(other.keys.ecdsaAddress != first.keys.ecdsaAddress)

            let root = try Secp256k1PublicKey(compressed: DevKMS.rootPublicKey)
            let entries = first.provenance.entries
            #expect(entries.map(\.path) == ["interop-model/ecdsa-signing-key", "interop-model/ed25519-signing-key"])
            #expect(entries.allSatisfy { $0.purpose == "signing" })
            try DstackKeyChain.verify(
                chain: entries[0].signatureChain, purpose: "signing", key: .secp256k1(first.keys.secp256k1.publicKey),
                appID: appID, kmsRoot: root)
            try DstackKeyChain.verify(
                chain: entries[1].signatureChain, purpose: "signing",
                key: .ed25519(Array(first.keys.ed25519.publicKey.rawRepresentation)), appID: appID, kmsRoot: root)

            let json = first.provenance.json
            let chain = try #require(json["interop-model/ecdsa-signing-key"]?["signature_chain"]?.arrayValue)
            #expect(chain.compactMap { $0.stringValue.flatMap { Hex.decode($0) } } == entries[0].signatureChain)
            #expect(json["interop-model/ed25519-signing-key"]?["purpose"] == "signing")
        }
    }

    @Test func theReportCarriesProvenanceOnlyWhenGiven() async throws {
        try await withAgent(.tcp) { agent, _ in
            let derived = try await KMSSigningKeys.derive(modelName: "m", agent: agent)
            func report(_ provenance: KeyProvenance?) async throws -> JSONValue {
                let keys = derived.keys
                return try await AttestationService(
                    identity: AttestationIdentity(
                        ecdsaAddress: keys.ecdsaAddress, ecdsaAddressBytes: keys.ecdsaAddressBytes,
                        ecdsaPublicKeyHex: keys.ecdsaPublicKeyHex,
                        ed25519PublicKey: Array(keys.ed25519.publicKey.rawRepresentation)),
                    agent: agent, gpu: NoGPUEvidence(), tlsCertPath: nil, e2ee: testE2EEAttestation,
                    keyProvenance: provenance, logger: logger
                ).report(AttestationQuery(signingAlgo: nil, nonce: nil, signingAddress: nil, version: "3"))
            }
            let with = try await report(derived.provenance)
            #expect(with["key_provenance"] == derived.provenance.json)
            #expect(with["all_attestations"]?.arrayValue?.first?["key_provenance"] == derived.provenance.json)
            let without = try await report(nil)
            #expect(without["key_provenance"] == nil)
        }
    }

    @Test(arguments: [DevAttestationAgent.Behaviour.garbage, .failing(status: 500)])
    func aMisbehavingAgentFailsNamingThePath(behaviour: DevAttestationAgent.Behaviour) async throws {
        try await withAgent(.tcp, behaviour: behaviour) { agent, _ in
            do throws(KMSSigningKeys.Failure) {
                _ = try await KMSSigningKeys.derive(modelName: "m", agent: agent)
                Issue.record("derived keys from a misbehaving agent")
            } catch {
                #expect(error.path == "m/ecdsa-signing-key")
                #expect("\(error)".hasPrefix("GetKey for m/ecdsa-signing-key failed: the dstack guest agent "))
                #expect(!"\(error)".contains("\n"))
            }
        }
    }

    @Test func anUnreachableAgentFailsNamingThePath() async throws {
        // As start-up builds it: no retried connection, so a refused port is refused at once (port 1 is unused).
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.retryConnectionEstablishment = false
        let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
        let agent = DstackClient(
            endpoint: .init(parsing: "http://127.0.0.1:1"), httpClient: client, timeout: .seconds(10), logger: logger)
        let outcome = await capture { try await KMSSigningKeys.derive(modelName: "m", agent: agent) }
        try await client.shutdown()
        guard case .failure(let error) = outcome else {
            Issue.record("derived keys without an agent")
            return
        }
        #expect("\(error)" == "GetKey for m/ecdsa-signing-key failed: the dstack guest agent cannot be reached")
    }

    @Test func derivedKeysDoNotPrintTheirSecret() async throws {
        try await withAgent(.tcp) { agent, _ in
            let derived = try await agent.getKey(
                path: "m/ecdsa-signing-key", purpose: "signing", algorithm: "secp256k1")
            for text in ["\(derived)", String(reflecting: derived)] {
                #expect(!text.contains(Hex.encode(derived.key)))
            }
        }
    }
}
