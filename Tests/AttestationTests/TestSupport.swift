import AsyncHTTPClient
import Attestation
import Crypto
import DevStubs
import Foundation
import JSON
import Logging
import Signing
import SwiftASN1
import Testing
import X509

/// `Tests/Vectors/report_data.json`, produced by an independent implementation.
struct ReportDataVectors {
    let nonce: [UInt8]
    let ecdsaAddress: String
    let ecdsaV1: [UInt8]
    let ed25519PublicKey: [UInt8]
    let ed25519V1: [UInt8]
    let spkiSHA256: [UInt8]
    let ecdsaV2: [UInt8]

    static func load() throws -> ReportDataVectors {
        let url = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Vectors/report_data.json")
        let json = try JSONValue(parsing: Array(try Data(contentsOf: url)))
        func hex(_ section: String?, _ key: String) throws -> [UInt8] {
            let value = section.map { json[$0]?[key] } ?? json[key]
            return try #require(value?.stringValue.flatMap { Hex.decode($0) })
        }
        return ReportDataVectors(
            nonce: try hex(nil, "nonce"),
            ecdsaAddress: try #require(json["ecdsa_v1"]?["address"]?.stringValue),
            ecdsaV1: try hex("ecdsa_v1", "report_data"),
            ed25519PublicKey: try hex("ed25519_v1", "public_key"),
            ed25519V1: try hex("ed25519_v1", "report_data"),
            spkiSHA256: try hex("ecdsa_v2", "spki_sha256"),
            ecdsaV2: try hex("ecdsa_v2", "report_data")
        )
    }

    var ecdsaAddressBytes: [UInt8] { Hex.decode(ecdsaAddress.dropFirst(2))! }

    /// The vectors' keys as this instance's identity; the ecdsa public key is not part of any report data.
    var identity: AttestationIdentity {
        AttestationIdentity(
            ecdsaAddress: ecdsaAddress,
            ecdsaAddressBytes: ecdsaAddressBytes,
            ecdsaPublicKeyHex: String(repeating: "ab", count: 64),
            ed25519PublicKey: ed25519PublicKey
        )
    }
}

/// A directory under the system temp dir, removed when the test is done with it.
final class TemporaryDirectory: Sendable {
    let path: String

    init() throws {
        // Short: unix socket paths are limited to ~104 bytes.
        path = "/tmp/att-" + String(UUID().uuidString.prefix(8)).lowercased()
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> String { path + "/" + name }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// How the test reaches the stand-in agent.
enum Transport: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case unixSocket, tcp
    var testDescription: String { rawValue }
}

/// Runs a `DevAttestationAgent` for the duration of `body` and hands over a client pointed at it.
func withAgent<T: Sendable>(
    _ transport: Transport,
    behaviour: DevAttestationAgent.Behaviour = .normal,
    timeout: Duration = .seconds(5),
    _ body: (DstackClient, DevAttestationRecorder) async throws -> T
) async throws -> T {
    let directory = try TemporaryDirectory()
    let recorder = DevAttestationRecorder()
    // The agent's own logs are not what these tests check.
    var agentLogger = Logger(label: "test-dev-agent")
    agentLogger.logLevel = .critical
    let logger = Logger(label: "test-dstack-client")
    let address: DevAttestationAgent.Address =
        switch transport {
        case .unixSocket: .unixSocket(path: directory.file("dstack.sock"))
        case .tcp: .tcp(host: "127.0.0.1", port: 0)
        }
    let agent = DevAttestationAgent(address: address, behaviour: behaviour, recorder: recorder, logger: agentLogger)
    // The client is the process-wide one: its idle connections are closed by the agent's graceful stop, and a
    // request still in flight then is one the test gave up on (the slow agent), so it gets a short drain.
    return try await withGracefullyStoppedServer(drainLimit: .seconds(2)) { onRunning in
        { try await agent.run(onServerRunning: onRunning) }
    } _: { port in
        let endpoint: DstackClient.Endpoint =
            switch transport {
            case .unixSocket: DstackClient.Endpoint(parsing: directory.file("dstack.sock"))
            case .tcp: DstackClient.Endpoint(parsing: "http://127.0.0.1:\(try #require(port))")
            }
        let client = DstackClient(endpoint: endpoint, httpClient: .shared, timeout: timeout, logger: logger)
        return try await body(client, recorder)
    }
}

/// A self-signed P-256 certificate, PEM; also the SPKI DER of its key, computed by swift-crypto independently
/// of the certificate parsing under test.
func makeCertificate(commonName: String) throws -> (pem: String, spkiDER: [UInt8]) {
    let key = P256.Signing.PrivateKey()
    let name = try DistinguishedName { CommonName(commonName) }
    let now = Date()
    let certificate = try Certificate(
        version: .v3,
        serialNumber: Certificate.SerialNumber(),
        publicKey: Certificate.PublicKey(key.publicKey),
        notValidBefore: now.addingTimeInterval(-60),
        notValidAfter: now.addingTimeInterval(3600),
        issuer: name,
        subject: name,
        signatureAlgorithm: .ecdsaWithSHA256,
        extensions: Certificate.Extensions {},
        issuerPrivateKey: Certificate.PrivateKey(key)
    )
    return (try certificate.serializeAsPEM().pemString + "\n", Array(key.publicKey.derRepresentation))
}

/// A fixed E2EE v3 key list for attestation tests (its bytes only matter to version 3 reports).
let testE2EEAttestation = E2EEAttestation(keyList: { (Array("test K".utf8), "test kc") }, versions: [1, 2, 3])
