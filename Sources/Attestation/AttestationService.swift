import Foundation
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
    private let e2ee: E2EEAttestation
    private let keyProvenance: KeyProvenance?
    private let logger: Logger

    /// - Parameters:
    ///   - tlsCertPath: `TLS_CERT_PATH`; nil disables version 2.
    ///   - keyProvenance: the KMS chains of the signing keys (`SIGNING_KEY_SOURCE=kms`); nil for random keys, whose
    ///     reports carry no `key_provenance`, as the Python implementation's do not.
    public init(
        identity: AttestationIdentity,
        agent: DstackClient,
        gpu: any GPUEvidenceProvider,
        tlsCertPath: String?,
        e2ee: E2EEAttestation,
        keyProvenance: KeyProvenance? = nil,
        logger: Logger
    ) {
        self.e2ee = e2ee
        self.keyProvenance = keyProvenance
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
        case "3": version = 3
        default: throw .invalidVersion
        }

        // Version 3 binds the TLS key when one is configured; version 2 requires it.
        let spkiDigest: [UInt8]? =
            switch version {
            case 2: try await tlsKeyDigest()
            case 3: certificateDigest == nil ? nil : try await tlsKeyDigest()
            default: nil
            }
        let keyList = version == 3 ? e2ee.keyList() : (config: [], id: "")
        let keyConfig = keyList.config

        async let infoResult = capture { () async throws(AttestationError) in try await agent.info() }
        let nvidiaPayload: String
        let quote: DstackClient.Quote
        if version == 3 {
            // The GPU evidence first: its nonce is public, so only its hash in this quote ties it to this report.
            nvidiaPayload = try await gpu.evidence(nonce: nonce)
            quote = try await agent.getQuote(
                reportData: ReportData.v3(
                    addressBytes: addressBytes, spkiSHA256: spkiDigest, keyConfig: keyConfig,
                    nvidiaPayload: nvidiaPayload, nonce: nonce))
        } else {
            let reportData =
                spkiDigest.map { ReportData.v2(addressBytes: addressBytes, spkiSHA256: $0, nonce: nonce) }
                ?? ReportData.v1(identity: addressBytes, nonce: nonce)
            // Independent sources: asking them at once keeps the route's latency at the slowest one.
            async let quoteResult = capture { () async throws(AttestationError) in
                try await agent.getQuote(reportData: reportData)
            }
            async let gpuResult = capture { () async throws(AttestationError) in
                try await gpu.evidence(nonce: nonce)
            }
            quote = try await quoteResult.get()
            nvidiaPayload = try await gpuResult.get()
        }
        let info = try await infoResult.get()

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
        // Not in the report data: each chain is signed by the KMS over the public key it names, so a verifier
        // checks it against the attested key and the quoted app id; a relay that edits it only makes that fail.
        if let keyProvenance {
            attestation["key_provenance"] = keyProvenance.json
        }
        if version == 3 {
            attestation["e2ee_v3_key_config"] = .string(Data(keyConfig).base64EncodedString())
            attestation["e2ee_v3_key_config_id"] = .string(keyList.id)
            attestation["e2ee_versions"] = .array(e2ee.versions.map { .integer($0) })
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

/// What attestation version 3 shows of E2EE (SPEC §6): the current v3 key list and the accepted versions.
public struct E2EEAttestation: Sendable {
    /// `K` and its id `kc` now (they rotate, so they are read per report, together).
    let keyList: @Sendable () -> (config: [UInt8], id: String)
    /// Versions accepted under `E2EE_MIN_VERSION`, ascending.
    let versions: [Int]

    public init(keyList: @escaping @Sendable () -> (config: [UInt8], id: String), versions: [Int]) {
        self.keyList = keyList
        self.versions = versions
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
