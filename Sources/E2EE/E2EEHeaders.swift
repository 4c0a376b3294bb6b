/// The raw E2EE request headers, exactly as received (nil when absent).
///
/// An empty or all-whitespace value counts as absent everywhere, as it did in the reference
/// implementation, where an empty header was falsy.
public struct E2EEHeaders: Sendable, Equatable {
    public static let signingAlgoName = "X-Signing-Algo"
    public static let clientPublicKeyName = "X-Client-Pub-Key"
    public static let modelPublicKeyName = "X-Model-Pub-Key"
    public static let versionName = "X-E2EE-Version"
    public static let nonceName = "X-E2EE-Nonce"
    public static let timestampName = "X-E2EE-Timestamp"
    /// Every header this type reads, for routes that must refuse E2EE or strip it before forwarding.
    public static let allNames = [
        signingAlgoName, clientPublicKeyName, modelPublicKeyName, versionName, nonceName, timestampName,
    ]

    public var signingAlgo: String?
    public var clientPublicKey: String?
    public var modelPublicKey: String?
    public var version: String?
    public var nonce: String?
    public var timestamp: String?

    public init(
        signingAlgo: String? = nil, clientPublicKey: String? = nil, modelPublicKey: String? = nil,
        version: String? = nil, nonce: String? = nil, timestamp: String? = nil
    ) {
        self.signingAlgo = signingAlgo
        self.clientPublicKey = clientPublicKey
        self.modelPublicKey = modelPublicKey
        self.version = version
        self.nonce = nonce
        self.timestamp = timestamp
    }

    /// Reads the six headers through `value(name)`, which should do a case-insensitive lookup.
    public init(_ value: (String) -> String?) {
        self.init(
            signingAlgo: value(Self.signingAlgoName), clientPublicKey: value(Self.clientPublicKeyName),
            modelPublicKey: value(Self.modelPublicKeyName), version: value(Self.versionName),
            nonce: value(Self.nonceName), timestamp: value(Self.timestampName))
    }

    /// True when `X-E2EE-Version` asks for v3, the whole-body protocol (SPEC §4.3).
    public var isVersion3: Bool { Self.present(version) == "3" }

    /// True when none of the six headers carries a value.
    public var isEmpty: Bool { !anyPresent }

    /// True when at least one of the six headers carries a value.
    public var anyPresent: Bool {
        [signingAlgo, clientPublicKey, modelPublicKey, version, nonce, timestamp].contains { Self.present($0) != nil }
    }

    /// The trimmed value, or nil when absent or blank.
    static func present(_ value: String?) -> String? {
        guard let value else { return nil }
        let trimmed = value.trimmingASCIIWhitespace()
        return trimmed.isEmpty ? nil : trimmed
    }
}

extension String {
    func trimmingASCIIWhitespace() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\n" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else {
            return ""
        }
        return String(self[first...last])
    }
}
