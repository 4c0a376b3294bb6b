import Crypto
import JSON
import Signing

/// Encrypts the generated text of one response (JSON or every event of a stream) to the client.
///
/// One ephemeral key per response, so the AES key is derived once; every field gets a fresh nonce.
public struct ResponseSealer: Sendable {
    /// Fields of `message` / `delta` that carry generated text. `reasoning` is included although the
    /// reference left it in plaintext: vLLM ≥ 0.16 sends reasoning only under that name (SPEC §4 deviation).
    public static let fieldNames = ["content", "reasoning_content", "reasoning"]

    /// Where GCM nonces come from; `fixed` exists only so tests can reproduce vector ciphertexts.
    enum NonceSource: Sendable {
        case random
        case fixed([UInt8])
    }

    public let session: E2EESession
    private let ephemeralPublic: [UInt8]
    private let key: SymmetricKey
    private let nonces: NonceSource

    init(session: E2EESession, ephemeral: EphemeralKey, nonces: NonceSource) throws(E2EEError) {
        self.session = session
        self.ephemeralPublic = ephemeral.publicBytes
        self.key = E2EECrypto.aesKey(
            sharedSecret: try ephemeral.sharedSecret(with: session.clientKey), algorithm: session.algorithm)
        self.nonces = nonces
    }

    /// Encrypts `choices[i].message.{content,reasoning_content,reasoning}` where they are strings.
    public func seal(_ response: inout JSONValue) throws(E2EEError) {
        try sealChoices(of: &response, container: "message", dropEmptyContent: false)
    }

    /// Encrypts one stream event's `choices[i].delta` fields, after dropping an empty `delta.content`
    /// (so a client never sees a ciphertext of nothing).
    public func sealChunk(_ chunk: inout JSONValue) throws(E2EEError) {
        try sealChoices(of: &chunk, container: "delta", dropEmptyContent: true)
    }

    /// hex(ephemeral ‖ nonce ‖ ciphertext ‖ tag) of `plaintext` with the given AAD.
    func sealField(_ plaintext: String, aad: String?) throws(E2EEError) -> String {
        let nonce: [UInt8]
        switch nonces {
        case .random: nonce = E2EECrypto.randomNonce()
        case .fixed(let fixed): nonce = fixed
        }
        let field = try E2EECrypto.seal(
            plaintext: Array(plaintext.utf8), key: key, ephemeralPublic: ephemeralPublic, nonce: nonce,
            aad: aad.map { Array($0.utf8) })
        return Hex.encode(field)
    }

    private func sealChoices(of value: inout JSONValue, container: String, dropEmptyContent: Bool)
        throws(E2EEError)
    {
        guard case .object(var root) = value, case .array(var choices)? = root["choices"] else { return }
        // Each event binds its own model and id (the reference read them from the object being sealed).
        let model = E2EECodec.aadText(root["model"])
        let id = E2EECodec.aadText(root["id"])
        for index in choices.indices {
            guard case .object(var choice) = choices[index], case .object(var fields)? = choice[container] else {
                continue
            }
            if dropEmptyContent, fields["content"] == "" {
                fields["content"] = nil
            }
            for name in Self.fieldNames {
                guard case .string(let text)? = fields[name] else { continue }
                // `choice` is the position in the array, as in the reference, not the choice's `index` member.
                let aad = session.aadSuffix.map {
                    "v2|resp|algo=\(session.algorithm.rawValue)|model=\(model)|id=\(id)|choice=\(index)|field=\(name)"
                        + $0
                }
                fields[name] = .string(try sealField(text, aad: aad))
            }
            choice[container] = .object(fields)
            choices[index] = .object(choice)
        }
        root["choices"] = .array(choices)
        value = .object(root)
    }
}

// The sealer holds the response's AES key; keep it out of logs and dumps.
extension ResponseSealer: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String {
        "ResponseSealer(algorithm: \(session.algorithm), version: \(session.version.headerValue), key redacted)"
    }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: ["session": session], displayStyle: .struct) }
}
