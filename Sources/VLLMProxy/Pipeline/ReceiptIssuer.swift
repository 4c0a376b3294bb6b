import Crypto
import JSON
import SharedState
import Signing

/// Signs `{request hash}:{response hash}` with both instance keys and keeps the record (SPEC §5).
struct ReceiptIssuer: Sendable {
    let keys: SigningKeys
    let store: any SharedStore
    let modelName: String
    let ttl: Duration
    let metrics: ProxyMetrics

    func key(chatID: String) -> String { "\(modelName):chat:\(chatID)" }

    func issue(chatID: String, requestHash: String, responseHash: String, upstream: Upstream.Name) async {
        let text = "\(requestHash):\(responseHash)"
        let record: JSONValue = [
            "text": .string(text),
            "signature_ecdsa": .string(keys.signECDSA(text)),
            "signing_address_ecdsa": .string(keys.ecdsaAddress),
            "signature_ed25519": .string(keys.signEd25519(text)),
            "signing_address_ed25519": .string(keys.ed25519Address),
            "upstream": .string(upstream.rawValue),
        ]
        await store.put(key(chatID: chatID), record.serialized(), ttl: ttl)
        metrics.receiptIssued(upstream: upstream.rawValue)
    }

    /// The stored record, or nil when unknown, expired or unreadable.
    func record(chatID: String) async -> JSONObject? {
        guard let bytes = await store.get(key(chatID: chatID)) else { return nil }
        return (try? JSONValue(parsing: bytes))?.objectValue
    }
}

extension SHA256Digest {
    var hex: String { Hex.encode(self) }
}
