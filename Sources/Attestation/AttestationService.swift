import JSON
import Logging
import Signing

/// Produces the `GET /v1/attestation/report` object of SPEC §6: a TDX quote and GPU evidence bound to this
/// instance's signing key and the caller's nonce.
public final class AttestationService: Sendable {
    private let identity: AttestationIdentity
    private let agent: DstackClient
    private let gpu: any GPUEvidenceProvider
    private let certificateDigest: LeafCertificateKeyDigest?
    private let logger: Logger

    /// - Parameter tlsCertPath: `TLS_CERT_PATH`; nil disables version 2.
    public init(
        identity: AttestationIdentity,
        agent: DstackClient,
        gpu: any GPUEvidenceProvider,
        tlsCertPath: String?,
        logger: Logger
    ) {
        self.identity = identity
        self.agent = agent
        self.gpu = gpu
        self.certificateDigest = tlsCertPath.map { LeafCertificateKeyDigest(path: $0, logger: logger) }
        self.logger = logger
    }

    private enum Algorithm: String {
        case ecdsa, ed25519
    }

    /// The full response object; validation failures and unavailable evidence are thrown as `AttestationError`.
    public func report(_ query: AttestationQuery) async throws(AttestationError) -> JSONValue {
        // Validation order follows the SPEC's list so a request with several faults gets a predictable answer.
        guard let algorithm = Algorithm(rawValue: query.signingAlgo ?? Algorithm.ecdsa.rawValue) else {
            throw .invalidSigningAlgo
        }
        let nonce = try Self.nonce(query.nonce)
        let (signingAddress, addressBytes, publicKeyHex) =
            switch algorithm {
            case .ecdsa: (identity.ecdsaAddress, identity.ecdsaAddressBytes, identity.ecdsaPublicKeyHex)
            case .ed25519: (identity.ed25519PublicKeyHex, identity.ed25519PublicKey, identity.ed25519PublicKeyHex)
            }
        if let requested = query.signingAddress, requested.lowercased() != signingAddress.lowercased() {
            throw .signingAddressMismatch
        }
        let version: Int
        switch query.version {
        case nil, "1": version = 1
        case "2": version = 2
        default: throw .invalidVersion
        }

        let spkiDigest = version == 2 ? try await tlsKeyDigest() : nil
        let reportData =
            spkiDigest.map { ReportData.v2(addressBytes: addressBytes, spkiSHA256: $0, nonce: nonce) }
            ?? ReportData.v1(identity: addressBytes, nonce: nonce)

        // The three sources are independent; asking them at once keeps the route's latency at the slowest one.
        async let quoteResult = capture { () async throws(AttestationError) in
            try await agent.getQuote(reportData: reportData)
        }
        async let infoResult = capture { () async throws(AttestationError) in try await agent.info() }
        async let gpuResult = capture { () async throws(AttestationError) in try await gpu.evidence(nonce: nonce) }
        let quote = try await quoteResult.get()
        let info = try await infoResult.get()
        let nvidiaPayload = try await gpuResult.get()

        var attestation = JSONObject()
        attestation["signing_address"] = .string(signingAddress)
        attestation["signing_algo"] = .string(algorithm.rawValue)
        attestation["signing_public_key"] = .string(publicKeyHex)
        attestation["request_nonce"] = .string(Hex.encode(nonce))
        attestation["intel_quote"] = .string(quote.quote)
        attestation["quote"] = .string(quote.quote)
        attestation["event_log"] = quote.eventLog
        attestation["vm_config"] = quote.vmConfig
        attestation["info"] = info
        attestation["nvidia_payload"] = .string(nvidiaPayload)
        attestation["version"] = .integer(version)
        if let spkiDigest {
            attestation["tls_cert_fingerprint"] = .string(Hex.encode(spkiDigest))
        }
        var response = attestation
        response["all_attestations"] = .array([.object(attestation)])
        logger.debug(
            "attestation report produced",
            metadata: ["signing_algo": "\(algorithm.rawValue)", "version": "\(version)"]
        )
        return .object(response)
    }

    /// Releases the GPU evidence source (NVML); call once the server has stopped.
    public func shutdown() async {
        await gpu.shutdown()
    }

    /// SHA-256 of the current TLS certificate's SubjectPublicKeyInfo, for version 2.
    private func tlsKeyDigest() async throws(AttestationError) -> [UInt8] {
        guard let certificateDigest else { throw .tlsCertificateNotConfigured }
        return try await certificateDigest.digest()
    }

    /// The caller's 32-byte nonce, or a fresh random one when the caller sent none.
    private static func nonce(_ text: String?) throws(AttestationError) -> [UInt8] {
        guard let text else {
            var generator = SystemRandomNumberGenerator()  // getrandom(2)/arc4random: a CSPRNG on every platform
            return (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        }
        guard text.utf8.count == 64, let bytes = Hex.decode(text) else { throw .invalidNonce }
        return bytes
    }
}

/// Lets `async let` carry a typed error: the child's error is kept in a `Result` instead of being erased.
private func capture<Value>(
    _ body: () async throws(AttestationError) -> Value
) async -> Result<Value, AttestationError> {
    do {
        return .success(try await body())
    } catch {
        return .failure(error)
    }
}
