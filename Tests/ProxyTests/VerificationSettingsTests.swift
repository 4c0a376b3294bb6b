import Foundation
import TDXVerifier
import Testing

@testable import VLLMProxy

/// SPEC §1/§6.2: the verification variables are checked at start-up (one line naming the variable), the pinned
/// roots are the default, and a replaced root is named in the start-up warnings.
@Suite struct VerificationSettingsTests {
    static let base = ["TOKEN": "tok-x", "MODEL_NAME": "m"]
    static let synthetic = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("TDX/synthetic/default")

    static func config(_ extra: [String: String]) throws(ConfigError) -> ProxyConfig {
        try ProxyConfig(environment: base.merging(extra) { $1 })
    }

    @Test func defaultsArePinnedRootsAndPhalasPCCS() throws {
        let settings = try Self.config([:]).verification
        #expect(settings.pccsURL == "https://pccs.phala.network")
        #expect(settings.acceptedTCBStatuses == ["UpToDate", "SWHardeningNeeded"])
        #expect(settings.tdxRoot.name == "intel")
        #expect(settings.nvidiaRoot.name == "nvidia")
        #expect(settings.warnings.isEmpty)
    }

    @Test func aReplacedRootIsLoadedAndWarnedAbout() throws {
        let pem = Self.synthetic.appendingPathComponent("root.pem").path
        let der = Self.synthetic.appendingPathComponent("root.der").path
        for path in [pem, der] {
            let settings = try Self.config(["TDX_ROOT_CA_FILE": path, "NVIDIA_ROOT_CA_FILE": path]).verification
            #expect(settings.tdxRoot.name.hasPrefix("override:"))
            #expect(settings.tdxRoot.name == settings.nvidiaRoot.name)
            #expect(settings.warnings.count == 2)
            #expect(settings.warnings[0].contains(settings.tdxRoot.name))
        }
    }

    @Test(arguments: [
        ("PCCS_URL", "http://pccs.example.com"), ("PCCS_URL", "ftp://127.0.0.1"), ("TDX_ACCEPTED_TCB_STATUSES", ","),
        ("TDX_ACCEPTED_TCB_STATUSES", "UpToDate,Revoked"), ("TDX_ACCEPTED_TCB_STATUSES", "Fine"),
        ("TDX_ROOT_CA_FILE", "/nonexistent"), ("NVIDIA_ROOT_CA_FILE", "/etc/hostname"),
    ])
    func badValuesStopStartUpNamingTheVariable(name: String, value: String) {
        #expect {
            try Self.config([name: value])
        } throws: { error in
            "\(error)".contains(name)
        }
    }

    @Test func loopbackPCCSIsAllowedForTests() throws {
        #expect(try Self.config(["PCCS_URL": "http://127.0.0.1:8081"]).verification.pccsURL == "http://127.0.0.1:8081")
    }
}
