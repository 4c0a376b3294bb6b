import Crypto
import Signing

/// The dev agent's stand-in for dstack's KMS behind `GetKey`: keys derived as dstack derives them, under a root
/// key whose secret is PUBLIC (it is computed from a fixed string below). DEVELOPMENT ONLY, NOT SECURE: anyone can
/// derive every dev key and forge every dev chain; it exists so that `SIGNING_KEY_SOURCE=kms` runs without a TEE.
///
/// Deterministic on purpose: every dev agent (and so every dev replica, before and after a restart) gives the same
/// keys for the same app id and path, as every instance of one app gets from the real KMS. The derivation follows
/// dstack's KMS and guest agent (HKDF-SHA256 with salt "RATLS": the app key from the root with info
/// `app id ‖ "app-key"`, a key from the app key with info `path`) and the chain is dstack's format (see
/// `Signing.DstackKeyChain`).
public struct DevKMS: Sendable {
    /// What the dev KMS answers for one `GetKey`.
    public struct Key: Sendable {
        /// The 32 derived bytes (a secp256k1 scalar or an Ed25519 seed).
        public let key: [UInt8]
        /// `[app signature, KMS signature]`.
        public let signatureChain: [[UInt8]]
    }

    /// Why `GetKey` was refused, as the guest agent refuses it.
    public enum Refusal: Error, Equatable, Sendable {
        /// Neither `secp256k1` (or its alias `k256`, or empty) nor `ed25519`.
        case unsupportedAlgorithm(String)
        /// The derived bytes are no secp256k1 scalar (about 2⁻¹²⁸ of paths).
        case derivedKeyOutOfRange
    }

    /// The root secret: SHA-256 of a fixed text, so it is the same everywhere and obviously public.
    public static let rootSecret = Array(
        SHA256.hash(data: Array("vllm-proxy dev KMS root key: NOT SECURE, this secret is public".utf8)))

    /// The root's compressed public key, what `vllm-proxy verify --kms-root` pins for dev chains.
    public static let rootPublicKey: [UInt8] = {
        guard let key = try? publicKey(rootSecret) else {
            preconditionFailure("the dev KMS root secret is not a secp256k1 scalar")
        }
        return key
    }()

    /// The app this KMS derives for (20 bytes, as the quote's event log names it).
    public let appID: [UInt8]
    private let appSecret: [UInt8]
    private let kmsSignature: [UInt8]

    /// The KMS state of one app: its key and the root's signature over it.
    public init(appID: [UInt8]) {
        self.appID = appID
        let appSecret = Self.hkdf(Self.rootSecret, info: appID + Array("app-key".utf8))
        do {
            let appPublicKey = try Self.publicKey(appSecret)
            let message = Array("dstack-kms-issued:".utf8) + appID + appPublicKey
            kmsSignature = try Self.sign(message, secret: Self.rootSecret)
        } catch {
            // dstack refuses such an app id too; with a fixed root, no 20-byte id is known to hit this.
            preconditionFailure("the dev app key is not a secp256k1 scalar")
        }
        self.appSecret = appSecret
    }

    /// `GetKey`: the key for `path` and its chain, whose first signature covers `"{purpose}:{hex public key}"` for
    /// `algorithm`'s public key of the same bytes (dstack derives them from the path alone).
    public func getKey(path: String, purpose: String, algorithm: String) throws(Refusal) -> Key {
        let key = Self.hkdf(appSecret, info: Array(path.utf8))
        let publicKey: [UInt8]
        switch algorithm {
        case "", "secp256k1", "k256":
            guard let point = try? Self.publicKey(key) else { throw .derivedKeyOutOfRange }
            publicKey = point
        case "ed25519":
            // Any 32 bytes are an Ed25519 seed.
            publicKey = Array((try! Curve25519.Signing.PrivateKey(rawRepresentation: key)).publicKey.rawRepresentation)
        default:
            throw .unsupportedAlgorithm(algorithm)
        }
        let message = Array("\(purpose):\(DevTDXHex.encode(publicKey))".utf8)
        // The app secret was checked in init, so signing with it cannot fail.
        let appSignature = try! Self.sign(message, secret: appSecret)
        return Key(key: key, signatureChain: [appSignature, kmsSignature])
    }

    /// The 33-byte compressed public key of a secret (libsecp256k1, through the proxy's Signing module).
    static func publicKey(_ secret: [UInt8]) throws(Secp256k1Error) -> [UInt8] {
        try Secp256k1PrivateKey(rawRepresentation: secret).publicKey.compressed33
    }

    /// dstack's signature form: r ‖ s ‖ the bare recovery id (0–3), over Keccak-256 of the message.
    static func sign(_ message: [UInt8], secret: [UInt8]) throws(Secp256k1Error) -> [UInt8] {
        var signature = try Secp256k1PrivateKey(rawRepresentation: secret).signRecoverable(
            digest: Keccak256.hash(message))
        signature[64] -= 27  // signRecoverable writes Ethereum's v = 27 + recovery id
        return signature
    }

    private static func hkdf(_ secret: [UInt8], info: [UInt8]) -> [UInt8] {
        HKDF<SHA256>.deriveKey(
            inputKeyMaterial: SymmetricKey(data: secret), salt: Array("RATLS".utf8), info: info, outputByteCount: 32
        ).withUnsafeBytes { Array($0) }
    }
}
