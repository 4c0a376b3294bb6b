/// The time limits one HTTP/1.1 connection gets from the server (SPEC §1 `HEADER_TIMEOUT_SECONDS`,
/// `BODY_TIMEOUT_SECONDS`, `IDLE_TIMEOUT_SECONDS`); nil leaves that phase unbounded.
public struct ConnectionLimits: Sendable, Equatable {
    /// From a request's first byte (or, on a new connection, from accept) until its head is complete.
    public var header: Duration?
    /// From a request's head until the end of its body.
    public var body: Duration?
    /// From the end of a response until the first byte of the next request on a kept-alive connection.
    public var idle: Duration?

    public init(header: Duration? = nil, body: Duration? = nil, idle: Duration? = nil) {
        self.header = header
        self.body = body
        self.idle = idle
    }

    /// No limits at all: only for stand-ins that must never hang up on a test on their own.
    public static let none = ConnectionLimits()
}
