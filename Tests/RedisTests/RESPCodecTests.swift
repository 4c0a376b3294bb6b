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

    @Test func partialValueLeavesTheBufferUntouched() throws {
        var buffer = ByteBuffer(string: "*2\r\n$3\r\nfoo\r\n$3\r\nba")
        #expect(try RESPDecoder().parse(&buffer) == nil)
        #expect(buffer.readableBytes == 19, "nothing consumed")
        buffer.writeString("r\r\n")
        #expect(try RESPDecoder().parse(&buffer) == .array([.bulkString(bytes("foo")), .bulkString(bytes("bar"))]))
        #expect(buffer.readableBytes == 0)
    }

    @Test(arguments: [
        "?what\r\n", ":12x\r\n", ":\r\n", "$-2\r\n", "$3\r\nabcd\r\n", "*-5\r\n", "+OK\r+\n",
        ":99999999999999999999\r\n",
    ])
    func malformedRepliesAreProtocolErrors(_ text: String) {
        var buffer = ByteBuffer(string: text)
        #expect(throws: RESPProtocolError.self) { try RESPDecoder().parse(&buffer) }
    }

    @Test func sizeLimitsAreEnforcedBeforeBuffering() {
        let decoder = RESPDecoder(maxBulkLength: 16, maxArrayCount: 4, maxLineLength: 32, maxDepth: 2)
        for text in ["$17\r\n", "*5\r\n", "+" + String(repeating: "a", count: 40), "*1\r\n*1\r\n*1\r\n:1\r\n"] {
            var buffer = ByteBuffer(string: text)
            #expect(throws: RESPProtocolError.self) { try decoder.parse(&buffer) }
        }
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
}
