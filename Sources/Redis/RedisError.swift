import NIOCore
import NIOPosix
import NIOSSL

/// Why a command got no usable reply. Descriptions carry no secret: never an argument, never a password.
public enum RedisError: Error, Sendable, Equatable, CustomStringConvertible {
    /// No reply within the command timeout (the connection was closed so later replies cannot be misread).
    case timeout
    /// Could not connect, or the connection broke (refused, reset, closed by the server).
    case connection(String)
    /// The TLS handshake failed (untrusted certificate, wrong hostname, no TLS on the port), or the CA file
    /// could not be used.
    case tls(String)
    /// `AUTH` was refused: wrong password or user.
    case authentication(String)
    /// The server answered the command with an error reply (e.g. `WRONGTYPE`, `OOM`, `NOAUTH`).
    case server(String)
    /// The reply stream broke the RESP2 grammar.
    case protocolViolation(String)
    /// The client was shut down.
    case shutDown

    /// A small fixed set, for metric labels and log lines.
    public var kind: String {
        switch self {
        case .timeout: return "timeout"
        case .connection: return "connection"
        case .tls: return "tls"
        case .authentication: return "auth"
        case .server: return "server"
        case .protocolViolation: return "protocol"
        case .shutDown: return "shutdown"
        }
    }

    public var description: String {
        switch self {
        case .timeout: return "timed out"
        case .connection(let why): return "connection failed: \(why)"
        case .tls(let why): return "TLS failed: \(why)"
        case .authentication(let why): return "authentication refused: \(why)"
        case .server(let why): return "server error: \(why)"
        case .protocolViolation(let why): return "protocol error: \(why)"
        case .shutDown: return "client shut down"
        }
    }

    /// Maps whatever NIO, the socket layer or NIOSSL threw into one of the cases above.
    static func from(_ error: any Error) -> RedisError {
        switch error {
        case let error as RedisError: return error
        case let error as RESPProtocolError: return .protocolViolation(error.reason)
        case ChannelError.connectTimeout: return .timeout
        case let error as NIOSSLError: return .tls(String(describing: error))
        case let error as NIOSSLExtraError: return .tls(String(describing: error))
        case let error as BoringSSLError: return .tls(String(describing: error))
        case let error as IOError: return .connection(error.description)
        case let error as NIOConnectionError:
            // The per-address errors say why (e.g. connection refused); the host itself is not secret.
            let first = error.connectionErrors.first.map { String(describing: $0.error) } ?? "no address"
            return .connection(first)
        case let error as ChannelError:
            return .connection(String(describing: error))
        default:
            return .connection(String(describing: type(of: error)))
        }
    }
}

extension RESPValue {
    /// Only the first word of an error reply (`WRONGPASS`, `ERR`, …): the rest may quote the command.
    var errorCode: String? {
        guard case .error(let message) = self else { return nil }
        return String(message.prefix { $0 != " " }.prefix(32))
    }
}
