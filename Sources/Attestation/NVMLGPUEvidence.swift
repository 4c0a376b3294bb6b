import Dispatch
import Logging
import Synchronization

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
/// NVML is loaded and initialised once, on first use, and shut down by `shutdown()`. Its state is
/// process-global and its calls block for up to seconds, so every collection runs on one serial queue: calls
/// never interleave and never occupy a cooperative-pool thread. The queue is bounded and every wait is timed
/// (`Limits`): a hung driver call or a flood of attestation requests costs each caller at most the timeout,
/// and callers beyond the bound are refused at once, instead of queueing forever.
public final class NVMLGPUEvidence: GPUEvidenceProvider {
    /// The soname the NVIDIA driver installs.
    public static let defaultLibraryPath = "libnvidia-ml.so.1"

    /// How much waiting the provider accepts (`ATTESTATION_MAX_WAITING`, `ATTESTATION_TIMEOUT_SECONDS`).
    public struct Limits: Sendable {
        /// Requests that may wait behind the one being collected; more are refused at once.
        public var maxWaiting: Int
        /// Longest a request waits for its evidence, queueing included.
        public var timeout: Duration

        public init(maxWaiting: Int = 8, timeout: Duration = .seconds(30)) {
            self.maxWaiting = maxWaiting
            self.timeout = timeout
        }
    }

    private let limits: Limits
    private let logger: Logger
    private let queue = DispatchQueue(label: "vllm-proxy.nvml")
    private let session: NVMLSession
    /// Collections queued or running on `queue`; a timed-out caller's job counts until the queue reaches it.
    private let queued = Atomic<Int>(0)

    /// - Parameter libraryPath: path or soname handed to `dlopen`.
    public init(
        libraryPath: String = NVMLGPUEvidence.defaultLibraryPath, limits: Limits = Limits(),
        logger: Logger = Logger(label: "vllm-proxy.nvml")
    ) {
        self.session = NVMLSession(libraryPath: libraryPath)
        self.limits = limits
        self.logger = logger
    }

    public func evidence(nonce: [UInt8]) async throws(AttestationError) -> String {
        let capacity = limits.maxWaiting + 1
        guard queued.add(1, ordering: .acquiringAndReleasing).newValue <= capacity else {
            queued.subtract(1, ordering: .acquiringAndReleasing)
            logger.warning("GPU evidence refused: too many attestation requests waiting")
            throw .gpuEvidenceUnavailable("GPU evidence is busy: too many attestation requests waiting; retry shortly")
        }
        let pending = PendingCollection()
        let outcome = await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                pending.install(continuation)
                queue.async {
                    defer { self.queued.subtract(1, ordering: .acquiringAndReleasing) }
                    // Its caller gave up (timeout, disconnect): collect nothing for nobody.
                    guard pending.isWaiting else { return }
                    pending.finish(Result { () throws(NVMLFailure) in try self.session.collect(nonce) }.outcome)
                }
                DispatchQueue.global().asyncAfter(deadline: .now() + limits.timeout.timeInterval) {
                    pending.finish(.timedOut)
                }
            }
        } onCancel: {
            pending.finish(.cancelled)
        }
        switch outcome {
        case .payload(let payload):
            return payload
        case .failure(let failure):
            logger.error("GPU evidence collection failed", metadata: ["reason": "\(failure)"])
            throw .gpuEvidenceUnavailable(failure.publicMessage)
        case .timedOut:
            logger.error("GPU evidence collection timed out", metadata: ["timeout": "\(limits.timeout)"])
            throw .gpuEvidenceUnavailable("GPU evidence is unavailable: the GPU did not answer in time")
        case .cancelled:
            throw .gpuEvidenceUnavailable("GPU evidence collection was abandoned")
        }
    }

    /// Shuts NVML down once the queue is free; waits at most 2 s (a hung driver call keeps it).
    public func shutdown() async { await shutdown(timeout: .seconds(2)) }

    func shutdown(timeout: Duration) async {
        let pending = PendingCollection()
        _ = await withCheckedContinuation { continuation in
            pending.install(continuation)
            queue.async { [session] in
                session.shutdown()
                pending.finish(.cancelled)
            }
            DispatchQueue.global().asyncAfter(deadline: .now() + timeout.timeInterval) { pending.finish(.timedOut) }
        }
    }
}

/// How one collection ended, as its caller sees it.
private enum CollectionOutcome: Sendable {
    case payload(String)
    case failure(NVMLFailure)
    case timedOut
    case cancelled
}

extension Result where Success == String, Failure == NVMLFailure {
    fileprivate var outcome: CollectionOutcome {
        switch self {
        case .success(let payload): return .payload(payload)
        case .failure(let failure): return .failure(failure)
        }
    }
}

/// One caller's wait: resumed exactly once, by its result, its timeout or its cancellation, whichever is first.
private final class PendingCollection: Sendable {
    private enum State {
        case starting
        case waiting(CheckedContinuation<CollectionOutcome, Never>)
        case finished
        /// Finished before the continuation was installed.
        case finishedEarly(CollectionOutcome)
    }

    private let state = Mutex<State>(.starting)

    func install(_ continuation: CheckedContinuation<CollectionOutcome, Never>) {
        let early = state.withLock { state -> CollectionOutcome? in
            if case .finishedEarly(let outcome) = state {
                state = .finished
                return outcome
            }
            state = .waiting(continuation)
            return nil
        }
        if let early { continuation.resume(returning: early) }
    }

    var isWaiting: Bool {
        state.withLock { state in
            if case .waiting = state { return true }
            return false
        }
    }

    func finish(_ outcome: CollectionOutcome) {
        let continuation = state.withLock { state -> CheckedContinuation<CollectionOutcome, Never>? in
            switch state {
            case .starting:
                state = .finishedEarly(outcome)
                return nil
            case .waiting(let continuation):
                state = .finished
                return continuation
            case .finished, .finishedEarly:
                return nil
            }
        }
        continuation?.resume(returning: outcome)
    }
}

/// NVML loaded and initialised once; touched only on the provider's serial queue.
private final class NVMLSession: @unchecked Sendable {
    private let libraryPath: String
    private var loaded: (handle: UnsafeMutableRawPointer, functions: NVMLFunctions)?

    init(libraryPath: String) { self.libraryPath = libraryPath }

    /// `dlopen` + `nvmlInit_v2` on first use (and again after a failure, in case the driver was reset).
    private func load() throws(NVMLFailure) -> NVMLFunctions {
        if let loaded { return loaded.functions }
        guard let handle = dlopen(libraryPath, RTLD_NOW | RTLD_LOCAL) else {
            throw .libraryMissing(dlerror().map { String(cString: $0) } ?? libraryPath)
        }
        do {
            let functions = try NVMLFunctions(handle)
            try functions.check("nvmlInit_v2", functions.initialize())
            loaded = (handle, functions)
            return functions
        } catch {
            dlclose(handle)
            throw error
        }
    }

    func shutdown() {
        guard let loaded else { return }
        _ = loaded.functions.shutdown()
        dlclose(loaded.handle)
        self.loaded = nil
    }

    func collect(_ nonce: [UInt8]) throws(NVMLFailure) -> String {
        do {
            return try collect(nonce, with: try load())
        } catch {
            shutdown()
            throw error
        }
    }

    private func collect(_ nonce: [UInt8], with nvml: NVMLFunctions) throws(NVMLFailure) -> String {
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

/// The NVML entry points, resolved once from the `dlopen` handle.
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

extension Duration {
    fileprivate var timeInterval: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
