/// Where and how to reach one Redis server. Holds the password, so every way of printing it is redacted.
public struct RedisConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// ACL user for `AUTH user pass`; nil sends `AUTH pass` (the `default` user).
    public var username: String?
    /// A secret: never logged, never printed.
    public var password: String?
    /// Selected with `SELECT` on every new connection when not 0.
    public var database: Int
    /// TLS to Redis; nil is plain TCP.
    public var tls: TLS?
    /// Bound on every command, connection set-up included.
    public var commandTimeout: Duration

    /// TLS with full certificate and hostname verification against the system roots plus `caFile`.
    public struct TLS: Sendable, Equatable {
        /// Extra PEM trust roots (a private CA).
        public var caFile: String?
        public init(caFile: String? = nil) { self.caFile = caFile }
    }

    public static let defaultPort = 6379
    /// Redis' default `databases 16`.
    public static let databaseRange = 0...15
    public static let portRange = 1...65535

    public init(
        host: String, port: Int = defaultPort, username: String? = nil, password: String? = nil, database: Int = 0,
        tls: TLS? = nil, commandTimeout: Duration = .milliseconds(100)
    ) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
        self.tls = tls
        self.commandTimeout = commandTimeout
    }

    /// Parses `redis://[user[:password]@]host[:port][/db]` or `rediss://…` (TLS). User and password are
    /// percent-decoded. The error never repeats the URL, which holds the password.
    public init(url: String, commandTimeout: Duration = .milliseconds(100)) throws(RedisURLError) {
        let lowered = url.lowercased()
        let rest: Substring
        if lowered.hasPrefix("redis://") {
            rest = url.dropFirst("redis://".count)
            tls = nil
        } else if lowered.hasPrefix("rediss://") {
            rest = url.dropFirst("rediss://".count)
            tls = TLS()
        } else {
            throw RedisURLError("must start with redis:// or rediss://")
        }
        guard !rest.contains("?"), !rest.contains("#") else {
            throw RedisURLError("takes no query or fragment")
        }
        let authority = rest.prefix { $0 != "/" }
        let path = rest.dropFirst(authority.count)
        var hostPort = authority[...]
        username = nil
        password = nil
        if let at = authority.lastIndex(of: "@") {
            let userInfo = authority[..<at]
            hostPort = authority[authority.index(after: at)...]
            let user = userInfo.prefix { $0 != ":" }
            guard let decodedUser = Self.percentDecoded(user) else {
                throw RedisURLError("has a malformed percent-escape in the user")
            }
            username = decodedUser.isEmpty ? nil : decodedUser
            if user.count < userInfo.count {
                guard let decoded = Self.percentDecoded(userInfo.dropFirst(user.count + 1)) else {
                    throw RedisURLError("has a malformed percent-escape in the password")
                }
                password = decoded.isEmpty ? nil : decoded
            }
        }
        // Host: a name, an IPv4 address, or an IPv6 address in brackets.
        var portText: Substring?
        if hostPort.hasPrefix("[") {
            guard let close = hostPort.firstIndex(of: "]") else { throw RedisURLError("has an unclosed IPv6 bracket") }
            host = String(hostPort[hostPort.index(after: hostPort.startIndex)..<close])
            let after = hostPort[hostPort.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw RedisURLError("has garbage after the IPv6 address") }
                portText = after.dropFirst()
            }
        } else {
            let name = hostPort.prefix { $0 != ":" }
            host = String(name)
            if name.count < hostPort.count { portText = hostPort.dropFirst(name.count + 1) }
        }
        guard !host.isEmpty, !host.contains(where: { $0.isWhitespace || $0 == "@" }) else {
            throw RedisURLError("has no host")
        }
        port = Self.defaultPort
        if let portText {
            guard let value = Int(portText), Self.portRange.contains(value) else {
                throw RedisURLError(
                    "has a port that is not in \(Self.portRange.lowerBound)-\(Self.portRange.upperBound)")
            }
            port = value
        }
        database = 0
        let dbText = path.dropFirst()
        if !dbText.isEmpty {
            guard let value = Int(dbText), Self.databaseRange.contains(value) else {
                throw RedisURLError(
                    "has a database that is not in \(Self.databaseRange.lowerBound)-\(Self.databaseRange.upperBound)")
            }
            database = value
        }
        self.commandTimeout = commandTimeout
    }

    private static func percentDecoded(_ text: Substring) -> String? {
        var bytes: [UInt8] = []
        var utf8 = text.utf8[...]
        while let byte = utf8.popFirst() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard utf8.count >= 2, let value = UInt8(String(decoding: utf8.prefix(2), as: UTF8.self), radix: 16)
            else { return nil }
            bytes.append(value)
            utf8 = utf8.dropFirst(2)
        }
        return String(validating: bytes, as: UTF8.self)
    }
}

extension RedisConfiguration: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// `redis[s]://[user:<redacted>@]host:port/db` — safe to log.
    public var description: String {
        let scheme = tls == nil ? "redis" : "rediss"
        var credentials = ""
        if username != nil || password != nil {
            credentials = (username ?? "") + (password == nil ? "" : ":<redacted>") + "@"
        }
        let hostText = host.contains(":") ? "[\(host)]" : host
        return "\(scheme)://\(credentials)\(hostText):\(port)/\(database)"
    }

    public var debugDescription: String { description }

    /// Debuggers and `dump` see the redacted description, never the stored password.
    public var customMirror: Mirror { Mirror(self, children: ["description": description], displayStyle: .struct) }
}

/// `REDIS_URL` could not be parsed; the reason never quotes the URL.
public struct RedisURLError: Error, Sendable, Equatable, CustomStringConvertible {
    public let reason: String
    init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}
