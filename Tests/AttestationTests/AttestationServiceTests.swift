import AsyncHTTPClient
import Attestation
import Crypto
import DevStubs
import Foundation
import JSON
import Logging
import Signing
import Testing

@Suite struct AttestationServiceTests {
    let vectors: ReportDataVectors
    let logger = Logger(label: "attestation-test")

    init() throws { vectors = try ReportDataVectors.load() }

    func service(_ agent: DstackClient, tlsCertPath: String? = nil) -> AttestationService {
        AttestationService(
            identity: vectors.identity,
            agent: agent,
            gpu: NoGPUEvidence(),
            tlsCertPath: tlsCertPath, e2ee: testE2EEAttestation,
            logger: logger
        )
    }

    func query(
        algo: String? = nil,
        nonce: String? = nil,
        address: String? = nil,
        version: String? = nil
    ) -> AttestationQuery {
        AttestationQuery(signingAlgo: algo, nonce: nonce, signingAddress: address, version: version)
    }

    /// The error `body` throws; fails the test when it does not throw.
    func error(_ body: () async throws(AttestationError) -> JSONValue) async -> AttestationError? {
        do {
            let value = try await body()
            Issue.record("expected an error, got \(String(decoding: value.serialized(), as: UTF8.self))")
            return nil
        } catch {
            return error
        }
    }

    // MARK: layouts, both transports, both algorithms

    @Test(arguments: Transport.allCases)
    func v1EcdsaBindsPaddedAddressAndNonce(transport: Transport) async throws {
        try await withAgent(transport) { agent, recorder in
            let report = try await service(agent).report(query(nonce: Hex.encode(vectors.nonce)))
            #expect(await recorder.reportDataHex == [Hex.encode(vectors.ecdsaV1)])
            try checkCommonFields(report, reportData: vectors.ecdsaV1, version: 1)
            #expect(report["signing_address"] == .string(vectors.ecdsaAddress))
            #expect(report["signing_algo"] == "ecdsa")
            #expect(report["signing_public_key"] == .string(String(repeating: "ab", count: 64)))
            #expect(report["tls_cert_fingerprint"] == nil)
        }
    }

    @Test(arguments: Transport.allCases)
    func v1Ed25519BindsPublicKeyAndNonce(transport: Transport) async throws {
        try await withAgent(transport) { agent, recorder in
            let report = try await service(agent).report(query(algo: "ed25519", nonce: Hex.encode(vectors.nonce)))
            #expect(await recorder.reportDataHex == [Hex.encode(vectors.ed25519V1)])
            try checkCommonFields(report, reportData: vectors.ed25519V1, version: 1)
            #expect(report["signing_address"] == .string(Hex.encode(vectors.ed25519PublicKey)))
            #expect(report["signing_algo"] == "ed25519")
            #expect(report["signing_public_key"] == .string(Hex.encode(vectors.ed25519PublicKey)))
        }
    }

    @Test(arguments: Transport.allCases, ["ecdsa", "ed25519"])
    func v2BindsTheLeafCertificateKey(transport: Transport, algo: String) async throws {
        let directory = try TemporaryDirectory()
        let leaf = try makeCertificate(commonName: "proxy.example")
        let issuer = try makeCertificate(commonName: "some CA")
        // A full chain: only the first certificate (the leaf) may count.
        try (leaf.pem + issuer.pem).write(toFile: directory.file("cert.pem"), atomically: true, encoding: .utf8)
        let addressBytes = algo == "ecdsa" ? vectors.ecdsaAddressBytes : vectors.ed25519PublicKey
        let spkiDigest = Array(SHA256.hash(data: leaf.spkiDER))
        let expected = Array(SHA256.hash(data: addressBytes + spkiDigest)) + vectors.nonce

        try await withAgent(transport) { agent, recorder in
            let report = try await service(agent, tlsCertPath: directory.file("cert.pem"))
                .report(query(algo: algo, nonce: Hex.encode(vectors.nonce), version: "2"))
            #expect(await recorder.reportDataHex == [Hex.encode(expected)])
            #expect(expected == ReportData.v2(addressBytes: addressBytes, spkiDER: leaf.spkiDER, nonce: vectors.nonce))
            try checkCommonFields(report, reportData: expected, version: 2)
            #expect(report["tls_cert_fingerprint"] == .string(Hex.encode(spkiDigest)))
        }
    }

    /// Fields every successful report carries, checked against what the stand-in agent produces.
    func checkCommonFields(_ report: JSONValue, reportData: [UInt8], version: Int) throws {
        #expect(report["request_nonce"] == .string(Hex.encode(reportData.suffix(32))))
        // The stand-in's quote is a TDX v4 quote (version 4, ECDSA-P256 key, TEE type 0x81) over this report data,
        // at offset 48 + 520; DevStubsTests verifies it in full.
        let quote = try #require(report["quote"]?.stringValue)
        #expect(report["intel_quote"] == .string(quote))
        #expect(quote.hasPrefix("0400020081000000"))
        let reportDataHex = quote.dropFirst(2 * (48 + 520)).prefix(128)
        #expect(reportDataHex == Substring(Hex.encode(reportData)))
        let events = try JSONValue(parsing: Array(try #require(report["event_log"]?.stringValue).utf8))
        #expect(events.arrayValue?.compactMap { $0["event"]?.stringValue }.contains("compose-hash") == true)
        #expect(report["vm_config"]?.stringValue?.contains("NOT A REAL") == true)
        #expect(report["version"] == .integer(version))
        // tcb_info arrives as a JSON string and leaves as an object.
        let tcbInfo = try #require(report["info"]?["tcb_info"]?.objectValue)
        #expect(tcbInfo["mrtd"]?.stringValue?.count == 96)
        #expect(report["info"]?["app_name"] == "vllm-proxy-dev (NOT SECURE)")
        let payload = try JSONValue(parsing: Array(try #require(report["nvidia_payload"]?.stringValue).utf8))
        #expect(payload["nonce"] == report["request_nonce"])
        #expect(payload["evidence_list"] == [])
        #expect(payload["arch"] == "HOPPER")

        let object = try #require(report.objectValue)
        var attestation = object
        attestation["all_attestations"] = nil
        #expect(object.keys.last == "all_attestations")
        #expect(report["all_attestations"] == .array([.object(attestation)]))
        #expect(
            attestation.keys.filter { $0 != "tls_cert_fingerprint" } == [
                "signing_address", "signing_algo", "signing_public_key", "request_nonce", "intel_quote", "quote",
                "event_log", "vm_config", "info", "nvidia_payload", "version",
            ]
        )
    }

    @Test func randomNonceWhenAbsent() async throws {
        try await withAgent(.unixSocket) { agent, recorder in
            let service = service(agent)
            let first = try #require(try await service.report(query())["request_nonce"]?.stringValue)
            let second = try #require(try await service.report(query())["request_nonce"]?.stringValue)
            #expect(Hex.decode(first)?.count == 32)
            #expect(first != second)
            let recorded = await recorder.reportDataHex
            #expect(recorded.map { String($0.suffix(64)) } == [first, second])
        }
    }

    @Test func uppercaseNonceIsAcceptedAndEchoedLowercase() async throws {
        try await withAgent(.unixSocket) { agent, _ in
            let report = try await service(agent).report(query(nonce: Hex.encode(vectors.nonce).uppercased()))
            #expect(report["request_nonce"] == .string(Hex.encode(vectors.nonce)))
        }
    }

    // MARK: validation

    @Test func rejectsUnknownAlgorithm() async throws {
        try await withAgent(.unixSocket) { agent, recorder in
            for algo in ["rsa", "ECDSA", ""] {
                let failure = await error { () async throws(AttestationError) in
                    try await service(agent).report(query(algo: algo))
                }
                #expect(failure == .invalidSigningAlgo)
                #expect(failure?.status == 400)
                #expect(failure?.type == "invalid_signing_algo")
            }
            #expect(await recorder.reportDataHex.isEmpty)
        }
    }

    @Test func rejectsMalformedNonces() async throws {
        let good = Hex.encode(vectors.nonce)
        let bad = [
            "", "abc", String(good.dropLast(2)), good + "00", String(good.dropLast()) + "g", "0x" + good.dropFirst(2),
        ]
        try await withAgent(.unixSocket) { agent, recorder in
            for nonce in bad {
                let failure = await error { () async throws(AttestationError) in
                    try await service(agent).report(query(nonce: nonce))
                }
                #expect(failure == .invalidNonce, "nonce \(nonce)")
                #expect(failure?.status == 400)
            }
            #expect(await recorder.reportDataHex.isEmpty)
        }
    }

    @Test func rejectsUnknownVersions() async throws {
        try await withAgent(.unixSocket) { agent, _ in
            for version in ["0", "4", "v2", "", "1.0"] {
                let failure = await error { () async throws(AttestationError) in
                    try await service(agent).report(query(version: version))
                }
                #expect(failure == .invalidVersion, "version \(version)")
                #expect(failure?.status == 400)
            }
            let explicitOne = try await service(agent).report(query(version: "1"))
            #expect(explicitOne["version"] == 1)
        }
    }

    @Test func v2NeedsACertificate() async throws {
        let directory = try TemporaryDirectory()
        try "not a certificate".write(toFile: directory.file("junk.pem"), atomically: true, encoding: .utf8)
        try await withAgent(.unixSocket) { agent, recorder in
            let unconfigured = await error { () async throws(AttestationError) in
                try await service(agent).report(query(version: "2"))
            }
            #expect(unconfigured == .tlsCertificateNotConfigured)
            #expect(unconfigured?.status == 400)
            for path in [directory.file("missing.pem"), directory.file("junk.pem")] {
                let unreadable = await error { () async throws(AttestationError) in
                    try await service(agent, tlsCertPath: path).report(query(version: "2"))
                }
                #expect(unreadable == .tlsCertificateUnreadable)
                #expect(unreadable?.status == 400)
                #expect(unreadable?.message.contains(directory.path) == false)
            }
            // Version 1 does not depend on the certificate at all.
            _ = try await service(agent, tlsCertPath: directory.file("junk.pem")).report(query())
            #expect(await recorder.reportDataHex.count == 1)
        }
    }

    @Test func signingAddressMustBeThisInstances() async throws {
        try await withAgent(.unixSocket) { agent, recorder in
            let service = service(agent)
            let other = "0x" + String(repeating: "11", count: 20)
            for (algo, address) in [
                ("ecdsa", other), ("ed25519", vectors.ecdsaAddress), ("ecdsa", Hex.encode(vectors.ed25519PublicKey)),
            ] {
                let failure = await error { () async throws(AttestationError) in
                    try await service.report(query(algo: algo, address: address))
                }
                #expect(failure == .signingAddressMismatch)
                #expect(failure?.status == 404)
                #expect(failure?.type == "not_found")
            }
            #expect(await recorder.reportDataHex.isEmpty)

            for (algo, address) in [
                ("ecdsa", vectors.ecdsaAddress), ("ecdsa", vectors.ecdsaAddress.lowercased()),
                ("ecdsa", "0x" + vectors.ecdsaAddress.dropFirst(2).uppercased()),
                ("ed25519", Hex.encode(vectors.ed25519PublicKey).uppercased()),
            ] {
                let report = try await service.report(query(algo: algo, address: address))
                #expect(report["signing_algo"] == .string(algo))
            }
        }
    }

    // MARK: the agent failing

    @Test(arguments: Transport.allCases)
    func unreachableAgentIsUnavailable(transport: Transport) async throws {
        let directory = try TemporaryDirectory()
        let endpoint: DstackClient.Endpoint =
            switch transport {
            case .unixSocket: .init(parsing: directory.file("nobody-listens.sock"))
            // Port 1 (tcpmux) is privileged and unused on CI machines: connection refused.
            case .tcp: .init(parsing: "http://127.0.0.1:1")
            }
        let agent = DstackClient(endpoint: endpoint, httpClient: .shared, timeout: .seconds(2), logger: logger)
        let failure = await error { () async throws(AttestationError) in try await service(agent).report(query()) }
        try checkUnavailable(failure)
    }

    @Test(arguments: [DevAttestationAgent.Behaviour.garbage, .failing(status: 500), .failing(status: 404)])
    func misbehavingAgentIsUnavailable(behaviour: DevAttestationAgent.Behaviour) async throws {
        try await withAgent(.tcp, behaviour: behaviour) { agent, _ in
            let failure = await error { () async throws(AttestationError) in try await service(agent).report(query()) }
            try checkUnavailable(failure)
        }
    }

    @Test func slowAgentTimesOut() async throws {
        // A 30 s agent against a 0.3 s timeout: the bound proves the timeout cut the wait, with room for load.
        try await withAgent(.tcp, behaviour: .slow(.seconds(30)), timeout: .milliseconds(300)) { agent, _ in
            let started = ContinuousClock.now
            let failure = await error { () async throws(AttestationError) in try await service(agent).report(query()) }
            try checkUnavailable(failure)
            #expect(ContinuousClock.now - started < .seconds(10))
        }
    }

    func checkUnavailable(_ failure: AttestationError?) throws {
        let failure = try #require(failure)
        guard case .agentUnavailable = failure else {
            Issue.record("expected agentUnavailable, got \(failure)")
            return
        }
        #expect(failure.status == 503)
        #expect(failure.type == "attestation_unavailable")
        #expect(!failure.message.contains("/"))  // no socket paths or URLs
    }

    @Test func gpuFailureIsUnavailable() async throws {
        try await withAgent(.unixSocket) { agent, _ in
            let service = AttestationService(
                identity: vectors.identity,
                agent: agent,
                gpu: NVMLGPUEvidence(libraryPath: "/nonexistent/libnvidia-ml.so.1"),
                tlsCertPath: nil, e2ee: testE2EEAttestation,
                logger: logger
            )
            let failure = await error { () async throws(AttestationError) in try await service.report(query()) }
            #expect(failure?.status == 503)
            #expect(failure?.type == "attestation_unavailable")
        }
    }

    // MARK: certificate renewal

    @Test func certificateIsReReadWhenTheFileChanges() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("cert.pem")
        let first = try makeCertificate(commonName: "first")
        try first.pem.write(toFile: path, atomically: true, encoding: .utf8)
        try await withAgent(.unixSocket) { agent, _ in
            let service = service(agent, tlsCertPath: path)
            let v2 = query(version: "2")
            let firstFingerprint = Hex.encode(SHA256.hash(data: first.spkiDER))
            #expect(try await service.report(v2)["tls_cert_fingerprint"] == .string(firstFingerprint))
            #expect(try await service.report(v2)["tls_cert_fingerprint"] == .string(firstFingerprint))

            // Renewed by rename-over (what certbot and atomic writers do)...
            let second = try makeCertificate(commonName: "second")
            try second.pem.write(toFile: path, atomically: true, encoding: .utf8)
            #expect(
                try await service.report(v2)["tls_cert_fingerprint"]
                    == .string(Hex.encode(SHA256.hash(data: second.spkiDER)))
            )

            // ...and by rewriting the same inode in place.
            let third = try makeCertificate(commonName: "third")
            let handle = try #require(FileHandle(forWritingAtPath: path))
            try handle.truncate(atOffset: 0)
            try handle.write(contentsOf: Data(third.pem.utf8))
            try handle.close()
            #expect(
                try await service.report(v2)["tls_cert_fingerprint"]
                    == .string(Hex.encode(SHA256.hash(data: third.spkiDER)))
            )
        }
    }

    // MARK: endpoint parsing

    @Test func endpointParsing() {
        #expect(DstackClient.Endpoint(parsing: nil) == .unixSocket(path: "/var/run/dstack.sock"))
        #expect(DstackClient.Endpoint(parsing: "") == .unixSocket(path: "/var/run/dstack.sock"))
        #expect(DstackClient.Endpoint(parsing: "/tmp/dstack.sock") == .unixSocket(path: "/tmp/dstack.sock"))
        #expect(DstackClient.Endpoint(parsing: "http://localhost:8090") == .url("http://localhost:8090"))
        #expect(DstackClient.Endpoint(parsing: "HTTPS://agent.internal/") == .url("HTTPS://agent.internal/"))
    }
}

/// The SPKI digest must be the one any TLS client computes from the certificate, for every key type a
/// deployment may use, not only the P-256 keys the other tests mint.
@Suite(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl"), "needs the openssl CLI"))
struct CertificateKeyTypeTests {
    func openssl(_ arguments: [String], stdin: Data? = nil) throws -> Data {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        let input = Pipe()
        if stdin != nil { process.standardInput = input }
        try process.run()
        if let stdin {
            input.fileHandleForWriting.write(stdin)
            try input.fileHandleForWriting.close()
        }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "openssl \(arguments.joined(separator: " ")) failed")
        return data
    }

    @Test(arguments: [
        ["-newkey", "rsa:2048"], ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"], ["-newkey", "ed25519"],
    ])
    func fingerprintMatchesOpenSSL(keyArguments: [String]) async throws {
        let directory = try TemporaryDirectory()
        let cert = directory.file("cert.pem")
        _ = try openssl(
            [
                "req", "-x509", "-nodes", "-days", "1", "-subj", "/CN=proxy.example", "-keyout",
                directory.file("key.pem"),
                "-out", cert,
            ] + keyArguments)
        let publicKeyPEM = try openssl(["x509", "-pubkey", "-noout", "-in", cert])
        let spkiDER = try openssl(["pkey", "-pubin", "-outform", "DER"], stdin: publicKeyPEM)
        let vectors = try ReportDataVectors.load()

        try await withAgent(.unixSocket) { agent, _ in
            let service = AttestationService(
                identity: vectors.identity, agent: agent, gpu: NoGPUEvidence(), tlsCertPath: cert,
                e2ee: testE2EEAttestation,
                logger: Logger(label: "attestation-test"))
            let report = try await service.report(
                AttestationQuery(signingAlgo: nil, nonce: nil, signingAddress: nil, version: "2"))
            #expect(report["tls_cert_fingerprint"] == .string(Hex.encode(SHA256.hash(data: spkiDER))))
        }
    }
}
