import Crypto
import Foundation
import JSON

/// A GPU instance's ML-KEM-768 key as the relay lists it; requests are sealed to it.
public struct InstancePublicKey: Sendable {
    let key: MLKEM768.PublicKey
    /// The key exactly as listed: an instance's quote binds this text (SPEC §7.2), not the decoded bytes.
    public let base64: String

    public init(base64 text: String) throws(ChutesE2EEError) {
        key = try ChutesE2EEWire.publicKey(base64: text)
        base64 = text
    }

    init(_ key: MLKEM768.PublicKey) {
        self.key = key
        self.base64 = ChutesE2EEWire.base64(key.rawRepresentation)
    }

    /// Seals a chat request: a fresh response key pair for this request only, its public half added to the
    /// payload as `e2e_response_pk`, then gzip and the request key. The private half opens the answer.
    public func seal(_ payload: JSONObject) throws(ChutesE2EEError) -> SealedRequest {
        let responseKey: MLKEM768.PrivateKey
        do {
            responseKey = try MLKEM768.PrivateKey()
        } catch {
            throw .sealFailed
        }
        var payload = payload
        payload["e2e_response_pk"] = .string(ChutesE2EEWire.base64(responseKey.publicKey.rawRepresentation))
        let compressed = try ChutesE2EEWire.gzip(JSONValue.object(payload).serialized())
        let blob = try ChutesE2EEWire.seal(compressed, to: key, .request)
        return SealedRequest(blob: blob, responseKey: ResponseKey(responseKey))
    }
}

/// What goes to `/e2e/invoke` and the key that opens its answer.
public struct SealedRequest: Sendable {
    public let blob: [UInt8]
    public let responseKey: ResponseKey
}

/// The per-request private key that opens a sealed answer (JSON) or a stream's `e2e_init`.
public struct ResponseKey: Sendable {
    let key: MLKEM768.PrivateKey

    init(_ key: MLKEM768.PrivateKey) { self.key = key }

    /// For known-answer tests: the key from its 64-byte FIPS 203 seed (d ‖ z).
    public init(seed: [UInt8]) throws(ChutesE2EEError) {
        guard let key = try? MLKEM768.PrivateKey(seedRepresentation: seed, publicKey: nil) else {
            throw .malformed("an ML-KEM-768 seed is 64 bytes")
        }
        self.key = key
    }

    /// A non-streamed answer: `ct ‖ nonce ‖ sealed ‖ tag` → the JSON bytes, inflated to at most `limit` bytes (the
    /// proxy passes `UPSTREAM_MAX_RESPONSE_BYTES`, so a small blob cannot inflate into more than it would hold).
    public func openResponse(
        _ blob: some Collection<UInt8>, limit: Int = ChutesE2EEWire.maxPlaintextBytes
    ) throws(ChutesE2EEError) -> [UInt8] {
        try ChutesE2EEWire.gunzip(
            ChutesE2EEWire.open(blob, with: key, .response), limit: min(limit, ChutesE2EEWire.maxPlaintextBytes))
    }

    /// The stream key an `e2e_init` event carries (base64 of an ML-KEM ciphertext).
    public func streamKey(initEvent base64: String) throws(ChutesE2EEError) -> StreamKey {
        guard let ciphertext = ChutesE2EEWire.unbase64(base64), ciphertext.count == ChutesE2EEWire.ciphertextSize
        else { throw .malformed("e2e_init is not a base64 ML-KEM-768 ciphertext") }
        let sharedSecret: SymmetricKey
        do {
            sharedSecret = try key.decapsulate(ciphertext)
        } catch {
            throw .decryptionFailed
        }
        return StreamKey(ChutesE2EEWire.deriveKey(sharedSecret: sharedSecret, ciphertext: ciphertext, .stream))
    }

    public var publicKeyBase64: String { ChutesE2EEWire.base64(key.publicKey.rawRepresentation) }
}

/// The symmetric key of one E2EE stream; each `e2e` event is one whole SSE line sealed under it.
public struct StreamKey: Sendable {
    let key: SymmetricKey

    init(_ key: SymmetricKey) { self.key = key }

    /// For known-answer tests.
    public init(raw: [UInt8]) { key = SymmetricKey(data: raw) }

    /// `base64(nonce ‖ sealed ‖ tag)` → the SSE line it carries (without line ending).
    public func open(_ base64: String) throws(ChutesE2EEError) -> [UInt8] {
        guard let raw = ChutesE2EEWire.unbase64(base64) else { throw .malformed("e2e chunk is not base64") }
        return try ChutesE2EEWire.openBox(raw[...], key: key)
    }

    /// The instance side: one SSE line → an `e2e` value.
    public func seal(_ line: [UInt8]) throws(ChutesE2EEError) -> String {
        ChutesE2EEWire.base64(try ChutesE2EEWire.sealBox(line, key: key))
    }

    var bytes: [UInt8] { key.withUnsafeBytes { Array($0) } }
}

/// What a Chutes GPU instance does with requests: open them and seal answers. The proxy never plays this
/// part in production; the development stub (`stub-vllm --chutes-e2ee`) and tests do.
public struct ChutesE2EEInstance: Sendable {
    let key: MLKEM768.PrivateKey

    public init() throws(ChutesE2EEError) {
        guard let key = try? MLKEM768.PrivateKey() else { throw .sealFailed }
        self.key = key
    }

    /// From a 64-byte seed (d ‖ z): for known-answer tests.
    public init(seed: [UInt8]) throws(ChutesE2EEError) {
        guard let key = try? MLKEM768.PrivateKey(seedRepresentation: seed, publicKey: nil) else {
            throw .malformed("an ML-KEM-768 seed is 64 bytes")
        }
        self.key = key
    }

    /// The `e2e_pubkey` the relay lists for this instance.
    public var publicKeyBase64: String { ChutesE2EEWire.base64(key.publicKey.rawRepresentation) }

    public var publicKey: InstancePublicKey { InstancePublicKey(key.publicKey) }

    /// Opens a request blob: the JSON payload (still holding `e2e_response_pk`) and that response key.
    public func openRequest(_ blob: some Collection<UInt8>) throws(ChutesE2EEError) -> (
        payload: JSONObject, responsePublicKey: ResponsePublicKey
    ) {
        let plaintext = try ChutesE2EEWire.gunzip(ChutesE2EEWire.open(blob, with: key, .request))
        guard let payload = (try? JSONValue(parsing: plaintext))?.objectValue,
            let encoded = payload["e2e_response_pk"]?.stringValue,
            let raw = ChutesE2EEWire.unbase64(encoded), raw.count == ChutesE2EEWire.publicKeySize,
            let responseKey = try? MLKEM768.PublicKey(rawRepresentation: raw)
        else { throw .malformed("request payload lacks a valid e2e_response_pk") }
        return (payload, ResponsePublicKey(key: responseKey))
    }
}

/// The public half of a request's response key, as an instance holds it.
public struct ResponsePublicKey: Sendable {
    let key: MLKEM768.PublicKey

    /// A non-streamed answer sealed to this key.
    public func sealResponse(_ json: [UInt8]) throws(ChutesE2EEError) -> [UInt8] {
        try ChutesE2EEWire.seal(ChutesE2EEWire.gzip(json), to: key, .response)
    }

    /// The `e2e_init` value and the stream key it carries.
    public func streamInit() throws(ChutesE2EEError) -> (event: String, key: StreamKey) {
        let encapsulated: KEM.EncapsulationResult
        do {
            encapsulated = try key.encapsulate()
        } catch {
            throw .sealFailed
        }
        let ciphertext = Array(encapsulated.encapsulated)
        let streamKey = ChutesE2EEWire.deriveKey(
            sharedSecret: encapsulated.sharedSecret, ciphertext: ciphertext, .stream)
        return (ChutesE2EEWire.base64(ciphertext), StreamKey(streamKey))
    }
}
