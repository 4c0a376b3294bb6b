import Testing

@testable import VLLMProxy

/// SPEC §1: every numeric setting has a range checked at start-up, and secrets never show in any rendering.
@Suite struct ConfigBoundsTests {
    static let base = ["TOKEN": "tok-SECRETSECRETSECRET", "MODEL_NAME": "m"]
    static let numeric = ProxyConfig.variables.filter { $0.bounds != nil }

    @Test func everyNumberSpecMentionsIsDeclaredWithBounds() {
        let names = Set(Self.numeric.map(\.name))
        for name in [
            "PORT", "CHAT_CACHE_EXPIRATION", "E2EE_REPLAY_WINDOW_SECONDS", "E2EE_REPLAY_STORE_CAPACITY", "REDIS_PORT",
            "REDIS_DB",
            "BASIC_MAX_REQUEST",
            "METRICS_POLL_INTERVAL_SECONDS", "METRICS_TIMEOUT_SECONDS", "METRICS_MAX_AGE_SECONDS",
            "UPSTREAM_TIMEOUT_SECONDS", "MAX_BODY_BYTES",
        ] {
            #expect(names.contains(name), "\(name) has no declared range")
        }
    }

    @Test func defaultsLieInsideTheirRanges() throws {
        for variable in Self.numeric {
            let bounds = try #require(variable.bounds)
            #expect(bounds.range.contains(bounds.defaultValue), "\(variable.name)")
            #expect(variable.helpText.contains("[range: \(bounds.rangeText)]"))
        }
        _ = try ProxyConfig(environment: Self.base)
    }

    @Test(arguments: ["-1", "0", "1e10", "nan", "NaN", "inf", "-inf", "abc", "9223372036854775807", "0x10", "1_000"])
    func nonsenseIsRefusedWithTheVariableAndItsRange(value: String) throws {
        for variable in Self.numeric {
            let bounds = try #require(variable.bounds)
            var environment = Self.base
            environment[variable.name] = value
            let inRange = Double(value).map { $0.isFinite && bounds.range.contains($0) } ?? false
            if inRange, !value.hasPrefix("0x") {
                #expect(throws: Never.self, "\(variable.name)=\(value)") { try ProxyConfig(environment: environment) }
                continue
            }
            do {
                _ = try ProxyConfig(environment: environment)
                Issue.record("\(variable.name)=\(value) was accepted")
            } catch {
                let line = error.description
                #expect(line.contains(variable.name) && line.contains(bounds.rangeText), "\(line)")
                #expect(!line.contains("\n") && !line.contains("SECRET"))
            }
        }
    }

    @Test func boundsStopTheConversionsThatUsedToTrap() throws {
        var environment = Self.base
        environment["UPSTREAM_TIMEOUT_SECONDS"] = "86400"
        environment["E2EE_REPLAY_WINDOW_SECONDS"] = "86400"
        environment["METRICS_TIMEOUT_SECONDS"] = "60"
        let config = try ProxyConfig(environment: environment)
        #expect(config.upstreamTimeout == .seconds(86400) && config.metricsTimeout == .seconds(60))
        #expect(config.e2eeReplayWindowSeconds == 86400)
        environment["METRICS_POLL_INTERVAL_SECONDS"] = "3600"
        environment["METRICS_MAX_AGE_SECONDS"] = "0.001"
        let clamped = try ProxyConfig(environment: environment)
        #expect(clamped.metricsPollInterval == .seconds(10) && clamped.metricsMaxAge == .seconds(10))
    }

    @Test func secretsNeverShowInAnyRendering() async throws {
        var environment = Self.base
        environment["CHUTES_API_KEY"] = "cpk_SECRETSECRETSECRET"
        environment["REDIS_HOST"] = "redis.internal"
        environment["REDIS_PASSWORD"] = "pw-SECRETSECRETSECRET"
        environment["CHUTES_ENABLED"] = "1"
        let config = try ProxyConfig(environment: environment)
        #expect(config.token.contains("SECRET"))  // the value itself is there for the proxy to use
        let chutes = ChutesMode.decide(config.chutes, timeout: .seconds(1))
        var renderings = [
            "\(config)", String(reflecting: config), String(describing: config.chutes),
            String(reflecting: config.redis),
            "\(chutes)", String(reflecting: chutes),
        ]
        for value in [config as Any, config.chutes, config.redis as Any, chutes] {
            var dumped = ""
            dump(value, to: &dumped)
            renderings.append(dumped)
            renderings.append(Mirror(reflecting: value).children.map { "\($0.label ?? ""): \($0.value)" }.joined())
        }
        for text in renderings {
            #expect(!text.contains("SECRET"), "\(text)")
        }
        // Redacted, not empty: the shape stays useful for debugging.
        #expect(renderings[0].contains("REDIS_HOST: redis.internal") && renderings[0].contains("TOKEN: <redacted>"))
        #expect(
            renderings[0].contains("CHUTES_API_KEY: <redacted>") && renderings[0].contains("REDIS_PASSWORD: <redacted>")
        )
        // Derived from the variables table: every variable shows, none can be forgotten.
        for variable in ProxyConfig.variables {
            #expect(renderings[0].contains("\(variable.name): "), "\(variable.name)")
        }
        #expect(renderings[2].contains("apiKey: <redacted>"))
        if case .enabled(let upstream) = chutes { await upstream.shutdown() }
    }
}
