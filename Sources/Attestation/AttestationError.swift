/// Why an attestation report could not be produced; each case knows its HTTP status and wire `type`.
public enum AttestationError: Error, Sendable, Equatable {
    /// `signing_algo` is neither `ecdsa` nor `ed25519`.
    case invalidSigningAlgo
    /// `nonce` is not 64 hex characters.
    case invalidNonce
    /// `version` is neither `1` nor `2`.
    case invalidVersion
    /// Version 2 was asked for but `TLS_CERT_PATH` is not set.
    case tlsCertificateNotConfigured
    /// Version 2 was asked for but the certificate at `TLS_CERT_PATH` cannot be read or parsed.
    case tlsCertificateUnreadable
    /// `signing_address` names a key this instance does not hold.
    case signingAddressMismatch
    /// The dstack guest agent could not be reached, failed, timed out or answered nonsense.
    case agentUnavailable(String)
    /// GPU evidence could not be collected.
    case gpuEvidenceUnavailable(String)

    /// HTTP status for the error body.
    public var status: Int {
        switch self {
        case .invalidSigningAlgo, .invalidNonce, .invalidVersion, .tlsCertificateNotConfigured,
            .tlsCertificateUnreadable:
            return 400
        case .signingAddressMismatch:
            return 404
        case .agentUnavailable, .gpuEvidenceUnavailable:
            return 503
        }
    }

    /// Machine-readable `type` of the error body.
    public var type: String {
        switch self {
        case .invalidSigningAlgo: return "invalid_signing_algo"
        case .invalidNonce, .invalidVersion, .tlsCertificateNotConfigured, .tlsCertificateUnreadable:
            return "invalid_request_error"
        case .signingAddressMismatch: return "not_found"
        case .agentUnavailable, .gpuEvidenceUnavailable: return "attestation_unavailable"
        }
    }

    /// Human-readable message; never carries paths, addresses of internal services or underlying error text.
    public var message: String {
        switch self {
        case .invalidSigningAlgo:
            return "Invalid signing algorithm. Must be 'ecdsa' or 'ed25519'"
        case .invalidNonce:
            return "Invalid nonce: expected 64 hex characters (32 bytes)"
        case .invalidVersion:
            return "Invalid version: must be 1 or 2"
        case .tlsCertificateNotConfigured:
            return "Attestation version 2 is not available: no TLS certificate is configured"
        case .tlsCertificateUnreadable:
            return "Attestation version 2 is not available: the TLS certificate could not be read"
        case .signingAddressMismatch:
            return "Signing address not found on this instance"
        case .agentUnavailable(let reason), .gpuEvidenceUnavailable(let reason):
            return reason
        }
    }
}
