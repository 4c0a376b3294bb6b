import AsyncHTTPClient
import Crypto
import DevStubs
import Foundation
import NIOCore
import NIOSSL
import SwiftASN1
import TDXCollateral
import TDXVerifier
import Testing
import X509

/// SPEC §7.2 against the dev relay, as the proxy will check it: the evidence the stub serves for its one instance
/// verifies end to end — collateral fetched from the relay's PCCS stand-in through `PCCSCollateralSource`, the
/// root and measurements from the files `ChutesHarness` wrote (what `e2eeEnvironment` names) — and its report
/// data binds the nonce, the listed instance key and the instance certificate. Everything is recomputed here
/// from the wire, not taken from the relay's own arithmetic.
@Suite struct ChutesDevEvidenceTests {
    struct Reply {
        let status: Int
        let body: [UInt8]
        var json: [String: Any] {
            (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] ?? [:]
        }
    }

    /// A client that trusts the stub's test CA, given to `body` and shut down after it.
    static func withClient<T>(caFile: String, _ body: (HTTPClient) async throws -> T) async throws -> T {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .file(caFile)
        let client = HTTPClient(
            eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: .init(tlsConfiguration: tls))
        let result = await capture { try await body(client) }
        try await client.shutdown()
        return try result.get()
    }

    static func get(_ client: HTTPClient, _ url: String, key: String? = ChutesHarness.apiKey) async throws -> Reply {
        var request = HTTPClientRequest(url: url)
        if let key { request.headers.add(name: "Authorization", value: "Bearer \(key)") }
        let response = try await client.execute(request, timeout: .seconds(30))
        let body = try await response.body.collect(upTo: 1 << 20)
        return Reply(status: Int(response.status.code), body: Array(buffer: body))
    }

    static func hex(_ bytes: some Sequence<UInt8>) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

    /// The trust root from a PEM file, as `vllm-proxy` reads `TDX_ROOT_CA_FILE`.
    static func root(pemFile: String) throws -> TDXTrustRoot {
        let certificate = try Certificate(pemEncoded: try String(contentsOfFile: pemFile, encoding: .utf8))
        var der = DER.Serializer()
        try der.serialize(certificate)
        return try TDXTrustRoot(der: der.serializedBytes)
    }

    @Test func theEvidenceVerifiesThroughTheDevPCCS() async throws {
        try await ChutesHarness.run(e2ee: true) { chutes in
            let environment = chutes.e2eeEnvironment
            let base = try #require(environment["CHUTES_E2E_BASE_URL"])
            let pccsURL = try #require(environment["PCCS_URL"])
            let rootFile = try #require(environment["TDX_ROOT_CA_FILE"])
            let measurementsFile = try #require(environment["CHUTES_TDX_MEASUREMENTS_FILE"])
            let relay = try #require(chutes.relay)
            #expect(PCCSCollateralSource.isAllowed(baseURL: pccsURL))
            try await Self.withClient(caFile: chutes.caFile) { client in
                let chute = ChutesE2EEDevRelay.chuteID
                let listing = try await Self.get(client, "\(base)/e2e/instances/\(chute)")
                let listed = try #require((listing.json["instances"] as? [[String: Any]])?.first)
                let key = try #require(listed["e2e_pubkey"] as? String)

                let nonce = Self.hex((0..<32).map { _ in UInt8.random(in: 0...255) })
                let reply = try await Self.get(client, "\(base)/chutes/\(chute)/evidence?nonce=\(nonce)")
                #expect(reply.status == 200)
                #expect((reply.json["failed_instance_ids"] as? [Any])?.isEmpty == true)
                let entries = try #require(reply.json["evidence"] as? [[String: Any]])
                #expect(entries.count == 1)
                let entry = try #require(entries.first)
                #expect(entry["instance_id"] as? String == listed["instance_id"] as? String)
                #expect((entry["gpu_evidence"] as? [Any])?.isEmpty == true)
                let quoteText = try #require(entry["quote"] as? String)
                let certificateText = try #require(entry["certificate"] as? String)
                let quote = Array(try #require(Data(base64Encoded: quoteText)))
                let certificateDER = Array(try #require(Data(base64Encoded: certificateText)))
                let certificate = try Certificate(derEncoded: certificateDER)
                #expect("\(certificate.subject)".contains("dev chutes instance (NOT SECURE)"))

                let now = Int64(Date().timeIntervalSince1970)
                let source = PCCSCollateralSource(baseURL: pccsURL, httpClient: client, clock: { now })
                let collateral = try await source.collateral(for: try TDXQuote(parsing: quote))
                #expect(relay.pccs.requests.count == 4)
                let report = try TDXQuoteVerifier.verify(
                    quote: quote, collateral: collateral, now: now, root: try Self.root(pemFile: rootFile))
                #expect(report.status == "UpToDate")

                let data = report.td.reportData
                #expect(Array(data[0..<32]) == Array(SHA256.hash(data: Array((nonce + key).utf8))))
                var spki = DER.Serializer()
                try spki.serialize(certificate.publicKey)
                #expect(Array(data[32..<64]) == Array(SHA256.hash(data: spki.serializedBytes)))

                let allowed = try #require(
                    try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: measurementsFile)))
                        as? [[String: String]])
                let measured = [
                    "mr_td": Self.hex(report.td.mrTD), "rtmr0": Self.hex(report.td.rtmr[0]),
                    "rtmr1": Self.hex(report.td.rtmr[1]), "rtmr2": Self.hex(report.td.rtmr[2]),
                ]
                #expect(allowed == [measured])

                // The quote is the dev PKI's: Intel's root refuses it.
                #expect(throws: TDXVerificationError.self) {
                    try TDXQuoteVerifier.verify(
                        quote: quote, collateral: collateral, now: now, root: IntelSGXRootCA.trustRoot())
                }
                let paths = chutes.chutes.requests.map(\.path)
                #expect(paths == ["/e2e/instances/\(chute)", "/chutes/\(chute)/evidence"])
            }
        }
    }

    @Test func badEvidenceRequestsAreRefused() async throws {
        try await ChutesHarness.run(e2ee: true) { chutes in
            let base = try #require(chutes.e2eeEnvironment["CHUTES_E2E_BASE_URL"])
            try await Self.withClient(caFile: chutes.caFile) { client in
                let chute = ChutesE2EEDevRelay.chuteID
                let nonce = String(repeating: "ab", count: 32)
                let cases: [(String, String?, Int)] = [
                    ("/chutes/\(chute)/evidence?nonce=\(nonce)", nil, 401),
                    ("/chutes/\(chute)/evidence?nonce=\(nonce)", "wrong-key", 401),
                    ("/chutes/another-chute/evidence?nonce=\(nonce)", ChutesHarness.apiKey, 404),
                    ("/chutes/\(chute)/evidence", ChutesHarness.apiKey, 400),
                    ("/chutes/\(chute)/evidence?nonce=\(nonce.uppercased())", ChutesHarness.apiKey, 400),
                    ("/chutes/\(chute)/evidence?nonce=\(nonce.dropLast(2))", ChutesHarness.apiKey, 400),
                    ("/chutes/\(chute)/evidence?nonce=\(nonce)00", ChutesHarness.apiKey, 400),
                    ("/chutes/\(chute)/evidence?nonce=\(nonce)&nonce=\(nonce)", ChutesHarness.apiKey, 400),
                ]
                for (path, key, status) in cases {
                    let reply = try await Self.get(client, base + path, key: key)
                    #expect(reply.status == status, "\(path)")
                }
                #expect(chutes.chutes.requests.count == cases.count)
            }
        }
    }

    /// Only the dev platform's own CA and FMSPC are served, as a PCCS serves what it has; `update=standard` is
    /// accepted and ignored.
    @Test func theDevPCCSServesOnlyItsPlatform() async throws {
        try await ChutesHarness.run(e2ee: true) { chutes in
            let pccs = try #require(chutes.e2eeEnvironment["PCCS_URL"])
            try await Self.withClient(caFile: chutes.caFile) { client in
                let cases: [(String, Int)] = [
                    ("/sgx/certification/v4/pckcrl?ca=platform&encoding=der", 200),
                    ("/sgx/certification/v4/pckcrl?ca=processor&encoding=der", 404),
                    ("/sgx/certification/v4/pckcrl?ca=platform", 404),
                    ("/tdx/certification/v4/tcb?fmspc=B0C06F000000&update=standard", 200),
                    ("/tdx/certification/v4/tcb?fmspc=00906ED50000", 404),
                    ("/tdx/certification/v4/qe/identity?update=standard", 200),
                    ("/tdx/certification/v4/qe/identity?extra=1", 404),
                    ("/sgx/certification/v4/rootcacrl", 200),
                    ("/sgx/certification/v4/nothing", 404),
                ]
                for (path, status) in cases {
                    let reply = try await Self.get(client, pccs + path, key: nil)
                    #expect(reply.status == status, "\(path)")
                }
            }
        }
    }
}
