import NIOCore

/// The reply stream broke the RESP2 grammar or a size limit: the connection cannot be trusted any more.
public struct RESPProtocolError: Error, Sendable, Equatable, CustomStringConvertible {
    public let reason: String
    public var description: String { "RESP protocol error: \(reason)" }
}

/// Decodes RESP2 replies from a byte stream, however it is split; bounded so a hostile or broken server
/// cannot make the client buffer without limit.
public struct RESPDecoder: ByteToMessageDecoder, Sendable {
    public typealias InboundOut = RESPValue

    /// Largest bulk string accepted (receipts are a few hundred bytes; Redis' own cap is 512 MiB).
    public var maxBulkLength: Int
    /// Largest array accepted.
    public var maxArrayCount: Int
    /// Longest `+`/`-`/`:` line accepted.
    public var maxLineLength: Int
    /// Deepest nesting of arrays accepted.
    public var maxDepth: Int

    public init(
        maxBulkLength: Int = 16 << 20, maxArrayCount: Int = 1 << 16, maxLineLength: Int = 64 << 10, maxDepth: Int = 8
    ) {
        self.maxBulkLength = maxBulkLength
        self.maxArrayCount = maxArrayCount
        self.maxLineLength = maxLineLength
        self.maxDepth = maxDepth
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let value = try parse(&buffer) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(value))
        return .continue
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws
        -> DecodingState
    {
        while try decode(context: context, buffer: &buffer) == .continue {}
        return .needMoreData
    }

    /// One complete value from the front of `buffer` (consumed), or nil with `buffer` untouched when it
    /// holds only part of one.
    public func parse(_ buffer: inout ByteBuffer) throws(RESPProtocolError) -> RESPValue? {
        var cursor = buffer
        guard let value = try parseValue(&cursor, depth: 0) else { return nil }
        buffer = cursor
        return value
    }

    private func parseValue(_ buffer: inout ByteBuffer, depth: Int) throws(RESPProtocolError) -> RESPValue? {
        guard let marker = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else { return nil }
        guard let line = try readLine(&buffer) else { return nil }
        let text = line.dropFirst()
        switch marker {
        case UInt8(ascii: "+"):
            return .simpleString(String(decoding: text, as: UTF8.self))
        case UInt8(ascii: "-"):
            return .error(String(decoding: text, as: UTF8.self))
        case UInt8(ascii: ":"):
            guard let value = Int64(decimal: text) else { throw RESPProtocolError(reason: "malformed integer") }
            return .integer(value)
        case UInt8(ascii: "$"):
            guard let length = Int64(decimal: text), length >= -1 else {
                throw RESPProtocolError(reason: "malformed bulk length")
            }
            if length == -1 { return .bulkString(nil) }
            guard length <= maxBulkLength else { throw RESPProtocolError(reason: "bulk string over the size limit") }
            guard buffer.readableBytes >= Int(length) + 2 else { return nil }
            let bytes = buffer.readBytes(length: Int(length))!
            guard buffer.readInteger(as: UInt16.self) == 0x0D0A else {
                throw RESPProtocolError(reason: "bulk string not terminated by CRLF")
            }
            return .bulkString(bytes)
        case UInt8(ascii: "*"):
            guard let count = Int64(decimal: text), count >= -1 else {
                throw RESPProtocolError(reason: "malformed array length")
            }
            if count == -1 { return .array(nil) }
            guard count <= maxArrayCount else { throw RESPProtocolError(reason: "array over the size limit") }
            guard depth < maxDepth else { throw RESPProtocolError(reason: "arrays nested too deeply") }
            var elements: [RESPValue] = []
            elements.reserveCapacity(Int(count))
            for _ in 0..<count {
                guard let element = try parseValue(&buffer, depth: depth + 1) else { return nil }
                elements.append(element)
            }
            return .array(elements)
        default:
            throw RESPProtocolError(reason: "unknown type marker")
        }
    }

    /// The bytes of one CRLF-terminated line, marker included, CRLF consumed; nil when incomplete.
    private func readLine(_ buffer: inout ByteBuffer) throws(RESPProtocolError) -> ArraySlice<UInt8>? {
        let view = buffer.readableBytesView
        guard let cr = view.firstIndex(of: UInt8(ascii: "\r")) else {
            guard view.count <= maxLineLength else { throw RESPProtocolError(reason: "line over the size limit") }
            return nil
        }
        let length = cr - view.startIndex
        guard length <= maxLineLength else { throw RESPProtocolError(reason: "line over the size limit") }
        guard view.count >= length + 2 else { return nil }
        guard view[cr + 1] == UInt8(ascii: "\n") else { throw RESPProtocolError(reason: "CR not followed by LF") }
        let line = buffer.readBytes(length: length)!
        buffer.moveReaderIndex(forwardBy: 2)
        return line[...]
    }
}

/// Encodes commands as RESP2 arrays of bulk strings.
public struct RESPEncoder: MessageToByteEncoder, Sendable {
    public typealias OutboundIn = RESPCommand

    public init() {}

    public func encode(data: RESPCommand, out: inout ByteBuffer) throws {
        data.encode(into: &out)
    }
}

extension Int64 {
    /// Strict decimal: optional `-`, then 1–19 digits; nothing else.
    fileprivate init?(decimal bytes: ArraySlice<UInt8>) {
        var digits = bytes[...]
        let negative = digits.first == UInt8(ascii: "-")
        if negative { digits = digits.dropFirst() }
        guard !digits.isEmpty, digits.count <= 19 else { return nil }
        var value: Int64 = 0
        for byte in digits {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            let (shifted, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (added, overflow2) = shifted.addingReportingOverflow(Int64(byte - UInt8(ascii: "0")))
            guard !overflow1, !overflow2 else { return nil }
            value = added
        }
        self = negative ? -value : value
    }
}
