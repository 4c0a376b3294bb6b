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

    var environment: [String: String] {
        [
            "CHUTES_ENABLED": "true", "CHUTES_BASE_URL": "https://localhost:\(chutesPort)",
            "CHUTES_API_KEY": Self.apiKey, "CHUTES_CA_FILE": caFile,
        ]
    }

    /// The same, with the proxy sending completions through Chutes' E2EE transport to the stub's dev instance.
    var e2eeEnvironment: [String: String] {
        environment.merging(["CHUTES_E2EE": "1", "CHUTES_E2E_BASE_URL": "https://localhost:\(chutesPort)"]) { $1 }
    }

    /// Starts the TLS stub; `stubKey` is the key it accepts (the proxy is given `apiKey`); with `e2ee` the stub
    /// also plays Chutes' E2EE relay and instance.
    static func run<T: Sendable>(
        stubKey: String = apiKey, e2ee: Bool = false, _ body: (ChutesHarness) async throws -> T
    ) async throws -> T {
        let pki = try TestPKI()
        let caFile = try pki.writeCA()
        defer { try? FileManager.default.removeItem(atPath: caFile) }
        let stub = StubUpstream(apiKey: stubKey, e2ee: e2ee ? try ChutesE2EEDevRelay() : nil)
        let tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMBytes(Array(pki.leafPEM.utf8)).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(pki.leafKeyPEM.utf8), format: .pem)))
        let server = try HTTPServerBuilder.tls(StubUpstream.server, tlsConfiguration: tls)
        // Tests run the proxy inside `body`, so the proxy and its clients are gone before this stub stops.
        return try await withRunningApp(drainLimit: abandonedAnswersDrainLimit) { onRunning in
            Application(
                router: stub.router(), server: server, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                onServerRunning: onRunning, logger: Logger(label: "chutes", factory: { _ in SwiftLogNoOpLogHandler() }))
        } _: { port in
            try await body(ChutesHarness(chutes: stub, chutesPort: port, caFile: caFile))
        }
    }
}
