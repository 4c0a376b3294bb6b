import Signing

/// What the attestation binds: the instance's signing identity (built by the lead from the signing keys).
public struct AttestationIdentity: Sendable {
    let ecdsaAddress: String
    let ecdsaAddressBytes: [UInt8]
    let ecdsaPublicKeyHex: String
    let ed25519PublicKey: [UInt8]
    let ed25519PublicKeyHex: String

    /// - Parameters:
    ///   - ecdsaAddress: EIP-55 `0x…` address of the secp256k1 key.
    ///   - ecdsaAddressBytes: the same address as 20 bytes.
    ///   - ecdsaPublicKeyHex: the 64-byte x‖y public key as hex.
    ///   - ed25519PublicKey: the 32-byte Ed25519 public key.
    public init(ecdsaAddress: String, ecdsaAddressBytes: [UInt8], ecdsaPublicKeyHex: String, ed25519PublicKey: [UInt8])
    {
        precondition(ecdsaAddressBytes.count == 20, "an Ethereum address is 20 bytes")
        precondition(ed25519PublicKey.count == 32, "an Ed25519 public key is 32 bytes")
        self.ecdsaAddress = ecdsaAddress
        self.ecdsaAddressBytes = ecdsaAddressBytes
        self.ecdsaPublicKeyHex = ecdsaPublicKeyHex
        self.ed25519PublicKey = ed25519PublicKey
        self.ed25519PublicKeyHex = Hex.encode(ed25519PublicKey)
    }
}

/// The raw query values of `GET /v1/attestation/report`; nil means the parameter was absent.
public struct AttestationQuery: Sendable {
    let signingAlgo: String?
    let nonce: String?
    let signingAddress: String?
    let version: String?

    /// Values exactly as they appeared in the query string (already percent-decoded).
    public init(signingAlgo: String?, nonce: String?, signingAddress: String?, version: String?) {
        self.signingAlgo = signingAlgo
        self.nonce = nonce
        self.signingAddress = signingAddress
        self.version = version
    }
}
