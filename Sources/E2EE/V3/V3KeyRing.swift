import Crypto
import Signing
import Synchronization

/// One generation of E2EE v3 keys (SPEC §4.3): an X25519 HPKE key (key_id 0) and an X-Wing key (key_id 1),
/// with the key list `K` that attestation binds and its id `kc`. Held in memory only.
public struct V3KeyPair: Sendable {
    let x25519: Curve25519.KeyAgreement.PrivateKey
    let xwing: XWingMLKEM768X25519.PrivateKey
    /// `K`: the `application/ohttp-keys` encoding of both key configs.
    public let keyConfig: [UInt8]
    /// `kc`: lowercase hex of the first 16 bytes of SHA-256(`K`).
    public let keyConfigID: String

    /// Fresh random keys from the system CSPRNG.
    public static func generate() throws -> V3KeyPair {
        try V3KeyPair(x25519: Curve25519.KeyAgreement.PrivateKey(), xwing: XWingMLKEM768X25519.PrivateKey.generate())
    }

    /// Fixed keys, for fuzzing and known answers: a given X25519 key and an X-Wing key from a 32-byte seed.
    public init(x25519: Curve25519.KeyAgreement.PrivateKey, xwingSeed: [UInt8]) throws {
        self.init(
            x25519: x25519, xwing: try XWingMLKEM768X25519.PrivateKey(seedRepresentation: xwingSeed, publicKey: nil))
    }

    init(x25519: Curve25519.KeyAgreement.PrivateKey, xwing: XWingMLKEM768X25519.PrivateKey) {
        self.x25519 = x25519
        self.xwing = xwing
        self.keyConfig = Self.keyConfig(
            x25519PublicKey: Array(x25519.publicKey.rawRepresentation),
            xwingPublicKey: Array(xwing.publicKey.rawRepresentation))
        self.keyConfigID = Self.keyConfigID(of: keyConfig)
    }

    /// RFC 9458 §3 key configs, each prefixed with its 2-byte length: `key_id kem_id public_key
    /// symmetric_algorithms_length (kdf_id aead_id)…`.
    public static func keyConfig(x25519PublicKey: [UInt8], xwingPublicKey: [UInt8]) -> [UInt8] {
        func config(keyID: UInt8, kem: UInt16, publicKey: [UInt8], aeads: [UInt16]) -> [UInt8] {
            var body = [keyID] + V3Suite.bigEndian(kem) + publicKey + V3Suite.bigEndian(UInt16(aeads.count * 4))
            for aead in aeads { body += V3Suite.bigEndian(V3Suite.kdfHKDFSHA256) + V3Suite.bigEndian(aead) }
            return V3Suite.bigEndian(UInt16(body.count)) + body
        }
        return config(
            keyID: 0, kem: V3Suite.kemX25519, publicKey: x25519PublicKey,
            aeads: [V3Suite.aeadAES256GCM, V3Suite.aeadChaCha20Poly1305])
            + config(keyID: 1, kem: V3Suite.kemXWing, publicKey: xwingPublicKey, aeads: [V3Suite.aeadAES256GCM])
    }

    public static func keyConfigID(of keyConfig: [UInt8]) -> String {
        Hex.encode(Array(SHA256.hash(data: keyConfig).prefix(16)))
    }
}

/// The E2EE v3 keys in use, replaced by fresh random ones every `lifetime` seconds (SPEC §4.3). The pair
/// before still opens requests sealed to its `kc` for `grace` seconds (the replay window) after the change,
/// then is dropped. Rotation happens on the first use after the scheduled time, so no timer is needed and a
/// test can drive it with `now`.
public final class V3KeyRing: Sendable {
    private struct State {
        var current: V3KeyPair
        var replaceAt: Int
        var previous: (pair: V3KeyPair, until: Int)?
    }

    private let state: Mutex<State>
    private let lifetime: Int
    private let grace: Int
    private let generate: @Sendable () throws -> V3KeyPair

    /// - Parameters:
    ///   - lifetime: `E2EE_V3_KEY_LIFETIME_SECONDS`.
    ///   - grace: how long a replaced pair still opens requests (`E2EE_REPLAY_WINDOW_SECONDS`).
    ///   - now: Unix seconds at creation.
    public init(
        lifetime: Int, grace: Int, now: Int,
        generate: @escaping @Sendable () throws -> V3KeyPair = V3KeyPair.generate
    ) throws {
        self.lifetime = lifetime
        self.grace = grace
        self.generate = generate
        self.state = Mutex(State(current: try generate(), replaceAt: now + lifetime, previous: nil))
    }

    /// The pair attestation shows now.
    public func current(now: Int) -> V3KeyPair {
        state.withLock { state in
            rotateIfDue(&state, now: now)
            return state.current
        }
    }

    /// The pair whose `kc` this is, if it may still open requests.
    public func pair(keyConfigID: String, now: Int) -> V3KeyPair? {
        state.withLock { state in
            rotateIfDue(&state, now: now)
            if state.current.keyConfigID == keyConfigID { return state.current }
            if let previous = state.previous, previous.pair.keyConfigID == keyConfigID, now <= previous.until {
                return previous.pair
            }
            return nil
        }
    }

    private func rotateIfDue(_ state: inout State, now: Int) {
        if let previous = state.previous, now > previous.until { state.previous = nil }
        guard now >= state.replaceAt else { return }
        // A failing CSPRNG keeps the old pair a little longer rather than serving without keys.
        guard let fresh = try? generate() else { return }
        // The grace period runs from the scheduled change; a pair long overdue has none left.
        let until = state.replaceAt + grace
        state.previous = now <= until ? (state.current, until) : nil
        state.current = fresh
        state.replaceAt = now + lifetime
    }
}
