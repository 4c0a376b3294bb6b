/// Why an end-to-end-encrypted exchange was refused; one case per row of SPEC §4's validation table.
public enum E2EEError: Error, Equatable, Sendable {
    /// Some but not all key headers, nonce without timestamp (or the reverse), or v2 without them.
    /// The payload names what is missing.
    case headerMissing(String)
    /// `X-Signing-Algo` is neither `ecdsa` nor `ed25519`.
    case invalidSigningAlgo
    /// The named key header is not even-length hex, has the wrong length, or is not a valid point.
    case invalidPublicKey(String)
    /// `X-Model-Pub-Key` is not this instance's key for the algorithm.
    case modelKeyMismatch
    /// `X-E2EE-Version` is neither `1` nor `2`.
    case invalidVersion
    /// v2 nonce not 16–128 printable ASCII characters other than `|`.
    case invalidNonce
    /// v2 timestamp not an integer, or outside the replay window.
    case invalidTimestamp
    /// A content field that should be ciphertext is not hex; the payload is its JSON path.
    case invalidContent(String)
    /// More than `E2EECodec.maxEncryptedFields` encrypted fields: refused before any is decrypted.
    case tooManyFields
    /// Not one encrypted field: nothing proves the request came from the client, so nothing is claimed.
    case noEncryptedField
    /// A request parameter that would make the upstream return text outside the sealed fields; the
    /// payload names it.
    case unsupportedParameter(String)
    /// Authentication failure, truncated or malformed ciphertext.
    case decryptionFailed
    /// The v2 nonce and timestamp were already used.
    case replayDetected
    /// Sealing a response failed; not a client error (the client key was validated up front), so 500.
    case encryptionFailed

    /// The wire `error.type`.
    public var type: String {
        switch self {
        case .headerMissing: "e2ee_header_missing"
        case .invalidSigningAlgo: "e2ee_invalid_signing_algo"
        case .invalidPublicKey: "e2ee_invalid_public_key"
        case .modelKeyMismatch: "e2ee_model_key_mismatch"
        case .invalidVersion: "e2ee_invalid_version"
        case .invalidNonce: "e2ee_invalid_nonce"
        case .invalidTimestamp: "e2ee_invalid_timestamp"
        case .invalidContent, .tooManyFields, .noEncryptedField: "invalid_e2ee_request"
        case .unsupportedParameter: "e2ee_unsupported_parameter"
        case .decryptionFailed: "e2ee_decryption_failed"
        case .replayDetected: "e2ee_replay_detected"
        case .encryptionFailed: "e2ee_encryption_failed"
        }
    }

    /// HTTP status for the error response: 400 for every validation-table row.
    public var httpStatus: Int {
        switch self {
        case .encryptionFailed: 500
        default: 400
        }
    }

    /// Human-readable explanation; never contains plaintext, ciphertext or key material.
    public var message: String {
        switch self {
        case .headerMissing(let what): "E2EE requires \(what)"
        case .invalidSigningAlgo: "E2EE only supports X-Signing-Algo: ecdsa or ed25519"
        case .invalidPublicKey(let header): "\(header) is not a valid hex-encoded public key for the signing algorithm"
        case .modelKeyMismatch: "X-Model-Pub-Key does not match this proxy instance"
        case .invalidVersion: "Unsupported X-E2EE-Version; supported versions are 1 and 2"
        case .invalidNonce: "X-E2EE-Nonce must be 16 to 128 printable ASCII characters other than '|'"
        case .invalidTimestamp:
            "X-E2EE-Timestamp must be a unix timestamp in seconds within the allowed replay window"
        case .invalidContent(let path): "Encrypted \(path) must be hex-encoded"
        case .tooManyFields: "An E2EE request may carry at most \(E2EECodec.maxEncryptedFields) encrypted fields"
        case .noEncryptedField: "An E2EE request must carry at least one encrypted message content"
        case .unsupportedParameter(let name):
            "The request parameter \(name) would return text outside the encrypted fields and is not supported with E2EE"
        case .decryptionFailed: "Decryption of an encrypted field failed"
        case .replayDetected: "Replay detected: duplicated X-E2EE-Nonce/X-E2EE-Timestamp"
        case .encryptionFailed: "Encryption of the response failed"
        }
    }
}
