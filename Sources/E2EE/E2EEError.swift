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
    /// More than `E2EESessionPolicy.maxEncryptedFields` encrypted fields: refused before any is decrypted.
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
    /// An E2EE request of a version below `E2EE_MIN_VERSION`.
    case versionNotAllowed(minimum: Int)
    /// v3, step 1: v1/v2 headers beside `X-E2EE-Version: 3`, a body not of the envelope's exact shape, `req`
    /// too short or naming a suite the key list does not offer; or an `e2ee` body without the v3 header.
    case v3Malformed
    /// v3, step 2: `ts` further than the replay window from now.
    case v3InvalidTimestamp
    /// v3, step 3: `kc` is not one of this instance's key lists (the client should attest again).
    case keyUnknown
    /// v3, step 5: the opened request is not a JSON object, or its `model`/`stream` differ from the envelope's.
    case v3EnvelopeMismatch
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
        case .invalidTimestamp, .v3InvalidTimestamp: "e2ee_invalid_timestamp"
        case .invalidContent, .tooManyFields, .noEncryptedField, .v3Malformed, .v3EnvelopeMismatch:
            "invalid_e2ee_request"
        case .versionNotAllowed: "e2ee_version_not_allowed"
        case .keyUnknown: "e2ee_key_unknown"
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
        case .invalidVersion: "Unsupported X-E2EE-Version; supported versions are 1, 2 and 3"
        case .versionNotAllowed(let minimum): "This proxy accepts E2EE version \(minimum) or later only"
        case .v3Malformed:
            "An E2EE v3 request is X-E2EE-Version: 3 without the v1/v2 headers and a body of exactly "
                + "{\"model\", \"stream\", \"e2ee\": {\"v\": 3, \"kc\", \"ts\", \"req\"}} with a suite the key list offers"
        case .v3InvalidTimestamp: "The E2EE v3 ts is not within the allowed window of the proxy's clock"
        case .keyUnknown: "The E2EE v3 key config is not this instance's; fetch attestation again"
        case .v3EnvelopeMismatch: "The sealed request is not a JSON object matching the envelope's model and stream"
        case .invalidNonce: "X-E2EE-Nonce must be 16 to 128 printable ASCII characters other than '|'"
        case .invalidTimestamp:
            "X-E2EE-Timestamp must be a unix timestamp in seconds within the allowed replay window"
        case .invalidContent(let path): "Encrypted \(path) must be hex-encoded"
        case .tooManyFields:
            "An E2EE request may carry at most \(E2EESessionPolicy.maxEncryptedFields) encrypted fields"
        case .noEncryptedField: "An E2EE request must carry at least one encrypted message content"
        case .unsupportedParameter(let name):
            "The request parameter \(name) would return text outside the encrypted fields and is not supported with E2EE"
        case .decryptionFailed: "Decryption of an encrypted field failed"
        case .replayDetected: "Replay detected: duplicated X-E2EE-Nonce/X-E2EE-Timestamp"
        case .encryptionFailed: "Encryption of the response failed"
        }
    }
}
