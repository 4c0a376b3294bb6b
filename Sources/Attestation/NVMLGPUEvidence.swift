import Dispatch
import Logging

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Collects confidential-computing evidence from every GPU through NVML, loaded with `dlopen` at run time.
///
/// Loading at run time keeps the binary free of a link-time NVIDIA dependency, so the same build runs on
/// machines without a GPU (with `GPU_NO_HW_MODE`) and in CI, where tests substitute a fake library.
/// NVML state is process-global and its calls block for up to seconds, so every collection runs on one
/// serial queue: calls never interleave and never occupy a cooperative-pool thread.
public final class NVMLGPUEvidence: GPUEvidenceProvider {
    /// The soname the NVIDIA driver installs.
    public static let defaultLibraryPath = "libnvidia-ml.so.1"

    private let libraryPath: String
    private let logger: Logger
    private let queue = DispatchQueue(label: "vllm-proxy.nvml")

    /// - Parameter libraryPath: path or soname handed to `dlopen`.
    public init(
        libraryPath: String = NVMLGPUEvidence.defaultLibraryPath, logger: Logger = Logger(label: "vllm-proxy.nvml")
    ) {
        self.libraryPath = libraryPath
        self.logger = logger
    }

    public func evidence(nonce: [UInt8]) async throws(AttestationError) -> String {
        let libraryPath = self.libraryPath
        let result: Result<String, NVMLFailure> = await withCheckedContinuation { continuation in
            queue.async {
                continuation.resume(
                    returning: Result { () throws(NVMLFailure) in try Self.collect(libraryPath, nonce) })
            }
        }
        switch result {
        case .success(let payload):
            return payload
        case .failure(let failure):
            logger.error("GPU evidence collection failed", metadata: ["reason": "\(failure)"])
            throw .gpuEvidenceUnavailable(failure.publicMessage)
        }
    }

    /// Runs on `queue` only.
    private static func collect(_ libraryPath: String, _ nonce: [UInt8]) throws(NVMLFailure) -> String {
        guard let handle = dlopen(libraryPath, RTLD_NOW | RTLD_LOCAL) else {
            throw .libraryMissing(dlerror().map { String(cString: $0) } ?? libraryPath)
        }
        defer { dlclose(handle) }
        let nvml = try NVMLFunctions(handle)

        try nvml.check("nvmlInit_v2", nvml.initialize())
        defer { _ = nvml.shutdown() }

        var state = [UInt32](repeating: 0, count: NVMLLayout.systemStateWords)
        try nvml.check(
            "nvmlSystemGetConfComputeState",
            state.withUnsafeMutableBytes { nvml.systemGetConfComputeState($0.baseAddress!) })
        guard state[NVMLLayout.systemStateCCFeatureWord] != NVMLLayout.ccFeatureDisabled else {
            throw .confidentialComputingDisabled
        }

        var count: CUnsignedInt = 0
        try nvml.check("nvmlDeviceGetCount_v2", nvml.deviceGetCount(&count))
        guard count > 0 else { throw .noDevices }

        var items: [NvidiaPayload.Item] = []
        for index in 0..<count {
            var device: OpaquePointer? = nil
            try nvml.check("nvmlDeviceGetHandleByIndex_v2", nvml.deviceGetHandleByIndex(index, &device))

            var architecture: CUnsignedInt = 0
            try nvml.check("nvmlDeviceGetArchitecture", nvml.deviceGetArchitecture(device, &architecture))
            let arch: String
            switch architecture {
            case NVMLLayout.archHopper: arch = NvidiaPayload.hopper
            case NVMLLayout.archBlackwell: arch = NvidiaPayload.blackwell
            default: throw .unsupportedArchitecture(architecture)
            }

            var report = [UInt8](repeating: 0, count: NVMLLayout.Report.size)
            report.replaceSubrange(NVMLLayout.Report.nonce..<NVMLLayout.Report.nonce + 32, with: nonce)
            try nvml.check(
                "nvmlDeviceGetConfComputeGpuAttestationReport",
                report.withUnsafeMutableBytes { nvml.deviceGetAttestationReport(device, $0.baseAddress!) }
            )
            let reportSize = Int(NVMLLayout.word(report, at: NVMLLayout.Report.attestationReportSize))
            guard reportSize > 0, reportSize <= NVMLLayout.Report.attestationReportCapacity else {
                throw .badSize("attestation report", reportSize)
            }

            var certificate = [UInt8](repeating: 0, count: NVMLLayout.Certificate.size)
            try nvml.check(
                "nvmlDeviceGetConfComputeGpuCertificate",
                certificate.withUnsafeMutableBytes { nvml.deviceGetCertificate(device, $0.baseAddress!) }
            )
            let chainSize = Int(NVMLLayout.word(certificate, at: NVMLLayout.Certificate.attestationCertChainSize))
            guard chainSize > 0, chainSize <= NVMLLayout.Certificate.attestationCertChainCapacity else {
                throw .badSize("attestation certificate chain", chainSize)
            }

            let reportStart = NVMLLayout.Report.attestationReport
            let chainStart = NVMLLayout.Certificate.attestationCertChain
            items.append(
                NvidiaPayload.Item(
                    certificateChainPEM: Array(certificate[chainStart..<chainStart + chainSize]),
                    report: Array(report[reportStart..<reportStart + reportSize]),
                    arch: arch
                )
            )
        }
        return NvidiaPayload.text(NvidiaPayload.object(nonce: nonce, items: items, arch: items[0].arch))
    }
}

/// Byte layouts of the NVML structures used here, mirrored by offset rather than imported from `nvml.h` so the
/// package needs no NVIDIA headers. Source: NVIDIA `nvml.h` and nvidia-ml-py 13.615 `pynvml.py`
/// (`c_nvmlConfComputeSystemState_t`, `c_nvmlConfComputeGpuAttestationReport_t`,
/// `c_nvmlConfComputeGpuCertificate_t`); all fields are `unsigned int` or `unsigned char`, so there is no padding.
enum NVMLLayout {
    /// `{ uint environment; uint ccFeature; uint devToolsMode; }`
    static let systemStateWords = 3
    static let systemStateCCFeatureWord = 1
    /// `NVML_CC_SYSTEM_FEATURE_DISABLED`
    static let ccFeatureDisabled: UInt32 = 0
    /// `NVML_DEVICE_ARCH_HOPPER`, `NVML_DEVICE_ARCH_BLACKWELL`
    static let archHopper: CUnsignedInt = 9
    static let archBlackwell: CUnsignedInt = 10

    /// `nvmlConfComputeGpuAttestationReport_t`: { uint isCecAttestationReportPresent; uint attestationReportSize;
    /// uint cecAttestationReportSize; uint8 nonce[0x20]; uint8 attestationReport[0x2000];
    /// uint8 cecAttestationReport[0x1000] }
    enum Report {
        static let attestationReportSize = 4
        static let nonce = 12
        static let attestationReport = 44
        static let attestationReportCapacity = 0x2000
        static let size = 44 + 0x2000 + 0x1000
    }

    /// `nvmlConfComputeGpuCertificate_t`: { uint certChainSize; uint attestationCertChainSize;
    /// uint8 certChain[0x1000]; uint8 attestationCertChain[0x1400] }
    enum Certificate {
        static let attestationCertChainSize = 4
        static let attestationCertChain = 8 + 0x1000
        static let attestationCertChainCapacity = 0x1400
        static let size = 8 + 0x1000 + 0x1400
    }

    /// A native-endian `unsigned int` field.
    static func word(_ bytes: [UInt8], at offset: Int) -> UInt32 {
        bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt32.self) }
    }
}

/// What went wrong inside NVML; logged in full, reduced to `publicMessage` on the wire.
enum NVMLFailure: Error, CustomStringConvertible {
    case libraryMissing(String)
    case symbolMissing(String)
    case call(String, CInt, String)
    case confidentialComputingDisabled
    case noDevices
    case unsupportedArchitecture(CUnsignedInt)
    case badSize(String, Int)

    var description: String {
        switch self {
        case .libraryMissing(let detail): return "NVML library not loadable: \(detail)"
        case .symbolMissing(let name): return "NVML symbol missing: \(name)"
        case .call(let name, let code, let text): return "\(name) returned \(code) (\(text))"
        case .confidentialComputingDisabled: return "confidential computing is disabled on this system"
        case .noDevices: return "no GPU found"
        case .unsupportedArchitecture(let value): return "unsupported GPU architecture \(value)"
        case .badSize(let what, let size): return "\(what) has an impossible size \(size)"
        }
    }

    var publicMessage: String {
        switch self {
        case .libraryMissing, .symbolMissing:
            return "GPU evidence is unavailable: the NVIDIA management library cannot be loaded"
        case .confidentialComputingDisabled:
            return "GPU evidence is unavailable: GPU confidential computing is not enabled"
        case .noDevices:
            return "GPU evidence is unavailable: no GPU found"
        case .call, .unsupportedArchitecture, .badSize:
            return "GPU evidence is unavailable: the GPU did not produce attestation evidence"
        }
    }
}

/// The NVML entry points, resolved once per collection from the `dlopen` handle.
private struct NVMLFunctions {
    typealias NoArgs = @convention(c) () -> CInt
    typealias RawOut = @convention(c) (UnsafeMutableRawPointer) -> CInt
    typealias CountOut = @convention(c) (UnsafeMutablePointer<CUnsignedInt>) -> CInt
    typealias HandleByIndex = @convention(c) (CUnsignedInt, UnsafeMutablePointer<OpaquePointer?>) -> CInt
    typealias DeviceUInt = @convention(c) (OpaquePointer?, UnsafeMutablePointer<CUnsignedInt>) -> CInt
    typealias DeviceRaw = @convention(c) (OpaquePointer?, UnsafeMutableRawPointer) -> CInt
    typealias ErrorString = @convention(c) (CInt) -> UnsafePointer<CChar>?

    let initialize: NoArgs
    let shutdown: NoArgs
    let systemGetConfComputeState: RawOut
    let deviceGetCount: CountOut
    let deviceGetHandleByIndex: HandleByIndex
    let deviceGetArchitecture: DeviceUInt
    let deviceGetAttestationReport: DeviceRaw
    let deviceGetCertificate: DeviceRaw
    let errorString: ErrorString?

    init(_ handle: UnsafeMutableRawPointer) throws(NVMLFailure) {
        func symbol<T>(_ name: String, as _: T.Type) throws(NVMLFailure) -> T {
            guard let pointer = dlsym(handle, name) else { throw .symbolMissing(name) }
            return unsafeBitCast(pointer, to: T.self)
        }
        initialize = try symbol("nvmlInit_v2", as: NoArgs.self)
        shutdown = try symbol("nvmlShutdown", as: NoArgs.self)
        systemGetConfComputeState = try symbol("nvmlSystemGetConfComputeState", as: RawOut.self)
        deviceGetCount = try symbol("nvmlDeviceGetCount_v2", as: CountOut.self)
        deviceGetHandleByIndex = try symbol("nvmlDeviceGetHandleByIndex_v2", as: HandleByIndex.self)
        deviceGetArchitecture = try symbol("nvmlDeviceGetArchitecture", as: DeviceUInt.self)
        deviceGetAttestationReport = try symbol("nvmlDeviceGetConfComputeGpuAttestationReport", as: DeviceRaw.self)
        deviceGetCertificate = try symbol("nvmlDeviceGetConfComputeGpuCertificate", as: DeviceRaw.self)
        // Only used to make log lines readable; its absence is no reason to fail.
        errorString = dlsym(handle, "nvmlErrorString").map { unsafeBitCast($0, to: ErrorString.self) }
    }

    /// `NVML_SUCCESS` is 0; anything else aborts the collection.
    func check(_ name: String, _ code: CInt) throws(NVMLFailure) {
        guard code != 0 else { return }
        let text = errorString?(code).map { String(cString: $0) } ?? "unknown"
        throw .call(name, code, text)
    }
}
