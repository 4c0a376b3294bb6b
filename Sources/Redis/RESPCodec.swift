import NIOCore

/// The reply stream broke the RESP2 grammar or a size limit: the connection cannot be trusted any more.
public struct RESPProtocolError: Error, Sendable, Equatable, CustomStringConvertible {
    public let reason: String
    public var description: String { "RESP protocol error: \(reason)" }
}

/// Decodes RESP2 replies from a byte stream, however it is split; bounded so a hostile or broken server
/// cannot make the client buffer without limit, and resumable so it cannot make it work without limit:
/// each element is consumed as soon as it is complete and a partial line is never searched twice, so the
/// work is linear in the bytes received however finely they are split.
public struct RESPDecoder: ByteToMessageDecoder, Sendable {
    public typealias InboundOut = RESPValue

    /// Largest bulk string accepted (receipts are a few hundred bytes; Redis' own cap is 512 MiB).
    public var maxBulkLength: Int
    /// Most elements in one reply, those of nested arrays included.
    public var maxArrayCount: Int
    /// Longest `+`/`-`/`:` line accepted (and length header of `$` and `*`).
    public var maxLineLength: Int
    /// Deepest nesting of arrays accepted.
    public var maxDepth: Int
    /// Most bytes one reply may take on the wire, headers and separators included.
    public var maxReplyBytes: Int

    /// An array whose header has been read and not all of whose elements have.
    private struct OpenArray: Sendable {
        var remaining: Int
        var elements: [RESPValue]
    }

    /// What one step of decoding produced.
    private enum Item {
        case value(RESPValue)
        case arrayHeader(count: Int)
    }

    /// The arrays being filled, outermost first: the parse state of a partially received reply.
    private var open: [OpenArray] = []
    /// A bulk string whose header was consumed, waiting for its payload and CRLF.
    private var pendingBulkLength: Int?
    /// How many bytes at the front of the buffer were already searched for the current line's CR.
    private var scanned = 0
    /// Bytes and elements of the reply being decoded so far, for the limits.
    private var replyBytes = 0
    private var replyElements = 0
    /// Bytes inspected or copied so far: a measure of work tests compare with the input's size.
    private(set) var bytesExamined = 0

    public init(
        maxBulkLength: Int = 16 << 20, maxArrayCount: Int = 1 << 20, maxLineLength: Int = 64 << 10,
        maxDepth: Int = 8, maxReplyBytes: Int = 64 << 20
    ) {
        self.maxBulkLength = maxBulkLength
        self.maxArrayCount = maxArrayCount
        self.maxLineLength = maxLineLength
        self.maxDepth = maxDepth
        self.maxReplyBytes = maxReplyBytes
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

    /// One complete reply, or nil when `buffer` ends inside one. Either way every complete element at the
    /// front of `buffer` is consumed and kept, so the next call resumes where this one stopped.
    public mutating func parse(_ buffer: inout ByteBuffer) throws(RESPProtocolError) -> RESPValue? {
        while let item = try nextItem(&buffer) {
            var completed: RESPValue
            switch item {
            case .value(let value):
                completed = value
            case .arrayHeader(let count):
                guard count > 0 else {
                    completed = .array([])
                    break
                }
                // Grown as elements arrive: a header alone must not make the client allocate for a million.
                var elements: [RESPValue] = []
                elements.reserveCapacity(min(count, 1024))
                open.append(OpenArray(remaining: count, elements: elements))
                continue
            }
            // A complete value fills its array's next slot, which may complete that array, and so on outwards.
            while !open.isEmpty {
                let last = open.count - 1
                open[last].elements.append(completed)
                open[last].remaining -= 1
                guard open[last].remaining == 0 else { break }
                completed = .array(open.removeLast().elements)
            }
            if open.isEmpty {
                replyBytes = 0
                replyElements = 0
                return completed
            }
        }
        return nil
    }

    /// The next scalar or array header from the front of `buffer` (consumed), or nil when it is incomplete.
    private mutating func nextItem(_ buffer: inout ByteBuffer) throws(RESPProtocolError) -> Item? {
        if let length = pendingBulkLength {
            guard buffer.readableBytes >= length + 2 else { return nil }
            let bytes = buffer.readBytes(length: length)!
            guard buffer.readInteger(as: UInt16.self) == 0x0D0A else {
                throw RESPProtocolError(reason: "bulk string not terminated by CRLF")
            }
            bytesExamined += length + 2
            pendingBulkLength = nil
            return .value(.bulkString(bytes))
        }
        guard let marker = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else { return nil }
        // Refused before its line is complete: garbage is not buffered up to the line limit.
        guard Self.markers.contains(marker) else { throw RESPProtocolError(reason: "unknown type marker") }
        guard var line = try readLine(&buffer) else { return nil }
        line.moveReaderIndex(forwardBy: 1)
        switch marker {
        case UInt8(ascii: "+"):
            return .value(.simpleString(String(buffer: line)))
        case UInt8(ascii: "-"):
            return .value(.error(String(buffer: line)))
        case UInt8(ascii: ":"):
            guard let value = Int64(decimal: line.readableBytesView) else {
                throw RESPProtocolError(reason: "malformed integer")
            }
            return .value(.integer(value))
        case UInt8(ascii: "$"):
            guard let length = Int64(decimal: line.readableBytesView), length >= -1 else {
                throw RESPProtocolError(reason: "malformed bulk length")
            }
            if length == -1 { return .value(.bulkString(nil)) }
            guard length <= maxBulkLength else { throw RESPProtocolError(reason: "bulk string over the size limit") }
            // Checked against the reply limit before any of the payload is buffered.
            try addToReply(bytes: Int(length) + 2)
            pendingBulkLength = Int(length)
            return try nextItem(&buffer)
        default:  // "*", the only marker left
            guard let count = Int64(decimal: line.readableBytesView), count >= -1 else {
                throw RESPProtocolError(reason: "malformed array length")
            }
            if count == -1 { return .value(.array(nil)) }
            guard count <= Int64(maxArrayCount - replyElements) else {
                throw RESPProtocolError(reason: "array over the size limit")
            }
            guard open.count < maxDepth else { throw RESPProtocolError(reason: "arrays nested too deeply") }
            replyElements += Int(count)
            return .arrayHeader(count: Int(count))
        }
    }

    private static let markers: [UInt8] = Array("+-:$*".utf8)

    /// One CRLF-terminated line, marker included, CRLF consumed; nil when incomplete. Bytes searched in an
    /// earlier call are not searched again.
    private mutating func readLine(_ buffer: inout ByteBuffer) throws(RESPProtocolError) -> ByteBuffer? {
        let view = buffer.readableBytesView
        guard let cr = view[(view.startIndex + scanned)...].firstIndex(of: UInt8(ascii: "\r")) else {
            bytesExamined += view.count - scanned
            scanned = view.count
            guard scanned <= maxLineLength else { throw RESPProtocolError(reason: "line over the size limit") }
            return nil
        }
        let length = cr - view.startIndex
        bytesExamined += length + 1 - scanned
        guard length <= maxLineLength else { throw RESPProtocolError(reason: "line over the size limit") }
        guard view.count >= length + 2 else {
            // The CR arrived without its LF: look at the CR again next time, nothing before it.
            scanned = length
            return nil
        }
        guard view[cr + 1] == UInt8(ascii: "\n") else { throw RESPProtocolError(reason: "CR not followed by LF") }
        bytesExamined += 1
        try addToReply(bytes: length + 2)
        scanned = 0
        let line = buffer.readSlice(length: length)!
        buffer.moveReaderIndex(forwardBy: 2)
        return line
    }

    /// Adds `bytes` to the reply's size, refusing a reply over `maxReplyBytes`.
    private mutating func addToReply(bytes: Int) throws(RESPProtocolError) {
        guard bytes <= maxReplyBytes - replyBytes else { throw RESPProtocolError(reason: "reply over the size limit") }
        replyBytes += bytes
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
    fileprivate init?(decimal bytes: ByteBufferView) {
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
