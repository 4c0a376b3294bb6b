import Foundation
import Testing

@testable import TDXVerifier

/// Collateral dcap-qvl 0.7.0 refuses must be refused here too (SPEC §6.2; interop/test_verify_quote_collateral.py
/// checks the same against dcap-qvl itself). These are the cheap unit-level cases; edits that need a re-signed TCB
/// info or CRL are left to the interop test, which holds the synthetic keys.
@Suite struct TDXCollateralStrictnessTests {
    static let folder = TDXVerifierTests.folder.appendingPathComponent("synthetic/default")

    static func defaultInputs() throws -> (quote: [UInt8], collateral: [String: Any], root: TDXTrustRoot, now: Int64) {
        let quote = Array(try Data(contentsOf: folder.appendingPathComponent("quote.bin")))
        let collateral = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: folder.appendingPathComponent("collateral.json")))
                as? [String: Any])
        let root = try TDXTrustRoot(der: Array(try Data(contentsOf: folder.appendingPathComponent("root.der"))))
        let expected = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: folder.appendingPathComponent("expected.json")))
                as? [String: Any])
        return (quote, collateral, root, Int64(try #require(expected["now"] as? Int)))
    }

    static func verify(_ changes: [String: String]) throws -> Result<TDXVerifiedReport, TDXVerificationError> {
        var (quote, collateral, root, now) = try defaultInputs()
        for (key, value) in changes { collateral[key] = value }
        let parsed = try TDXCollateral(json: Array(try JSONSerialization.data(withJSONObject: collateral)))
        return Result { () throws(TDXVerificationError) in
            try TDXQuoteVerifier.verify(quote: quote, collateral: parsed, now: now, root: root)
        }
    }

    @Test func theUnchangedDefaultVerifies() throws {
        #expect(try Self.verify([:]).get().status == "UpToDate")
    }

    // Fix 1: a CA (here the root itself, the whole issuer chain) never signs collateral.
    @Test func aCACannotSignCollateral() throws {
        let rootPEM = String(
            decoding: try Data(contentsOf: Self.folder.appendingPathComponent("root.pem")), as: UTF8.self)
        for field in ["tcb_info_issuer_chain", "qe_identity_issuer_chain"] {
            guard case .failure(.certificateChainInvalid(let detail)) = try Self.verify([field: rootPEM]) else {
                Issue.record("\(field): the root as collateral signer was not refused")
                continue
            }
            #expect(detail.contains("is a CA"))
        }
    }

    // Fix 3: the CRL's outer signatureAlgorithm must equal the signed one; damaged DER there fails.
    @Test func crlOuterAlgorithmMustMatch() throws {
        let (_, collateral, _, _) = try Self.defaultInputs()
        let hex = try #require(collateral["pck_crl"] as? String)
        let der = try #require(TDXHex.decode(hex))
        // The outer AlgorithmIdentifier is the 12 bytes before the signature BIT STRING; its last byte 0x02
        // (ecdsa-with-SHA256) becomes 0x03 (ecdsa-with-SHA384), same length.
        let tbsLength = Int(der[6]) << 8 | Int(der[7])
        let outer = 4 + 4 + tbsLength
        #expect(Array(der[outer..<outer + 12]) == CertificateRevocationList.ecdsaWithSHA256)
        var changed = der
        changed[outer + 11] = 0x03
        #expect(throws: TDXVerificationError.crlInvalid("signature algorithm differs inside and outside the TBS")) {
            try CertificateRevocationList(derEncoded: changed)
        }
        var damaged = der
        damaged[outer] = 0x31
        #expect(throws: TDXVerificationError.self) { try CertificateRevocationList(derEncoded: damaged) }
        #expect((try? CertificateRevocationList(derEncoded: der)) != nil)
    }

    // Fix 10: every PEM block of a chain must decode, even the closing copy of the root no path uses.
    @Test func everyPEMBlockMustDecode() throws {
        let (_, collateral, _, _) = try Self.defaultInputs()
        let chain = try #require(collateral["tcb_info_issuer_chain"] as? String)
        let last = try #require(chain.range(of: "-----BEGIN CERTIFICATE-----", options: .backwards))
        let at = chain.index(last.upperBound, offsetBy: 100)
        let broken = chain.replacingCharacters(in: at...at, with: "#")
        guard case .failure(.certificateChainInvalid(let detail)) = try Self.verify(["tcb_info_issuer_chain": broken])
        else {
            Issue.record("a broken root copy was tolerated")
            return
        }
        #expect(detail.contains("PEM"))
    }

    // Fixes 7, 8: duplicate keys and numbers that are not unsigned integers, anywhere in the signed JSON.
    @Test(arguments: [
        #"{"a":1,"a":1}"#, #"{"fmspc":"x","fms\u0070c":"y"}"#, #"{"a":{"b":1,"b":2}}"#, #"{"version":3.0}"#,
        #"{"version":3e0}"#, #"{"version":-1}"#, #"{"a":01}"#, #"{"a":1}x"#, #"{"a":"\ud800"}"#, #"{"a":[1,]}"#,
        String(repeating: "[", count: 200) + String(repeating: "]", count: 200),
    ])
    func signedJSONIsRefused(_ text: String) {
        #expect(throws: SignedJSON.Problem.self) { try SignedJSON.check(Array(text.utf8)) }
    }

    @Test(arguments: [
        #"{"a":1,"b":[0,10,{"a":2}],"c":"\u00e9\n","d":null,"e":true}"#, " \n{}\r\n", #"{"a":"\ud83d\ude00"}"#,
    ])
    func signedJSONIsAccepted(_ text: String) throws {
        try SignedJSON.check(Array(text.utf8))
    }

    // Fixes 4, 6, 7, 8 through the decoders: unknown statuses, a missing tcbDate, duplicates, floats, ranges.
    @Test func tcbInfoDecodingIsStrict() throws {
        let (_, collateral, _, _) = try Self.defaultInputs()
        let text = try #require(collateral["tcb_info"] as? String)
        _ = try TCBInfo(signed: Array(text.utf8))
        let edits = [
            text.replacingOccurrences(of: #""tcbStatus":"Revoked""#, with: #""tcbStatus":"Unknown""#),
            text.replacingOccurrences(of: #""tcbDate":"#, with: #""tcbDat":"#),
            text.replacingOccurrences(of: #""version":3"#, with: #""version":3.0"#),
            text.replacingOccurrences(of: #""version":3"#, with: #""version":300"#),
            text.replacingOccurrences(of: #""pceId":"#, with: #""fmspc":"00906ED50000","pceId":"#),
            text.replacingOccurrences(of: #""tcbType":0,"#, with: ""),
        ]
        for edit in edits {
            #expect(edit != text)
            #expect(throws: TDXVerificationError.self) { try TCBInfo(signed: Array(edit.utf8)) }
        }
    }

    @Test func qeIdentityDecodingIsStrict() throws {
        let (_, collateral, _, _) = try Self.defaultInputs()
        let text = try #require(collateral["qe_identity"] as? String)
        _ = try QEIdentity(signed: Array(text.utf8))
        let edits = [
            text.replacingOccurrences(of: #""tcbStatus":"OutOfDate""#, with: #""tcbStatus":"Unknown""#),
            text.replacingOccurrences(of: #""tcbDate":"#, with: #""tcbDat":"#),
            text.replacingOccurrences(of: #""isvprodid":2"#, with: #""isvprodid":2.0"#),
        ]
        for edit in edits {
            #expect(edit != text)
            #expect(throws: TDXVerificationError.self) { try QEIdentity(signed: Array(edit.utf8)) }
        }
    }

    // Fix 9: RFC 3339 as chrono reads it: offsets, `t`/space, lower-case `z`; impossible dates refused.
    @Test func rfc3339AsDcapQvlReadsIt() {
        let base = UnixTime.parse(rfc3339: "2025-12-22T00:00:00Z")
        #expect(base == 1_766_361_600)
        #expect(UnixTime.parse(rfc3339: "2025-12-22T00:00:00+00:00") == base)
        #expect(UnixTime.parse(rfc3339: "2025-12-22T01:00:00+01:00") == base)
        #expect(UnixTime.parse(rfc3339: "2025-12-21T23:00:00-01:00") == base)
        #expect(UnixTime.parse(rfc3339: "2025-12-22t00:00:00z") == base)
        #expect(UnixTime.parse(rfc3339: "2025-12-22 00:00:00.000Z") == base)
        for bad in [
            "2025-02-30T00:00:00Z", "2025-12-22T00:00:00", "2025-12-22T00:00:00+0000", "yesterday",
            "2025-12-22T00:00:00Z ", "2025-12-22T00:00:00.Z",
        ] {
            #expect(UnixTime.parse(rfc3339: bad) == nil, "\(bad)")
        }
    }
}
