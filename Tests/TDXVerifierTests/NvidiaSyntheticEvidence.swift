import Crypto
import Foundation
import SwiftASN1
import X509

@testable import TDXVerifier

/// A throwaway P-384 PKI (root → intermediate → two leaves) and attestation reports it signs, built the way a
/// GPU lays them out: independent of NVIDIA's sample, so it proves the signature layout on its own.
struct NvidiaSyntheticEvidence {
    static let start = Date(timeIntervalSince1970: 1_767_225_600)  // 2026-01-01
    static let end = Date(timeIntervalSince1970: 1_798_761_600)  // 2027-01-01
    static let now: Int64 = 1_780_000_000  // 2026-05-28

    let rootKey = P384.Signing.PrivateKey()
    let intermediateKey = P384.Signing.PrivateKey()
    let leafKey = P384.Signing.PrivateKey()
    let otherLeafKey = P384.Signing.PrivateKey()
    let root: Certificate
    let intermediate: Certificate
    let leaf: Certificate
    let otherLeaf: Certificate

    init() throws {
        let rootName = try DistinguishedName { CommonName("Throwaway Device Identity CA") }
        let intermediateName = try DistinguishedName { CommonName("Throwaway GPU ICA") }
        root = try Self.certificate(rootName, key: rootKey, issuer: rootName, by: rootKey, ca: true)
        intermediate = try Self.certificate(
            intermediateName, key: intermediateKey, issuer: rootName, by: rootKey, ca: true)
        leaf = try Self.certificate(
            try DistinguishedName { CommonName("Throwaway GPU leaf") }, key: leafKey, issuer: intermediateName,
            by: intermediateKey, ca: false)
        otherLeaf = try Self.certificate(
            try DistinguishedName { CommonName("Throwaway GPU other leaf") }, key: otherLeafKey,
            issuer: intermediateName, by: intermediateKey, ca: false)
    }

    static func certificate(
        _ subject: DistinguishedName, key: P384.Signing.PrivateKey, issuer: DistinguishedName,
        by issuerKey: P384.Signing.PrivateKey, ca: Bool, notValidAfter: Date = end
    ) throws -> Certificate {
        try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: Certificate.PublicKey(key.publicKey),
            notValidBefore: start, notValidAfter: notValidAfter, issuer: issuer, subject: subject,
            signatureAlgorithm: .ecdsaWithSHA384,
            extensions: try Certificate.Extensions {
                if ca { Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil)) }
            },
            issuerPrivateKey: Certificate.PrivateKey(issuerKey))
    }

    static func der(_ certificate: Certificate) throws -> [UInt8] {
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        return serializer.serializedBytes
    }

    static func pem(_ chain: [Certificate]) throws -> String {
        try chain.map { try $0.serializeAsPEM().pemString + "\n" }.joined()
    }

    func trustRoot() throws -> NvidiaTrustRoot { try NvidiaTrustRoot(der: try Self.der(root)) }

    /// Request (SPDM 1.1 GET_MEASUREMENTS, signature asked) ‖ MEASUREMENTS response with one 48-byte
    /// measurement and a driver version, signed by `key` over everything before the raw r ‖ s signature.
    static func report(nonce: [UInt8], signedBy key: P384.Signing.PrivateKey) throws -> [UInt8] {
        var bytes: [UInt8] = [0x11, 0xe0, 0x01, 0x00] + nonce + [0x00]
        let value = [UInt8](repeating: 0xab, count: 48)
        let measurement: [UInt8] = [0x01] + le(value.count, 2) + value
        let record: [UInt8] = [0x01, 0x01] + le(measurement.count, 2) + measurement
        let driver = Array("570.86.15".utf8) + [0]
        let opaque: [UInt8] = le(3, 2) + le(driver.count, 2) + driver + le(34, 2) + le(4, 2) + [1, 0, 0, 0]
        bytes += [0x11, 0x60, 0x00, 0x00, 0x01] + le(record.count, 3) + record
        bytes += [UInt8](repeating: 0x5a, count: 32) + le(opaque.count, 2) + opaque
        bytes += Array(try key.signature(for: bytes).rawRepresentation)
        return bytes
    }

    static func le(_ value: Int, _ count: Int) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
    }
}

/// Builds `nvidia_payload` text the way the proxy (and NVIDIA's collector) does.
enum NvidiaPayloadText {
    static func make(
        nonce: String, items: [(chainPEM: String, report: [UInt8], arch: String)], extra: String = ""
    ) -> String {
        let list = items.map { item in
            "{\"certificate\":\"\(Data(item.chainPEM.utf8).base64EncodedString())\","
                + "\"evidence\":\"\(Data(item.report).base64EncodedString())\",\"arch\":\"\(item.arch)\"}"
        }
        return "{\"nonce\":\"\(nonce)\",\"evidence_list\":[\(list.joined(separator: ","))],\"arch\":\"HOPPER\"\(extra)}"
    }
}
