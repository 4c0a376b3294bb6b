import Crypto
import JSON
import Logging
import SharedState
import Signing

/// Signs `{request hash}:{response hash}` with both instance keys, signs the whole record, and keeps it (SPEC §5).
struct ReceiptIssuer: Sendable {
    let keys: SigningKeys
    let store: any SharedStore
    let modelName: String
    let ttl: Duration
    let metrics: ProxyMetrics
    let logger: Logger
    /// The duplicate-id warning is the client's to cause (`request_id`), so it is throttled.
    let duplicateIDLog: LogThrottle

    /// Stored record keys holding the signatures over the rest of the record, one per algorithm.
    static let recordSignaturePrefix = "record_signature_"

    static func recordSignatureKey(_ algo: SigningAlgo) -> String { recordSignaturePrefix + algo.rawValue }

    func key(chatID: String) -> String { "\(modelName):chat:\(chatID)" }

    /// Stores the record unless `chatID` already has one: a record, once stored, is never overwritten
    /// (SPEC §2). The id is vLLM's `chatcmpl-{request_id}` and any token holder may set `request_id`, so a
    /// replacement would let one client swap another's receipt for its own; the later answer gets none.
    @discardableResult
    func issue(
        chatID: String, requestHash: String, responseHash: String, upstream: Upstream.Name,
        chutes: ChutesReceipt? = nil
    ) async -> InsertOutcome {
        let text = "\(requestHash):\(responseHash)"
        var record: JSONObject = [
            "text": .string(text),
            "signature_ecdsa": .string(keys.signECDSA(text)),
            "signing_address_ecdsa": .string(keys.ecdsaAddress),
            "signature_ed25519": .string(keys.signEd25519(text)),
            "signing_address_ed25519": .string(keys.ed25519Address),
            "upstream": .string(upstream.rawValue),
        ]
        if let chutes {
            record["chutes_transport"] = .string(chutes.transport)
            record["chutes_instance_id"] = chutes.instanceID.map { .string($0) } ?? .null
            if let attestation = chutes.attestation { record["chutes_attestation"] = attestation }
        }
        // `text`'s signature covers only the two hashes; this one covers what the record says besides
        // (upstream, transport, instance, attestation), which would otherwise be unauthenticated.
        var stored = JSONValue.object(record).canonicalSerialized()
        let canonical = String(decoding: stored, as: UTF8.self)
        let ecdsa = keys.signECDSA(canonical)
        let ed25519 = keys.signEd25519(canonical)
        // What is stored is the signed bytes with the two signatures (hex: nothing to escape) as last members:
        // one serialisation per receipt, not a second one in another order.
        let (ecdsaKey, ed25519Key) = (Self.recordSignatureKey(.ecdsa), Self.recordSignatureKey(.ed25519))
        stored.removeLast()  // the object's "}" (it has members: "text" at least)
        stored += #","\#(ecdsaKey)":"\#(ecdsa)","\#(ed25519Key)":"\#(ed25519)"}"#.utf8
        let outcome = await store.insertIfAbsent(key(chatID: chatID), stored, ttl: ttl)
        switch outcome {
        case .inserted:
            metrics.receiptIssued(upstream: upstream.rawValue)
        case .alreadyPresent:
            metrics.receiptDuplicateID(upstream: upstream.rawValue)
            if let suppressed = duplicateIDLog.admit() {
                let since = suppressed > 0 ? " (\(suppressed) more were not logged)" : ""
                logger.warning(
                    "receipt: chat id \(Self.loggable(chatID)) already has a signature record; this answer gets none (records are never overwritten; a request_id in the body chooses vLLM's id)\(since)"
                )
            }
        case .notStored:
            // Only a store that refuses when full says this; the record store evicts instead, so it is a bug.
            logger.warning("receipt: the record of chat id \(Self.loggable(chatID)) could not be stored")
        }
        return outcome
    }

    /// The id as it may go into a log line: it comes from the upstream's answer (and the client's
    /// `request_id`), so it is cut short and anything but printable ASCII is escaped.
    static func loggable(_ chatID: String) -> String {
        let scalars = chatID.unicodeScalars
        let shown = scalars.prefix(128).map { $0.escaped(asASCII: true) }.joined()
        return "\"" + shown + (scalars.count > 128 ? "…" : "") + "\""
    }

    /// The stored record, or nil when unknown, expired or unreadable.
    func record(chatID: String) async -> JSONObject? {
        guard let bytes = await store.get(key(chatID: chatID)) else { return nil }
        return (try? JSONValue(parsing: bytes))?.objectValue
    }

    /// The `/v1/signature` answer for the stored record of `chatID` in `algo`, or nil when there is none.
    func signatureAnswer(chatID: String, algo: SigningAlgo) async -> JSONObject? {
        await record(chatID: chatID).map { SignatureAnswer.body(for: $0, algo: algo) }
    }
}

/// Builds the `/v1/signature` answer from a stored record (SPEC §5).
enum SignatureAnswer {
    /// The `text` signature and address of `algo`, `upstream`, the Chutes fields the record has, `record`
    /// (the stored record without its signatures, what `record_signature` covers) and `record_signature`
    /// when the record has one: records the Python implementation wrote to a shared Redis have none.
    static func body(for stored: JSONObject, algo: SigningAlgo) -> JSONObject {
        var body: JSONObject = [
            "text": stored["text"] ?? nil,
            "signature": stored["signature_\(algo.rawValue)"] ?? nil,
            "signing_address": stored["signing_address_\(algo.rawValue)"] ?? nil,
            "signing_algo": .string(algo.rawValue),
            "upstream": stored["upstream"] ?? "vllm",
        ]
        // How a Chutes answer travelled, when the record says (records of the vLLM route do not).
        for key in ["chutes_transport", "chutes_instance_id", "chutes_attestation"] where stored[key] != nil {
            body[key] = stored[key]
        }
        // Every record_signature_* goes, not only the two known ones: a signature cannot cover itself.
        let prefix = ReceiptIssuer.recordSignaturePrefix
        body["record"] = .object(JSONObject(stored.members.filter { !$0.key.utf8.starts(with: prefix.utf8) }))
        if let signature = stored[ReceiptIssuer.recordSignatureKey(algo)] { body["record_signature"] = signature }
        return body
    }
}

/// How a Chutes answer travelled, for its receipt: `"e2ee"` (with the instance that served it) or `"tls"`,
/// and the attested instance's verification summary when there is one (SPEC §7.2).
struct ChutesReceipt: Sendable {
    let transport: String
    let instanceID: String?
    let attestation: JSONValue?

    init(transport: String, instanceID: String?, attestation: JSONValue? = nil) {
        self.transport = transport
        self.instanceID = instanceID
        self.attestation = attestation
    }
}

extension SHA256Digest {
    var hex: String { Hex.encode(self) }
}
