import Crypto
import JSON
import Signing

/// Validates E2EE headers, decrypts request message contents and makes response sealers, all keyed
/// to this instance's signing keys. Create once at start-up.
public struct E2EECodec: Sendable {
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

        // Mode selection looks only at the three key headers.
        guard algoHeader != nil || clientHeader != nil || modelHeader != nil else { return .plain }
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
        // Counted in Unicode scalars, as the reference counted Python code points.
        guard nonce.unicodeScalars.count >= 16 else { throw .invalidNonce }
        guard let seconds = Self.parseTimestamp(timestamp),
            seconds >= Int64(now) - Int64(replayWindow), seconds <= Int64(now) + Int64(replayWindow)
        else { throw .invalidTimestamp }
        let version = E2EEVersion.v2(nonce: nonce, timestamp: String(seconds))
        return .encrypted(E2EESession(algorithm: algorithm, version: version, clientKey: clientKey))
    }

    /// Decrypts `messages[i].content` in place (SPEC §4). Does not claim the replay key; the caller
    /// does that after this succeeds.
    public func openRequest(_ body: inout JSONValue, session: E2EESession) throws(E2EEError) {
        guard case .object(var root) = body, case .array(var messages)? = root["messages"] else { return }
        let model = Self.aadText(root["model"])
        for index in messages.indices {
            guard case .object(var message) = messages[index], let content = message["content"] else { continue }
            switch content {
            case .string(let field):
                let aad = session.aadSuffix.map {
                    "v2|req|algo=\(session.algorithm.rawValue)|model=\(model)|m=\(index)|c=-" + $0
                }
                let plaintext = try decrypt(
                    field: field, algorithm: session.algorithm, aad: aad, path: "messages[\(index)].content")
                message["content"] = try Self.content(from: plaintext)
            case .array(var items):
                for itemIndex in items.indices {
                    guard case .object(var item) = items[itemIndex], item["type"] == "text",
                        case .string(let field)? = item["text"]
                    else { continue }
                    let aad = session.aadSuffix.map {
                        "v2|req|algo=\(session.algorithm.rawValue)|model=\(model)|m=\(index)|c=\(itemIndex)" + $0
                    }
                    let plaintext = try decrypt(
                        field: field, algorithm: session.algorithm, aad: aad,
                        path: "messages[\(index)].content[\(itemIndex)].text")
                    guard let text = String(validating: plaintext, as: UTF8.self) else { throw .decryptionFailed }
                    item["text"] = .string(text)
                    items[itemIndex] = .object(item)
                }
                message["content"] = .array(items)
            default:
                continue
            }
            messages[index] = .object(message)
        }
        root["messages"] = .array(messages)
        body = .object(root)
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
extension E2EECodec: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String { "E2EECodec(replayWindow: \(replayWindow), keys redacted)" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: ["replayWindow": replayWindow], displayStyle: .struct) }
}
