import JSON
import NIOCore

/// A completion request body after the decode stage: a JSON object, its `stream` flag, and the exact bytes
/// to forward (the original bytes whenever nothing had to change, so unchanged requests are not re-serialised).
struct DecodedRequest: Sendable {
    /// The exact bytes the client sent; the request hash is taken over these.
    let received: ByteBuffer
    private(set) var json: JSONObject
    private(set) var isModified: Bool
    let isStream: Bool

    init(bytes: ByteBuffer) throws(ProxyError) {
        let value: JSONValue
        do {
            value = try JSONValue(parsing: bytes.readableBytesView)
        } catch {
            throw .invalidRequest("Request body is not valid JSON")
        }
        guard case .object(let object) = value else { throw .invalidRequest("Request body must be a JSON object") }
        self.received = bytes
        self.json = object
        self.isModified = false
        // Only a JSON boolean decides: vLLM would coerce `"true"` or `1` and stream an answer we then
        // treated as JSON (SPEC §2).
        switch object["stream"] {
        case nil, .null?: self.isStream = false
        case .bool(let flag)?: self.isStream = flag
        default: throw .invalidRequest("stream must be a boolean")
        }
        stripEmptyToolCalls()
    }

    /// vLLM rejects `tool_calls: []` on assistant messages, which some clients send; drop the key.
    private mutating func stripEmptyToolCalls() {
        guard case .array(var messages)? = json["messages"] else { return }
        var changed = false
        for index in messages.indices {
            guard case .object(var message) = messages[index], message["role"] == .string("assistant"),
                message["tool_calls"] == .array([])
            else { continue }
            message["tool_calls"] = nil
            messages[index] = .object(message)
            changed = true
        }
        if changed { update { $0["messages"] = .array(messages) } }
    }

    /// Rewrites the body (E2EE decryption, stripping); forwarding then re-serialises.
    mutating func update<E: Error>(_ change: (inout JSONObject) throws(E) -> Void) throws(E) {
        try change(&json)
        isModified = true
    }

    /// The bytes sent upstream.
    var forwardBytes: ByteBuffer { isModified ? ByteBuffer(bytes: JSONValue.object(json).serialized()) : received }
}
