import Crypto
import DevStubs
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOSSL
import SwiftASN1
import X509

/// A throwaway PKI made at test time: a CA, and a leaf for 127.0.0.1/localhost that it signed.
struct TestPKI {
    let caPEM: String
    let leafPEM: String
    let leafKeyPEM: String

    init() throws {
        let caKey = P256.Signing.PrivateKey()
        let leafKey = P256.Signing.PrivateKey()
        let caName = try DistinguishedName { CommonName("vllm-proxy test CA") }
        let leafName = try DistinguishedName { CommonName("localhost") }
        let now = Date()
        let ca = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(caKey.publicKey),
            notValidBefore: now - 60, notValidAfter: now + 3600, issuer: caName, subject: caName,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                KeyUsage(keyCertSign: true)
            },
            issuerPrivateKey: .init(caKey))
        let leaf = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(leafKey.publicKey),
            notValidBefore: now - 60, notValidAfter: now + 3600, issuer: caName, subject: leafName,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                SubjectAlternativeNames([
                    .dnsName("localhost"), .ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1])),
                ])
                try ExtendedKeyUsage([.serverAuth])
            },
            issuerPrivateKey: .init(caKey))
        caPEM = try ca.serializeAsPEM().pemString + "\n"
        leafPEM = try leaf.serializeAsPEM().pemString + "\n"
        leafKeyPEM = leafKey.pemRepresentation + "\n"
    }

    /// Writes the CA to a temp file (what `CHUTES_CA_FILE` names) and returns its path.
    func writeCA() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("ca-\(UUID().uuidString).pem").path
        try caPEM.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }
}

/// A Chutes-like stub over HTTPS (test CA), requiring `apiKey`, plus the proxy configured for it.
struct ChutesHarness {
    static let apiKey = "cpk_test_\(UUID().uuidString.replacingOccurrences(of: "-", with: ""))"

    let chutes: StubUpstream
    let chutesPort: Int
    let caFile: String
    /// With `e2ee`: the stub's relay and dev instance (its TDX platform, certificate and PCCS stand-in).
    let relay: ChutesE2EEDevRelay?
    /// With `e2ee`: the port of the relay's PCCS stand-in (plain HTTP on 127.0.0.1).
    let pccsPort: Int?
    /// With `e2ee`: where the relay's root CA and measurements files were written.
    let devPKIDir: String?

    var environment: [String: String] {
        [
            "CHUTES_ENABLED": "true", "CHUTES_BASE_URL": "https://localhost:\(chutesPort)",
            "CHUTES_API_KEY": Self.apiKey, "CHUTES_CA_FILE": caFile,
        ]
    }

    /// The same, with the proxy sending completions through Chutes' E2EE transport to the stub's dev instance,
    /// and (when run with `e2ee`) verifying that instance's quotes against the relay's dev PKI: its PCCS stand-in,
    /// root CA and measurements (SPEC §7.2).
    var e2eeEnvironment: [String: String] {
        var e2ee = ["CHUTES_E2EE": "1", "CHUTES_E2E_BASE_URL": "https://localhost:\(chutesPort)"]
        if let pccsPort, let devPKIDir {
            e2ee["PCCS_URL"] = "http://127.0.0.1:\(pccsPort)"
            e2ee["TDX_ROOT_CA_FILE"] = devPKIDir + "/" + ChutesE2EEDevRelay.rootPEMFileName
            e2ee["CHUTES_TDX_MEASUREMENTS_FILE"] = devPKIDir + "/" + ChutesE2EEDevRelay.measurementsFileName
        }
        return environment.merging(e2ee) { $1 }
    }

    /// Starts the TLS stub; `stubKey` is the key it accepts (the proxy is given `apiKey`); with `e2ee` the stub
    /// also plays Chutes' E2EE relay and instance, and its PCCS stand-in runs too, with the root CA and
    /// measurements files written to a temporary directory (as `stub-vllm --pccs-port --dev-pki-dir` does).
    static func run<T: Sendable>(
        stubKey: String = apiKey, e2ee: Bool = false, _ body: (ChutesHarness) async throws -> T
    ) async throws -> T {
        let pki = try TestPKI()
        let caFile = try pki.writeCA()
        defer { try? FileManager.default.removeItem(atPath: caFile) }
        let relay = e2ee ? try ChutesE2EEDevRelay() : nil
        let stub = StubUpstream(apiKey: stubKey, e2ee: relay)
        let tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMBytes(Array(pki.leafPEM.utf8)).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(pki.leafKeyPEM.utf8), format: .pem)))
        let server = try HTTPServerBuilder.tls(StubUpstream.server, tlsConfiguration: tls)
        let quiet = { (label: String) in Logger(label: label, factory: { _ in SwiftLogNoOpLogHandler() }) }
        // Tests run the proxy inside `body`, so the proxy and its clients are gone before this stub stops.
        func runStub(pccsPort: Int?, devPKIDir: String?) async throws -> T {
            try await withRunningApp(drainLimit: abandonedAnswersDrainLimit) { onRunning in
                Application(
                    router: stub.router(), server: server,
                    configuration: .init(address: .hostname("127.0.0.1", port: 0)), onServerRunning: onRunning,
                    logger: quiet("chutes"))
            } _: { port in
                try await body(
                    ChutesHarness(
                        chutes: stub, chutesPort: port, caFile: caFile, relay: relay, pccsPort: pccsPort,
                        devPKIDir: devPKIDir))
            }
        }
        guard let relay else { return try await runStub(pccsPort: nil, devPKIDir: nil) }
        let devPKIDir = FileManager.default.temporaryDirectory.appendingPathComponent("chutes-pki-\(UUID().uuidString)")
            .path
        defer { try? FileManager.default.removeItem(atPath: devPKIDir) }
        try relay.writeDevPKI(to: devPKIDir)
        // The PCCS stand-in outlives the stub: it stops last, the same graceful way.
        return try await withRunningApp(drainLimit: abandonedAnswersDrainLimit) { onRunning in
            Application(
                router: relay.pccs.router(), configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                onServerRunning: onRunning, logger: quiet("pccs"))
        } _: { pccsPort in
            try await runStub(pccsPort: pccsPort, devPKIDir: devPKIDir)
        }
    }
}
