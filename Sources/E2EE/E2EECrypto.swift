import Crypto
import Foundation
import Signing

/// A validated peer public key for one algorithm: what a ciphertext field is encrypted to.
public enum E2EEPublicKey: Sendable, Equatable {
    /// A secp256k1 point.
    case ecdsa(Secp256k1PublicKey)
    /// An Ed25519 key (32 bytes, as on the wire) with its X25519 u-coordinate.
    case ed25519(ed25519: [UInt8], x25519: [UInt8])

    /// The algorithm this key is for.
    public var algorithm: SigningAlgo {
        switch self {
        case .ecdsa: .ecdsa
        case .ed25519: .ed25519
        }
    }

    /// Parses a wire key: ecdsa 64 bytes x‖y or 65 bytes `04`‖x‖y, ed25519 32 bytes; nil when it is
    /// not hex, has the wrong length, or is not a point on the curve.
    public init?(hex: String, algorithm: SigningAlgo) {
        guard !hex.isEmpty, let bytes = Hex.decode(hex) else { return nil }
        switch algorithm {
        case .ecdsa:
            guard let key = try? Secp256k1PublicKey(bytes: bytes) else { return nil }
            self = .ecdsa(key)
        case .ed25519:
            guard let u = Ed25519ToX25519.publicKey(ed25519: bytes) else { return nil }
            self = .ed25519(ed25519: bytes, x25519: u)
        }
    }
}

/// A one-off key pair whose public half travels at the front of every field it encrypts.
enum EphemeralKey: Sendable {
    case ecdsa(Secp256k1PrivateKey)
    case ed25519(Curve25519.KeyAgreement.PrivateKey)

    /// 65 bytes `04`‖x‖y for ecdsa, 32 bytes for X25519.
    var publicBytes: [UInt8] {
        switch self {
        case .ecdsa(let key): key.publicKey.uncompressed65
        case .ed25519(let key): Array(key.publicKey.rawRepresentation)
        }
    }

    func sharedSecret(with peer: E2EEPublicKey) throws(E2EEError) -> [UInt8] {
        switch (self, peer) {
        case (.ecdsa(let key), .ecdsa(let peerKey)):
            guard let secret = try? key.sharedSecret(with: peerKey) else { throw .encryptionFailed }
            return secret
        case (.ed25519(let key), .ed25519(_, let u)):
            return try E2EECrypto.x25519(key, u, failure: .encryptionFailed)
        default:
            throw .encryptionFailed
        }
    }
}

/// SPEC §4 primitives: key agreement, HKDF, AES-256-GCM and the field layout.
enum E2EECrypto {
    static let nonceLength = 12
    static let tagLength = 16

    static func ephemeralPublicKeyLength(_ algorithm: SigningAlgo) -> Int {
        switch algorithm {
        case .ecdsa: 65
        case .ed25519: 32
        }
    }

    /// X25519 private scalar for an Ed25519 seed: the first half of SHA-512(seed), clamped (RFC 8032 §5.1.5).
    static func x25519PrivateKey(ed25519Seed seed: [UInt8]) -> [UInt8] {
        var scalar = Array(SHA512.hash(data: seed).prefix(32))
        scalar[0] &= 248
        scalar[31] &= 127
        scalar[31] |= 64
        return scalar
    }

    /// AES key: HKDF-SHA256 over the shared secret, no salt, 32 bytes, per-algorithm info string.
    static func aesKey(sharedSecret: [UInt8], algorithm: SigningAlgo) -> SymmetricKey {
        let info: String
        switch algorithm {
        case .ecdsa: info = "ecdsa_encryption"
        case .ed25519: info = "ed25519_encryption"
        }
        return HKDF<SHA256>.deriveKey(
            inputKeyMaterial: SymmetricKey(data: sharedSecret), info: Array(info.utf8), outputByteCount: 32)
    }

    static func x25519(
        _ key: Curve25519.KeyAgreement.PrivateKey, _ peerU: [UInt8], failure: E2EEError
    ) throws(E2EEError) -> [UInt8] {
        guard let peer = try? Curve25519.KeyAgreement.PublicKey(rawRepresentation: peerU),
            let secret = try? key.sharedSecretFromKeyAgreement(with: peer)
        else { throw failure }
        let bytes = secret.withUnsafeBytes { Array($0) }
        // A low-order peer point gives the all-zero secret whatever our scalar (RFC 7748 §6.1), so the
        // "shared" key would be public. swift-crypto does not refuse it; do so here.
        guard bytes.reduce(0, |) != 0 else { throw failure }
        return bytes
    }

    /// `ephemeral public ‖ nonce ‖ ciphertext ‖ tag` for `plaintext` under the key shared with `recipient`.
    static func encrypt(
        plaintext: [UInt8], to recipient: E2EEPublicKey, ephemeral: EphemeralKey, nonce: [UInt8], aad: [UInt8]?
    ) throws(E2EEError) -> [UInt8] {
        let key = aesKey(sharedSecret: try ephemeral.sharedSecret(with: recipient), algorithm: recipient.algorithm)
        return try seal(plaintext: plaintext, key: key, ephemeralPublic: ephemeral.publicBytes, nonce: nonce, aad: aad)
    }

    static func seal(
        plaintext: [UInt8], key: SymmetricKey, ephemeralPublic: [UInt8], nonce: [UInt8], aad: [UInt8]?
    ) throws(E2EEError) -> [UInt8] {
        ephemeralPublic + (try seal(plaintext: plaintext, key: key, nonce: nonce, aad: aad))
    }

    /// `nonce ‖ ciphertext ‖ tag` for `plaintext`: a field but its ephemeral key, exactly as the sealed box holds
    /// it, so a large answer's ciphertext is not copied again on its way out.
    static func seal(
        plaintext: some DataProtocol, key: SymmetricKey, nonce: [UInt8], aad: [UInt8]?
    ) throws(E2EEError) -> Data {
        do {
            let gcmNonce = try AES.GCM.Nonce(data: nonce)
            // v1 has no AAD, which AES-GCM treats exactly like empty AAD.
            let box = try AES.GCM.seal(plaintext, using: key, nonce: gcmNonce, authenticating: aad ?? [])
            guard let combined = box.combined else { throw E2EEError.encryptionFailed }  // only for other nonce sizes
            return combined
        } catch {
            throw .encryptionFailed
        }
    }

    /// Splits a field and opens it with the AES key `key` derives from its ephemeral public key.
    static func open(
        field: [UInt8], algorithm: SigningAlgo, aad: [UInt8]?,
        key deriveKey: (_ ephemeralPublic: [UInt8]) throws(E2EEError) -> SymmetricKey
    ) throws(E2EEError) -> [UInt8] {
        let ephemeralLength = ephemeralPublicKeyLength(algorithm)
        guard field.count >= ephemeralLength + nonceLength + tagLength else { throw .decryptionFailed }
        let ephemeral = Array(field[0..<ephemeralLength])
        let nonce = field[ephemeralLength..<(ephemeralLength + nonceLength)]
        let ciphertext = field[(ephemeralLength + nonceLength)..<(field.count - tagLength)]
        let tag = field[(field.count - tagLength)...]
        let key = try deriveKey(ephemeral)
        do {
            let box = try AES.GCM.SealedBox(nonce: AES.GCM.Nonce(data: nonce), ciphertext: ciphertext, tag: tag)
            return Array(try AES.GCM.open(box, using: key, authenticating: aad ?? []))
        } catch {
            throw .decryptionFailed
        }
    }

    static func randomNonce() -> [UInt8] {
        SecureRandom.bytes(nonceLength)
    }
}

/// The instance's own keys in the form request decryption needs, derived once from the signing keys.
struct ServerKeys: Sendable {
    let secp256k1: Secp256k1PrivateKey
    let x25519: Curve25519.KeyAgreement.PrivateKey
    /// What `X-Model-Pub-Key` must be, per algorithm.
    let ecdsaPublicKey: Secp256k1PublicKey
    let ed25519PublicKey: [UInt8]

    init(_ keys: SigningKeys) {
        secp256k1 = keys.secp256k1
        ecdsaPublicKey = keys.secp256k1.publicKey
        ed25519PublicKey = Array(keys.ed25519.publicKey.rawRepresentation)
        let scalar = E2EECrypto.x25519PrivateKey(ed25519Seed: Array(keys.ed25519.rawRepresentation))
        do {
            x25519 = try Curve25519.KeyAgreement.PrivateKey(rawRepresentation: scalar)
        } catch {
            preconditionFailure("a 32-byte X25519 scalar is always accepted")
        }
    }

    /// Whether `hex` is this instance's public key for `algorithm` (ecdsa: 64- or 65-byte form).
    func isOwnKey(hex: String, algorithm: SigningAlgo) -> Bool {
        guard let bytes = Hex.decode(hex) else { return false }
        switch algorithm {
        case .ecdsa: return bytes == ecdsaPublicKey.raw64 || bytes == ecdsaPublicKey.uncompressed65
        case .ed25519: return bytes == ed25519PublicKey
        }
    }

    /// Decrypts a field that a client encrypted to this instance's key for `algorithm`.
    func decrypt(field: [UInt8], algorithm: SigningAlgo, aad: [UInt8]?) throws(E2EEError) -> [UInt8] {
        try E2EECrypto.open(field: field, algorithm: algorithm, aad: aad) { ephemeral throws(E2EEError) in
            try aesKey(ephemeral: ephemeral, algorithm: algorithm)
        }
    }

    /// The AES key a client's ephemeral public key shares with this instance: one key agreement.
    func aesKey(ephemeral: [UInt8], algorithm: SigningAlgo) throws(E2EEError) -> SymmetricKey {
        let secret: [UInt8]
        switch algorithm {
        case .ecdsa:
            guard let point = try? Secp256k1PublicKey(bytes: ephemeral),
                let shared = try? secp256k1.sharedSecret(with: point)
            else { throw .decryptionFailed }
            secret = shared
        case .ed25519:
            secret = try E2EECrypto.x25519(x25519, ephemeral, failure: .decryptionFailed)
        }
        return E2EECrypto.aesKey(sharedSecret: secret, algorithm: algorithm)
    }

    /// Whether X25519 with this peer yields a usable (non-zero) secret, i.e. the point is not of low order.
    func acceptsForKeyAgreement(x25519 u: [UInt8]) -> Bool {
        (try? E2EECrypto.x25519(x25519, u, failure: .decryptionFailed)) != nil
    }
}

/// The AES keys of one request, one key agreement per distinct ephemeral public key: a client (or a
/// gateway) that repeats one ephemeral key across many fields costs one ECDH, not one per field.
struct RequestKeys {
    let server: ServerKeys
    let algorithm: SigningAlgo
    private var keys: [[UInt8]: SymmetricKey] = [:]
    /// Key agreements performed so far (for tests).
    private(set) var agreements = 0

    init(server: ServerKeys, algorithm: SigningAlgo) {
        self.server = server
        self.algorithm = algorithm
    }

    mutating func decrypt(field: [UInt8], aad: [UInt8]?) throws(E2EEError) -> [UInt8] {
        try E2EECrypto.open(field: field, algorithm: algorithm, aad: aad) { ephemeral throws(E2EEError) in
            if let known = keys[ephemeral] { return known }
            agreements += 1
            let key = try server.aesKey(ephemeral: ephemeral, algorithm: algorithm)
            keys[ephemeral] = key
            return key
        }
    }
}
