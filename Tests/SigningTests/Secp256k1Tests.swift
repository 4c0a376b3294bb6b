import Crypto
import Signing
import Testing

@Suite struct Secp256k1Tests {
    /// n / 2, the largest s a low-s signature may carry.
    static let halfOrder = Hex.decode("7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0")!

    @Test func ecdhIsSymmetric() throws {
        let a = Secp256k1PrivateKey()
        let b = Secp256k1PrivateKey()
        let ab = try a.sharedSecret(with: b.publicKey)
        let ba = try b.sharedSecret(with: a.publicKey)
        #expect(ab.count == 32)
        #expect(ab == ba)
        #expect(try a.sharedSecret(with: Secp256k1PrivateKey().publicKey) != ab)
    }

    @Test func sharedContextKeysWork() throws {
        let a = Secp256k1PrivateKey()
        let ephemeral = Secp256k1PrivateKey(sharingContextWith: a)
        #expect(ephemeral.publicKey != a.publicKey)
        #expect(try ephemeral.sharedSecret(with: a.publicKey) == a.sharedSecret(with: ephemeral.publicKey))
    }

    @Test func publicKeyAcceptsBothEncodings() throws {
        let key = Secp256k1PrivateKey().publicKey
        #expect(try Secp256k1PublicKey(bytes: key.raw64) == key)
        #expect(try Secp256k1PublicKey(bytes: key.uncompressed65) == key)
        #expect(key.raw64.count == 64)
        #expect(key.uncompressed65.count == 65)
    }

    /// Encodings that are not an uncompressed point on the curve.
    static let invalidPublicKeys: [(String, [UInt8])] = {
        let zero31 = [UInt8](repeating: 0, count: 31)
        return [
            ("empty", []),
            ("63 bytes", [UInt8](repeating: 1, count: 63)),
            ("66 bytes", [UInt8](repeating: 1, count: 66)),
            ("33-byte compressed", [0x02] + [UInt8](repeating: 1, count: 32)),
            ("all-zero 64", [UInt8](repeating: 0, count: 64)),
            ("all-zero 65", [0x04] + [UInt8](repeating: 0, count: 64)),
            ("x=1,y=1 off curve", zero31 + [1] + zero31 + [1]),
        ]
    }()

    @Test(arguments: invalidPublicKeys)
    func invalidPublicKeysRejected(label: String, bytes: [UInt8]) {
        #expect(throws: Secp256k1Error.invalidPublicKey, "\(label)") { try Secp256k1PublicKey(bytes: bytes) }
    }

    @Test func wrongPrefixRejected() throws {
        let key = Secp256k1PrivateKey().publicKey
        for prefix: UInt8 in [0x00, 0x02, 0x03, 0x05, 0x06, 0x07] {
            #expect(throws: Secp256k1Error.invalidPublicKey) { try Secp256k1PublicKey(bytes: [prefix] + key.raw64) }
        }
    }

    @Test func offCurvePointRejected() throws {
        var bytes = Secp256k1PrivateKey().publicKey.raw64
        bytes[63] ^= 0x01
        #expect(throws: Secp256k1Error.invalidPublicKey) { try Secp256k1PublicKey(bytes: bytes) }
    }

    @Test func invalidPrivateKeysRejected() {
        let order = Hex.decode("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141")!
        for bytes in [[UInt8](repeating: 0, count: 32), order, [UInt8](repeating: 0xff, count: 32), [1]] {
            #expect(throws: Secp256k1Error.invalidPrivateKey) { try Secp256k1PrivateKey(rawRepresentation: bytes) }
        }
    }

    @Test func signaturesAreLowSAndRecover() throws {
        let key = Secp256k1PrivateKey()
        for index in 0..<32 {
            let digest = Array(SHA256.hash(data: [UInt8(index)]))
            let signature = try key.signRecoverable(digest: digest)
            #expect(signature.count == 65)
            #expect(signature[64] == 27 || signature[64] == 28)
            let s = signature[32..<64]
            #expect(s.lexicographicallyPrecedes(Self.halfOrder) || s.elementsEqual(Self.halfOrder))
            #expect(try Secp256k1PublicKey.recover(signature: signature, digest: digest) == key.publicKey)
        }
    }

    @Test func recoverRejectsMalformedSignatures() throws {
        let key = Secp256k1PrivateKey()
        let digest = Array(SHA256.hash(data: [1]))
        var signature = try key.signRecoverable(digest: digest)
        #expect(throws: Secp256k1Error.invalidSignature) {
            try Secp256k1PublicKey.recover(signature: Array(signature.prefix(64)), digest: digest)
        }
        signature[64] = 31
        #expect(throws: Secp256k1Error.invalidSignature) {
            try Secp256k1PublicKey.recover(signature: signature, digest: digest)
        }
        #expect(throws: Secp256k1Error.invalidDigest) {
            try Secp256k1PublicKey.recover(signature: signature, digest: [0])
        }
    }

    @Test func signRejectsWrongDigestLength() {
        #expect(throws: Secp256k1Error.invalidDigest) { try Secp256k1PrivateKey().signRecoverable(digest: [1, 2, 3]) }
    }

    @Test func privateKeysAreRedacted() throws {
        let raw = Hex.decode("9ca355642b4a4ae2b2117e308dd9a7a008b95001d395df7add9142113039ad48")!
        let key = try Secp256k1PrivateKey(rawRepresentation: raw)
        let keys = SigningKeys(secp256k1: key, ed25519: Curve25519.Signing.PrivateKey())
        let seedHex = Hex.encode(keys.ed25519.rawRepresentation)
        var dumped = ""
        dump(key, to: &dumped)
        dump(keys, to: &dumped)
        let rendered = [
            "\(key)", String(describing: key), String(reflecting: key), "\(keys)", String(reflecting: keys), dumped,
        ]
        for text in rendered {
            #expect(!text.contains("9ca355"))
            #expect(!text.lowercased().contains(seedHex))
        }
        #expect("\(key)" == "Secp256k1PrivateKey(redacted)")
    }

    @Test func signingAlgoParsesAnyCase() {
        #expect(SigningAlgo(caseInsensitive: "ECDSA") == .ecdsa)
        #expect(SigningAlgo(caseInsensitive: "Ed25519") == .ed25519)
        #expect(SigningAlgo(caseInsensitive: "rsa") == nil)
        #expect(SigningAlgo(caseInsensitive: "") == nil)
    }

    @Test func randomKeysDiffer() {
        let a = SigningKeys()
        let b = SigningKeys()
        #expect(a.ecdsaAddress != b.ecdsaAddress)
        #expect(a.ed25519Address != b.ed25519Address)
        #expect(a.ecdsaAddress.hasPrefix("0x") && a.ecdsaAddress.count == 42)
        #expect(a.signECDSA("x").count == 132)
        #expect(a.signEd25519("x").count == 128)
    }
}
