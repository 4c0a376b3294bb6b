import NIOCore

/// Splits a server-sent-events byte stream into whole events, each keeping its own bytes and blank-line
/// terminator, whatever way the upstream happened to cut its chunks.
struct SSEEventSplitter {
    private var pending = ByteBuffer()
    /// Bytes of `pending` already searched for a terminator, so each byte is scanned once.
    private var scanned = 0

    /// Feeds one upstream chunk; returns the events it completed, in order.
    mutating func append(_ buffer: ByteBuffer) -> [ByteBuffer] {
        var buffer = buffer
        pending.writeBuffer(&buffer)
        var events: [ByteBuffer] = []
        while let end = nextEventEnd() {
            events.append(pending.readSlice(length: end)!)
            scanned = 0
        }
        if pending.readerIndex > 4096 { pending.discardReadBytes() }
        return events
    }

    /// Length of the first complete event in `pending`, terminator included (`\n\n` or `\r\n\r\n`).
    private mutating func nextEventEnd() -> Int? {
        let view = pending.readableBytesView
        var index = view.startIndex + max(scanned, 1)
        while index < view.endIndex {
            if view[index] == UInt8(ascii: "\n") {
                let previous = view[index - 1]
                if previous == UInt8(ascii: "\n") { return index - view.startIndex + 1 }
                if previous == UInt8(ascii: "\r"), index - 2 >= view.startIndex, view[index - 2] == UInt8(ascii: "\n") {
                    return index - view.startIndex + 1
                }
            }
            index += 1
        }
        scanned = max(view.count, 1)
        return nil
    }
}

/// The payload of an event's `data:` lines, joined with newlines as the SSE specification says.
func sseData(of event: ByteBuffer) -> [UInt8]? {
    var lines: [[UInt8]] = []
    for line in event.readableBytesView.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true) {
        var line = line
        if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
        guard line.starts(with: "data:".utf8) else { continue }
        var payload = line.dropFirst(5)
        if payload.first == UInt8(ascii: " ") { payload = payload.dropFirst() }
        lines.append(Array(payload))
    }
    guard !lines.isEmpty else { return nil }
    return Array(lines.joined(separator: [UInt8(ascii: "\n")]))
}
