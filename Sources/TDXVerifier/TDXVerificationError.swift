/// Why a quote did not verify; each check has its own case, and `reason` is the stable string
/// `verify-quote` prints.
public enum TDXVerificationError: Error, Sendable, Equatable {
    case malformedQuote
    case unsupportedQuote(String)
    case malformedCollateral(String)

    public var reason: String {
        switch self {
        case .malformedQuote: "malformed_quote"
        case .unsupportedQuote: "unsupported_quote"
        case .malformedCollateral: "malformed_collateral"
        }
    }
}
