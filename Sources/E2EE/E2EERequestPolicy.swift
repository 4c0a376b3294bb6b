import JSON

/// Which request parameters an E2EE request may not carry (SPEC §4, "Confidentiality under a hostile
/// gateway"): those that make the upstream return prompt- or generation-derived text outside the sealed
/// fields. The gateway can add any of them, since v1/v2 authenticate message contents only.
///
/// "Present" means any value other than absent, `null`, or the one value that asks for nothing
/// (`false` for flags, `0` for `top_logprobs`, `"none"` for tool choice): upstreams coerce loosely
/// (pydantic reads `"true"` and `1` as true), so every other value is refused rather than guessed at.
public enum E2EERequestPolicy {
    /// The refused parameters, in the order they are checked, each with the value that is harmless.
    static let refused: [(name: String, harmless: Harmless)] = [
        ("logprobs", .falseFlag),
        ("top_logprobs", .zero),
        ("prompt_logprobs", .nothing),
        ("echo", .falseFlag),
        ("return_token_ids", .falseFlag),
        ("return_tokens_as_token_ids", .falseFlag),
        ("tool_choice", .noneChoice),
        ("function_call", .noneChoice),
    ]

    /// Besides `null`, the value of a refused parameter that asks for nothing.
    enum Harmless {
        case falseFlag, zero, nothing, noneChoice

        func accepts(_ value: JSONValue) -> Bool {
            if value.isNull { return true }
            switch self {
            case .falseFlag: return value == .bool(false)
            case .zero:
                guard case .number(let literal) = value, let number = Double(literal) else { return false }
                return number == 0
            case .nothing: return false
            case .noneChoice: return value == .string("none")
            }
        }
    }

    /// Throws `unsupportedParameter` naming the first refused parameter `request` carries. Tool
    /// definitions (`tools`, legacy `functions`) are refused unless `tool_choice` is `"none"`, since the
    /// model may then only answer in `content`: tool-call arguments are generated text that v1/v2 clients
    /// could not decrypt if they were sealed.
    public static func refuseUnsupportedParameters(in request: JSONObject) throws(E2EEError) {
        for (name, harmless) in refused {
            if let value = request[name], !harmless.accepts(value) { throw .unsupportedParameter(name) }
        }
        // Only `tool_choice` switches tools off everywhere; with tools given and no choice, upstreams default to "auto".
        guard request["tool_choice"] != .string("none") else { return }
        for name in ["tools", "functions"] {
            guard let value = request[name], !value.isNull, value != .array([]) else { continue }
            throw .unsupportedParameter(name)
        }
    }
}
