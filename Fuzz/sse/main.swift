// libFuzzer target: the SSE event splitter and `sseData`. The first input byte picks a chunk size; the
// rest is the stream. Cutting the stream into chunks must not change the events found nor whether the cap is
// crossed; every event ends with a blank line and stays within the cap.

import FuzzSupport
import NIOCore
import SSE

let cap = 64

/// The events of `stream` fed in chunks of `size` bytes, or nil when the cap was crossed.
func split(_ stream: [UInt8], chunk size: Int) -> [[UInt8]]? {
    var splitter = SSEEventSplitter(maximumEventBytes: cap)
    var events: [[UInt8]] = []
    var start = 0
    while start < stream.count {
        let end = min(stream.count, start + size)
        guard let found = try? splitter.append(ByteBuffer(bytes: stream[start..<end])) else { return nil }
        for event in found {
            let bytes = Array(event.readableBytesView)
            guard bytes.count <= cap else { fatalError("event larger than the cap") }
            guard let last = bytes.last, last == UInt8(ascii: "\n") || last == UInt8(ascii: "\r") else {
                fatalError("event without its blank line")
            }
            _ = sseData(of: event)
            events.append(bytes)
        }
        start = end
    }
    return events
}

func test(_ bytes: UnsafeBufferPointer<UInt8>) {
    guard let first = bytes.first else { return }
    let stream = Array(bytes.dropFirst())
    let whole = split(stream, chunk: max(stream.count, 1))
    let chunked = split(stream, chunk: Int(first % 32) + 1)
    guard (whole == nil) == (chunked == nil) else { fatalError("chunking changed whether the cap was crossed") }
    guard whole == chunked else { fatalError("chunking changed the events") }
}

fuzz(test)
