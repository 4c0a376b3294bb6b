import Signing

/// Protocol version of an encrypted exchange.
public enum E2EEVersion: Sendable, Equatable {
    /// Legacy: no AAD, no replay protection.
    case v1
    /// AAD-bound fields and replay protection. `timestamp` is the canonical decimal of the parsed
    /// header (what the AAD and the replay key contain); `nonce` is the header value as sent.
    case v2(nonce: String, timestamp: String)

    /// The `X-E2EE-Version` response header value.
    public var headerValue: String {
        switch self {
        case .v1: "1"
        case .v2: "2"
        }
    }
}

/// Whether a request uses E2EE.
public enum E2EEMode: Sendable {
    /// No E2EE headers: bodies pass in plaintext.
    case plain
    /// Validated v1/v2 E2EE headers.
    case encrypted(E2EESession)
    /// `X-E2EE-Version: 3`: the body is a sealed envelope (SPEC §4.3), opened once it has been read.
    case sealedV3

    /// The response headers every chat-completion response carries (`X-E2EE-Applied` and, when
    /// encrypted, `X-E2EE-Version` and `X-E2EE-Algo`).
    public var responseHeaders: [(name: String, value: String)] {
        switch self {
        case .plain: [("X-E2EE-Applied", "false")]
        case .encrypted(let session): session.responseHeaders
        case .sealedV3: []  // the suite is known only once the body is read: see `V3Session`
        }
    }

    /// The E2EE version this mode speaks, nil when plain; for `E2EE_MIN_VERSION`.
    public var version: Int? {
        switch self {
        case .plain: nil
        case .encrypted(let session): session.version == .v1 ? 1 : 2
        case .sealedV3: 3
        }
    }
}

/// One request's validated E2EE parameters.
public struct E2EESession: Sendable {
    public let algorithm: SigningAlgo
    public let version: E2EEVersion
    /// The client's key; responses are encrypted to it.
    public let clientKey: E2EEPublicKey

    init(algorithm: SigningAlgo, version: E2EEVersion, clientKey: E2EEPublicKey) {
        self.algorithm = algorithm
        self.version = version
        self.clientKey = clientKey
    }

    /// The shared-state key that claims this request's nonce, `{MODEL_NAME}:e2ee_replay:{algo}:{timestamp}:{nonce}`;
    /// nil for v1, which has no replay protection. Claim it only after `openRequest` succeeded.
    public func replayKey(modelName: String) -> String? {
        switch version {
        case .v1: nil
        case .v2(let nonce, let timestamp): "\(modelName):e2ee_replay:\(algorithm.rawValue):\(timestamp):\(nonce)"
        }
    }

    /// `X-E2EE-Applied: true`, `X-E2EE-Version`, `X-E2EE-Algo`.
    public var responseHeaders: [(name: String, value: String)] {
        [("X-E2EE-Applied", "true"), ("X-E2EE-Version", version.headerValue), ("X-E2EE-Algo", algorithm.rawValue)]
    }

    /// The `|n=…|ts=…` tail shared by request and response AAD; nil for v1 (no AAD).
    var aadSuffix: String? {
        switch version {
        case .v1: nil
        case .v2(let nonce, let timestamp): "|n=\(nonce)|ts=\(timestamp)"
        }
    }
}
