import Crypto
import Signing
import Testing

/// SPEC §5 `SIGNING_KEY_SOURCE=kms`: signing keys from 32 derived bytes each, and dstack's signature chain over them.
@Suite struct KMSDerivedKeyTests {
    /// The secp256k1 group order n, big-endian.
    static let order = Hex.decode("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141")!
    static let seed = [UInt8](repeating: 7, count: 32)

    static func scalar(_ value: UInt8) -> [UInt8] { [UInt8](repeating: 0, count: 31) + [value] }

    @Test(arguments: [
        ("zero", [UInt8](repeating: 0, count: 32)),
        ("n", order),
        ("n + 1", Array(order.dropLast()) + [order.last! + 1]),
        ("2^256 - 1", [UInt8](repeating: 0xff, count: 32)),
    ])
    func secp256k1ScalarOutsideOneToNMinusOneIsRefused(_ name: String, _ secret: [UInt8]) {
        #expect(throws: SigningKeyError.secp256k1OutOfRange) {
            try SigningKeys(secp256k1Secret: secret, ed25519Seed: Self.seed)
        }
    }

    @Test func theEndsOfTheRangeAreKeysWithKnownAddresses() throws {
        // 1·G: the generator itself, whose Ethereum address is well known.
        let one = try SigningKeys(secp256k1Secret: Self.scalar(1), ed25519Seed: Self.seed)
        #expect(one.ecdsaAddress == "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf")
        #expect(
            Hex.encode(one.secp256k1.publicKey.compressed33)
                == "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
        // (n − 1)·G = −G: the same x, the other y (G's y is even, so −G's is odd: prefix 03).
        let last = try SigningKeys(
            secp256k1Secret: Array(Self.order.dropLast()) + [Self.order.last! - 1], ed25519Seed: Self.seed)
        #expect(
            Hex.encode(last.secp256k1.publicKey.compressed33)
                == "0379be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
    }

    @Test func secretsOfAnotherLengthAreRefused() {
        #expect(throws: SigningKeyError.secp256k1WrongLength(31)) {
            try SigningKeys(secp256k1Secret: [UInt8](repeating: 1, count: 31), ed25519Seed: Self.seed)
        }
        #expect(throws: SigningKeyError.ed25519WrongLength(33)) {
            try SigningKeys(secp256k1Secret: Self.scalar(1), ed25519Seed: [UInt8](repeating: 1, count: 33))
        }
        #expect(throws: SigningKeyError.ed25519WrongLength(0)) {
            try SigningKeys(secp256k1Secret: Self.scalar(1), ed25519Seed: [])
        }
    }

    /// RFC 8032 §7.1, TEST 1: the seed, its public key, and the signature over the empty message.
    @Test func ed25519SeedGivesRFC8032TestVector1() throws {
        let keys = try SigningKeys(
            secp256k1Secret: Self.scalar(1),
            ed25519Seed: Hex.decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")!)
        #expect(keys.ed25519Address == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        #expect(
            keys.signEd25519("")
                == "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        )
    }

    @Test func derivedKeysNeverPrintTheirSecrets() throws {
        let secret = Hex.decode("0d9e3b1ac6a4d5e2b1c0f7e8d9a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8")!
        let keys = try SigningKeys(secp256k1Secret: secret, ed25519Seed: Self.seed)
        for text in ["\(keys)", String(reflecting: keys), "\(Mirror(reflecting: keys).children.map(\.value))"] {
            #expect(!text.contains(Hex.encode(secret)))
            #expect(!text.contains(Hex.encode(Self.seed)))
        }
    }

    @Test func compressedPointsParseAndRoundTrip() throws {
        for _ in 0..<8 {
            let key = Secp256k1PrivateKey().publicKey
            #expect(key.compressed33.count == 33)
            #expect(try Secp256k1PublicKey(compressed: key.compressed33) == key)
        }
        let g = try Secp256k1PublicKey(
            compressed: Hex.decode("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")!)
        #expect(Hex.encode(g.raw64.suffix(32)) == "483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8")
        var wrongPrefix = g.compressed33
        wrongPrefix[0] = 0x04
        #expect(throws: Secp256k1Error.invalidPublicKey) { try Secp256k1PublicKey(compressed: wrongPrefix) }
        // x = 0 has no point (7 is not a square modulo p).
        #expect(throws: Secp256k1Error.invalidPublicKey) {
            try Secp256k1PublicKey(compressed: [0x02] + [UInt8](repeating: 0, count: 32))
        }
        // E2EE client keys stay uncompressed only.
        #expect(throws: Secp256k1Error.invalidPublicKey) { try Secp256k1PublicKey(bytes: g.compressed33) }
    }
}

/// dstack's chain: `chain[0]` by the app key over `"{purpose}:{hex key}"`, `chain[1]` by the KMS root over
/// `"dstack-kms-issued:" ‖ app id ‖ compressed app key`, each r‖s‖recovery id over Keccak-256.
@Suite struct DstackKeyChainTests {
    /// A chain made by an independent implementation (Python: eth-keys 0.7.0 signing, eth-hash Keccak-256,
    /// `cryptography` for the Ed25519 key) from these secrets: SHA-256 of "dstack chain vector: KMS root",
    /// "…: app key", "…: ecdsa key", "…: ed25519 key"; app id 01 02 … 14; purpose "signing".
    enum Vector {
        static let root = "02c2a116ff2460cb2a067c323613659dfa95c7a53db44455385230d95d3d204056"
        static let app = "037993df9810ddf66366a84aec1736bdb9ec1e3b814091689d70eda0cf6de85b63"
        static let ecdsaKey = "020e218cec1e50fe727d5a22ef56b81ebb74692e252a3c7784eb70ccf830419c24"
        static let ed25519Key = "512c02015c7b18ff1f48ea20d3ad19c5f7f2cf71806083f466f592898d68bd6c"
        static let appID = [UInt8](1...20)
        static let kmsSignature =
            "4f330cc6a2862f4eb647aa57d30f6b2ccb88efb3f940e34409f826954f68026a69a3d6946fafdcf6ddba98114ac9eade1f5e2331d0a986faec2a57c59c97b37600"
        static let ecdsaSignature =
            "cfc7b9f2f23f0204babb40a35a6ce4dc4a0ec7457568d6ce0350b2ee9202cb9534745d76e63317bc86bc0e67850f393a6698d6531b35289c5961cd0ff4e84e7501"
        static let ed25519Signature =
            "b9e3bf6988c8ad7b8fca6a5912c30a78427c25d0c0bbf8f8ed4b1ce1dbaf9dc7757715f29965b5f96a2780ad1726163de2c6b8cf8dbc20cae39e818ddb68543901"

        static func key(_ hex: String) -> Secp256k1PublicKey { try! Secp256k1PublicKey(compressed: Hex.decode(hex)!) }
        static var ecdsaChain: [[UInt8]] { [Hex.decode(ecdsaSignature)!, Hex.decode(kmsSignature)!] }
        static var ed25519Chain: [[UInt8]] { [Hex.decode(ed25519Signature)!, Hex.decode(kmsSignature)!] }
        static var ecdsa: DstackKeyChain.SignedKey { .secp256k1(key(ecdsaKey)) }
        static var ed25519: DstackKeyChain.SignedKey { .ed25519(Hex.decode(ed25519Key)!) }
    }

    @Test func messagesAreDstacksText() {
        let g = Vector.key("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
        #expect(
            DstackKeyChain.appMessage(purpose: "signing", key: .secp256k1(g))
                == Array("signing:0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798".utf8))
        #expect(
            DstackKeyChain.appMessage(purpose: "signing", key: .ed25519([UInt8](repeating: 0xab, count: 32)))
                == Array(("signing:" + String(repeating: "ab", count: 32)).utf8))
        let kms = DstackKeyChain.kmsMessage(appID: Vector.appID, appKey: g)
        #expect(kms == Array("dstack-kms-issued:".utf8) + Vector.appID + g.compressed33)
        #expect(kms.count == 18 + 20 + 33)
    }

    @Test func theIndependentVectorVerifiesForBothKeys() throws {
        let root = Vector.key(Vector.root)
        for (chain, key) in [(Vector.ecdsaChain, Vector.ecdsa), (Vector.ed25519Chain, Vector.ed25519)] {
            let signers = try DstackKeyChain.verify(
                chain: chain, purpose: "signing", key: key, appID: Vector.appID, kmsRoot: root)
            #expect(signers.appKey == Vector.key(Vector.app))
            #expect(signers.kmsKey == root)
        }
    }

    @Test func anotherRootIsRefusedNamingWhereTheChainLeads() {
        let other = Secp256k1PrivateKey().publicKey
        #expect(throws: DstackKeyChain.Failure.notIssuedByRoot(recovered: Vector.key(Vector.root))) {
            try DstackKeyChain.verify(
                chain: Vector.ecdsaChain, purpose: "signing", key: Vector.ecdsa, appID: Vector.appID, kmsRoot: other)
        }
    }

    /// Each forgery must lead somewhere other than the root (recovery always finds some key).
    @Test func forgeriesAreRefused() {
        let root = Vector.key(Vector.root)
        var flipped = Vector.ecdsaChain
        flipped[0][10] ^= 0x01
        var flippedKMS = Vector.ecdsaChain
        flippedKMS[1][40] ^= 0x80
        var otherRecovery = Vector.ecdsaChain
        otherRecovery[0][64] ^= 0x01
        let cases: [(String, [[UInt8]], String, DstackKeyChain.SignedKey, [UInt8])] = [
            // The ecdsa key's chain shown for the Ed25519 key, and the other way round (swapped paths).
            ("swapped: ecdsa chain for the ed25519 key", Vector.ecdsaChain, "signing", Vector.ed25519, Vector.appID),
            ("swapped: ed25519 chain for the ecdsa key", Vector.ed25519Chain, "signing", Vector.ecdsa, Vector.appID),
            ("another key", Vector.ecdsaChain, "signing", .secp256k1(Secp256k1PrivateKey().publicKey), Vector.appID),
            ("another purpose", Vector.ecdsaChain, "encryption", Vector.ecdsa, Vector.appID),
            ("another app id", Vector.ecdsaChain, "signing", Vector.ecdsa, [UInt8](repeating: 9, count: 20)),
            ("altered app signature", flipped, "signing", Vector.ecdsa, Vector.appID),
            ("altered KMS signature", flippedKMS, "signing", Vector.ecdsa, Vector.appID),
            ("altered recovery id", otherRecovery, "signing", Vector.ecdsa, Vector.appID),
        ]
        for (name, chain, purpose, key, appID) in cases {
            do {
                try DstackKeyChain.verify(chain: chain, purpose: purpose, key: key, appID: appID, kmsRoot: root)
                Issue.record("\(name): accepted")
            } catch {
                // Either it recovers another key or nothing at all; never the root.
                if case .notIssuedByRoot(let recovered) = error { #expect(recovered != root, "\(name)") }
            }
        }
    }

    @Test func aChainSignedWithAnotherAppsKeyIsRefused() throws {
        // A second app of the same KMS vouches for the key: its KMS signature names its own app id, so the chain
        // does not lead to the root for this app's id.
        let root = try Secp256k1PrivateKey(rawRepresentation: [UInt8](repeating: 3, count: 32))
        let otherApp = Secp256k1PrivateKey()
        let otherID = [UInt8](repeating: 0xee, count: 20)
        let chain = [
            try DstackKeyChain.sign(DstackKeyChain.appMessage(purpose: "signing", key: Vector.ecdsa), with: otherApp),
            try DstackKeyChain.sign(DstackKeyChain.kmsMessage(appID: otherID, appKey: otherApp.publicKey), with: root),
        ]
        #expect(
            try DstackKeyChain.verify(
                chain: chain, purpose: "signing", key: Vector.ecdsa, appID: otherID, kmsRoot: root.publicKey
            ).appKey == otherApp.publicKey)
        #expect(throws: DstackKeyChain.Failure.self) {
            try DstackKeyChain.verify(
                chain: chain, purpose: "signing", key: Vector.ecdsa, appID: Vector.appID, kmsRoot: root.publicKey)
        }
    }

    @Test func chainsBuiltHereUseDstacksRecoveryIDs() throws {
        let key = Secp256k1PrivateKey()
        for index in 0..<8 {
            let signature = try DstackKeyChain.sign(Array("message \(index)".utf8), with: key)
            #expect(signature.count == 65)
            #expect(signature[64] <= 1)
        }
    }

    @Test func malformedChainsAreRefused() {
        let good = Vector.ecdsaChain
        let cases: [(String, [[UInt8]])] = [
            ("empty", []),
            ("one signature", [good[0]]),
            ("three signatures", good + [good[1]]),
            ("64-byte signature", [Array(good[0].prefix(64)), good[1]]),
            ("recovery id 4", [Array(good[0].prefix(64)) + [4], good[1]]),
            ("r = 0", [[UInt8](repeating: 0, count: 64) + [0], good[1]]),
        ]
        for (name, chain) in cases {
            #expect(throws: DstackKeyChain.Failure.self, "\(name)") {
                try DstackKeyChain.verify(
                    chain: chain, purpose: "signing", key: Vector.ecdsa, appID: Vector.appID,
                    kmsRoot: Vector.key(Vector.root))
            }
            do {
                _ = try DstackKeyChain.appKey(chain: chain, purpose: "signing", key: Vector.ecdsa)
                Issue.record("\(name): accepted")
            } catch {
                if case .notIssuedByRoot = error { Issue.record("\(name): not reported as malformed") }
            }
        }
    }
}
