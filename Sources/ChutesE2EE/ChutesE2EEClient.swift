import JSON

/// One `/e2e/invoke` call as the relay expects it (headers of `chutes-e2ee` 0.1.0) minus the API key,
/// which the HTTP layer adds.
public struct InvokeRequest: Sendable {
    public let chuteID: String
    public let instanceID: String
    public let nonce: String
    public let stream: Bool
    /// The OpenAI path the instance should serve, e.g. `/v1/chat/completions`.
    public let path: String
    public let blob: [UInt8]

    /// The E2EE headers (every value a checked token or a fixed string), plus `Content-Type`.
    public var headers: [(name: String, value: String)] {
        [
            ("X-Chute-Id", chuteID), ("X-Instance-Id", instanceID), ("X-E2E-Nonce", nonce),
            ("X-E2E-Stream", stream ? "true" : "false"), ("X-E2E-Path", path),
            ("Content-Type", "application/octet-stream"),
        ]
    }
}

/// A completed invoke: the relay's response and what opening it needs.
public struct Invocation<Response: Sendable>: Sendable {
    public let response: Response
    public let responseKey: ResponseKey
    public let chuteID: String
    public let instanceID: String
    /// What was attested about the instance, when a gate admitted it.
    public let attestation: AttestedInstance?
}

/// Runs one request through Chutes' E2EE transport: model → chute, TEE-only check, nonce, seal, invoke,
/// and the one retry the relay's answers call for — 403 (nonce refused): fresh nonces, try again; 410
/// (instance gone): drop it, try another. The library itself retries neither. HTTP stays with the caller.
public struct ChutesE2EEClient: Sendable {
    public let resolver: ChuteResolver
    public let pool: NoncePool
    public let teeOnly: Bool
    /// When set, requests are sealed only to instances it admits (SPEC §7.2); else to any listed instance.
    public let gate: (any ChutesInstanceGate)?
    let observer: (any ChutesE2EEObserver)?

    public init(
        directory: any ChutesE2EEDirectory, teeOnly: Bool, gate: (any ChutesInstanceGate)? = nil,
        observer: (any ChutesE2EEObserver)? = nil
    ) {
        self.resolver = ChuteResolver(directory: directory)
        self.pool = NoncePool(directory: directory, observer: observer, gate: gate)
        self.teeOnly = teeOnly
        self.gate = gate
        self.observer = observer
    }

    public init(
        resolver: ChuteResolver, pool: NoncePool, teeOnly: Bool, gate: (any ChutesInstanceGate)? = nil,
        observer: (any ChutesE2EEObserver)? = nil
    ) {
        self.resolver = resolver
        self.pool = pool
        self.teeOnly = teeOnly
        self.gate = gate
        self.observer = observer
    }

    /// The chute for a request's `model`, refusing non-confidential ones under TEE-only; call before
    /// anything is sent.
    public func chute(for payload: JSONObject) async throws(ChutesE2EEError) -> ChuteModel {
        guard let name = payload["model"]?.stringValue, !name.isEmpty else { throw .unknownModel }
        let model = try await resolver.resolve(name)
        if teeOnly && !model.confidentialCompute { throw .notConfidential }
        return model
    }

    /// Seals `payload` for an instance of `chute` and sends it with `send`; `status` reads the answer's
    /// HTTP status. A non-2xx answer other than a first 403/410 is returned for the caller to relay.
    /// Throws a `ChutesE2EEError`, or whatever `send` threw (the transport's own errors, unchanged).
    public func invoke<Response: Sendable>(
        _ payload: JSONObject, chute: ChuteModel, stream: Bool, path: String,
        send: (InvokeRequest) async throws -> Response,
        status: (Response) -> Int
    ) async throws -> Invocation<Response> {
        var retried = false
        var admission = try await gate?.admission(chuteID: chute.chuteID, renew: false)
        var renewed = false
        while true {
            guard let ticket = try await take(chute.chuteID, admission: admission) else {
                // No listed instance is admitted: the listing moved on (a new instance, a new key) or the
                // relay swapped a key. Fetch evidence again once; if still none, nothing is sent.
                guard let gate, !renewed else {
                    throw ChutesE2EEError.attestationFailed("no listed instance is attested for its key")
                }
                renewed = true
                admission = try await gate.admission(chuteID: chute.chuteID, renew: true)
                continue
            }
            let attestation = admission?.attestation(instanceID: ticket.instanceID, key: ticket.publicKey)
            let sealed = try ticket.publicKey.seal(payload)
            let request = InvokeRequest(
                chuteID: chute.chuteID, instanceID: ticket.instanceID, nonce: ticket.nonce, stream: stream, path: path,
                blob: sealed.blob)
            let response = try await send(request)
            let code = status(response)
            if !retried && (code == 403 || code == 410) {
                retried = true
                observer?.retried(status: code)
                if code == 403 {
                    await pool.invalidate(chute.chuteID)
                } else {
                    await pool.dropInstance(chute.chuteID, instanceID: ticket.instanceID)
                }
                continue
            }
            return Invocation(
                response: response, responseKey: sealed.responseKey, chuteID: chute.chuteID,
                instanceID: ticket.instanceID, attestation: attestation)
        }
    }

    /// A nonce of an admitted instance (any listed instance without a gate); nil when a gate admits none.
    private func take(_ chuteID: String, admission: InstanceAdmission?) async throws(ChutesE2EEError) -> NonceTicket? {
        guard let admission else { return try await pool.take(chuteID) }
        do {
            return try await pool.take(chuteID) { id, key in admission.attestation(instanceID: id, key: key) != nil }
        } catch {
            guard error == .noInstances else { throw error }
            return nil
        }
    }
}
