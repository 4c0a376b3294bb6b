import E2EE
import JSON
import NIOCore
import Signing

/// A completion request body after the decode stage: a validated JSON object, its `stream` flag, and the exact
/// bytes to forward (the original bytes whenever nothing had to change, so unchanged requests are not
/// re-serialised).
///
/// A plain request is only scanned (validated, duplicate keys refused, `stream` read, `tool_calls` looked for)
/// and never parsed into a tree; the tree is built only when something must change (E2EE decryption,
/// `tool_calls: []` stripping).
struct DecodedRequest: Sendable {
    /// The exact bytes the client sent; the request hash is taken over these.
    let received: ByteBuffer
    /// Set once the body had to be parsed to change it.
    private var changed: JSONObject?
    let isStream: Bool

    init(bytes: ByteBuffer) throws(ProxyError) {
        let scan: JSONScan
        do {
            // A key twice in one object, at any depth, is refused (SPEC §2): JSON readers differ on which
            // occurrence counts, so the proxy, the upstream and the signed request hash could each stand for
            // a different request. Every body sent upstream passes here first (v1/v2 before decryption), or
            // through V3Codec's parse of the sealed body, which refuses them as well.
            scan = try bytes.withUnsafeReadableBytes { buffer in
                try JSONScan(
                    scanning: buffer, topLevelKeys: ["stream", "e2ee"], flagging: "tool_calls",
                    rejectingDuplicateKeys: true)
            }
        } catch JSONParseError.duplicateKey {
            throw .invalidRequest("Request body repeats a key within one object")
        } catch {
            throw .invalidRequest("Request body is not valid JSON")
        }
        guard scan.rootKind == .object else { throw .invalidRequest("Request body must be a JSON object") }
        self.received = bytes
        // Only a JSON boolean decides: vLLM would coerce `"true"` or `1` and stream an answer we then
        // treated as JSON (SPEC §2).
        switch scan.members[0]?.kind {
        case nil, .null?, .false?: self.isStream = false
        case .true?: self.isStream = true
        default: throw .invalidRequest("stream must be a boolean")
        }
        // An E2EE v3 envelope without `X-E2EE-Version: 3` is never forwarded as plain (SPEC §4.3).
        if scan.members[1] != nil { throw ProxyError(E2EEError.v3Malformed) }
        if scan.sawFlaggedKey { stripEmptyToolCalls() }
    }

    /// An opened E2EE v3 request: the sealed object, handled from here on as a plain one.
    init(opened object: JSONObject, envelope: ByteBuffer, stream: Bool) {
        self.received = envelope
        self.changed = object
        self.isStream = stream
        stripEmptyToolCalls()
    }

    /// vLLM's `cache_salt`, so the prefix cache is no oracle (SPEC §4, §4.3): `keepClient` keeps a sealed v3
    /// client's own value (its later turns reuse its cache); otherwise a fresh random one replaces any given.
    mutating func saltCache(keepClient: Bool) {
        update { json in
            if keepClient, let given = json["cache_salt"], !given.isNull { return }
            json["cache_salt"] = .string(Hex.encode(SecureRandom.bytes(32)))
        }
    }

    /// `stream_options.include_usage: true`, so a sealed stream always carries the upstream's usage chunk.
    mutating func requestStreamUsage() {
        update { json in
            var options = json["stream_options"]?.objectValue ?? JSONObject()
            options["include_usage"] = true
            json["stream_options"] = .object(options)
        }
    }

    /// vLLM rejects `tool_calls: []` on assistant messages, which some clients send; drop the key.
    private mutating func stripEmptyToolCalls() {
        var json = tree
        guard case .array(var messages)? = json["messages"] else { return }
        var stripped = false
        for index in messages.indices {
            guard case .object(var message) = messages[index], message["role"] == .string("assistant"),
                message["tool_calls"] == .array([])
            else { continue }
            message["tool_calls"] = nil
            messages[index] = .object(message)
            stripped = true
        }
        guard stripped else { return }
        json["messages"] = .array(messages)
        changed = json
    }

    /// The body as a tree, for a transport that needs one (Chutes E2EE seals the object): the changed one as is
    /// (never serialised and parsed back), else parsed once from the received bytes.
    var object: JSONObject { tree }

    /// The body as a tree: the changed one, else parsed from the received bytes (already validated, and
    /// refusing duplicates again so that no tree built here can silently keep one of two values).
    private var tree: JSONObject {
        changed ?? (try? JSONValue(parsing: received.readableBytesView, rejectingDuplicateKeys: true))?.objectValue
            ?? JSONObject()
    }

    /// Rewrites the body (E2EE decryption); forwarding then re-serialises.
    mutating func update<E: Error>(_ change: (inout JSONObject) throws(E) -> Void) throws(E) {
        var json = tree
        try change(&json)
        changed = json
    }

    /// The bytes sent upstream.
    var forwardBytes: ByteBuffer { changed.map { ByteBuffer(bytes: JSONValue.object($0).serialized()) } ?? received }
}
