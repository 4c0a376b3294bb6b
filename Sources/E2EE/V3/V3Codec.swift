import Crypto
import Foundation
import JSON
import Signing

/// Opens E2EE v3 requests (SPEC §4.3, protocol errors 2–5; step 1 is `V3Envelope`, step 6 the caller's
/// replay claim) with the keys of a `V3KeyRing`. Create once at start-up.
public struct V3Codec: Sendable {
    public let keys: V3KeyRing
    /// `E2EE_REPLAY_WINDOW_SECONDS`: how far `ts` may be from now, either way.
    public let replayWindow: Int

    public init(keys: V3KeyRing, replayWindow: Int) {
        self.keys = keys
        self.replayWindow = replayWindow
    }

    static let responseExportLabel = Array("vllm-proxy e2ee v3 response".utf8)

    /// Steps 2–5: the time, the key, the HPKE open, then the opened object against the envelope. Returns the
    /// request object and the session that seals the answer. `route` is the proxy path the request came to.
    public func open(_ envelope: V3Envelope, route: String, now: Int) throws(E2EEError) -> (JSONObject, V3Session) {
        let (skew, overflow) = envelope.timestamp.subtractingReportingOverflow(Int64(now))
        guard !overflow, skew.magnitude <= UInt64(replayWindow) else { throw .v3InvalidTimestamp }
        guard let pair = keys.pair(keyConfigID: envelope.keyConfigID, now: now) else { throw .keyUnknown }
        let info = Data(
            V3Envelope.info(
                suite: envelope.suite, route: route, model: envelope.model, stream: envelope.stream,
                timestamp: envelope.timestamp))
        let plaintext: Data
        let secret: SymmetricKey
        do {
            var recipient: HPKE.Recipient
            switch envelope.suite {
            case .x25519AES256GCM, .x25519ChaCha20Poly1305:
                recipient = try HPKE.Recipient(
                    privateKey: pair.x25519, ciphersuite: envelope.suite.ciphersuite, info: info,
                    encapsulatedKey: Data(envelope.enc))
            case .xwingAES256GCM:
                recipient = try HPKE.Recipient(
                    privateKey: pair.xwing, ciphersuite: envelope.suite.ciphersuite, info: info,
                    encapsulatedKey: Data(envelope.enc))
            }
            plaintext = try recipient.open(envelope.ciphertext)
            secret = try recipient.exportSecret(context: Self.responseExportLabel, outputByteCount: 32)
        } catch {
            throw .decryptionFailed  // no detail: it must not be an oracle
        }
        guard case .object(let request)? = try? JSONValue(parsing: plaintext, rejectingDuplicateKeys: true) else {
            throw .v3EnvelopeMismatch
        }
        let model: String? =
            switch request["model"] {
            case nil: ""
            case .string(let model)?: model
            default: nil
            }
        let stream: Bool? =
            switch request["stream"] {
            case nil, .null?: false
            case .bool(let flag)?: flag
            default: nil
            }
        guard model == envelope.model, stream == envelope.stream else { throw .v3EnvelopeMismatch }
        return (request, V3Session(suite: envelope.suite, enc: envelope.enc, secret: secret))
    }
}

/// What answering one opened v3 request needs: the suite, the request's `enc` and exported secret.
public struct V3Session: Sendable {
    public let suite: V3Suite
    let enc: [UInt8]
    let secret: SymmetricKey

    init(suite: V3Suite, enc: [UInt8], secret: SymmetricKey) {
        self.suite = suite
        self.enc = enc
        self.secret = secret
    }

    /// `{MODEL_NAME}:e2ee_replay:v3:{hex SHA-256(enc)}`: one claim per encapsulation, so a replayed envelope
    /// is refused whatever else a gateway changes around it.
    public func replayKey(modelName: String) -> String {
        "\(modelName):e2ee_replay:v3:\(Hex.encode(Array(SHA256.hash(data: enc))))"
    }

    /// `X-E2EE-Applied: true`, `X-E2EE-Version: 3`, `X-E2EE-Algo`.
    public var responseHeaders: [(name: String, value: String)] {
        [("X-E2EE-Applied", "true"), ("X-E2EE-Version", "3"), ("X-E2EE-Algo", suite.algoName)]
    }

    /// The sealer of this request's answer, under a fresh random `response_nonce`.
    public func responseSealer() -> V3ResponseSealer {
        V3ResponseSealer(session: self, responseNonce: SecureRandom.bytes(32))
    }
}

/// Seals one answer chunk by chunk (SPEC §4.3, after RFC 9458 §4.4 and Chunked OHTTP): key and nonce base from
/// the request's exported secret and a fresh `response_nonce`; chunk i under nonce base XOR i, the last one
/// with AAD `"final"`. A value type: the one task that writes the answer owns its counter.
public struct V3ResponseSealer: Sendable {
    public let suite: V3Suite
    /// Sent in clear as `n`: it salts the key derivation, so each answer has its own keys.
    public let responseNonce: [UInt8]
    let key: SymmetricKey
    private let nonceBase: [UInt8]
    private var counter: UInt64 = 0
    public private(set) var finished = false

    init(session: V3Session, responseNonce: [UInt8]) {
        self.suite = session.suite
        self.responseNonce = responseNonce
        let prk = HKDF<SHA256>.extract(inputKeyMaterial: session.secret, salt: session.enc + responseNonce)
        self.key = HKDF<SHA256>.expand(
            pseudoRandomKey: prk, info: Array("key".utf8), outputByteCount: V3Suite.keyLength)
        self.nonceBase = HKDF<SHA256>.expand(
            pseudoRandomKey: prk, info: Array("nonce".utf8), outputByteCount: V3Suite.nonceLength
        ).withUnsafeBytes { Array($0) }
    }

    /// Seals the next chunk: ciphertext ‖ tag. The final chunk (AAD `"final"`) may be empty; after it nothing
    /// more may be sealed.
    public mutating func seal(_ plaintext: some DataProtocol, final: Bool) -> [UInt8] {
        precondition(!finished, "a v3 answer has ended with its final chunk")
        let nonce = nextNonce()
        finished = final
        let aad: [UInt8] = final ? Array("final".utf8) : []
        // Both AEADs take 32-byte keys and 12-byte nonces, which is all that can go wrong: the force-tries
        // cannot fail. The box's nonce ‖ ciphertext ‖ tag is copied once, without the nonce: a chunk may be a
        // whole answer of tens of MB.
        switch suite {
        case .x25519AES256GCM, .xwingAES256GCM:
            let box = try! AES.GCM.seal(plaintext, using: key, nonce: AES.GCM.Nonce(data: nonce), authenticating: aad)
            return Array(box.combined!.dropFirst(V3Suite.nonceLength))
        case .x25519ChaCha20Poly1305:
            let box = try! ChaChaPoly.seal(
                plaintext, using: key, nonce: ChaChaPoly.Nonce(data: nonce), authenticating: aad)
            return Array(box.combined.dropFirst(V3Suite.nonceLength))
        }
    }

    /// The nonce of the next chunk (base XOR counter, big-endian, right-aligned), advancing the counter. The
    /// client's opener shares it, so both sides number chunks the same way.
    mutating func nextNonce() -> [UInt8] {
        var nonce = nonceBase
        var index = counter
        var position = nonce.count - 1
        while index > 0 {
            nonce[position] ^= UInt8(truncatingIfNeeded: index)
            index >>= 8
            position -= 1
        }
        counter += 1
        return nonce
    }
}
