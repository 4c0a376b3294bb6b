/// What verified NVIDIA GPU evidence says, GPU by GPU. An empty `gpus` (with `noGPUEvidence`) is not a pass:
/// the payload carried no evidence at all (e.g. the proxy's `GPU_NO_HW_MODE`), and the caller decides.
public struct NvidiaVerdict: Sendable, Equatable {
    /// One entry per evidence item, in payload order; each one's chain, nonce and signature verified.
    public let gpus: [NvidiaGPUVerdict]
    /// True when `evidence_list` was empty: nothing was shown about any GPU.
    public let noGPUEvidence: Bool
    /// The payload's own `no_gpu_mode` claim (the proxy says so when it runs without GPUs).
    public let noGPUModeClaimed: Bool
    /// The payload's top-level `arch`, when present.
    public let arch: String?
    /// The trust root the chains ended in: `"nvidia"` or `"override:<hex sha256>"`.
    public let rootCA: String
    /// Always false: the measurements are not compared with NVIDIA's reference values (RIM), which is out of
    /// scope (SPEC §6.2); a verified report proves a genuine GPU answered this nonce, not what firmware it runs.
    public var measurementsChecked: Bool { false }
}

/// One GPU's verified evidence: who signed it and what the report carries, measurements unchecked.
public struct NvidiaGPUVerdict: Sendable, Equatable {
    /// Position in `evidence_list`.
    public let index: Int
    /// The item's `arch` (`HOPPER` or `BLACKWELL`).
    public let arch: String
    /// The leaf (attestation key) certificate's subject; its serialNumber attribute names the device.
    public let leafSubject: String
    /// The leaf certificate's serial number, hex.
    public let leafSerialNumber: String
    /// How many certificates the payload's chain held (the root included when it was sent).
    public let certificateCount: Int
    /// The SPDM version byte of the GET_MEASUREMENTS response (0x11 for SPDM 1.1).
    public let spdmVersion: UInt8
    /// The measurement blocks the report carries (not compared with reference values).
    public let measurementBlockCount: Int
    /// The driver version the report's opaque data states, when it states one.
    public let driverVersion: String?
    /// Always false: see `NvidiaVerdict.measurementsChecked`.
    public var measurementsChecked: Bool { false }
}
