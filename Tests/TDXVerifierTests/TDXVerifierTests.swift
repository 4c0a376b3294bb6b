import Foundation
import Testing

@testable import TDXVerifier

/// The verifier against dcap-qvl 0.7.0's verdicts: every synthetic variant of `Tests/TDX/make_synthetic.py`
/// (each proven against dcap-qvl by `Tests/TDX/test_synthetic.py`) and the real samples from dcap-qvl's
/// repository, at their fixed times. Where the SPEC is stricter than dcap-qvl, the `spec` verdict is expected.
@Suite struct TDXVerifierTests {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("TDX")

    static let variants: [String] =
        ((try? FileManager.default.contentsOfDirectory(atPath: folder.appendingPathComponent("synthetic").path)) ?? [])
        .sorted()

    static func bytes(_ path: String) throws -> [UInt8] {
        Array(try Data(contentsOf: folder.appendingPathComponent(path)))
    }

    static func json(_ path: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(bytes(path))) as? [String: Any])
    }

    @Test func everyVariantIsPresent() {
        #expect(Self.variants.count >= 70)
    }

    @Test(arguments: variants)
    func syntheticVariant(_ name: String) throws {
        let expected = try Self.json("synthetic/\(name)/expected.json")
        let spec = try #require(expected["spec"] as? [String: Any])
        let root = try TDXTrustRoot(der: try Self.bytes("synthetic/\(name)/root.der"))
        let collateral = try TDXCollateral(json: try Self.bytes("synthetic/\(name)/collateral.json"))
        let now = try #require(expected["now"] as? Int)
        let quote = try Self.bytes("synthetic/\(name)/quote.bin")
        let result = Result { () throws(TDXVerificationError) in
            try TDXQuoteVerifier.verify(quote: quote, collateral: collateral, now: Int64(now), root: root)
        }
        if spec["verified"] as? Bool == true {
            let report = try result.get()
            #expect(report.status == spec["status"] as? String, "\(name)")
            #expect(report.advisoryIDs == (spec["advisory_ids"] as? [String] ?? []), "\(name)")
            let td = try #require(expected["td"] as? [String: String])
            #expect(TDXHex.encode(report.td.mrTD) == td["mr_td"])
            #expect(TDXHex.encode(report.td.rtmr[3]) == td["rtmr3"])
            #expect(TDXHex.encode(report.td.reportData) == td["report_data"])
            #expect(TDXHex.encode(report.fmspc) == expected["fmspc"] as? String)
            #expect(report.rootCA == expected["root_ca"] as? String)
        } else {
            guard case .failure(let error) = result else {
                Issue.record("\(name) verified but the SPEC says it must not: \(spec)")
                return
            }
            #expect(!error.reason.isEmpty)
        }
    }

    /// dcap-qvl's samples are not committed (third-party data): `scripts/samples` copies them from a local snapshot.
    static let samplesArePresent = FileManager.default.fileExists(
        atPath: folder.appendingPathComponent("samples/tdx_quote").path)

    @Test(.enabled(if: samplesArePresent, "scripts/samples found no snapshot of Phala-Network/dcap-qvl"))
    func realSamplesAgreeWithDcapQvl() throws {
        let root = try TDXTrustRoot(der: IntelSGXRootCA.der, pinned: true)
        let samples = try #require(try Self.json("samples/expected.json")["samples"] as? [[String: Any]])
        for sample in samples {
            let name = try #require(sample["quote"] as? String)
            let raw = try Self.bytes("samples/\(name)")
            let quote =
                name.hasSuffix(".hex")
                ? try #require(
                    TDXHex.decode(String(decoding: raw, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)))
                : raw
            let collateral = try TDXCollateral(
                json: try Self.bytes("samples/\(try #require(sample["collateral"] as? String))"))
            let expected = try #require(sample["expected"] as? [String: Any])
            let now = Int64(try #require(sample["now"] as? Int))
            let result = Result { () throws(TDXVerificationError) in
                try TDXQuoteVerifier.verify(quote: quote, collateral: collateral, now: now, root: root)
            }
            // SGX quotes are outside SPEC §6.2 (TDX only): refused, whatever dcap-qvl says of them.
            if name.hasPrefix("sgx") {
                #expect(throws: TDXVerificationError.unsupportedQuote("version 3")) { try result.get() }
            } else if expected["verified"] as? Bool == true {
                let report = try result.get()
                #expect(report.status == expected["status"] as? String, "\(name)")
                let td = try #require(expected["td"] as? [String: String])
                #expect(TDXHex.encode(report.td.mrTD) == td["mr_td"], "\(name)")
                #expect(TDXHex.encode(report.td.reportData) == td["report_data"], "\(name)")
                #expect(report.rootCA == "intel")
                // One second outside the window, it fails.
                if let until = sample["valid_until"] as? Int {
                    #expect(throws: TDXVerificationError.self) {
                        try TDXQuoteVerifier.verify(
                            quote: quote, collateral: collateral, now: Int64(until) + 1, root: root)
                    }
                }
            } else {
                guard case .failure = result else {
                    Issue.record("\(name) verified but dcap-qvl refused it")
                    continue
                }
            }
        }
    }
}
