import Redis
import Testing

@Suite struct RedisConfigurationTests {
    @Test func fullURL() throws {
        let config = try RedisConfiguration(url: "redis://alice:s%40cr%3At@cache.internal:6380/3")
        #expect(config.host == "cache.internal")
        #expect(config.port == 6380)
        #expect(config.username == "alice")
        #expect(config.password == "s@cr:t")
        #expect(config.database == 3)
        #expect(config.tls == nil)
    }

    @Test func defaultsAndPasswordOnly() throws {
        let config = try RedisConfiguration(url: "rediss://:hunter2@10.0.0.7")
        #expect(config.host == "10.0.0.7")
        #expect(config.port == 6379)
        #expect(config.username == nil)
        #expect(config.password == "hunter2")
        #expect(config.database == 0)
        #expect(config.tls == .init())
    }

    @Test func ipv6AndTrailingSlash() throws {
        let config = try RedisConfiguration(url: "REDIS://[::1]:7000/")
        #expect(config.host == "::1")
        #expect(config.port == 7000)
        #expect(config.database == 0)
        #expect(config.description == "redis://[::1]:7000/0")
    }

    @Test(arguments: [
        "http://host:6379", "redis://", "redis://:pw@:6379", "redis://host:0", "redis://host:65536", "redis://host:x",
        "redis://host/16", "redis://host/-1", "redis://host/db", "redis://host?ssl=true", "redis://[::1",
        "redis://h:1/0#f",
        "redis://u:%zz@host",
    ])
    func malformedURLsAreRefusedWithoutQuotingThem(_ url: String) {
        do {
            _ = try RedisConfiguration(url: url)
            Issue.record("accepted \(url)")
        } catch {
            #expect(!error.reason.contains(url))
        }
    }

    @Test func everyWayOfPrintingHidesThePassword() throws {
        let secret = "pa55-NOT-TO-BE-SEEN"
        let config = try RedisConfiguration(url: "rediss://bob:\(secret)@redis.example:6390/2")
        var dumped = ""
        dump(config, to: &dumped)
        for text in [
            config.description, config.debugDescription, String(describing: config), String(reflecting: config),
            "\(config)", dumped,
        ] {
            #expect(!text.contains(secret), "\(text)")
            #expect(!text.contains("NOT-TO"))
        }
        #expect(config.description == "rediss://bob:<redacted>@redis.example:6390/2")
    }
}
