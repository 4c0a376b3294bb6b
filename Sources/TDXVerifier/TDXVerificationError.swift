/// Why a quote did not verify: one case per check of SPEC §6.2, each failing closed. `reason` is the stable
/// string `verify-quote` prints; `detail` says more, for people.
public enum TDXVerificationError: Error, Sendable, Equatable {
    case malformedQuote
    case unsupportedQuote(String)
    case malformedCollateral(String)
    case invalidPCKCertificate(String)
    case unknownQEVendor
    case rootCARevocationInvalid(String)
    case certificateChainInvalid(String)
    case certificateNotValidAtTime(String)
    case certificateRevoked(String)
    case crlMissing(String)
    case crlNotValidAtTime(String)
    /// A CRL that parses but must not be used: not version 2, its two signature algorithms differ, a delta or
    /// indirect CRL, or a critical extension not understood (RFC 5280 §5.2; dcap-qvl's webpki refuses the same).
    case crlInvalid(String)
    case tcbInfoInvalid(String)
    case tcbInfoNotValidAtTime
    case tcbInfoSignatureInvalid
    case qeIdentityInvalid(String)
    case qeIdentityNotValidAtTime
    case qeIdentitySignatureInvalid
    case qeReportSignatureInvalid
    case qeReportDataMismatch
    case qeIdentityMismatch(String)
    case qeTCBBelowMinimum
    case quoteSignatureInvalid
    case fmspcMismatch
    case pceIDMismatch
    case tcbLevelNotFound
    case tdxModuleMismatch(String)
    case tdxModuleBelowMinimum
    case tcbRevoked
    case tdAttributesNotAllowed(String)
    case mrServiceTDNotZero
    case tcbStatusNotAccepted(String)

    public var reason: String {
        switch self {
        case .malformedQuote: "malformed_quote"
        case .unsupportedQuote: "unsupported_quote"
        case .malformedCollateral: "malformed_collateral"
        case .invalidPCKCertificate: "invalid_pck_certificate"
        case .unknownQEVendor: "unknown_qe_vendor"
        case .rootCARevocationInvalid: "root_ca_crl_invalid"
        case .certificateChainInvalid: "certificate_chain_invalid"
        case .certificateNotValidAtTime: "certificate_not_valid_at_time"
        case .certificateRevoked: "certificate_revoked"
        case .crlMissing: "crl_missing"
        case .crlNotValidAtTime: "crl_not_valid_at_time"
        case .crlInvalid: "crl_invalid"
        case .tcbInfoInvalid: "tcb_info_invalid"
        case .tcbInfoNotValidAtTime: "tcb_info_not_valid_at_time"
        case .tcbInfoSignatureInvalid: "tcb_info_signature_invalid"
        case .qeIdentityInvalid: "qe_identity_invalid"
        case .qeIdentityNotValidAtTime: "qe_identity_not_valid_at_time"
        case .qeIdentitySignatureInvalid: "qe_identity_signature_invalid"
        case .qeReportSignatureInvalid: "qe_report_signature_invalid"
        case .qeReportDataMismatch: "qe_report_data_mismatch"
        case .qeIdentityMismatch: "qe_identity_mismatch"
        case .qeTCBBelowMinimum: "qe_tcb_below_minimum"
        case .quoteSignatureInvalid: "quote_signature_invalid"
        case .fmspcMismatch: "fmspc_mismatch"
        case .pceIDMismatch: "pce_id_mismatch"
        case .tcbLevelNotFound: "tcb_level_not_found"
        case .tdxModuleMismatch: "tdx_module_mismatch"
        case .tdxModuleBelowMinimum: "tdx_module_below_minimum"
        case .tcbRevoked: "tcb_revoked"
        case .tdAttributesNotAllowed: "td_attributes_not_allowed"
        case .mrServiceTDNotZero: "mr_service_td_not_zero"
        case .tcbStatusNotAccepted: "tcb_status_not_accepted"
        }
    }
}
