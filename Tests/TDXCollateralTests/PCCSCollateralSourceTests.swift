import Foundation
import TDXVerifier
import Testing

@testable import TDXCollateral

/// The PCCS collateral source against an injected transport serving a quote's collateral in the PCCS v4 wire
/// format: the collateral it assembles is byte for byte the file's and verifies; the cache holds each item until its
/// nextUpdate; every failure is `collateral_unavailable`. The collateral is dcap-qvl's real sample
/// (`Tests/TDX/samples`, platform CA) where `scripts/samples` could put it in place — it is not committed, being
/// third-party data — else the synthetic default variant (processor CA, our own test PKI).
@Suite struct PCCSCollateralSourceTests {
    struct Fixture {
        let folder: URL
        let quote: String
        let collateral: String
        let now: Int64
        let ca: String
        let intelRoot: Bool
    }

    static let tdx = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("TDX")
    static let fixture: Fixture =
        FileManager.default.fileExists(atPath: tdx.appendingPathComponent("samples/tdx_quote").path)
        ? Fixture(
            folder: tdx.appendingPathComponent("samples"), quote: "tdx_quote", collateral: "tdx_quote_collateral.json",
            now: 1_751_328_000, ca: "platform", intelRoot: true)  // 2025-07-01, inside every item's window
        : Fixture(
            folder: tdx.appendingPathComponent("synthetic/default"), quote: "quote.bin", collateral: "collateral.json",
            now: 1_767_225_600, ca: "processor", intelRoot: false)
    static var now: Int64 { fixture.now }

    static func bytes(_ name: String) throws -> [UInt8] {
        Array(try Data(contentsOf: fixture.folder.appendingPathComponent(name)))
    }

    static func quoteBytes() throws -> [UInt8] { try bytes(fixture.quote) }
    static func collateralBytes() throws -> [UInt8] { try bytes(fixture.collateral) }

    static func root() throws -> TDXTrustRoot {
        fixture.intelRoot ? try IntelSGXRootCA.trustRoot() : try TDXTrustRoot(der: try bytes("root.der"))
    }

    static func sample() throws -> [String: String] {
        try #require(try JSONSerialization.jsonObject(with: Data(collateralBytes())) as? [String: String])
    }

    static func urlEncoded(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-_.~")))!
    }

    /// A PCCS stand-in: the four endpoints, the requests it saw, and a way to fail.
    actor FakePCCS {
        let collateral: [String: String]
        let pretty: Bool
        var requests: [String] = []
        var failing = false

        init(collateral: [String: String], pretty: Bool = false) {
            self.collateral = collateral
            self.pretty = pretty
        }

        func setFailing(_ value: Bool) { failing = value }

        func respond(_ url: String) throws -> PCCSResponse {
            requests.append(url)
            if failing { return PCCSResponse(status: 503, headers: [:], body: []) }
            let path = String(url.drop(while: { $0 != "/" }).dropFirst(2).drop(while: { $0 != "/" }))
            let c = collateral
            func signed(_ key: String, _ inner: String, _ signature: String) -> [UInt8] {
                let text =
                    pretty
                    ? "{\n  \"signature\" : \"\(signature)\",\n  \"\(key)\" :  \(inner) \n}\n"
                    : "{\"\(key)\":\(inner),\"signature\":\"\(signature)\"}"
                return Array(text.utf8)
            }
            if path.hasPrefix("/sgx/certification/v4/pckcrl?ca=\(PCCSCollateralSourceTests.fixture.ca)&encoding=der") {
                return PCCSResponse(
                    status: 200, headers: ["SGX-PCK-CRL-Issuer-Chain": urlEncoded(c["pck_crl_issuer_chain"]!)],
                    body: TDXHex.decode(c["pck_crl"]!)!)
            }
            if path == "/tdx/certification/v4/tcb?fmspc=B0C06F000000&update=standard" {
                return PCCSResponse(
                    status: 200, headers: ["TCB-Info-Issuer-Chain": urlEncoded(c["tcb_info_issuer_chain"]!)],
                    body: signed("tcbInfo", c["tcb_info"]!, c["tcb_info_signature"]!))
            }
            if path.hasPrefix("/tdx/certification/v4/qe/identity") {
                return PCCSResponse(
                    status: 200,
                    headers: ["SGX-Enclave-Identity-Issuer-Chain": urlEncoded(c["qe_identity_issuer_chain"]!)],
                    body: signed("enclaveIdentity", c["qe_identity"]!, c["qe_identity_signature"]!))
            }
            if path == "/sgx/certification/v4/rootcacrl" {
                return PCCSResponse(status: 200, headers: [:], body: Array(c["root_ca_crl"]!.utf8))
            }
            return PCCSResponse(status: 404, headers: [:], body: [])
        }
    }

    final class Clock: @unchecked Sendable {
        private let lock = NSLock()
        private var value: Int64
        init(_ value: Int64) { self.value = value }
        func set(_ value: Int64) { lock.withLock { self.value = value } }
        func read() -> Int64 { lock.withLock { value } }
    }

    static func source(_ fake: FakePCCS, clock: Clock, base: String = "http://127.0.0.1:9/") -> PCCSCollateralSource {
        PCCSCollateralSource(baseURL: base, clock: { clock.read() }) { url in try await fake.respond(url) }
    }

    @Test(arguments: [false, true])
    func assemblesTheCollateralExactly(pretty: Bool) async throws {
        let fake = FakePCCS(collateral: try Self.sample(), pretty: pretty)
        let quoteBytes = try Self.quoteBytes()
        let quote = try TDXQuote(parsing: quoteBytes)
        let fetched = try await Self.source(fake, clock: Clock(Self.now)).collateral(for: quote)
        let file = try TDXCollateral(json: try Self.collateralBytes())
        #expect(fetched.pckCRLIssuerChain == file.pckCRLIssuerChain)
        #expect(fetched.rootCACRL == file.rootCACRL)
        #expect(fetched.pckCRL == file.pckCRL)
        #expect(fetched.tcbInfoIssuerChain == file.tcbInfoIssuerChain)
        #expect(fetched.tcbInfo == file.tcbInfo)
        #expect(fetched.tcbInfoSignature == file.tcbInfoSignature)
        #expect(fetched.qeIdentityIssuerChain == file.qeIdentityIssuerChain)
        #expect(fetched.qeIdentity == file.qeIdentity)
        #expect(fetched.qeIdentitySignature == file.qeIdentitySignature)
        let report = try TDXQuoteVerifier.verify(
            quote: quoteBytes, collateral: fetched, now: Self.now, root: try Self.root())
        #expect(report.fmspc == TDXHex.decode("b0c06f000000"))
        let requests = await fake.requests
        #expect(
            requests == [
                "http://127.0.0.1:9/sgx/certification/v4/pckcrl?ca=\(Self.fixture.ca)&encoding=der",
                "http://127.0.0.1:9/tdx/certification/v4/tcb?fmspc=B0C06F000000&update=standard",
                "http://127.0.0.1:9/tdx/certification/v4/qe/identity?update=standard",
                "http://127.0.0.1:9/sgx/certification/v4/rootcacrl",
            ])
    }

    @Test func cachesUntilNextUpdateThenRefetches() async throws {
        let fake = FakePCCS(collateral: try Self.sample())
        let clock = Clock(Self.now)
        let source = Self.source(fake, clock: clock)
        let quote = try TDXQuote(parsing: try Self.quoteBytes())
        _ = try await source.collateral(for: quote)
        #expect(await fake.requests.count == 4)
        _ = try await source.collateral(for: quote)
        #expect(await fake.requests.count == 4)  // all four cached
        // The PCCS going down does not matter while the cache is current.
        await fake.setFailing(true)
        _ = try await source.collateral(for: quote)
        #expect(await fake.requests.count == 4)
        await fake.setFailing(false)
        // At the earliest nextUpdate exactly, the items that expire then are fetched again, and only those.
        let file = try TDXCollateral(json: try Self.collateralBytes())
        let nexts = [
            TDXCollateralDates.crlNextUpdate(der: file.pckCRL), TDXCollateralDates.nextUpdate(ofJSON: file.tcbInfo),
            TDXCollateralDates.nextUpdate(ofJSON: file.qeIdentity),
            TDXCollateralDates.crlNextUpdate(der: file.rootCACRL),
        ].map { $0! }
        let earliest = nexts.min()!
        #expect(earliest > Self.now)
        clock.set(earliest - 1)
        _ = try await source.collateral(for: quote)
        #expect(await fake.requests.count == 4)
        clock.set(earliest)
        _ = try await source.collateral(for: quote)
        #expect(await fake.requests.count == 4 + nexts.filter { $0 <= earliest }.count)
        #expect(nexts.filter { $0 <= earliest }.count < 4)
        // Far in the future every item is stale.
        clock.set(4_000_000_000)
        _ = try await source.collateral(for: quote)
        #expect(await fake.requests.count == 8 + nexts.filter { $0 <= earliest }.count)
    }

    @Test func aFetchFailureIsCollateralUnavailable() async throws {
        let fake = FakePCCS(collateral: try Self.sample())
        await fake.setFailing(true)
        let quote = try TDXQuote(parsing: try Self.quoteBytes())
        await #expect(throws: TDXCollateralError.self) {
            _ = try await Self.source(fake, clock: Clock(Self.now)).collateral(for: quote)
        }
        do {
            _ = try await Self.source(fake, clock: Clock(Self.now)).collateral(for: quote)
        } catch {
            #expect(error.reason == "collateral_unavailable")
        }
        // A transport error likewise.
        let broken = PCCSCollateralSource(baseURL: "https://pccs.invalid", clock: { Self.now }) { _ in
            throw CancellationError()
        }
        do {
            _ = try await broken.collateral(for: quote)
            Issue.record("no error")
        } catch {
            #expect(error.reason == "collateral_unavailable")
        }
    }

    @Test func plainHTTPOnlyOnLoopback() async throws {
        #expect(PCCSCollateralSource.isAllowed(baseURL: "https://pccs.phala.network"))
        #expect(PCCSCollateralSource.isAllowed(baseURL: "http://127.0.0.1:8081"))
        #expect(PCCSCollateralSource.isAllowed(baseURL: "http://localhost:8081/sgx/certification/v4"))
        #expect(PCCSCollateralSource.isAllowed(baseURL: "http://[::1]:8081"))
        #expect(!PCCSCollateralSource.isAllowed(baseURL: "http://pccs.phala.network"))
        #expect(!PCCSCollateralSource.isAllowed(baseURL: "http://127.0.0.1.evil.example"))
        #expect(!PCCSCollateralSource.isAllowed(baseURL: "ftp://127.0.0.1"))
        let fake = FakePCCS(collateral: try Self.sample())
        let quote = try TDXQuote(parsing: try Self.quoteBytes())
        do {
            _ = try await Self.source(fake, clock: Clock(Self.now), base: "http://10.0.0.1").collateral(for: quote)
            Issue.record("no error")
        } catch {
            #expect(error.reason == "collateral_unavailable")
        }
        #expect(await fake.requests.isEmpty)
    }

    @Test func signedBodiesKeepTheServedBytes() throws {
        let inner = #"{"b":1, "a":"x\"}y", "n":[1,{"c":null}]}"#
        let body = Array(#"{ "signature" : "00ff", "tcbInfo" :\#(inner) }"#.utf8)
        let signed = try PCCSCollateralSource.signed(body, key: "tcbInfo", chain: "", what: "TCB info")
        #expect(String(decoding: signed.body, as: UTF8.self) == inner)
        #expect(signed.signature == [0, 255])
        for bad in [
            #"{"tcbInfo":{}}"#, #"{"tcbInfo":[],"signature":"00"}"#, #"{"tcbInfo":{},"signature":"0g"}"#,
            #"{"tcbInfo":{},"tcbInfo":{},"signature":"00"}"#, #"{"tcbInfo":{},"signature":"00""#,
        ] {
            #expect(throws: TDXCollateralError.self) {
                _ = try PCCSCollateralSource.signed(Array(bad.utf8), key: "tcbInfo", chain: "", what: "TCB info")
            }
        }
    }
}
