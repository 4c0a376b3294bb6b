import Attestation
import Crypto
import Foundation
import JSON
import TDXCollateral
import TDXVerifier
import X509

/// Checks one instance's evidence as SPEC §7.2 asks, for one nonce: the quote (§6.2) with an accepted TCB
/// status, its MRTD/RTMR0–2 in the policy, report_data[32:64] = SHA-256 of the certificate's SPKI, and each GPU
/// report answering report_data[0:32] with a chain to the NVIDIA root. report_data[0:32] = SHA-256(nonce ‖ key)
/// is checked against a listed key by `InstanceVerdict.binds`, at the moment a key is about to be used.
public struct ChutesEvidenceVerifier: Sendable {
    public typealias CollateralSource = @Sendable (TDXQuote) async throws(TDXCollateralError) -> TDXCollateral

    public let policy: MeasurementPolicy
    public let acceptedStatuses: Set<String>
    public let tdxRoot: TDXTrustRoot
    public let nvidiaRoot: NvidiaTrustRoot
    public let requireGPUEvidence: Bool
    let collateral: CollateralSource

    public init(
        policy: MeasurementPolicy, acceptedStatuses: Set<String>, tdxRoot: TDXTrustRoot, nvidiaRoot: NvidiaTrustRoot,
        requireGPUEvidence: Bool, collateral: @escaping CollateralSource
    ) {
        self.policy = policy
        self.acceptedStatuses = acceptedStatuses
        self.tdxRoot = tdxRoot
        self.nvidiaRoot = nvidiaRoot
        self.requireGPUEvidence = requireGPUEvidence
        self.collateral = collateral
    }

    /// The verdict on one entry of an evidence answer fetched with `nonce` (64 lowercase hex).
    public func verify(_ instance: ChutesEvidence.Instance, nonce: String, now: Date) async -> InstanceVerdict {
        let content: ChutesEvidence.Content
        switch instance.content {
        case .success(let decoded): content = decoded
        case .failure(let malformed):
            return InstanceVerdict(instanceID: instance.instanceID, nonce: nonce, failure: malformed.reason)
        }
        var verdict = InstanceVerdict(
            instanceID: instance.instanceID, nonce: nonce, failure: nil,
            quoteSHA256: TDXHex.encode(SHA256.hash(data: content.quote)))
        let quote: TDXQuote
        do throws(TDXVerificationError) {
            quote = try TDXQuote(parsing: content.quote)
        } catch {
            verdict.failure = error.reason
            return verdict
        }
        verdict.mrTD = TDXHex.encode(quote.body.mrTD)
        verdict.keyDigest = Array(quote.body.reportData[0..<32])
        let report: TDXVerifiedReport
        do throws(TDXCollateralError) {
            let collateral = try await collateral(quote)
            do throws(TDXVerificationError) {
                report = try TDXQuoteVerifier.verify(
                    quote: quote, collateral: collateral, now: Int64(now.timeIntervalSince1970), root: tdxRoot)
            } catch {
                verdict.failure = error.reason
                return verdict
            }
        } catch {
            verdict.failure = error.reason
            return verdict
        }
        verdict.tcbStatus = report.status
        verdict.certificateBound = certificateBinds(content.certificate, report.td.reportData)
        guard acceptedStatuses.contains(report.status) else {
            verdict.failure = "tcb_status_not_accepted"
            return verdict
        }
        guard policy.allows(report.td) else {
            verdict.failure = "measurements_not_allowed"
            return verdict
        }
        if let failure = gpuFailure(content.gpuEvidence, nonce: Array(report.td.reportData[0..<32]), now: now) {
            verdict.failure = failure
            return verdict
        }
        verdict.quoteVerified = true
        if !verdict.certificateBound { verdict.failure = "certificate_binding_mismatch" }
        return verdict
    }

    private func certificateBinds(_ der: [UInt8], _ reportData: [UInt8]) -> Bool {
        guard let certificate = try? Certificate(derEncoded: der),
            let digest = try? SubjectPublicKeyInfoDigest.sha256(certificate.publicKey)
        else { return false }
        return digest == Array(reportData[32..<64])
    }

    /// nil when every GPU report present answers `nonce` and chains to the NVIDIA root (and, with
    /// `CHUTES_REQUIRE_GPU_EVIDENCE`, there is at least one). Chutes' GPU evidence is not bound to the quote
    /// beyond sharing its nonce: see the README.
    private func gpuFailure(_ items: [JSONValue], nonce: [UInt8], now: Date) -> String? {
        guard !items.isEmpty else { return requireGPUEvidence ? "gpu_evidence_missing" : nil }
        let payload: JSONValue = [
            "nonce": .string(TDXHex.encode(nonce)), "evidence_list": .array(items),
            "arch": items.first?["arch"] ?? .null,
        ]
        do throws(GPUEvidenceError) {
            _ = try NvidiaEvidenceVerifier.verify(
                payload: String(decoding: payload.serialized(), as: UTF8.self), expectedNonce: nonce,
                now: Int64(now.timeIntervalSince1970), root: nvidiaRoot)
            return nil
        } catch {
            return error.reason
        }
    }
}

/// What the proxy concluded about one instance's evidence for one nonce.
public struct InstanceVerdict: Sendable {
    public let instanceID: String
    /// The nonce the evidence was fetched with (64 lowercase hex).
    public let nonce: String
    /// The first check that failed (a stable reason), or nil when the instance passed every check but the key
    /// binding, which `binds` makes against a listed key.
    public internal(set) var failure: String?
    public internal(set) var quoteSHA256: String = ""
    public internal(set) var mrTD: String?
    public internal(set) var tcbStatus: String?
    /// The quote verified with an accepted status, allowed measurements and valid GPU evidence.
    public internal(set) var quoteVerified = false
    /// report_data[32:64] is the SHA-256 of the certificate's SPKI.
    public internal(set) var certificateBound = false
    /// report_data[0:32], which must be SHA-256(nonce ‖ listed key).
    public internal(set) var keyDigest: [UInt8]?

    init(instanceID: String, nonce: String, failure: String?, quoteSHA256: String = "") {
        self.instanceID = instanceID
        self.nonce = nonce
        self.failure = failure
        self.quoteSHA256 = quoteSHA256
    }

    /// Every check passed: the instance may be used for a key that `binds`.
    public var passed: Bool { failure == nil }

    /// Whether report_data[0:32] is SHA-256 of the UTF-8 text `nonce ‖ key` (the key as listed, base64).
    public func binds(key: String) -> Bool {
        guard let keyDigest else { return false }
        var hasher = SHA256()
        hasher.update(data: Array(nonce.utf8))
        hasher.update(data: Array(key.utf8))
        return Array(hasher.finalize()) == keyDigest
    }
}
