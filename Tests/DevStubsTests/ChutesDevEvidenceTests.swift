import DevStubs
import Foundation
import TDXVerifier
import Testing

/// The dev Chutes relay's instance evidence against the real verifier, in process: its quote verifies with the
/// root and measurements `writeDevPKI(to:)` writes and with no other relay's root. (The whole chain over HTTP,
/// collateral from the PCCS stand-in and report data recomputed, is `ProxyTests.ChutesDevEvidenceTests`: this
/// target has no HTTP client or PCCS client.)
@Suite struct ChutesDevRelayEvidenceTests {
    let now = Int64(Date().timeIntervalSince1970)

    struct Entry {
        let quote: [UInt8]
        let certificate: [UInt8]
    }

    static func entry(_ relay: ChutesE2EEDevRelay, nonce: String) throws -> Entry {
        let answer = try JSONSerialization.jsonObject(with: Data(try relay.evidence(nonceHex: nonce).serialized()))
        let object = try #require(answer as? [String: Any])
        #expect((object["failed_instance_ids"] as? [Any])?.isEmpty == true)
        let entries = try #require(object["evidence"] as? [[String: Any]])
        let entry = try #require(entries.count == 1 ? entries.first : nil)
        #expect(entry["instance_id"] as? String == "dev-instance-1")
        #expect((entry["gpu_evidence"] as? [Any])?.isEmpty == true)
        let quoteText = try #require(entry["quote"] as? String)
        let certificateText = try #require(entry["certificate"] as? String)
        return Entry(
            quote: Array(try #require(Data(base64Encoded: quoteText))),
            certificate: Array(try #require(Data(base64Encoded: certificateText))))
    }

    static func nonce() -> String {
        (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
    }

    /// The DER inside a one-certificate PEM file.
    static func der(pem: String) throws -> [UInt8] {
        let body = pem.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()
        return Array(try #require(Data(base64Encoded: body)))
    }

    @Test func verifiesWithTheWrittenRootAndMeasurements() throws {
        let relay = try ChutesE2EEDevRelay()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("relay-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        try relay.writeDevPKI(to: directory.path)
        let rootPEM = try String(
            contentsOf: directory.appendingPathComponent(ChutesE2EEDevRelay.rootPEMFileName), encoding: .utf8)
        let root = try TDXTrustRoot(der: try Self.der(pem: rootPEM))
        #expect(root.der == relay.platform.pki.rootDER)

        let first = try Self.entry(relay, nonce: Self.nonce())
        let second = try Self.entry(relay, nonce: Self.nonce())
        let collateral = try TDXCollateral(json: relay.platform.collateral.json)
        let report = try TDXQuoteVerifier.verify(quote: first.quote, collateral: collateral, now: now, root: root)
        #expect(report.status == "UpToDate")
        let again = try TDXQuoteVerifier.verify(quote: second.quote, collateral: collateral, now: now, root: root)
        // A fresh nonce changes the key binding, never the certificate's half or the certificate.
        #expect(report.td.reportData[0..<32] != again.td.reportData[0..<32])
        #expect(report.td.reportData[32..<64] == again.td.reportData[32..<64])
        #expect(first.certificate == relay.certificateDER && second.certificate == relay.certificateDER)

        let measurements = try JSONSerialization.jsonObject(
            with: Data(contentsOf: directory.appendingPathComponent(ChutesE2EEDevRelay.measurementsFileName)))
        func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }
        let expected = [
            "mr_td": hex(report.td.mrTD), "rtmr0": hex(report.td.rtmr[0]), "rtmr1": hex(report.td.rtmr[1]),
            "rtmr2": hex(report.td.rtmr[2]),
        ]
        #expect(measurements as? [[String: String]] == [expected])
        #expect(report.td.mrTD == relay.platform.guest.mrTD)
    }

    @Test func anotherRelaysRootRefusesIt() throws {
        let relay = try ChutesE2EEDevRelay()
        let other = try ChutesE2EEDevRelay()
        let quote = try Self.entry(relay, nonce: Self.nonce()).quote
        #expect(throws: TDXVerificationError.self) {
            try TDXQuoteVerifier.verify(
                quote: quote, collateral: TDXCollateral(json: other.platform.collateral.json), now: now,
                root: TDXTrustRoot(der: other.platform.pki.rootDER))
        }
    }
}
