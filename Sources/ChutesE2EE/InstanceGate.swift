/// What the proxy established about an instance before sealing a request to it (SPEC §7.2), as its receipt
/// records it under `chutes_attestation`.
public struct AttestedInstance: Sendable, Equatable {
    public let instanceID: String
    /// MRTD of the verified quote, lowercase hex.
    public let mrTD: String
    public let tcbStatus: String
    /// SHA-256 of the quote bytes, lowercase hex.
    public let quoteSHA256: String
    /// When the quote verified, RFC 3339 UTC.
    public let verifiedAt: String

    public init(instanceID: String, mrTD: String, tcbStatus: String, quoteSHA256: String, verifiedAt: String) {
        self.instanceID = instanceID
        self.mrTD = mrTD
        self.tcbStatus = tcbStatus
        self.quoteSHA256 = quoteSHA256
        self.verifiedAt = verifiedAt
    }
}

/// The instances of one chute a request may be sealed to, as the gate saw them at one moment: a listed
/// (instance id, key) pair passes only when it is attested, and then yields what was attested.
public struct InstanceAdmission: Sendable {
    private let admit: @Sendable (_ instanceID: String, _ publicKeyBase64: String) -> AttestedInstance?

    public init(_ admit: @escaping @Sendable (_ instanceID: String, _ publicKeyBase64: String) -> AttestedInstance?) {
        self.admit = admit
    }

    /// The attestation of this instance for exactly this listed key, or nil: not attested, or attested for
    /// another key (a relay that swaps keys after verification is refused here).
    public func attestation(instanceID: String, key: InstancePublicKey) -> AttestedInstance? {
        admit(instanceID, key.base64)
    }
}

/// Decides which instances requests may be sealed to. The proxy's implementation verifies each instance's
/// TDX evidence (ChutesAttestation); without one, every listed instance is used (`CHUTES_VERIFY_ATTESTATION`
/// off).
public protocol ChutesInstanceGate: Sendable {
    /// The admission for a chute: cached, or after an evidence fetch shared with concurrent callers. `renew`:
    /// the cached one admitted no listed instance, so fetch again (unless a fetch was made a moment ago).
    /// Throws `.attestationFailed` when no instance can be admitted.
    func admission(chuteID: String, renew: Bool) async throws(ChutesE2EEError) -> InstanceAdmission

    /// The relay's latest listing for the chute names exactly these instances: others are forgotten.
    func listed(chuteID: String, instanceIDs: Set<String>) async
}
