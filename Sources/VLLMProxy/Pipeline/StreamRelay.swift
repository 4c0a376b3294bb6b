import Crypto
import E2EE
import Hummingbird
import JSON
import Logging
import NIOCore
import SSE

/// Relays an event stream chunk by chunk, hashing exactly the bytes sent. Plain streams pass upstream
/// chunks untouched (events are only split out until the chat `id` is seen; after that the splitter only
/// enforces the event cap); sealed streams re-frame each event with its fields encrypted (an
/// unterminated partial event at the end is dropped). An event over the cap ends the stream.
///
/// A class, and its synchronous steps kept out of line, so that the task suspended between two chunks holds
/// only a small async frame: a struct with the hasher, splitter and sealer inlined made that frame ~14 KB per
/// open stream (measured with heaptrack), most of the proxy's memory at 10 000 streams.
final class StreamRelay: @unchecked Sendable {
    // Mutable state is touched only by the one task that runs the stream (`run`), hence `@unchecked`.
    private var hasher = SHA256()
    private var splitter = SSEEventSplitter()
    /// v1/v2: seals the generated-text fields of each event.
    private let sealer: ResponseSealer?
    /// v3: seals the upstream's bytes whole, chunk by chunk.
    private var framer: V3StreamFramer?
    /// v3: the numbers of the last usage the upstream reported, shown in clear at the end.
    private var usage: JSONObject?
    private let upstream: Upstream
    /// nil on routes without receipts.
    private let receipt: ReceiptContext?
    private let receipts: ReceiptIssuer
    private let logger: Logger
    private(set) var chatID: String?
    /// Set once a sealed stream carried an upstream error event; nothing after it is relayed.
    private(set) var upstreamFailed = false

    init(
        protection: ResponseProtection, framing: V3FramingSettings, upstream: Upstream, receipt: ReceiptContext?,
        receipts: ReceiptIssuer, logger: Logger
    ) {
        switch protection {
        case .none: self.sealer = nil
        case .fields(let sealer): self.sealer = sealer
        case .whole(let session):
            self.sealer = nil
            self.framer = V3StreamFramer(
                sealer: session.responseSealer(), padBytes: framing.padBytes, coalesce: framing.coalesce)
        }
        self.upstream = upstream
        self.receipt = receipt
        self.receipts = receipts
        self.logger = logger
        chatID = receipt?.fixedChatID
        // Named by the proxy, or not signed at all: a plain stream's events need not be read for an id.
        if receipt == nil || chatID != nil { splitter.keepsEvents = framer != nil || sealer != nil }
    }

    /// Relays the upstream's chunks to the client, then stores the receipt (only for a stream that ended well
    /// and whose client is still there) and records the proxy's overhead (waits for chunks excluded).
    func run(_ body: UpstreamResponse.Body, to writer: inout any ResponseBodyWriter, timing: UpstreamTiming)
        async throws
    {
        var timing = timing
        var chunks = body.makeAsyncIterator()
        while true {
            let chunk: ByteBuffer?
            do {
                timing.upstreamWaitBegins()
                chunk = try await chunks.next()
                timing.upstreamWaitEnds()
            } catch {
                // The client went away (its connection's task was cancelled): nobody to tell.
                if Task.isCancelled { throw CancellationError() }
                // The upstream broke mid-stream: tell the client in-band, store no receipt.
                try await writer.write(ending(failureEvent(error)))
                try await writer.finish(nil)
                return
            }
            guard let chunk else { break }
            switch step(chunk) {
            case .send(let out):
                // A write that throws means the client went away: returning drops the upstream iterator,
                // which closes the upstream connection, and stores nothing.
                if out.readableBytes > 0 { try await writer.write(out) }
                // The upstream reported an error in-band (relayed under E2EE as our own event): the stream
                // failed, so like any mid-stream failure it ends here with no receipt.
                if upstreamFailed {
                    try await writer.finish(nil)
                    return
                }
            case .fail(let event):
                try await writer.write(ending(event))
                try await writer.finish(nil)
                return
            }
        }
        if Task.isCancelled { throw CancellationError() }
        if let trailer = v3Trailer() { try await writer.write(trailer) }
        if let receipt, let requestHash = receipt.requestHash, let chatID {
            await receipts.issue(
                chatID: chatID, requestHash: requestHash, responseHash: finalHash(),
                upstream: receipt.upstream, chutes: receipt.chutes)
        }
        try await writer.finish(nil)
        receipts.metrics.recordOverhead(route: timing.route, timing.overhead())
    }

    /// v3: the final chunk, clear usage and `[DONE]` after a normal end (hashed: the receipt covers them).
    @inline(never)
    private func v3Trailer() -> ByteBuffer? {
        guard var framer else { return nil }
        let out = framer.finish(usage: usage, done: true)
        self.framer = framer
        hasher.update(data: out)
        return ByteBuffer(bytes: out)
    }

    /// The event that ends a failed stream; under v3 sealed into the final chunk.
    @inline(never)
    private func ending(_ event: ByteBuffer) -> ByteBuffer {
        guard var framer else { return event }
        let out = framer.finish(trailer: Array(event.readableBytesView), usage: nil, done: false)
        self.framer = framer
        return ByteBuffer(bytes: out)
    }

    private enum Step {
        case send(ByteBuffer)
        /// The stream ends with this error event.
        case fail(ByteBuffer)
    }

    @inline(never)
    private func step(_ chunk: ByteBuffer) -> Step {
        do throws(ProxyError) {
            return .send(try pass(chunk))
        } catch {
            logger.warning("stream ended early", metadata: ["error.type": "\(error.type)"])
            return .fail(ByteBuffer(bytes: errorEvent(error)))
        }
    }

    @inline(never)
    private func failureEvent(_ error: any Error) -> ByteBuffer {
        ByteBuffer(bytes: errorEvent(upstream.mapError(error, logger: logger)))
    }

    func pass(_ chunk: ByteBuffer) throws(ProxyError) -> ByteBuffer {
        let events: [ByteBuffer]
        do {
            events = try splitter.append(chunk)
        } catch {
            throw .upstreamEventTooLarge(upstream.name.rawValue, limit: error.limit)
        }
        if framer != nil { return passWhole(chunk, events: events) }
        guard let sealer else { return passPlain(chunk, events: events) }
        var out = ByteBuffer()
        do throws(E2EEError) {
            for event in events where !upstreamFailed { try seal(event, with: sealer, into: &out) }
        } catch {
            throw ProxyError(error)
        }
        hasher.update(data: out.readableBytesView)
        return out
    }

    private func passPlain(_ chunk: ByteBuffer, events: [ByteBuffer]) -> ByteBuffer {
        for event in events {
            guard let data = sseData(of: event),
                let id = data.withUnsafeBytes({ answerID(in: $0) })
            else { continue }
            chatID = id
            splitter.keepsEvents = false
            break
        }
        hasher.update(data: chunk.readableBytesView)
        return chunk
    }

    /// v3: the chunk is sealed as received (or gathered: see `V3StreamFramer`); its events are only read for
    /// the chat id and the usage.
    private func passWhole(_ chunk: ByteBuffer, events: [ByteBuffer]) -> ByteBuffer {
        // Only the events that can matter are parsed: until the chat id is found, and those that carry a usage
        // object (vLLM sends it once, at the end). Parsing all 64 events of a stream cost more than sealing it.
        for event in events where chatID == nil || event.withUnsafeReadableBytes(carriesUsageObject) {
            guard let data = sseData(of: event) else { continue }
            let (id, usage) = data.withUnsafeBytes { idAndUsage(in: $0) }
            if chatID == nil { chatID = id }
            if let usage { self.usage = usage }
        }
        let boundary = !splitter.hasPartialEvent
        let out = chunk.withUnsafeReadableBytes { framer!.add($0, atEventBoundary: boundary) }
        hasher.update(data: out)
        return ByteBuffer(bytes: out)
    }

    private func seal(_ event: ByteBuffer, with sealer: ResponseSealer, into out: inout ByteBuffer)
        throws(E2EEError)
    {
        guard let data = sseData(of: event) else { return }  // comments and keep-alives carry nothing
        if data.elementsEqual("[DONE]".utf8) {
            out.writeString("data: [DONE]\n\n")
            return
        }
        // An event we cannot parse is dropped: it could carry plaintext we cannot seal.
        guard var json = try? JSONValue(parsing: data) else { return }
        // vLLM reports a failure mid-stream as `{"error": {...}}` (older versions: `{"object": "error", ...}`),
        // whose message may echo the request: the client gets our own error event instead.
        if json["error"] != nil || json["object"] == "error" {
            out.writeBytes(errorEvent(.upstreamFailedMidStream))
            upstreamFailed = true
            return
        }
        if chatID == nil { chatID = json["id"]?.stringValue }
        try sealer.sealChunk(&json)
        out.writeString("data: ")
        out.writeBytes(json.serialized())
        out.writeString("\n\n")
    }

    /// The in-band error that ends a stream. A plain stream may have passed part of an event already: a
    /// blank line first ends it, so the error arrives as an event of its own.
    func errorEvent(_ error: ProxyError) -> [UInt8] {
        let prefix = sealer == nil && splitter.hasPartialEvent ? "\n\ndata: " : "data: "
        return Array(prefix.utf8) + error.body + Array("\n\n".utf8)
    }

    func finalHash() -> String { hasher.finalize().hex }
}
