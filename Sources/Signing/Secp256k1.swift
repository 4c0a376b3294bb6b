import CSecp256k1

/// Why a secp256k1 operation was refused.
public enum Secp256k1Error: Error, Equatable, Sendable {
    /// The 32 bytes are zero or not below the group order.
    case invalidPrivateKey
    /// Wrong length, wrong prefix, or not a point on the curve.
    case invalidPublicKey
    /// A digest to sign or recover from must be exactly 32 bytes.
    case invalidDigest
    /// A recoverable signature must be 65 bytes r‖s‖v with v in 27…30 (or 0…3), and must recover.
    case invalidSignature
    /// libsecp256k1 refused an operation whose inputs were already validated; should not happen.
    case operationFailed
}

/// Owner of one libsecp256k1 context, destroyed when the last key sharing it goes away.
///
/// `@unchecked Sendable` is sound because the context is only mutated inside `init` (creation and
/// `secp256k1_context_randomize`, before the object is visible to anyone else); afterwards every
/// call passes it as `const secp256k1_context *`, which libsecp256k1 documents as safe to use from
/// several threads at once.
final class Secp256k1Context: @unchecked Sendable {
    let pointer: OpaquePointer

    init() {
        guard let context = secp256k1_context_create(UInt32(SECP256K1_CONTEXT_NONE)) else {
            preconditionFailure("secp256k1_context_create returned NULL (out of memory)")
        }
        // Blinding the generator multiplication with fresh randomness protects signing and
        // public-key derivation against timing/power side channels.
        var seed = SecureRandom.bytes(32)
        let randomized = seed.withUnsafeBufferPointer { secp256k1_context_randomize(context, $0.baseAddress) }
        precondition(randomized == 1, "secp256k1_context_randomize failed")
        seed.resetBytes()
        pointer = context
    }

    deinit {
        secp256k1_context_destroy(pointer)
    }
}

/// A secp256k1 public key, always a valid curve point.
public struct Secp256k1PublicKey: Sendable, Equatable {
    /// x‖y, 32 bytes each, big-endian.
    public let raw64: [UInt8]
    /// libsecp256k1's parsed form, kept so ECDH does not re-parse (and re-check) the point each time.
    let parsed: secp256k1_pubkey

    /// Accepts 64 bytes x‖y or 65 bytes `04`‖x‖y; anything else, or a point off the curve, throws. (E2EE client
    /// keys come through here: the compressed form stays refused, as the Python implementation refuses it.)
    public init(bytes: [UInt8]) throws(Secp256k1Error) {
        let uncompressed: [UInt8]
        switch bytes.count {
        case 64: uncompressed = [0x04] + bytes
        case 65 where bytes[0] == 0x04: uncompressed = bytes
        default: throw .invalidPublicKey
        }
        // Parsing checks the curve equation; re-serialising would give back the same bytes.
        parsed = try Self.parse(uncompressed)
        raw64 = Array(uncompressed.dropFirst())
    }

    /// The SEC 1 compressed form, 33 bytes `02`/`03`‖x, as dstack's KMS publishes and signs its keys; libsecp256k1
    /// recomputes y from x and the parity byte, and refuses an x with no point.
    public init(compressed bytes: [UInt8]) throws(Secp256k1Error) {
        guard bytes.count == 33, bytes[0] == 0x02 || bytes[0] == 0x03 else { throw .invalidPublicKey }
        self.init(try Self.parse(bytes))
    }

    init(_ key: secp256k1_pubkey) {
        parsed = key
        var key = key
        var out = [UInt8](repeating: 0, count: 65)
        var length = 65
        _ = secp256k1_ec_pubkey_serialize(
            vllm_proxy_secp256k1_context_static(), &out, &length, &key, UInt32(SECP256K1_EC_UNCOMPRESSED))
        raw64 = Array(out.dropFirst())
    }

    /// `04`‖x‖y.
    public var uncompressed65: [UInt8] { [0x04] + raw64 }

    /// SEC 1 compressed form, `02` (y even) or `03` (y odd) ‖ x: what dstack's KMS signs and names keys by.
    public var compressed33: [UInt8] { [0x02 | (raw64[63] & 1)] + raw64.prefix(32) }

    /// The key that produced a 65-byte r‖s‖v signature over `digest`; throws if the signature is malformed.
    public static func recover(signature: [UInt8], digest: [UInt8]) throws(Secp256k1Error) -> Secp256k1PublicKey {
        guard digest.count == 32 else { throw .invalidDigest }
        guard signature.count == 65 else { throw .invalidSignature }
        let v = signature[64]
        let recid: Int32
        switch v {
        case 0...3: recid = Int32(v)
        case 27...30: recid = Int32(v - 27)
        default: throw .invalidSignature
        }
        var parsed = secp256k1_ecdsa_recoverable_signature()
        guard
            secp256k1_ecdsa_recoverable_signature_parse_compact(
                vllm_proxy_secp256k1_context_static(), &parsed, signature, recid) == 1
        else { throw .invalidSignature }
        var key = secp256k1_pubkey()
        guard secp256k1_ecdsa_recover(vllm_proxy_secp256k1_context_static(), &key, &parsed, digest) == 1 else {
            throw .invalidSignature
        }
        return Secp256k1PublicKey(key)
    }

    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.raw64 == rhs.raw64
    }

    private static func parse(_ encoded: [UInt8]) throws(Secp256k1Error) -> secp256k1_pubkey {
        var key = secp256k1_pubkey()
        guard
            secp256k1_ec_pubkey_parse(vllm_proxy_secp256k1_context_static(), &key, encoded, encoded.count) == 1
        else {
            throw .invalidPublicKey
        }
        return key
    }
}

/// A secp256k1 private key; its bytes are never printed, logged or reflected.
public struct Secp256k1PrivateKey: Sendable {
    private let secret: [UInt8]
    private let context: Secp256k1Context
    /// Derived once: deriving needs a scalar multiplication and every signature record needs it.
    public let publicKey: Secp256k1PublicKey

    /// A fresh key from the system's cryptographic RNG, with its own context.
    public init() {
        self.init(context: Secp256k1Context())
    }

    /// A fresh key that shares `other`'s context, for short-lived keys (one per response) where
    /// creating and randomising a context each time would dominate the cost.
    public init(sharingContextWith other: Secp256k1PrivateKey) {
        self.init(context: other.context)
    }

    /// The key with these 32 big-endian bytes; throws if they are zero or not below the group order.
    public init(rawRepresentation: [UInt8]) throws(Secp256k1Error) {
        try self.init(rawRepresentation: rawRepresentation, context: Secp256k1Context())
    }

    private init(context: Secp256k1Context) {
        while true {
            let candidate = SecureRandom.bytes(32)
            // Rejection sampling: the chance of a candidate ≥ n is about 2⁻¹²⁸.
            if let key = try? Self(rawRepresentation: candidate, context: context) {
                self = key
                return
            }
        }
    }

    private init(rawRepresentation: [UInt8], context: Secp256k1Context) throws(Secp256k1Error) {
        guard rawRepresentation.count == 32,
            secp256k1_ec_seckey_verify(context.pointer, rawRepresentation) == 1
        else { throw .invalidPrivateKey }
        var key = secp256k1_pubkey()
        guard secp256k1_ec_pubkey_create(context.pointer, &key, rawRepresentation) == 1 else {
            throw .invalidPrivateKey
        }
        self.secret = rawRepresentation
        self.context = context
        self.publicKey = Secp256k1PublicKey(key)
    }

    /// ECDH: the 32-byte x-coordinate of `self · peer` (not hashed, unlike libsecp256k1's default).
    public func sharedSecret(with peer: Secp256k1PublicKey) throws(Secp256k1Error) -> [UInt8] {
        var point = peer.parsed
        var output = [UInt8](repeating: 0, count: 32)
        let copyX: secp256k1_ecdh_hash_function = { output, x32, _, _ in
            guard let output, let x32 else { return 0 }
            output.update(from: x32, count: 32)
            return 1
        }
        guard secp256k1_ecdh(context.pointer, &output, &point, secret, copyX, nil) == 1 else {
            throw .operationFailed
        }
        return output
    }

    /// 65 bytes r‖s‖v over a 32-byte digest: RFC 6979 nonce, low-s, v = 27 + recovery id.
    public func signRecoverable(digest: [UInt8]) throws(Secp256k1Error) -> [UInt8] {
        guard digest.count == 32 else { throw .invalidDigest }
        var signature = secp256k1_ecdsa_recoverable_signature()
        guard secp256k1_ecdsa_sign_recoverable(context.pointer, &signature, digest, secret, nil, nil) == 1 else {
            throw .operationFailed
        }
        var output = [UInt8](repeating: 0, count: 64)
        var recid: Int32 = 0
        _ = secp256k1_ecdsa_recoverable_signature_serialize_compact(context.pointer, &output, &recid, &signature)
        return output + [UInt8(27 + recid)]
    }
}

extension Secp256k1PrivateKey: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String { "Secp256k1PrivateKey(redacted)" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
}

extension Array where Element == UInt8 {
    /// Best-effort wipe of a temporary secret before it is released.
    mutating func resetBytes() {
        for index in indices { self[index] = 0 }
    }
}
