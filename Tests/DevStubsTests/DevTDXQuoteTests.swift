import DevStubs
import Foundation
import TDXVerifier
import Testing

/// The dev agent's quotes are real-format TDX quotes: our verifier accepts them with the dev root, and only then.
@Suite struct DevTDXQuoteTests {
    let now = Int64(Date().timeIntervalSince1970)

    func reportData() -> [UInt8] { (0..<64).map { UInt8(($0 * 7 + 3) & 0xff) } }

    @Test func verifiesWithTheDevRoot() throws {
        let platform = try DevTDXPlatform()
        let data = reportData()
        let quote = try platform.quote(reportData: data)
        let collateral = try TDXCollateral(json: platform.collateral.json)
        let report = try TDXQuoteVerifier.verify(
            quote: quote, collateral: collateral, now: now, root: TDXTrustRoot(der: platform.pki.rootDER))
        #expect(report.status == "UpToDate")
        #expect(report.advisoryIDs.isEmpty)
        #expect(report.td.reportData == data)
        #expect(report.td.rtmr[3] == DevTDXEventLog.replay(platform.guest.events))
        #expect(report.td.rtmr[3] == platform.guest.rtmr3)
        #expect(report.td.mrTD == platform.guest.mrTD)
        #expect(Array(quote[(48 + 520)..<(48 + 584)]) == data)
        // Valid from an hour ago for 30 days, and not outside that.
        for offset: Int64 in [-3599, 29 * 86_400] {
            _ = try TDXQuoteVerifier.verify(
                quote: quote, collateral: collateral, now: now + offset, root: TDXTrustRoot(der: platform.pki.rootDER))
        }
        #expect(throws: TDXVerificationError.self) {
            try TDXQuoteVerifier.verify(
                quote: quote, collateral: collateral, now: now + 31 * 86_400,
                root: TDXTrustRoot(der: platform.pki.rootDER))
        }
    }

    @Test func intelsRootRefusesIt() throws {
        let platform = try DevTDXPlatform()
        let quote = try platform.quote(reportData: reportData())
        let collateral = try TDXCollateral(json: platform.collateral.json)
        #expect(throws: TDXVerificationError.self) {
            try TDXQuoteVerifier.verify(
                quote: quote, collateral: collateral, now: now, root: IntelSGXRootCA.trustRoot())
        }
    }

    @Test func anotherDevPKIRefusesIt() throws {
        let platform = try DevTDXPlatform()
        let other = try DevTDXPlatform()
        let quote = try platform.quote(reportData: reportData())
        let root = try TDXTrustRoot(der: other.pki.rootDER)
        // Neither with this platform's collateral nor with the other's.
        for collateral in [platform.collateral.json, other.collateral.json] {
            #expect(throws: TDXVerificationError.self) {
                try TDXQuoteVerifier.verify(
                    quote: quote, collateral: TDXCollateral(json: collateral), now: now, root: root)
            }
        }
    }

    @Test func eventDigestsFollowDstack() {
        let event = DevTDXEvent(name: "app-id", payload: [1, 2])
        // SHA-384(01 00 00 08 ‖ ":app-id:" ‖ 01 02), computed independently with Python's hashlib.
        #expect(
            event.digest.map { String(format: "%02x", $0) }.joined()
                == "aa89600f6438e7c3d46e86fb9a3600120c01fc21fcb855a928d26efab202750856302f2cb202822e6e6951ded19d1829")
        #expect(DevTDXEventLog.replay([]) == [UInt8](repeating: 0, count: 48))
        let names = DevTDXGuest().events.map(\.name)
        #expect(names == ["system-preparing", "app-id", "compose-hash", "instance-id", "boot-mr-done"])
    }
}
