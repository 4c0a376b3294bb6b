/// The signature chain dstack's guest agent returns with every `GetKey` key, and its check (SPEC §5).
///
/// The format, as the dstack guest agent's `get_key` builds it and the dstack SDKs' GetKey tests check it:
/// - `chain[0]`: the app key signs `"{purpose}:{hex of the derived public key}"`, where the public key is the
///   33-byte SEC 1 compressed point for a secp256k1 key and the 32 raw bytes for an Ed25519 key (lowercase hex);
/// - `chain[1]`: the KMS root key signs `"dstack-kms-issued:" ‖ app id (20 raw bytes) ‖ the app key's 33-byte
///   compressed point`, made when the KMS handed the app its key.
///
/// Each signature is 65 bytes r‖s‖recovery id over the plain Keccak-256 of the message (no EIP-191 prefix). A
/// verifier recovers the app key from `chain[0]`, then the KMS key from `chain[1]`, and accepts only when that is
/// the KMS root it trusts: recovery always yields some key, so everything rests on that last comparison. The
/// derivation path is in neither message; what the chain proves is "the KMS root issued the key of app `app id`,
/// and that key vouches for this public key for this purpose".
public enum DstackKeyChain {
    /// The prefix of the KMS root's message over an app key.
    public static let kmsIssuedPrefix = "dstack-kms-issued"

    /// The public key as it appears in the app key's message: compressed for secp256k1, raw for Ed25519.
    public enum SignedKey: Sendable, Equatable {
        case secp256k1(Secp256k1PublicKey)
        /// The 32-byte Ed25519 public key.
        case ed25519([UInt8])

        var messageBytes: [UInt8] {
            switch self {
            case .secp256k1(let key): key.compressed33
            case .ed25519(let raw): raw
            }
        }
    }

    /// The two keys a chain leads to.
    public struct Signers: Sendable, Equatable {
        /// The app key that signed the derived key (`chain[0]`).
        public let appKey: Secp256k1PublicKey
        /// The key that signed the app key (`chain[1]`): the KMS root, if the chain is genuine.
        public let kmsKey: Secp256k1PublicKey
    }

    /// Why a chain was refused.
    public enum Failure: Error, Equatable, Sendable, CustomStringConvertible {
        /// Not two 65-byte signatures, or one that recovers no key.
        case malformed(String)
        /// Well-formed, but it does not lead to the trusted root (a forgery, another KMS, or another key, purpose
        /// or app id than the one signed); `recovered` is where it leads instead.
        case notIssuedByRoot(recovered: Secp256k1PublicKey)

        public var description: String {
            switch self {
            case .malformed(let why): "malformed signature chain: \(why)"
            case .notIssuedByRoot(let recovered):
                "the signature chain does not lead to the given KMS root (it leads to \(Hex.encode(recovered.compressed33)))"
            }
        }
    }

    /// `"{purpose}:{hex public key}"`, the app key's message.
    public static func appMessage(purpose: String, key: SignedKey) -> [UInt8] {
        Array("\(purpose):\(Hex.encode(key.messageBytes))".utf8)
    }

    /// `"dstack-kms-issued:" ‖ app id ‖ compressed app key`, the KMS root's message.
    public static func kmsMessage(appID: [UInt8], appKey: Secp256k1PublicKey) -> [UInt8] {
        Array("\(kmsIssuedPrefix):".utf8) + appID + appKey.compressed33
    }

    /// The app key that signed `key` for `purpose` in `chain[0]` (the chain's shape is checked first).
    public static func appKey(chain: [[UInt8]], purpose: String, key: SignedKey) throws(Failure) -> Secp256k1PublicKey {
        try checkShape(chain)
        return try recover(chain[0], message: appMessage(purpose: purpose, key: key), what: "the app signature")
    }

    /// Both keys the chain leads to, without judging them.
    public static func signers(chain: [[UInt8]], purpose: String, key: SignedKey, appID: [UInt8]) throws(Failure)
        -> Signers
    {
        let app = try appKey(chain: chain, purpose: purpose, key: key)
        let kms = try recover(chain[1], message: kmsMessage(appID: appID, appKey: app), what: "the KMS signature")
        return Signers(appKey: app, kmsKey: kms)
    }

    /// Accepts the chain only when it leads from `key` (for `purpose`, in app `appID`) to `kmsRoot`.
    @discardableResult
    public static func verify(
        chain: [[UInt8]], purpose: String, key: SignedKey, appID: [UInt8], kmsRoot: Secp256k1PublicKey
    ) throws(Failure) -> Signers {
        let signers = try signers(chain: chain, purpose: purpose, key: key, appID: appID)
        guard signers.kmsKey == kmsRoot else { throw .notIssuedByRoot(recovered: signers.kmsKey) }
        return signers
    }

    /// One link as dstack makes it: r‖s‖recovery id (0–3, not Ethereum's 27–30) over Keccak-256 of `message`.
    /// For tests and stand-ins that build chains; the proxy itself never signs one.
    public static func sign(_ message: [UInt8], with key: Secp256k1PrivateKey) throws(Secp256k1Error) -> [UInt8] {
        var signature = try key.signRecoverable(digest: Keccak256.hash(message))
        signature[64] -= 27
        return signature
    }

    private static func checkShape(_ chain: [[UInt8]]) throws(Failure) {
        guard chain.count == 2 else { throw .malformed("\(chain.count) signatures, not 2") }
        for (index, link) in chain.enumerated() where link.count != 65 {
            throw .malformed("signature \(index) is \(link.count) bytes, not 65")
        }
    }

    private static func recover(_ signature: [UInt8], message: [UInt8], what: String) throws(Failure)
        -> Secp256k1PublicKey
    {
        do {
            return try Secp256k1PublicKey.recover(signature: signature, digest: Keccak256.hash(message))
        } catch {
            throw .malformed("\(what) recovers no key")
        }
    }
}
