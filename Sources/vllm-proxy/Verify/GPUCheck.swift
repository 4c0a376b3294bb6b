import TDXVerifier

/// The GPU evidence check of `vllm-proxy verify`: NVIDIA's verifier on the report's `nvidia_payload` for the nonce
/// asked, and the policy for a proxy that reports no GPU (fails unless `--allow-no-gpu`, which warns).
enum GPUCheck {
    struct Result {
        let passed: Bool
        let detail: String
        let warning: String?
    }

    static func run(payload: String?, nonce: [UInt8], now: Int64, root: NvidiaTrustRoot, allowNoGPU: Bool) -> Result {
        guard let payload else {
            return noGPU("the report has no nvidia_payload", allowNoGPU)
        }
        do throws(GPUEvidenceError) {
            let verdict = try NvidiaEvidenceVerifier.verify(
                payload: payload, expectedNonce: nonce, now: now, root: root)
            if verdict.noGPUEvidence {
                return noGPU(
                    verdict.noGPUModeClaimed
                        ? "the proxy reports no GPU (GPU_NO_HW_MODE)" : "the GPU evidence list is empty", allowNoGPU)
            }
            let gpus = verdict.gpus.map { "\($0.arch) \($0.leafSerialNumber)" }.joined(separator: ", ")
            return Result(
                passed: true,
                detail:
                    "\(verdict.gpus.count) GPU(s) signed this nonce, chains to root \(verdict.rootCA) (\(gpus)); measurements not compared with NVIDIA's reference values",
                warning: nil)
        } catch {
            return Result(passed: false, detail: "\(error.reason): \(error.detail)", warning: nil)
        }
    }

    private static func noGPU(_ why: String, _ allowed: Bool) -> Result {
        allowed
            ? Result(passed: true, detail: "\(why); allowed by --allow-no-gpu", warning: "--allow-no-gpu: \(why)")
            : Result(passed: false, detail: "\(why); --allow-no-gpu accepts that", warning: nil)
    }
}
