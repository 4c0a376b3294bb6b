import JSON

/// Turns the events of an E2EE stream from `/e2e/invoke` back into the plain SSE events the instance
/// produced, as `chutes-e2ee` 0.1.0's transport does: `e2e_init` sets the stream key; each `e2e` event is
/// one whole `data: …` line; `usage` events are plaintext and pass as they are; `[DONE]` may come in
/// clear or encrypted; `{"e2e_error": x}` becomes `data: {"error": x}`.
///
/// Stricter than the library where it matters for a proxy that signs what it relays: an `e2e` chunk that
/// does not open, or comes before `e2e_init`, ends the stream with an error instead of being skipped.
public struct ChutesE2EEStreamDecoder: Sendable {
    private let responseKey: ResponseKey
    private var streamKey: StreamKey?

    public init(responseKey: ResponseKey) { self.responseKey = responseKey }

    /// What one upstream event becomes.
    public enum Output: Sendable, Equatable {
        /// A plain SSE event, framed (`data: …\n\n`).
        case event([UInt8])
        /// The instance reported an error mid-stream: `data: {"error": x}\n\n` (x as Chutes sent it).
        case error([UInt8])
        /// Nothing for the client (the key exchange, comments, unknown events).
        case nothing
    }

    /// Decodes the `data` payload of one upstream event (the text after `data: `, lines joined).
    public mutating func decode(_ data: some Collection<UInt8>) throws(ChutesE2EEError) -> Output {
        let trimmed = Self.trim(Array(data))
        if trimmed.isEmpty { return .nothing }
        if trimmed.elementsEqual("[DONE]".utf8) { return .event(Self.frame(Array("data: [DONE]".utf8))) }
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
            let line = try streamKey.open(text)
            // The instance seals a whole `data: …` line; anything else is not an event we can relay.
            guard line.starts(with: "data:".utf8), !line.contains(UInt8(ascii: "\n")),
                !line.contains(UInt8(ascii: "\r"))
            else { throw .malformed("decrypted chunk is not one SSE data line") }
            return .event(Self.frame(line))
        }
        if object["usage"] != nil {
            return .event(Self.frame(Array("data: ".utf8) + trimmed))
        }
        if let error = object["e2e_error"] {
            let wrapped = JSONValue.object(["error": error])
            return .error(Self.frame(Array("data: ".utf8) + wrapped.serialized()))
        }
        return .nothing
    }

    private static func frame(_ line: [UInt8]) -> [UInt8] { line + Array("\n\n".utf8) }

    private static func trim(_ bytes: [UInt8]) -> ArraySlice<UInt8> {
        let isSpace: (UInt8) -> Bool = { $0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }
        guard let first = bytes.firstIndex(where: { !isSpace($0) }), let last = bytes.lastIndex(where: { !isSpace($0) })
        else { return [] }
        return bytes[first...last]
    }
}
