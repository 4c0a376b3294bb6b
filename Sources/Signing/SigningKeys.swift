import Crypto

/// The two signature schemes a receipt can be requested in.
public enum SigningAlgo: String, Sendable, CaseIterable {
    case ecdsa
    case ed25519

    /// Parses `ecdsa`/`ed25519` in any letter case, as clients send them in headers and query strings.
    public init?(caseInsensitive text: String) {
        self.init(rawValue: text.lowercased())
    }
}

/// The instance's two signing keys, created once at start-up, held in memory only.
public struct SigningKeys: Sendable {
    public let secp256k1: Secp256k1PrivateKey
    public let ed25519: Curve25519.Signing.PrivateKey
    /// EIP-55 address of the secp256k1 key.
    public let ecdsaAddress: String
    /// The 20 raw address bytes (attestation report data binds these).
    public let ecdsaAddressBytes: [UInt8]
    /// 64-byte x‖y public key, lowercase hex.
    public let ecdsaPublicKeyHex: String
    /// The 32-byte Ed25519 public key, lowercase hex.
    public let ed25519Address: String

    /// Two fresh keys from the system's cryptographic RNG.
    public init() {
        self.init(secp256k1: Secp256k1PrivateKey(), ed25519: Curve25519.Signing.PrivateKey())
    }

    /// The keys whose 32 secret bytes someone else derived (dstack's KMS through `GetKey`, SPEC §5): the secp256k1
    /// scalar (big-endian, in [1, n−1]) and the Ed25519 seed (RFC 8032's 32-byte private key). Anything else is
    /// refused rather than reduced or hashed into range, so the addresses are exactly those of the bytes given.
    public init(secp256k1Secret: [UInt8], ed25519Seed: [UInt8]) throws(SigningKeyError) {
        guard secp256k1Secret.count == 32 else { throw .secp256k1WrongLength(secp256k1Secret.count) }
        guard ed25519Seed.count == 32 else { throw .ed25519WrongLength(ed25519Seed.count) }
        let secp256k1: Secp256k1PrivateKey
        do {
            secp256k1 = try Secp256k1PrivateKey(rawRepresentation: secp256k1Secret)
        } catch {
            throw .secp256k1OutOfRange
        }
        let ed25519: Curve25519.Signing.PrivateKey
        do {
            ed25519 = try Curve25519.Signing.PrivateKey(rawRepresentation: ed25519Seed)
        } catch {
            // swift-crypto takes any 32 bytes as a seed; the length was checked above, so this is unreachable.
            throw .ed25519WrongLength(ed25519Seed.count)
        }
        self.init(secp256k1: secp256k1, ed25519: ed25519)
    }

    /// Known keys (tests and vectors).
    public init(secp256k1: Secp256k1PrivateKey, ed25519: Curve25519.Signing.PrivateKey) {
        self.secp256k1 = secp256k1
        self.ed25519 = ed25519
        let addressBytes = EthereumAddress.bytes(of: secp256k1.publicKey)
        self.ecdsaAddressBytes = addressBytes
        self.ecdsaAddress = EthereumAddress.checksummed(addressBytes)
        self.ecdsaPublicKeyHex = Hex.encode(secp256k1.publicKey.raw64)
        self.ed25519Address = Hex.encode(ed25519.publicKey.rawRepresentation)
    }

    /// The signing address a client verifies `algo` signatures against.
    public func address(for algo: SigningAlgo) -> String {
        switch algo {
        case .ecdsa: ecdsaAddress
        case .ed25519: ed25519Address
        }
    }

    /// The public key clients encrypt to (`X-Model-Pub-Key`), lowercase hex.
    public func publicKeyHex(for algo: SigningAlgo) -> String {
        switch algo {
        case .ecdsa: ecdsaPublicKeyHex
        case .ed25519: ed25519Address
        }
    }

    /// The text signed with one algorithm: EIP-191 for ecdsa, Ed25519 over the UTF-8 bytes (hex) for ed25519.
    public func sign(_ text: String, with algo: SigningAlgo) -> String {
        switch algo {
        case .ecdsa: signECDSA(text)
        case .ed25519: signEd25519(text)
        }
    }

    /// EIP-191 `personal_sign` of the UTF-8 text: `0x` + r‖s‖v hex (130 digits).
    public func signECDSA(_ text: String) -> String {
        let digest = EIP191.digest(Array(text.utf8))
        do {
            return "0x" + Hex.encode(try secp256k1.signRecoverable(digest: digest))
        } catch {
            // The key was validated at creation and the digest is 32 bytes; libsecp256k1 cannot refuse.
            preconditionFailure("secp256k1 signing failed: \(error)")
        }
    }

    /// Ed25519 over the UTF-8 text: 128 hex digits, no prefix.
    ///
    /// swift-crypto on Linux signs with BoringSSL's deterministic RFC 8032 Ed25519 (CryptoKit on
    /// Apple platforms randomises), so the same text gives the same signature here.
    public func signEd25519(_ text: String) -> String {
        do {
            return Hex.encode(try ed25519.signature(for: Array(text.utf8)))
        } catch {
            preconditionFailure("Ed25519 signing failed: \(error)")
        }
    }
}

/// Why 32-byte secrets do not make signing keys; the description says what was wrong, never the bytes.
public enum SigningKeyError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The secp256k1 secret is not 32 bytes.
    case secp256k1WrongLength(Int)
    /// The secp256k1 secret is zero or not below the group order n.
    case secp256k1OutOfRange
    /// The Ed25519 seed is not 32 bytes.
    case ed25519WrongLength(Int)

    public var description: String {
        switch self {
        case .secp256k1WrongLength(let count): "the secp256k1 key is \(count) bytes, not 32"
        case .secp256k1OutOfRange: "the secp256k1 key is not a valid scalar (zero, or not below the group order)"
        case .ed25519WrongLength(let count): "the Ed25519 seed is \(count) bytes, not 32"
        }
    }
}

extension SigningKeys: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String {
        "SigningKeys(ecdsa: \(ecdsaAddress), ed25519: \(ed25519Address), private keys redacted)"
    }
    public var debugDescription: String { description }
    public var customMirror: Mirror {
        Mirror(self, children: ["ecdsaAddress": ecdsaAddress, "ed25519Address": ed25519Address], displayStyle: .struct)
    }
}
