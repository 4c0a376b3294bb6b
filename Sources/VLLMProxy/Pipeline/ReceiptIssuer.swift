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

    func issue(
        chatID: String, requestHash: String, responseHash: String, upstream: Upstream.Name,
        chutes: ChutesReceipt? = nil
    ) async {
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
        }
        await store.put(key(chatID: chatID), JSONValue.object(record).serialized(), ttl: ttl)
        metrics.receiptIssued(upstream: upstream.rawValue)
    }

    /// The stored record, or nil when unknown, expired or unreadable.
    func record(chatID: String) async -> JSONObject? {
        guard let bytes = await store.get(key(chatID: chatID)) else { return nil }
        return (try? JSONValue(parsing: bytes))?.objectValue
    }
}

/// How a Chutes answer travelled, for its receipt: `"e2ee"` (with the instance that served it) or `"tls"`.
struct ChutesReceipt: Sendable {
    let transport: String
    let instanceID: String?
}

extension SHA256Digest {
    var hex: String { Hex.encode(self) }
}
