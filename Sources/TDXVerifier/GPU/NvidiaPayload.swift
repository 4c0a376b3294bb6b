import Foundation

/// The `nvidia_payload` JSON (SPEC §6): `{"nonce", "evidence_list": [{"certificate", "evidence", "arch"}],
/// "arch"}`, plus `no_gpu_mode` when the proxy runs without GPUs. Fields are only decoded here; every check is
/// the verifier's.
struct NvidiaPayload: Decodable {
    struct Item: Decodable {
        /// Base64 of the PEM text of the chain, leaf first.
        let certificate: String
        /// Base64 of the raw attestation report.
        let evidence: String
        let arch: String
    }

    let nonce: String
    let evidenceList: [Item]
    let arch: String?
    let noGPUMode: Bool?

    enum CodingKeys: String, CodingKey {
        case nonce
        case evidenceList = "evidence_list"
        case arch
        case noGPUMode = "no_gpu_mode"
    }

    init(json: String) throws(GPUEvidenceError) {
        do {
            self = try JSONDecoder().decode(Self.self, from: Data(json.utf8))
        } catch {
            throw .malformedPayload(
                "not a JSON object with nonce, evidence_list and items of certificate, evidence, arch")
        }
    }
}
