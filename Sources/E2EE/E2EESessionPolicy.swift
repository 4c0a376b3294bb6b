import Crypto
import JSON
import Signing

/// The E2EE session policy of SPEC §4: decides from a request's headers whether it is plain, v1/v2 or v3
/// (refusing what the rules refuse, in their order), and for v1/v2 opens the message fields and makes the
/// answer's sealer, keyed to this instance's signing keys. Create once at start-up.
public struct E2EESessionPolicy: Sendable {
    private let server: ServerKeys
    /// How far (seconds) a v2 timestamp may be from now, either way; also the replay-claim lifetime.
    public let replayWindow: Int

    public init(keys: SigningKeys, replayWindow: Int) {
        self.server = ServerKeys(keys)
        self.replayWindow = replayWindow
    }

    /// Decides plain vs encrypted and validates the headers in SPEC §4's order; `now` is Unix seconds.
    public func parse(_ headers: E2EEHeaders, now: Int) throws(E2EEError) -> E2EEMode {
        let algoHeader = E2EEHeaders.present(headers.signingAlgo)
        let clientHeader = E2EEHeaders.present(headers.clientPublicKey)
        let modelHeader = E2EEHeaders.present(headers.modelPublicKey)
        let versionHeader = E2EEHeaders.present(headers.version)
        let nonce = E2EEHeaders.present(headers.nonce)
        let timestamp = E2EEHeaders.present(headers.timestamp)

        // Version 3 seals the whole body: none of the v1/v2 headers may come with it (SPEC §4.3 step 1).
        if versionHeader == "3" {
            guard algoHeader == nil, clientHeader == nil, modelHeader == nil, nonce == nil, timestamp == nil else {
                throw .v3Malformed
            }
            return .sealedV3
        }
        // Otherwise mode selection looks only at the three key headers; an unknown version is refused either way.
        guard algoHeader != nil || clientHeader != nil || modelHeader != nil else {
            if let versionHeader, versionHeader != "1", versionHeader != "2" { throw .invalidVersion }
            return .plain
        }
        guard let algoHeader, let clientHeader, let modelHeader else {
            throw .headerMissing("X-Signing-Algo, X-Client-Pub-Key and X-Model-Pub-Key headers")
        }
        guard (nonce == nil) == (timestamp == nil) else {
            throw .headerMissing("X-E2EE-Nonce and X-E2EE-Timestamp together")
        }
        if versionHeader == "2", nonce == nil {
            throw .headerMissing("X-E2EE-Nonce and X-E2EE-Timestamp headers for version 2")
        }

        guard let algorithm = SigningAlgo(caseInsensitive: algoHeader) else { throw .invalidSigningAlgo }
        guard let clientKey = E2EEPublicKey(hex: clientHeader, algorithm: algorithm),
            acceptsClientKey(clientKey)
        else { throw .invalidPublicKey(E2EEHeaders.clientPublicKeyName) }
        // Our own key is valid by construction, so only a different key needs the full point check.
        if !server.isOwnKey(hex: modelHeader, algorithm: algorithm) {
            guard E2EEPublicKey(hex: modelHeader, algorithm: algorithm) != nil else {
                throw .invalidPublicKey(E2EEHeaders.modelPublicKeyName)
            }
            throw .modelKeyMismatch
        }

        if let versionHeader, versionHeader != "1", versionHeader != "2" { throw .invalidVersion }
        // Explicit version 2, or nonce and timestamp both present, selects v2 (the latter for
        // clients that predate the version header).
        guard versionHeader == "2" || nonce != nil, let nonce, let timestamp else {
            return .encrypted(E2EESession(algorithm: algorithm, version: .v1, clientKey: clientKey))
        }
        guard Self.isValidNonce(nonce) else { throw .invalidNonce }
        guard let seconds = Self.parseTimestamp(timestamp),
            seconds >= Int64(now) - Int64(replayWindow), seconds <= Int64(now) + Int64(replayWindow)
        else { throw .invalidTimestamp }
        let version = E2EEVersion.v2(nonce: nonce, timestamp: String(seconds))
        return .encrypted(E2EESession(algorithm: algorithm, version: version, clientKey: clientKey))
    }

    /// Most encrypted fields one request may carry: they are counted before any is decrypted, so one
    /// request costs at most this many key agreements.
    public static let maxEncryptedFields = 1024

    /// Opens an E2EE request body in place, in SPEC §4's order: finds and counts the encrypted fields
    /// (`messages[i].content` strings and `{"type":"text"}` items' `text`) and checks they are hex; refuses
    /// parameters that would return text outside the sealed fields; then decrypts every field. Does not
    /// claim the replay key; the caller does that after this succeeds, so a claim is only ever made once
    /// at least one field decrypted.
    public func openRequest(_ body: inout JSONValue, session: E2EESession) throws(E2EEError) {
        _ = try open(&body, session: session)
    }

    /// `openRequest`, returning how many key agreements it took (one per distinct ephemeral key).
    func open(_ body: inout JSONValue, session: E2EESession) throws(E2EEError) -> Int {
        guard case .object(var root) = body, case .array(var messages)? = root["messages"] else {
            throw .noEncryptedField
        }
        let fields = try Self.encryptedFields(in: messages)
        try E2EERequestPolicy.refuseUnsupportedParameters(in: root)

        let model = Self.aadText(root["model"])
        var keys = RequestKeys(server: server, algorithm: session.algorithm)
        func decrypt(_ field: EncryptedField) throws(E2EEError) -> [UInt8] {
            let aad = session.aadSuffix.map {
                "v2|req|algo=\(session.algorithm.rawValue)|model=\(model)|m=\(field.message)|c=\(field.item.map(String.init) ?? "-")"
                    + $0
            }
            return try keys.decrypt(field: field.bytes, aad: aad.map { Array($0.utf8) })
        }
        // Fields come in message order; each message is taken out, edited once for all its fields, put back.
        var start = 0
        while start < fields.count {
            let index = fields[start].message
            var end = start + 1
            while end < fields.count, fields[end].message == index { end += 1 }
            defer { start = end }
            guard case .object(var message) = messages[index], let content = message["content"] else { continue }
            switch content {
            case .string:
                message["content"] = try Self.content(from: decrypt(fields[start]))
            case .array(var items):
                for field in fields[start..<end] {
                    guard let item = field.item, case .object(var object) = items[item] else { continue }
                    guard let text = String(validating: try decrypt(field), as: UTF8.self) else {
                        throw .decryptionFailed
                    }
                    object["text"] = .string(text)
                    items[item] = .object(object)
                }
                message["content"] = .array(items)
            default:
                break
            }
            messages[index] = .object(message)
        }
        root["messages"] = .array(messages)
        body = .object(root)
        return keys.agreements
    }

    /// One ciphertext field of a request: where it is and its bytes.
    private struct EncryptedField {
        let message: Int
        /// The content item's index, or nil for a string content.
        let item: Int?
        let bytes: [UInt8]
    }

    /// Every encrypted field, in order: counted first (at most `maxEncryptedFields`, at least one), then
    /// each checked to be hex.
    private static func encryptedFields(in messages: [JSONValue]) throws(E2EEError) -> [EncryptedField] {
        var located: [(message: Int, item: Int?, text: String)] = []
        for index in messages.indices {
            guard case .object(let message) = messages[index], let content = message["content"] else { continue }
            switch content {
            case .string(let text):
                located.append((index, nil, text))
            case .array(let items):
                for itemIndex in items.indices {
                    guard case .object(let item) = items[itemIndex], item["type"] == "text",
                        case .string(let text)? = item["text"]
                    else { continue }
                    located.append((index, itemIndex, text))
                    if located.count > maxEncryptedFields { throw .tooManyFields }
                }
            default:
                continue
            }
            if located.count > maxEncryptedFields { throw .tooManyFields }
        }
        guard !located.isEmpty else { throw .noEncryptedField }
        var fields: [EncryptedField] = []
        fields.reserveCapacity(located.count)
        for field in located {
            let path = "messages[\(field.message)].content" + (field.item.map { "[\($0)].text" } ?? "")
            guard !field.text.isEmpty, let bytes = Hex.decode(field.text) else { throw .invalidContent(path) }
            fields.append(EncryptedField(message: field.message, item: field.item, bytes: bytes))
        }
        return fields
    }

    /// 16–128 printable ASCII characters (`!`–`~`) other than `|`, which separates the AAD's parts: hex,
    /// base64 and UUID nonces qualify, and the length bounds what a claim key costs to hold.
    static func isValidNonce(_ nonce: String) -> Bool {
        (16...128).contains(nonce.utf8.count)
            && nonce.utf8.allSatisfy { $0 >= UInt8(ascii: "!") && $0 <= UInt8(ascii: "~") && $0 != UInt8(ascii: "|") }
    }

    /// A sealer for one response to `session`'s client, with one fresh ephemeral key.
    public func responseSealer(for session: E2EESession) throws(E2EEError) -> ResponseSealer {
        let ephemeral: EphemeralKey
        switch session.algorithm {
        case .ecdsa: ephemeral = .ecdsa(Secp256k1PrivateKey(sharingContextWith: server.secp256k1))
        case .ed25519: ephemeral = .ed25519(Curve25519.KeyAgreement.PrivateKey())
        }
        return try ResponseSealer(session: session, ephemeral: ephemeral, nonces: .random)
    }

    /// Decrypts one ciphertext field sent to this instance; `path` names it in `invalidContent`.
    func decrypt(field: String, algorithm: SigningAlgo, aad: String?, path: String = "field") throws(E2EEError)
        -> [UInt8]
    {
        guard !field.isEmpty, let bytes = Hex.decode(field) else { throw .invalidContent(path) }
        return try server.decrypt(field: bytes, algorithm: algorithm, aad: aad.map { Array($0.utf8) })
    }

    /// The server's X25519 key pair as derived from its Ed25519 key (exposed for the vector tests).
    var x25519PrivateKey: Curve25519.KeyAgreement.PrivateKey { server.x25519 }

    /// A client key must also be usable for key agreement: X25519 rejects low-order points.
    private func acceptsClientKey(_ key: E2EEPublicKey) -> Bool {
        switch key {
        case .ecdsa: true
        case .ed25519(_, let u): server.acceptsForKeyAgreement(x25519: u)
        }
    }

    /// A decrypted string content: a JSON array becomes structured content (clients that encrypt a
    /// whole multimodal array as one string), anything else stays text.
    private static func content(from plaintext: [UInt8]) throws(E2EEError) -> JSONValue {
        guard let text = String(validating: plaintext, as: UTF8.self) else { throw .decryptionFailed }
        if let parsed = try? JSONValue(parsing: plaintext), case .array = parsed {
            return parsed
        }
        return .string(text)
    }

    /// Python `int()` on the header: one optional sign, then ASCII digits only.
    static func parseTimestamp(_ text: String) -> Int64? {
        var digits = Substring(text)
        var negative = false
        if let sign = digits.first, sign == "+" || sign == "-" {
            negative = sign == "-"
            digits = digits.dropFirst()
        }
        guard !digits.isEmpty, digits.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
            let magnitude = Int64(digits)
        else { return nil }
        return negative ? -magnitude : magnitude
    }

    /// How the reference rendered a JSON member into AAD (`str(obj.get(key, ""))`): a string as is,
    /// absent as empty, other scalars as Python would print them.
    static func aadText(_ value: JSONValue?) -> String {
        switch value {
        case nil: ""
        case .string(let text): text
        case .number(let literal): literal
        case .bool(let flag): flag ? "True" : "False"
        case .null: "None"
        case .some(let composite): String(decoding: composite.serialized(), as: UTF8.self)
        }
    }
}

// The codec holds the instance's X25519 private key; keep it out of logs and dumps.
extension E2EESessionPolicy: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String { "E2EESessionPolicy(replayWindow: \(replayWindow), keys redacted)" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: ["replayWindow": replayWindow], displayStyle: .struct) }
}
