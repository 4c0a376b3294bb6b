/// Why NVIDIA GPU evidence did not verify (SPEC §6.2): one case per check, each failing closed. `reason` is the
/// stable machine-readable string; `detail` says more, for people (which GPU, which certificate).
public enum GPUEvidenceError: Error, Sendable, Equatable {
    case payloadTooLarge
    case malformedPayload(String)
    case malformedNonce
    case nonceMismatch
    case tooManyGPUs
    case unsupportedArchitecture(String)
    case malformedCertificateChain(String)
    case certificateChainTooLong(String)
    case certificateChainInvalid(String)
    case certificateNotValidAtTime(String)
    case rootNotTrusted(String)
    case malformedEvidence(String)
    case reportNonceMismatch(String)
    case reportSignatureInvalid(String)
    case invalidTrustRoot(String)

    public var reason: String {
        switch self {
        case .payloadTooLarge: "gpu_payload_too_large"
        case .malformedPayload: "gpu_payload_malformed"
        case .malformedNonce: "gpu_payload_nonce_malformed"
        case .nonceMismatch: "gpu_payload_nonce_mismatch"
        case .tooManyGPUs: "gpu_too_many"
        case .unsupportedArchitecture: "gpu_architecture_unsupported"
        case .malformedCertificateChain: "gpu_certificate_chain_malformed"
        case .certificateChainTooLong: "gpu_certificate_chain_too_long"
        case .certificateChainInvalid: "gpu_certificate_chain_invalid"
        case .certificateNotValidAtTime: "gpu_certificate_not_valid_at_time"
        case .rootNotTrusted: "gpu_root_not_trusted"
        case .malformedEvidence: "gpu_evidence_malformed"
        case .reportNonceMismatch: "gpu_report_nonce_mismatch"
        case .reportSignatureInvalid: "gpu_report_signature_invalid"
        case .invalidTrustRoot: "gpu_trust_root_invalid"
        }
    }

    public var detail: String {
        switch self {
        case .payloadTooLarge: "the payload is larger than \(NvidiaEvidenceVerifier.maxPayloadBytes) bytes"
        case .malformedNonce: "the payload's nonce is not 64 hex digits"
        case .nonceMismatch: "the payload's nonce is not the one asked for"
        case .tooManyGPUs: "more than \(NvidiaEvidenceVerifier.maxGPUs) GPUs"
        case .malformedPayload(let why), .unsupportedArchitecture(let why), .malformedCertificateChain(let why),
            .certificateChainTooLong(let why), .certificateChainInvalid(let why), .certificateNotValidAtTime(let why),
            .rootNotTrusted(let why), .malformedEvidence(let why), .reportNonceMismatch(let why),
            .reportSignatureInvalid(let why), .invalidTrustRoot(let why):
            why
        }
    }
}
