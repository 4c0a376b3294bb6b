import Testing
import VLLMProxy

/// SPEC §1/§5 `SIGNING_KEY_SOURCE`: `random` by default, `kms` on request, anything else stops start-up with one
/// line naming the variable (a typo must not silently give one replica an identity of its own).
@Suite struct SigningKeySourceTests {
    static func source(_ value: String?) throws(ConfigError) -> SigningKeySource {
        var environment = ["TOKEN": "tok-x", "MODEL_NAME": "m"]
        environment["SIGNING_KEY_SOURCE"] = value
        return try ProxyConfig(environment: environment).signingKeySource
    }

    @Test func randomIsTheDefault() throws {
        #expect(try Self.source(nil) == .random)
        #expect(try Self.source("") == .random)
        #expect(try Self.source("random") == .random)
    }

    @Test(arguments: ["kms", "KMS", " kms "])
    func kmsIsAccepted(_ value: String) throws {
        #expect(try Self.source(value) == .kms)
    }

    @Test(arguments: ["hsm", "kms2", "1", "true", "dstack"])
    func anythingElseStopsStartUp(_ value: String) {
        do {
            _ = try Self.source(value)
            Issue.record("\(value) accepted")
        } catch {
            #expect(error.description == "configuration error: SIGNING_KEY_SOURCE must be random or kms")
        }
    }

    @Test func theHelpListsIt() {
        let variable = ProxyConfig.variables.first { $0.name == "SIGNING_KEY_SOURCE" }
        #expect(variable?.defaultValue == "random")
    }
}
