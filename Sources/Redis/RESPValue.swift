import NIOCore

/// One RESP2 value as Redis sends it.
public enum RESPValue: Sendable, Equatable {
    /// `+OK`
    case simpleString(String)
    /// `-ERR …`: a command the server refused (the connection stays usable).
    case error(String)
    /// `:42`
    case integer(Int64)
    /// `$n` bulk bytes; nil is the null bulk string (`$-1`), e.g. GET of a missing key.
    case bulkString([UInt8]?)
    /// `*n` elements; nil is the null array (`*-1`).
    case array([RESPValue]?)
}

/// A command as RESP2 sends it: an array of bulk strings (name first).
public struct RESPCommand: Sendable, Equatable {
    public var arguments: [[UInt8]]

    public init(_ arguments: [[UInt8]]) { self.arguments = arguments }
    public init(_ arguments: String...) { self.arguments = arguments.map { Array($0.utf8) } }

    /// The command name, for logs and metrics (never the arguments: AUTH carries the password).
    public var name: String { arguments.first.map { String(decoding: $0, as: UTF8.self).uppercased() } ?? "" }

    /// `*N\r\n` then `$len\r\narg\r\n` per argument.
    public func encode(into buffer: inout ByteBuffer) {
        buffer.writeStaticString("*")
        buffer.writeString(String(arguments.count))
        buffer.writeStaticString("\r\n")
        for argument in arguments {
            buffer.writeStaticString("$")
            buffer.writeString(String(argument.count))
            buffer.writeStaticString("\r\n")
            buffer.writeBytes(argument)
            buffer.writeStaticString("\r\n")
        }
    }
}
