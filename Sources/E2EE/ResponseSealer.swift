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

    /// The outgoing JSON response: only allow-listed metadata, with `choices[i].message.{content,
    /// reasoning_content,reasoning}` encrypted where they are strings (see `allowListed`).
    public func seal(_ response: inout JSONValue) throws(E2EEError) {
        response = try allowListed(response, container: "message", dropEmptyContent: false)
    }

    /// One outgoing stream event: the same allow-list over `choices[i].delta`, after dropping an empty
    /// `delta.content` (so a client never sees a ciphertext of nothing).
    public func sealChunk(_ chunk: inout JSONValue) throws(E2EEError) {
        chunk = try allowListed(chunk, container: "delta", dropEmptyContent: true)
    }

    /// Finish reasons an upstream may report; any other value is dropped rather than relayed.
    static let finishReasons: Set<String> = [
        "stop", "length", "tool_calls", "function_call", "content_filter", "abort", "error",
    ]

    /// Builds a new document from `value`, taking only what may leave under E2EE (SPEC §4, "Confidentiality
    /// under a hostile gateway"): `id`, `object`, `model`, `system_fingerprint` (strings or null),
    /// `created` (a number), `usage` (its three token counts), and per choice
    /// `index` (a number), `finish_reason` (null or a known reason), and of `container` the `role` (a
    /// string) and the sealed fields (strings encrypted, null kept). Everything else is never copied:
    /// an allow-list, so a field no one thought of (`logprobs`, `tool_calls`, `refusal`, `stop_reason`,
    /// array content, whatever an upstream adds next) cannot carry plaintext out.
    func allowListed(_ value: JSONValue, container: String, dropEmptyContent: Bool) throws(E2EEError) -> JSONValue {
        guard case .object(let root) = value else { return .object([:]) }
        // Each event binds its own model and id (the reference read them from the object being sealed).
        let model = E2EESessionPolicy.aadText(root["model"])
        let id = E2EESessionPolicy.aadText(root["id"])
        var out: [JSONObject.Member] = []
        for (key, member) in root {
            switch (key, member) {
            case ("id", .string), ("id", .null), ("object", .string), ("object", .null), ("model", .string),
                ("model", .null), ("system_fingerprint", .string), ("system_fingerprint", .null),
                ("created", .number):
                out.append(.init(key: key, value: member))
            case ("usage", .object(let usage)):
                out.append(.init(key: key, value: .object(Self.tokenCounts(in: usage))))
            case ("choices", .array(let choices)):
                var sealed: [JSONValue] = []
                sealed.reserveCapacity(choices.count)
                for (position, choice) in choices.enumerated() {
                    sealed.append(
                        try allowListedChoice(
                            choice, position: position, container: container, dropEmptyContent: dropEmptyContent,
                            model: model, id: id))
                }
                out.append(.init(key: key, value: .array(sealed)))
            default:
                continue
            }
        }
        return .object(JSONObject(out))
    }

    /// One choice; a choice that is not an object becomes `{}` so positions (which the AAD binds) stay put.
    private func allowListedChoice(
        _ value: JSONValue, position: Int, container: String, dropEmptyContent: Bool, model: String, id: String
    ) throws(E2EEError) -> JSONValue {
        guard case .object(let choice) = value else { return .object([:]) }
        var out: [JSONObject.Member] = []
        for (key, member) in choice {
            switch (key, member) {
            case ("index", .number), ("finish_reason", .null):
                out.append(.init(key: key, value: member))
            case ("finish_reason", .string(let reason)) where Self.finishReasons.contains(reason):
                out.append(.init(key: key, value: member))
            case (container, .object(let fields)):
                var sealed: [JSONObject.Member] = []
                for (name, field) in fields {
                    switch (name, field) {
                    case ("role", .string):
                        sealed.append(.init(key: name, value: field))
                    case ("content", .string("")) where dropEmptyContent:
                        continue
                    case (_, .string(let text)) where Self.fieldNames.contains(name):
                        // `choice` is the position in the array, as in the reference, not the choice's `index` member.
                        let aad = session.aadSuffix.map {
                            "v2|resp|algo=\(session.algorithm.rawValue)|model=\(model)|id=\(id)|choice=\(position)|field=\(name)"
                                + $0
                        }
                        sealed.append(.init(key: name, value: .string(try sealField(text, aad: aad))))
                    case (_, .null) where Self.fieldNames.contains(name):
                        sealed.append(.init(key: name, value: .null))
                    default:
                        continue
                    }
                }
                out.append(.init(key: key, value: .object(JSONObject(sealed))))
            default:
                continue
            }
        }
        return .object(JSONObject(out))
    }

    /// The three token counts of a usage object, when numbers. Nothing else: nested details such as
    /// `cached_tokens` would tell the gateway whether a guessed prompt prefix was served from cache (SPEC §4).
    private static func tokenCounts(in usage: JSONObject) -> JSONObject {
        JSONObject(
            ["prompt_tokens", "completion_tokens", "total_tokens"].compactMap { key in
                guard case .number = usage[key] else { return nil }
                return JSONObject.Member(key: key, value: usage[key]!)
            })
    }

    /// hex(ephemeral ‖ nonce ‖ ciphertext ‖ tag) of `plaintext` with the given AAD.
    ///
    /// An answer's text can be tens of MB, so it is sealed from the string's own UTF-8 and the hex written
    /// straight from the sealed box: no copy of the text, the box or the field is made here.
    func sealField(_ plaintext: String, aad: String?) throws(E2EEError) -> String {
        let nonce: [UInt8]
        switch nonces {
        case .random: nonce = E2EECrypto.randomNonce()
        case .fixed(let fixed): nonce = fixed
        }
        var plaintext = plaintext  // `withUTF8` is mutating only to make a bridged string contiguous
        let sealed = try plaintext.withUTF8 { utf8 in
            Result { () throws(E2EEError) in
                try E2EECrypto.seal(
                    plaintext: UnsafeRawBufferPointer(utf8), key: key, nonce: nonce, aad: aad.map { Array($0.utf8) })
            }
        }.get()
        return ephemeralPublic.withUnsafeBytes { ephemeral in sealed.withUnsafeBytes { Hex.encode(ephemeral, $0) } }
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
