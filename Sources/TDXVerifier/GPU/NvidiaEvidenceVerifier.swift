import Crypto
import Foundation
import X509

/// Verifies NVIDIA GPU evidence (SPEC §6.2) against the nonce asked for, a time and a trust root: a pure
/// function, no network. Per GPU: the certificate chain up to the root, the report's nonce, and the report's
/// signature by the chain's leaf. Measurements are not compared with reference values (RIM is out of scope).
public enum NvidiaEvidenceVerifier {
    public static let maxPayloadBytes = 4 << 20
    public static let maxGPUs = 16
    /// The architectures whose reports NVIDIA's verifier checks as SPDM with ECDSA P-384 / SHA-384.
    static let architectures: Set<String> = ["HOPPER", "BLACKWELL"]

    public static func verify(
        payload: String, expectedNonce: [UInt8], now: Int64, root: NvidiaTrustRoot
    ) throws(GPUEvidenceError) -> NvidiaVerdict {
        guard payload.utf8.count <= maxPayloadBytes else { throw .payloadTooLarge }
        let decoded = try NvidiaPayload(json: payload)
        // Strictly 64 hex digits: `TDXHex.decode` would also take a `0x` prefix.
        guard decoded.nonce.utf8.count == 64, let nonce = TDXHex.decode(decoded.nonce), nonce.count == 32 else {
            throw .malformedNonce
        }
        guard nonce == expectedNonce else { throw .nonceMismatch }
        guard decoded.evidenceList.count <= maxGPUs else { throw .tooManyGPUs }
        var gpus: [NvidiaGPUVerdict] = []
        for (index, item) in decoded.evidenceList.enumerated() {
            gpus.append(try verify(item, index: index, expectedNonce: expectedNonce, now: now, root: root))
        }
        return NvidiaVerdict(
            gpus: gpus, noGPUEvidence: gpus.isEmpty, noGPUModeClaimed: decoded.noGPUMode ?? false,
            arch: decoded.arch, rootCA: root.name)
    }

    private static func verify(
        _ item: NvidiaPayload.Item, index: Int, expectedNonce: [UInt8], now: Int64, root: NvidiaTrustRoot
    ) throws(GPUEvidenceError) -> NvidiaGPUVerdict {
        guard architectures.contains(item.arch) else { throw .unsupportedArchitecture("GPU \(index): \(item.arch)") }
        guard let pem = Data(base64Encoded: item.certificate) else {
            throw .malformedCertificateChain("GPU \(index): certificate is not base64")
        }
        let chain = try NvidiaCertificateChain(pem: Array(pem), gpu: index)
        try chain.verify(root: root, now: now, gpu: index)

        guard let evidence = Data(base64Encoded: item.evidence) else {
            throw .malformedEvidence("GPU \(index): evidence is not base64")
        }
        let report: SPDMAttestationReport
        do {
            report = try SPDMAttestationReport(parsing: Array(evidence))
        } catch {
            throw .malformedEvidence("GPU \(index): \(error.detail)")
        }
        // The request's nonce is the one the GPU was asked with, and the signature covers it (NVIDIA's
        // verifier compares this one; the response's own nonce is the GPU's).
        guard report.requestNonce == expectedNonce else {
            throw .reportNonceMismatch("GPU \(index): the report answers another nonce")
        }
        guard let key = P384.Signing.PublicKey(chain.leaf.publicKey) else {
            throw .reportSignatureInvalid("GPU \(index): the leaf's key is not P-384")
        }
        guard let signature = try? P384.Signing.ECDSASignature(rawRepresentation: report.signature),
            key.isValidSignature(signature, for: report.signedBytes)
        else { throw .reportSignatureInvalid("GPU \(index): the report is not signed by the leaf") }

        return NvidiaGPUVerdict(
            index: index, arch: item.arch, leafSubject: "\(chain.leaf.subject)",
            leafSerialNumber: TDXHex.encode(chain.leaf.serialNumber.bytes), certificateCount: chain.certificates.count,
            spdmVersion: report.spdmVersion, measurementBlockCount: report.measurementBlockCount,
            driverVersion: report.driverVersion)
    }
}
