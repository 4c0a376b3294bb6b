import Crypto
import Foundation
import Signing
import Testing

/// Shape of `Tests/Vectors/signing.json`.
struct SigningVectors: Decodable {
    struct TextSignature: Decodable {
        let text: String
        let signature: String
    }
    struct KeccakCase: Decodable {
        let input_hex: String
        let digest: String
    }
    let secp256k1_private_key: String
    let secp256k1_public_key_64: String
    let ethereum_address_eip55: String
    let ecdsa: [TextSignature]
    let ed25519_seed: String
    let ed25519_public_key: String
    let ed25519: [TextSignature]
    let keccak256: [KeccakCase]

    static func load() throws -> SigningVectors {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Vectors/signing.json")
        return try JSONDecoder().decode(SigningVectors.self, from: Data(contentsOf: url))
    }

    func signingKeys() throws -> SigningKeys {
        SigningKeys(
            secp256k1: try Secp256k1PrivateKey(rawRepresentation: Hex.decode(secp256k1_private_key)!),
            ed25519: try Curve25519.Signing.PrivateKey(rawRepresentation: Hex.decode(ed25519_seed)!))
    }
}

@Suite struct SigningVectorTests {
    let vectors: SigningVectors

    init() throws {
        vectors = try SigningVectors.load()
    }

    @Test func keccakDigests() throws {
        #expect(vectors.keccak256.count >= 5)
        for vector in vectors.keccak256 {
            let input = try #require(Hex.decode(vector.input_hex))
            #expect(Hex.encode(Keccak256.hash(input)) == vector.digest, "input length \(input.count)")
        }
    }

    @Test func keccakAcceptsAnyCollection() throws {
        let bytes = Array("abc".utf8)
        #expect(Keccak256.hash(bytes[...]) == Keccak256.hash(bytes))
        #expect(Keccak256.hash("abc".utf8) == Keccak256.hash(bytes))
    }

    @Test func keccakRateBoundaries() {
        // Around the 136-byte rate the padding lands in the last byte (0x81) or spills into a new
        // block; every length must still give a distinct digest.
        let digests = (130...142).map { Hex.encode(Keccak256.hash([UInt8](repeating: 0x61, count: $0))) }
        #expect(Set(digests).count == digests.count)
    }

    @Test func publicKeyAndAddress() throws {
        let keys = try vectors.signingKeys()
        #expect(Hex.encode(keys.secp256k1.publicKey.raw64) == vectors.secp256k1_public_key_64)
        #expect(keys.secp256k1.publicKey.uncompressed65 == [0x04] + keys.secp256k1.publicKey.raw64)
        #expect(keys.ecdsaPublicKeyHex == vectors.secp256k1_public_key_64)
        #expect(keys.ecdsaAddress == vectors.ethereum_address_eip55)
        #expect(keys.address(for: .ecdsa) == vectors.ethereum_address_eip55)
        #expect(keys.ecdsaAddressBytes == Hex.decode(vectors.ethereum_address_eip55.dropFirst(2)))
        #expect(keys.ed25519Address == vectors.ed25519_public_key)
        #expect(keys.address(for: .ed25519) == vectors.ed25519_public_key)
        #expect(keys.publicKeyHex(for: .ed25519) == vectors.ed25519_public_key)
        #expect(keys.publicKeyHex(for: .ecdsa) == vectors.secp256k1_public_key_64)
    }

    @Test func ecdsaSignaturesMatchByteForByte() throws {
        let keys = try vectors.signingKeys()
        #expect(vectors.ecdsa.count == 4)
        for vector in vectors.ecdsa {
            #expect(keys.signECDSA(vector.text) == vector.signature, "text \(vector.text)")
        }
    }

    @Test func ecdsaSignaturesRecoverToAddress() throws {
        let keys = try vectors.signingKeys()
        for vector in vectors.ecdsa {
            let signature = try #require(Hex.decode(vector.signature.dropFirst(2)))
            let digest = EIP191.digest(Array(vector.text.utf8))
            let recovered = try Secp256k1PublicKey.recover(signature: signature, digest: digest)
            #expect(recovered == keys.secp256k1.publicKey)
            #expect(EthereumAddress.checksummed(EthereumAddress.bytes(of: recovered)) == keys.ecdsaAddress)
        }
    }

    @Test func ed25519SignaturesMatchByteForByte() throws {
        let keys = try vectors.signingKeys()
        #expect(vectors.ed25519.count == 4)
        for vector in vectors.ed25519 {
            let signature = keys.signEd25519(vector.text)
            #expect(signature == vector.signature, "text \(vector.text)")
            let raw = try #require(Hex.decode(signature))
            #expect(keys.ed25519.publicKey.isValidSignature(raw, for: Array(vector.text.utf8)))
        }
    }
}
