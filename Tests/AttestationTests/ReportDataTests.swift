import Attestation
import Crypto
import Foundation
import Signing
import Testing

@Suite struct ReportDataTests {
    let vectors: ReportDataVectors

    init() throws { vectors = try ReportDataVectors.load() }

    @Test func v1EcdsaPadsTheTwentyByteAddress() {
        let data = ReportData.v1(identity: vectors.ecdsaAddressBytes, nonce: vectors.nonce)
        #expect(data == vectors.ecdsaV1)
        #expect(data.count == 64)
    }

    @Test func v1Ed25519UsesTheWholePublicKey() {
        #expect(ReportData.v1(identity: vectors.ed25519PublicKey, nonce: vectors.nonce) == vectors.ed25519V1)
    }

    @Test func v2HashesAddressAndSPKIDigest() {
        let data = ReportData.v2(
            addressBytes: vectors.ecdsaAddressBytes, spkiSHA256: vectors.spkiSHA256, nonce: vectors.nonce)
        #expect(data == vectors.ecdsaV2)
    }

    @Test func v2FromDERHashesTheDERFirst() {
        let der: [UInt8] = Array("not really DER, only bytes to hash".utf8)
        let fromDER = ReportData.v2(addressBytes: vectors.ecdsaAddressBytes, spkiDER: der, nonce: vectors.nonce)
        let fromDigest = ReportData.v2(
            addressBytes: vectors.ecdsaAddressBytes,
            spkiSHA256: Array(SHA256.hash(data: der)),
            nonce: vectors.nonce
        )
        #expect(fromDER == fromDigest)
        #expect(Array(fromDER.suffix(32)) == vectors.nonce)
    }

    /// Version 3 against the independent implementation's known answers (shared/vectors/e2ee_v3.json).
    @Test func v3IdentityMatchesTheIndependentVectors() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Vectors/e2ee_v3_independent.json")
        let root = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        let v3 = try #require(root["identity_v3"] as? [String: String])
        let addressHex = try #require(v3["signing_address"])
        let kHex = try #require(root["K"] as? String)
        let address = try #require(Hex.decode(String(addressHex.dropFirst(2))))
        let k = try #require(Hex.decode(kHex))
        let spki = try #require(Hex.decode(v3["spki_sha256"] ?? ""))
        let nonce = try #require(Hex.decode(v3["nonce"] ?? ""))
        let full = ReportData.v3(
            addressBytes: address, spkiSHA256: spki, keyConfig: k, nvidiaPayload: v3["nvidia_payload"], nonce: nonce)
        #expect(Hex.encode(full) == v3["report_data"])
        let bare = ReportData.v3Identity(addressBytes: address, spkiSHA256: nil, keyConfig: k, nvidiaPayloadSHA256: nil)
        #expect(Hex.encode(bare) == v3["identity_v3_without_tls_and_gpu"])
    }
}
