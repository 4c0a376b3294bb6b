import NIOCore
import Testing

@testable import SSE

/// SPEC §2: events end at a blank line in any of the three SSE line-ending forms, whatever the chunking, and
/// an event over the cap ends the stream.
@Suite struct SSEEventSplitterTests {
    /// Every event of `stream` when it arrives in chunks of `size` bytes.
    func events(_ stream: String, chunk size: Int, cap: Int = 1 << 20) throws -> [String] {
        var splitter = SSEEventSplitter(maximumEventBytes: cap)
        let bytes = Array(stream.utf8)
        var out: [String] = []
        for start in stride(from: 0, to: bytes.count, by: size) {
            let chunk = ByteBuffer(bytes: bytes[start..<min(bytes.count, start + size)])
            out += try splitter.append(chunk).map { String(buffer: $0) }
        }
        return out
    }

    @Test(arguments: [
        ("data: a\n\ndata: b\n\n", ["data: a\n\n", "data: b\n\n"]),
        ("data: a\r\n\r\ndata: b\r\n\r\n", ["data: a\r\n\r", "data: b\r\n\r"]),
        ("data: a\r\rdata: b\r\r", ["data: a\r\r", "data: b\r\r"]),
        // Mixed endings: a line ended by `\n` then an empty line ended by `\r\n`, and the other way round.
        ("data: a\n\r\ndata: b\r\n\ndata: c\r\n\r", ["data: a\n\r", "data: b\r\n\n", "data: c\r\n\r"]),
        // `\r\n` is one line ending, not an empty line: no event ends inside it.
        ("data: a\r\ndata: b\r\n\r\n", ["data: a\r\ndata: b\r\n\r"]),
        ("data: unterminated\n", []),
    ])
    func eventsEndAtABlankLineInEveryForm(stream: String, expected: [String]) throws {
        for size in [1, 2, 3, 7, stream.utf8.count] {
            #expect(try events(stream, chunk: size) == expected, "chunk size \(size)")
        }
    }

    @Test func aCarriageReturnThenLineFeedAcrossChunksIsOneLineEnding() throws {
        var splitter = SSEEventSplitter()
        #expect(try splitter.append(ByteBuffer(string: "data: a\r")).isEmpty)
        #expect(try splitter.append(ByteBuffer(string: "\r")).map { String(buffer: $0) } == ["data: a\r\r"])
        // The `\n` completing that `\r\n` is not an empty line of its own.
        #expect(try splitter.append(ByteBuffer(string: "\ndata: b\n")).isEmpty)
        #expect(try splitter.append(ByteBuffer(string: "\n")).map { String(buffer: $0) } == ["data: b\n\n"])
    }

    @Test func anEventOverTheCapIsRefusedWhateverTheChunking() {
        let big = "data: " + String(repeating: "x", count: 100) + "\n\n"
        for size in [1, 10, 200] {
            #expect(throws: SSEEventSplitter.EventTooLarge(limit: 64)) {
                _ = try events(big, chunk: size, cap: 64)
            }
        }
        #expect(throws: Never.self) { _ = try events("data: small\n\n" + "data: small\n\n", chunk: 5, cap: 64) }
    }

    @Test func withoutKeepingEventsTheCapStillHoldsAndNothingIsBuffered() throws {
        var splitter = SSEEventSplitter(maximumEventBytes: 64)
        splitter.keepsEvents = false
        for _ in 0..<1000 { #expect(try splitter.append(ByteBuffer(string: "data: 0123456789\n\n")).isEmpty) }
        #expect(!splitter.hasPartialEvent)
        #expect(throws: SSEEventSplitter.EventTooLarge.self) {
            for _ in 0..<10 { _ = try splitter.append(ByteBuffer(string: "data: 0123456789")) }
        }
    }

    @Test(arguments: [
        ("data: a\n\n", "a"), ("data:a\r\ndata: b\r\n\r\n", "a\nb"), ("data: x\rdata\r\r", "x\n"),
        (": comment\nevent: e\ndata:  two spaces\n\n", " two spaces"),
    ])
    func dataLinesJoinWithNewlines(event: String, data: String) {
        #expect(sseData(of: ByteBuffer(string: event)).map { String(decoding: $0, as: UTF8.self) } == data)
    }

    @Test func eventsWithoutDataHaveNone() {
        #expect(sseData(of: ByteBuffer(string: ": keep-alive\n\n")) == nil)
        #expect(sseData(of: ByteBuffer(string: "\n")) == nil)
    }
}
