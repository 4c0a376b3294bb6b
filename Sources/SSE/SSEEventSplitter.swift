import NIOCore

/// Splits a server-sent-events byte stream into whole events, each keeping its own bytes and blank-line
/// terminator, whatever way the upstream happened to cut its chunks, and refuses an event larger than
/// `maximumEventBytes` so a stream without blank lines cannot grow memory without bound.
///
/// Lines end with `\r\n`, `\n` or `\r` (the SSE specification allows all three, mixed); an empty line
/// ends the event. When that empty line ends with `\r\n`, the event ends at its `\r` and the `\n` is
/// dropped (it may arrive only with the next chunk), so the events never depend on the chunking.
public struct SSEEventSplitter: Sendable {
    /// The largest event (terminator included) relayed; larger ends the stream (SPEC §2).
    public static let defaultMaximumEventBytes = 4 << 20

    /// An event grew past the cap before its blank line arrived.
    public struct EventTooLarge: Error, Sendable, Equatable {
        public let limit: Int
    }

    public let maximumEventBytes: Int
    /// False once the caller only needs the cap enforced: completed events are then not returned and
    /// nothing is buffered, so the cost is one scan of each byte.
    public var keepsEvents = true
    /// Bytes of the incomplete event received in earlier chunks (only while `keepsEvents`).
    private var pending = ByteBuffer()
    /// Size of the incomplete event so far, counted even when its bytes are not kept.
    private var eventBytes = 0
    private var atLineStart = true
    private var afterCarriageReturn = false
    /// The previous chunk ended with an event-ending `\r`; a `\n` next belongs to it.
    private var dropsLeadingLineFeed = false

    /// True when bytes of an event without its blank line yet have been seen.
    public var hasPartialEvent: Bool { eventBytes > 0 }

    public init(maximumEventBytes: Int = defaultMaximumEventBytes) {
        self.maximumEventBytes = maximumEventBytes
    }

    /// Feeds one upstream chunk; returns the events it completed, in order (none when `!keepsEvents`).
    public mutating func append(_ chunk: ByteBuffer) throws(EventTooLarge) -> [ByteBuffer] {
        let cuts = scan(chunk, recordingEvents: keepsEvents)
        var events: [ByteBuffer] = []
        var start = cuts.firstStart
        for cut in cuts.events {
            let tail = slice(of: chunk, from: start, to: cut.end)
            if pending.readableBytes == 0 {
                events.append(tail)  // wholly inside this chunk: a slice of it, no copy
            } else {
                var event = pending
                pending = ByteBuffer()
                event.writeImmutableBuffer(tail)
                events.append(event)
            }
            start = cut.next
        }
        guard !cuts.tooLarge else {
            pending = ByteBuffer()
            throw EventTooLarge(limit: maximumEventBytes)
        }
        if keepsEvents, start < chunk.readableBytes {
            pending.writeImmutableBuffer(slice(of: chunk, from: start, to: chunk.readableBytes))
        }
        return events
    }

    private func slice(of chunk: ByteBuffer, from start: Int, to end: Int) -> ByteBuffer {
        chunk.getSlice(at: chunk.readerIndex + start, length: end - start)!
    }

    /// Where each event completed in `chunk` ends and the next one starts (exclusive offsets; past a
    /// dropped `\n`), where the chunk's own content starts, and whether the cap was crossed. One look per byte.
    /// Cuts are recorded only when events are kept: otherwise only the cap and the line state matter.
    private mutating func scan(_ chunk: ByteBuffer, recordingEvents: Bool) -> (
        firstStart: Int, events: [(end: Int, next: Int)], tooLarge: Bool
    ) {
        chunk.withUnsafeReadableBytes { bytes in
            var events: [(end: Int, next: Int)] = []
            var index = 0
            if dropsLeadingLineFeed, let first = bytes.first {
                dropsLeadingLineFeed = false
                if first == UInt8(ascii: "\n") { index = 1 }
            }
            let firstStart = index
            while index < bytes.count {
                let byte = bytes[index]
                index += 1
                eventBytes += 1
                if eventBytes > maximumEventBytes { return (firstStart, events, true) }
                switch byte {
                case UInt8(ascii: "\n") where afterCarriageReturn:
                    // The second half of `\r\n`: that line has already ended.
                    afterCarriageReturn = false
                case UInt8(ascii: "\n"), UInt8(ascii: "\r"):
                    guard atLineStart else {
                        atLineStart = true
                        afterCarriageReturn = byte == UInt8(ascii: "\r")
                        continue
                    }
                    // An empty line: the event ends. A `\r` may be the first half of `\r\n`: that `\n` belongs
                    // to no event, whether it is here already or starts the next chunk, so that the events do
                    // not depend on where the upstream cut its chunks.
                    let end = index
                    if byte == UInt8(ascii: "\r") {
                        if index == bytes.count {
                            dropsLeadingLineFeed = true
                        } else if bytes[index] == UInt8(ascii: "\n") {
                            index += 1
                        }
                    }
                    if recordingEvents { events.append((end: end, next: index)) }
                    eventBytes = 0
                    afterCarriageReturn = false
                default:
                    atLineStart = false
                    afterCarriageReturn = false
                }
            }
            return (firstStart, events, false)
        }
    }
}

/// The payload of an event's `data` lines, joined with newlines as the SSE specification says; nil when
/// the event has none (a comment or keep-alive). Lines may end with `\r\n`, `\n` or `\r`.
public func sseData(of event: ByteBuffer) -> [UInt8]? {
    var payload: [UInt8] = []
    var found = false
    let bytes = event.readableBytesView
    var lineStart = bytes.startIndex
    var index = bytes.startIndex
    func take(_ line: ByteBufferView.SubSequence) {
        let field: ByteBufferView.SubSequence
        if line.starts(with: "data:".utf8) {
            field = line.dropFirst(5)
        } else if line.elementsEqual("data".utf8) {
            field = line.dropFirst(4)
        } else {
            return
        }
        if found { payload.append(UInt8(ascii: "\n")) }
        found = true
        payload.append(contentsOf: field.first == UInt8(ascii: " ") ? field.dropFirst() : field)
    }
    while index < bytes.endIndex {
        let byte = bytes[index]
        if byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r") {
            take(bytes[lineStart..<index])
            index += 1
            if byte == UInt8(ascii: "\r"), index < bytes.endIndex, bytes[index] == UInt8(ascii: "\n") { index += 1 }
            lineStart = index
        } else {
            index += 1
        }
    }
    if lineStart < bytes.endIndex { take(bytes[lineStart..<bytes.endIndex]) }
    return found ? payload : nil
}
