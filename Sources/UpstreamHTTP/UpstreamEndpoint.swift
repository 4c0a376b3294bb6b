/// Where an upstream listens, parsed once from its base URL: scheme, host, port and path prefix.
public struct UpstreamEndpoint: Sendable, Equatable {
    public let isTLS: Bool
    public let host: String
    public let port: Int
    /// Prepended to every request path (a base URL may carry one, e.g. `http://vllm:8000/prefix`).
    public let pathPrefix: String
    /// The `Host` header: the port only when it is not the scheme's default.
    public let hostHeader: String

    /// Accepts `http://host[:port][/prefix]` and `https://…`; IPv6 literals in brackets.
    public init?(baseURL: String) {
        let tls: Bool
        let rest: Substring
        if baseURL.hasPrefix("http://") {
            tls = false
            rest = baseURL.dropFirst("http://".count)
        } else if baseURL.hasPrefix("https://") {
            tls = true
            rest = baseURL.dropFirst("https://".count)
        } else {
            return nil
        }
        let authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        var prefix = String(rest.dropFirst(authority.count))
        guard !authority.isEmpty, !authority.contains("@"), prefix.firstIndex(where: { $0 == "?" || $0 == "#" }) == nil
        else { return nil }
        while prefix.hasSuffix("/") { prefix.removeLast() }
        let defaultPort = tls ? 443 : 80
        var host: Substring
        var port = defaultPort
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { return nil }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":"), let value = Int(after.dropFirst()) else { return nil }
                port = value
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            guard let value = Int(authority[authority.index(after: colon)...]) else { return nil }
            port = value
        } else {
            host = authority
        }
        guard !host.isEmpty, (1...65535).contains(port) else { return nil }
        self.isTLS = tls
        self.host = String(host)
        self.port = port
        self.pathPrefix = prefix
        let hostPart = host.contains(":") ? "[\(host)]" : String(host)
        self.hostHeader = port == defaultPort ? hostPart : "\(hostPart):\(port)"
    }
}
