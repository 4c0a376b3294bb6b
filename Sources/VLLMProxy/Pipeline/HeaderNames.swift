import E2EE
import HTTPTypes

extension HTTPField.Name {
    static let userTier = Self("X-User-Tier")!
    static let requestHash = Self("X-Request-Hash")!
    static let e2eeApplied = Self("X-E2EE-Applied")!
    static let e2eeVersion = Self(E2EEHeaders.versionName)!
    // Made once: a name built from a string per request validates and lower-cases it each time.
    static let signingAlgo = Self(E2EEHeaders.signingAlgoName)!
    static let clientPublicKey = Self(E2EEHeaders.clientPublicKeyName)!
    static let modelPublicKey = Self(E2EEHeaders.modelPublicKeyName)!
    static let e2eeNonce = Self(E2EEHeaders.nonceName)!
    static let e2eeTimestamp = Self(E2EEHeaders.timestampName)!
    static let e2eeAlgo = Self("X-E2EE-Algo")!
    static let accelBuffering = Self("X-Accel-Buffering")!
    static let proxyUpstream = Self("X-Proxy-Upstream")!
    static let proxyUpstreamTransport = Self("X-Proxy-Upstream-Transport")!
    /// The id a proxy-named answer's signature record is stored under (audio, images).
    static let chatID = Self("X-Chat-Id")!
}
