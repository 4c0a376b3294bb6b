import Crypto
import JSON

/// Turns the events of an E2EE stream from `/e2e/invoke` back into the plain SSE events the instance
/// produced, as `chutes-e2ee` 0.1.0's transport does: `e2e_init` sets the stream key; each `e2e` event is
/// one whole `data: …` line; `[DONE]` may come in clear or encrypted (either is reported as `.done`).
///
/// Stricter than the library where it matters for a proxy that signs what it relays (SPEC §7.2: nothing the relay
/// sends in clear reaches the client or a receipt): an `e2e` chunk that does not open, comes before `e2e_init`, or
/// was seen before (a relay replaying it) ends the stream with an error; a clear `usage` event is rebuilt from its
/// three token counts only — a relay could otherwise put an id, choices or text beside `usage` and have them
/// relayed and signed; `e2e_error` becomes the proxy's own error event, without the relay's text.
public struct ChutesE2EEStreamDecoder: Sendable {
    private let responseKey: ResponseKey
    private var streamKey: StreamKey?
    /// The first 16 bytes of SHA-256 of every sealed chunk opened: a repeat is a replay (each chunk has its nonce).
    private var seenChunks: Set<ChunkDigest> = []

    private struct ChunkDigest: Hashable, Sendable {
        let high: UInt64
        let low: UInt64
    }

    /// The usage members a rebuilt `usage` event keeps (as v1/v2 do for vLLM).
    static let usageCounts = ["prompt_tokens", "completion_tokens", "total_tokens"]
    /// What an `e2e_error` becomes: the proxy's own mid-stream error event, no relay text.
    static let errorEvent = Array(
        #"data: {"error":{"message":"Upstream reported an error mid-stream","type":"upstream_error"}}"#.utf8)

    public init(responseKey: ResponseKey) { self.responseKey = responseKey }

    /// What one upstream event becomes.
    public enum Output: Sendable, Equatable {
        /// A plain SSE event, framed (`data: …\n\n`).
        case event([UInt8])
        /// The instance reported an error mid-stream: the proxy's own error event (the relay's text is dropped).
        case error([UInt8])
        /// `[DONE]`, clear or sealed. The caller writes the client's `data: [DONE]` itself, and only once the
        /// upstream stream has ended normally after it (SPEC §7.2).
        case done
        /// Nothing for the client (the key exchange, comments, unknown events).
        case nothing
    }

    /// Decodes the `data` payload of one upstream event (the text after `data: `, lines joined).
    public mutating func decode(_ data: some Collection<UInt8>) throws(ChutesE2EEError) -> Output {
        let trimmed = Self.trim(Array(data))
        if trimmed.isEmpty { return .nothing }
        if trimmed.elementsEqual("[DONE]".utf8) { return .done }
        // Like the library, an event that is not a JSON object carries nothing of the protocol: skip it.
        guard let object = (try? JSONValue(parsing: trimmed))?.objectValue else { return .nothing }
        if let initEvent = object["e2e_init"] {
            guard let text = initEvent.stringValue else { throw .malformed("e2e_init is not a string") }
            streamKey = try responseKey.streamKey(initEvent: text)
            return .nothing
        }
        if let chunk = object["e2e"] {
            guard let streamKey else { throw .malformed("e2e chunk before e2e_init") }
            guard let text = chunk.stringValue else { throw .malformed("e2e chunk is not a string") }
            guard seenChunks.insert(Self.digest(text)).inserted else {
                throw .malformed("a sealed chunk was repeated")
            }
            let line = try streamKey.open(text)
            // The instance seals a whole `data: …` line; anything else is not an event we can relay.
            guard line.starts(with: "data:".utf8), !line.contains(UInt8(ascii: "\n")),
                !line.contains(UInt8(ascii: "\r"))
            else { throw .malformed("decrypted chunk is not one SSE data line") }
            if Self.trim(Array(line.dropFirst(5))).elementsEqual("[DONE]".utf8) { return .done }
            return .event(Self.frame(line))
        }
        if let usage = object["usage"] {
            var counts = JSONObject()
            for name in Self.usageCounts {
                if case .number(let digits)? = usage[name], Self.isCount(digits) { counts[name] = .number(digits) }
            }
            return .event(Self.frame(Array("data: ".utf8) + JSONValue.object(["usage": .object(counts)]).serialized()))
        }
        if object["e2e_error"] != nil {
            return .error(Self.frame(Self.errorEvent))
        }
        return .nothing
    }

    private static func frame(_ line: [UInt8]) -> [UInt8] { line + Array("\n\n".utf8) }

    /// A token count as a relay may state it: decimal digits only, at most 15 of them.
    private static func isCount(_ digits: String) -> Bool {
        !digits.isEmpty && digits.utf8.count <= 15 && digits.utf8.allSatisfy { (0x30...0x39).contains($0) }
    }

    private static func digest(_ text: String) -> ChunkDigest {
        let hash = Array(SHA256.hash(data: Array(text.utf8)))
        func word(_ offset: Int) -> UInt64 { hash[offset..<(offset + 8)].reduce(0) { $0 << 8 | UInt64($1) } }
        return ChunkDigest(high: word(0), low: word(8))
    }

    private static func trim(_ bytes: [UInt8]) -> ArraySlice<UInt8> {
        let isSpace: (UInt8) -> Bool = { $0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }
        guard let first = bytes.firstIndex(where: { !isSpace($0) }), let last = bytes.lastIndex(where: { !isSpace($0) })
        else { return [] }
        return bytes[first...last]
    }
}
