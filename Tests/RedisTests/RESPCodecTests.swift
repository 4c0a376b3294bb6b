import NIOCore
import NIOEmbedded
import Testing

@testable import Redis

/// Feeds bytes into a decoder on an embedded channel and collects what it decodes.
private func decodeAll(_ chunks: [[UInt8]]) throws -> [RESPValue] {
    let channel = EmbeddedChannel(handler: ByteToMessageHandler(RESPDecoder()))
    var values: [RESPValue] = []
    for chunk in chunks {
        try channel.writeInbound(ByteBuffer(bytes: chunk))
        while let value = try channel.readInbound(as: RESPValue.self) { values.append(value) }
    }
    _ = try channel.finish()
    return values
}

private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

@Suite struct RESPCodecTests {
    static let stream =
        "+OK\r\n-ERR unknown command 'FOO'\r\n:1000\r\n:-42\r\n$5\r\nhello\r\n$0\r\n\r\n$-1\r\n*-1\r\n*0\r\n"
        + "*3\r\n$3\r\nfoo\r\n:7\r\n*2\r\n+a\r\n$-1\r\n$4\r\na\r\nb\r\n"
    static let expected: [RESPValue] = [
        .simpleString("OK"), .error("ERR unknown command 'FOO'"), .integer(1000), .integer(-42),
        .bulkString(bytes("hello")), .bulkString([]), .bulkString(nil), .array(nil), .array([]),
        .array([.bulkString(bytes("foo")), .integer(7), .array([.simpleString("a"), .bulkString(nil)])]),
        .bulkString(bytes("a\r\nb")),
    ]

    @Test func everyTypeDecodesFromOneBuffer() throws {
        #expect(try decodeAll([bytes(Self.stream)]) == Self.expected)
    }

    @Test func repliesArrivingOneByteAtATimeDecodeTheSame() throws {
        #expect(try decodeAll(bytes(Self.stream).map { [$0] }) == Self.expected)
    }

    @Test func everySplitPointDecodesTheSame() throws {
        let all = bytes(Self.stream)
        for split in 1..<all.count {
            #expect(try decodeAll([Array(all[..<split]), Array(all[split...])]) == Self.expected)
        }
    }

    @Test func partialValueIsConsumedAsFarAsItIsCompleteAndResumed() throws {
        var decoder = RESPDecoder()
        var buffer = ByteBuffer(string: "*2\r\n$3\r\nfoo\r\n$3\r\nba")
        #expect(try decoder.parse(&buffer) == nil)
        #expect(buffer.readableBytes == 2, "the header, the first element and the second's length are kept")
        buffer.writeString("r\r\n+next")
        #expect(try decoder.parse(&buffer) == .array([.bulkString(bytes("foo")), .bulkString(bytes("bar"))]))
        #expect(try decoder.parse(&buffer) == nil)
        buffer.writeString("\r\n")
        #expect(try decoder.parse(&buffer) == .simpleString("next"))
        #expect(buffer.readableBytes == 0)
    }

    @Test(arguments: [
        "?what\r\n", ":12x\r\n", ":\r\n", "$-2\r\n", "$3\r\nabcd\r\n", "*-5\r\n", "+OK\r+\n",
        ":99999999999999999999\r\n",
    ])
    func malformedRepliesAreProtocolErrors(_ text: String) {
        var decoder = RESPDecoder()
        var buffer = ByteBuffer(string: text)
        #expect(throws: RESPProtocolError.self) { try decoder.parse(&buffer) }
    }

    @Test func sizeLimitsAreEnforcedBeforeBuffering() {
        let limited = RESPDecoder(
            maxBulkLength: 16, maxArrayCount: 4, maxLineLength: 32, maxDepth: 2, maxReplyBytes: 64)
        for text in [
            "$17\r\n", "*5\r\n", "+" + String(repeating: "a", count: 40), "*1\r\n*1\r\n*1\r\n:1\r\n",
            // Elements of nested arrays count towards the one reply's limit: 2 + 2 + 2 > 4.
            "*2\r\n*2\r\n:1\r\n:2\r\n*2\r\n",
            // Refused at the third length, before its payload: 4 + 3 × (5 + 16 + 2) > 64 bytes.
            "*4\r\n" + String(repeating: "$16\r\n" + String(repeating: "x", count: 16) + "\r\n", count: 2) + "$16\r\n",
            // An unknown marker is refused at once, not after a line's worth of garbage.
            "?",
        ] {
            var decoder = limited
            var buffer = ByteBuffer(string: text)
            #expect(throws: RESPProtocolError.self, "\(text)") { try decoder.parse(&buffer) }
        }
    }

    @Test func replyLimitsApplyToEachReplyNotToTheStream() throws {
        var decoder = RESPDecoder(maxArrayCount: 2, maxReplyBytes: 40)
        var buffer = ByteBuffer()
        for _ in 0..<100 { buffer.writeString("*2\r\n$8\r\n12345678\r\n:1\r\n") }
        for _ in 0..<100 {
            #expect(try decoder.parse(&buffer) == .array([.bulkString(bytes("12345678")), .integer(1)]))
        }
    }

    /// 100 000 elements of every kind, one byte per read: the decoder resumes instead of re-parsing the array
    /// from its start (which examined about n²/2 bytes), and never searches a partial line twice. The work is
    /// measured by its own count of bytes examined, not by time.
    @Test func aLargeArrayFedOneByteAtATimeIsDecodedInLinearWork() throws {
        let (wire, expected) = Self.largeReply(elements: 100_000)
        var decoder = RESPDecoder()
        var buffer = ByteBuffer()
        var decoded: [RESPValue] = []
        for byte in wire {
            buffer.writeInteger(byte)
            if let value = try decoder.parse(&buffer) { decoded.append(value) }
        }
        #expect(decoded == [expected])
        #expect(buffer.readableBytes == 0)
        // Each byte once, plus a CR seen again when its LF arrives in the next read.
        #expect(decoder.bytesExamined <= 2 * wire.count, "examined \(decoder.bytesExamined) of \(wire.count)")
    }

    @Test func aLongLineFedOneByteAtATimeIsSearchedOnce() throws {
        let text = String(repeating: "a", count: 60_000)
        var decoder = RESPDecoder()
        var buffer = ByteBuffer()
        var decoded: RESPValue?
        for byte in bytes("+" + text + "\r\n") {
            buffer.writeInteger(byte)
            decoded = try decoder.parse(&buffer) ?? decoded
        }
        #expect(decoded == .simpleString(text))
        #expect(decoder.bytesExamined <= 60_004)
    }

    /// The same through NIO's channel machinery, as the client's pipeline runs it: it completes. Fewer
    /// elements: a debug build spends some 30 µs per `writeInbound`, and the work above is already measured.
    @Test func aLargeArrayFedOneByteAtATimeThroughAChannelDecodes() throws {
        let (wire, expected) = Self.largeReply(elements: 10_000)
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(RESPDecoder()))
        var buffer = channel.allocator.buffer(capacity: 1)
        for byte in wire {
            buffer.clear()
            buffer.writeInteger(byte)
            try channel.writeInbound(buffer)
        }
        #expect(try channel.readInbound(as: RESPValue.self) == expected)
        #expect(try channel.readInbound(as: RESPValue.self) == nil)
        _ = try channel.finish()
    }

    /// `*n` then integers, bulk strings (some empty, some null) and nested two-element arrays, in turn.
    static func largeReply(elements: Int) -> (wire: [UInt8], value: RESPValue) {
        var wire = bytes("*\(elements)\r\n")
        var values: [RESPValue] = []
        values.reserveCapacity(elements)
        for index in 0..<elements {
            switch index % 4 {
            case 0:
                wire += bytes(":\(index)\r\n")
                values.append(.integer(Int64(index)))
            case 1:
                let text = "v\(index)\r\n"
                wire += bytes("$\(text.utf8.count)\r\n\(text)\r\n")
                values.append(.bulkString(bytes(text)))
            case 2:
                wire += bytes(index % 8 == 2 ? "$0\r\n\r\n" : "$-1\r\n")
                values.append(.bulkString(index % 8 == 2 ? [] : nil))
            default:
                wire += bytes("*2\r\n+ok\r\n-ERR \(index)\r\n")
                values.append(.array([.simpleString("ok"), .error("ERR \(index)")]))
            }
        }
        return (wire, .array(values))
    }

    @Test func commandsEncodeAsArraysOfBulkStrings() {
        var buffer = ByteBuffer()
        RESPCommand([bytes("SET"), bytes("k"), [0, 13, 10, 255], bytes("EX"), bytes("5")]).encode(into: &buffer)
        #expect(
            Array(buffer.readableBytesView) == bytes("*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\n") + [0, 13, 10, 255]
                + bytes("\r\n$2\r\nEX\r\n$1\r\n5\r\n"))
        #expect(RESPCommand("auth", "user", "secret").name == "AUTH")
    }

    /// 1 000 commands written back to back before any reply; replies then arrive in one burst and each
    /// promise gets its own, in order.
    @Test func aPipelineOfAThousandCommandsIsAnsweredInOrder() throws {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers([
            ByteToMessageHandler(RESPDecoder()), MessageToByteHandler(RESPEncoder()), RedisCommandHandler(),
        ])
        var futures: [EventLoopFuture<RESPValue>] = []
        for index in 0..<1000 {
            let promise = channel.eventLoop.makePromise(of: RESPValue.self)
            futures.append(promise.futureResult)
            channel.write(RedisRequest(command: RESPCommand("GET", "key\(index)"), promise: promise), promise: nil)
        }
        channel.flush()
        var written = ByteBuffer()
        while var chunk = try channel.readOutbound(as: ByteBuffer.self) { written.writeBuffer(&chunk) }
        var expectedWrite = ByteBuffer()
        for index in 0..<1000 { RESPCommand("GET", "key\(index)").encode(into: &expectedWrite) }
        #expect(written == expectedWrite)

        var replies = ByteBuffer()
        for index in 0..<1000 {
            replies.writeString(index % 7 == 0 ? "$-1\r\n" : "$\(String(index).count)\r\n\(index)\r\n")
        }
        try channel.writeInbound(replies)
        for (index, future) in futures.enumerated() {
            let reply = try future.wait()
            #expect(reply == (index % 7 == 0 ? .bulkString(nil) : .bulkString(bytes(String(index)))))
        }
        _ = try? channel.finish()
    }

    @Test func aBrokenStreamFailsEveryWaiterAndClosesTheConnection() throws {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers([
            ByteToMessageHandler(RESPDecoder()), MessageToByteHandler(RESPEncoder()), RedisCommandHandler(),
        ])
        let first = channel.eventLoop.makePromise(of: RESPValue.self)
        let second = channel.eventLoop.makePromise(of: RESPValue.self)
        channel.writeAndFlush(RedisRequest(command: RESPCommand("PING"), promise: first), promise: nil)
        channel.writeAndFlush(RedisRequest(command: RESPCommand("PING"), promise: second), promise: nil)
        _ = try? channel.writeInbound(ByteBuffer(string: "+PONG\r\n!bad\r\n"))
        #expect(try first.futureResult.wait() == .simpleString("PONG"))
        #expect(throws: RedisError.protocolViolation("unknown type marker")) { try second.futureResult.wait() }
        #expect(!channel.isActive)
    }

    @Test func aReplyOverTheSizeLimitFailsItsWaiterAndClosesTheConnection() throws {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers([
            ByteToMessageHandler(RESPDecoder(maxReplyBytes: 1024)), MessageToByteHandler(RESPEncoder()),
            RedisCommandHandler(),
        ])
        let promise = channel.eventLoop.makePromise(of: RESPValue.self)
        channel.writeAndFlush(RedisRequest(command: RESPCommand("GET", "k"), promise: promise), promise: nil)
        _ = try? channel.writeInbound(ByteBuffer(string: "*100\r\n"))
        for _ in 0..<100 {
            _ = try? channel.writeInbound(ByteBuffer(string: "$20\r\n" + String(repeating: "z", count: 20) + "\r\n"))
        }
        #expect(throws: RedisError.protocolViolation("reply over the size limit")) { try promise.futureResult.wait() }
        #expect(!channel.isActive)
    }
}
