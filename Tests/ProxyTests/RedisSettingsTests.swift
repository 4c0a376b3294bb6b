import Testing
import VLLMProxy

/// SPEC §1's `REDIS_*` rows: bounds, the URL alternative, and that nothing prints the password.
@Suite struct RedisSettingsTests {
    static let base = ["TOKEN": "t", "MODEL_NAME": "m"]

    func config(_ extra: [String: String]) throws(ConfigError) -> ProxyConfig {
        try ProxyConfig(environment: Self.base.merging(extra) { $1 })
    }

    @Test func unsetHostKeepsStateInProcess() throws {
        #expect(try config([:]).redis == nil)
        #expect(try config(["REDIS_PASSWORD": "x", "REDIS_PORT": "7000"]).redis == nil)
    }

    @Test func separateVariables() throws {
        let redis = try #require(
            try config([
                "REDIS_HOST": "cache", "REDIS_PORT": "6380", "REDIS_PASSWORD": "pw", "REDIS_DB": "2",
                "REDIS_USERNAME": "proxy", "REDIS_TLS": "yes", "REDIS_CA_FILE": "/ca.pem", "REDIS_TIMEOUT_MS": "250",
                "REDIS_RETRY_SECONDS": "3", "E2EE_REPLAY_ON_REDIS_FAILURE": "LOCAL",
            ]).redis)
        #expect(redis.connection.host == "cache")
        #expect(redis.connection.port == 6380)
        #expect(redis.connection.username == "proxy")
        #expect(redis.connection.password == "pw")
        #expect(redis.connection.database == 2)
        #expect(redis.connection.tls?.caFile == "/ca.pem")
        #expect(redis.connection.commandTimeout == .milliseconds(250))
        #expect(redis.retryInterval == .seconds(3))
        #expect(redis.replayFallback == .local)
    }

    @Test func defaults() throws {
        let redis = try #require(try config(["REDIS_HOST": "cache"]).redis)
        #expect(redis.connection.port == 6379)
        #expect(redis.connection.database == 0)
        #expect(redis.connection.tls == nil)
        #expect(redis.connection.commandTimeout == .milliseconds(100))
        #expect(redis.retryInterval == .seconds(10))
        #expect(redis.replayFallback == .reject)
    }

    @Test func urlReplacesTheSeparateVariables() throws {
        let redis = try #require(
            try config(["REDIS_URL": "rediss://u:p%40ss@r.internal:7000/5", "REDIS_HOST": "ignored"]).redis)
        #expect(redis.connection.host == "r.internal")
        #expect(redis.connection.password == "p@ss")
        #expect(redis.connection.tls != nil)
        #expect(redis.connection.database == 5)
    }

    @Test(arguments: [
        ("REDIS_PORT", "0"), ("REDIS_PORT", "65536"), ("REDIS_DB", "16"), ("REDIS_DB", "-1"), ("REDIS_TIMEOUT_MS", "0"),
        ("REDIS_TIMEOUT_MS", "60001"), ("REDIS_RETRY_SECONDS", "0"), ("REDIS_RETRY_SECONDS", "3601"),
        ("REDIS_RETRY_SECONDS", "ten"), ("E2EE_REPLAY_ON_REDIS_FAILURE", "allow"),
    ])
    func outOfRangeValuesStopStartUpNamingTheVariable(_ name: String, _ value: String) {
        do {
            _ = try config(["REDIS_HOST": "cache", name: value])
            Issue.record("\(name)=\(value) accepted")
        } catch {
            #expect(error.description.contains(name))
        }
    }

    @Test func inconsistentCombinationsAreRefused() {
        #expect(throws: ConfigError.self) { try config(["REDIS_HOST": "h", "REDIS_CA_FILE": "/ca.pem"]) }
        #expect(throws: ConfigError.self) { try config(["REDIS_HOST": "h", "REDIS_USERNAME": "u"]) }
    }

    @Test func malformedURLErrorNeverQuotesIt() {
        let secret = "Very-Secret-Pass"
        do {
            _ = try config(["REDIS_URL": "redis://:\(secret)@host:99999"])
            Issue.record("accepted")
        } catch {
            #expect(error.description.contains("REDIS_URL"))
            #expect(!error.description.contains(secret))
        }
    }

    @Test func settingsPrintRedacted() throws {
        let secret = "Very-Secret-Pass"
        let redis = try #require(try config(["REDIS_URL": "redis://admin:\(secret)@host:6379/1"]).redis)
        var dumped = ""
        dump(redis, to: &dumped)
        for text in [redis.summary, "\(redis)", String(reflecting: redis), dumped] {
            #expect(!text.contains(secret), "\(text)")
        }
        #expect(redis.summary.contains("redis://admin:<redacted>@host:6379/1"))
    }
}
