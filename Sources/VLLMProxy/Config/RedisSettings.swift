import Foundation
import Redis
import SharedState

extension ProxyConfig {
    /// Redis for state shared across replicas (SPEC §8); `ProxyConfig.redis` is nil when neither
    /// `REDIS_URL` nor `REDIS_HOST` is set. Holds the password, so it prints itself redacted.
    public struct RedisSettings: Sendable {
        public var connection: RedisConfiguration
        /// How long Redis is skipped after a failure before one probe decides whether to use it again.
        public var retryInterval: Duration
        /// What v2 replay claims do while Redis fails.
        public var replayFallback: ReplayFallback

        public static let timeoutRange = 1...60_000
        public static let retryRange = 1...3600

        /// Reads the `REDIS_*` variables and `E2EE_REPLAY_ON_REDIS_FAILURE`; every one is validated even when
        /// Redis is not configured, so a typo is caught before it matters. nil when no Redis is configured.
        static func read(_ string: (String) -> String?) throws(ConfigError) -> RedisSettings? {
            func bounded(_ name: String, _ defaultValue: Int, _ range: ClosedRange<Int>) throws(ConfigError) -> Int {
                guard let text = string(name) else { return defaultValue }
                guard let value = Int(text.trimmingCharacters(in: .whitespaces)), range.contains(value) else {
                    throw .malformed(name, "must be an integer in \(range.lowerBound)-\(range.upperBound)")
                }
                return value
            }
            func flag(_ name: String) -> Bool {
                guard let value = string(name)?.trimmingCharacters(in: .whitespaces).lowercased() else { return false }
                return ["1", "true", "yes"].contains(value)
            }
            let port = try bounded("REDIS_PORT", RedisConfiguration.defaultPort, RedisConfiguration.portRange)
            let database = try bounded("REDIS_DB", 0, RedisConfiguration.databaseRange)
            let timeout = Duration.milliseconds(try bounded("REDIS_TIMEOUT_MS", 100, timeoutRange))
            let retry = Duration.seconds(try bounded("REDIS_RETRY_SECONDS", 10, retryRange))
            let fallbackText = string("E2EE_REPLAY_ON_REDIS_FAILURE")?.trimmingCharacters(in: .whitespaces).lowercased()
            guard let fallback = ReplayFallback(rawValue: fallbackText ?? "reject") else {
                throw .malformed("E2EE_REPLAY_ON_REDIS_FAILURE", "must be reject or local")
            }
            let tlsFlag = flag("REDIS_TLS")
            let caFile = string("REDIS_CA_FILE")

            var connection: RedisConfiguration
            if let url = string("REDIS_URL") {
                // The URL replaces REDIS_HOST, _PORT, _USERNAME, _PASSWORD and _DB; the error never quotes it.
                do throws(RedisURLError) {
                    connection = try RedisConfiguration(url: url, commandTimeout: timeout)
                } catch {
                    throw .malformed("REDIS_URL", "\(error.reason) (expected redis[s]://[user:password@]host:port/db)")
                }
            } else if let host = string("REDIS_HOST") {
                connection = RedisConfiguration(
                    host: host, port: port, username: string("REDIS_USERNAME"), password: string("REDIS_PASSWORD"),
                    database: database, commandTimeout: timeout)
            } else {
                return nil
            }
            if tlsFlag && connection.tls == nil { connection.tls = .init() }
            if let caFile {
                guard connection.tls != nil else {
                    throw .malformed(
                        "REDIS_CA_FILE", "is set but TLS to Redis is off (set REDIS_TLS=1 or use rediss://)")
                }
                connection.tls?.caFile = caFile
            }
            if connection.username != nil && connection.password == nil {
                throw .malformed("REDIS_USERNAME", "needs a password (REDIS_PASSWORD, or one in REDIS_URL)")
            }
            return RedisSettings(connection: connection, retryInterval: retry, replayFallback: fallback)
        }

        /// One line for the start-up log, with no secret.
        public var summary: String {
            let (timeoutSeconds, timeoutAtto) = connection.commandTimeout.components
            let milliseconds = timeoutSeconds * 1000 + timeoutAtto / 1_000_000_000_000_000
            return "redis: \(connection)\(connection.tls == nil ? "" : " (TLS)"), timeout \(milliseconds) ms, "
                + "retry after \(retryInterval.components.seconds) s, v2 replay claims on Redis failure: \(replayFallback.rawValue)"
        }
    }
}

extension ProxyConfig.RedisSettings: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String { summary }
    public var debugDescription: String { summary }
    public var customMirror: Mirror { Mirror(self, children: ["summary": summary], displayStyle: .struct) }
}
