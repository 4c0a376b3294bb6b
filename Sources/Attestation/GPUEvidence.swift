import Foundation
import JSON
import Logging
import Signing

/// Source of the `nvidia_payload` JSON string for one attestation nonce.
public protocol GPUEvidenceProvider: Sendable {
    /// The payload `{"nonce", "evidence_list", "arch"}` serialised as JSON text, bound to `nonce` (32 bytes).
    func evidence(nonce: [UInt8]) async throws(AttestationError) -> String
    /// Releases what the provider holds (NVML's initialisation); called once at process end.
    func shutdown() async
}

extension GPUEvidenceProvider {
    public func shutdown() async {}
}

/// Development stand-in for machines without a confidential GPU (`GPU_NO_HW_MODE`): an empty, clearly marked list.
public struct NoGPUEvidence: GPUEvidenceProvider {
    /// Creates the provider; it holds no state.
    public init() {}

    public func evidence(nonce: [UInt8]) async throws(AttestationError) -> String {
        var payload = NvidiaPayload.object(nonce: nonce, items: [], arch: NvidiaPayload.hopper)
        payload["no_gpu_mode"] = .bool(true)
        return NvidiaPayload.text(payload)
    }
}

/// Picks the GPU evidence source from configuration (`GPU_NO_HW_MODE`, optional NVML library path, the
/// attestation queue bound and timeout).
public func makeGPUEvidenceProvider(
    noHardwareMode: Bool,
    libraryPath: String?,
    limits: NVMLGPUEvidence.Limits = .init(),
    logger: Logger = Logger(label: "vllm-proxy.gpu-evidence")
) -> any GPUEvidenceProvider {
    if noHardwareMode {
        return NoGPUEvidence()
    }
    return NVMLGPUEvidence(
        libraryPath: libraryPath ?? NVMLGPUEvidence.defaultLibraryPath, limits: limits, logger: logger)
}

/// Builds NVIDIA's remote-verifier payload (nv-local-gpu-verifier `collect_gpu_evidence_remote` shape).
enum NvidiaPayload {
    static let hopper = "HOPPER"
    static let blackwell = "BLACKWELL"

    /// One GPU's evidence: raw attestation report and PEM certificate chain bytes.
    struct Item {
        var certificateChainPEM: [UInt8]
        var report: [UInt8]
        var arch: String
    }

    static func object(nonce: [UInt8], items: [Item], arch: String) -> JSONObject {
        var object = JSONObject()
        object["nonce"] = .string(Hex.encode(nonce))
        object["evidence_list"] = .array(
            items.map { item in
                var entry = JSONObject()
                entry["certificate"] = .string(Data(item.certificateChainPEM).base64EncodedString())
                entry["evidence"] = .string(Data(item.report).base64EncodedString())
                entry["arch"] = .string(item.arch)
                return .object(entry)
            }
        )
        object["arch"] = .string(arch)
        return object
    }

    static func text(_ object: JSONObject) -> String {
        String(decoding: JSONValue.object(object).serialized(), as: UTF8.self)
    }
}
