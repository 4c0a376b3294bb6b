import Attestation
import Crypto
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
}
