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

            let report = try nvml.read(NVMLLayout.attestationReport, prefill: nonce) {
                nvml.deviceGetAttestationReport(device, $0)
            }
            let chain = try nvml.read(NVMLLayout.certificate) { nvml.deviceGetCertificate(device, $0) }
            items.append(NvidiaPayload.Item(certificateChainPEM: chain, report: report, arch: arch))
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

    /// An NVML output struct holding one variable-length byte field and its `unsigned int` length.
    struct SizedBuffer {
        /// The NVML call that fills it, for log lines.
        var function: String
        var name: String
        var size: Int
        /// Where the caller's input goes, if the call takes any (the nonce).
        var prefillOffset: Int
        var lengthOffset: Int
        var dataOffset: Int
        var capacity: Int
    }

    /// `nvmlConfComputeGpuAttestationReport_t`: { uint isCecAttestationReportPresent; uint attestationReportSize;
    /// uint cecAttestationReportSize; uint8 nonce[0x20]; uint8 attestationReport[0x2000];
    /// uint8 cecAttestationReport[0x1000] }
    static let attestationReport = SizedBuffer(
        function: "nvmlDeviceGetConfComputeGpuAttestationReport",
        name: "attestation report",
        size: 44 + 0x2000 + 0x1000,
        prefillOffset: 12,
        lengthOffset: 4,
        dataOffset: 44,
        capacity: 0x2000
    )

    /// `nvmlConfComputeGpuCertificate_t`: { uint certChainSize; uint attestationCertChainSize;
    /// uint8 certChain[0x1000]; uint8 attestationCertChain[0x1400] }
    static let certificate = SizedBuffer(
        function: "nvmlDeviceGetConfComputeGpuCertificate",
        name: "attestation certificate chain",
        size: 8 + 0x1000 + 0x1400,
        prefillOffset: 0,
        lengthOffset: 4,
        dataOffset: 8 + 0x1000,
        capacity: 0x1400
    )
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

    /// Runs `call` on a zeroed `layout` struct (with `prefill` copied in first) and returns the bytes NVML
    /// reported as valid: the struct's own length field says how many of `capacity` count.
    func read(
        _ layout: NVMLLayout.SizedBuffer,
        prefill: [UInt8] = [],
        _ call: (UnsafeMutableRawPointer) -> CInt
    ) throws(NVMLFailure) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: layout.size)
        buffer.replaceSubrange(layout.prefillOffset..<layout.prefillOffset + prefill.count, with: prefill)
        try check(layout.function, buffer.withUnsafeMutableBytes { call($0.baseAddress!) })
        // The field is a native-endian `unsigned int`, at a 4-byte-aligned offset.
        let length = Int(
            buffer.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: layout.lengthOffset, as: UInt32.self) })
        guard length > 0, length <= layout.capacity else { throw .badSize(layout.name, length) }
        return Array(buffer[layout.dataOffset..<layout.dataOffset + length])
    }

    /// `NVML_SUCCESS` is 0; anything else aborts the collection.
    func check(_ name: String, _ code: CInt) throws(NVMLFailure) {
        guard code != 0 else { return }
        let text = errorString?(code).map { String(cString: $0) } ?? "unknown"
        throw .call(name, code, text)
    }
}
