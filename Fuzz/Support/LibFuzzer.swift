// What every libFuzzer target (Fuzz/*) needs to hand its process to libFuzzer, in one place.
#if canImport(Glibc)
    import Glibc
#endif

@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzer(
    _ argc: UnsafeMutablePointer<Int32>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ test: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
) -> Int32

/// The target's check; libFuzzer's callback is a C function and cannot capture it, so it is kept here. Set
/// once, before libFuzzer starts, and read only by libFuzzer's single fuzzing thread.
nonisolated(unsafe) private var check: (UnsafeBufferPointer<UInt8>) -> Void = { _ in }

/// Runs libFuzzer with the process's arguments, calling `test` on every input, and exits with its status.
public func fuzz(_ test: @escaping (UnsafeBufferPointer<UInt8>) -> Void) -> Never {
    check = test
    var argc = CommandLine.argc
    var argv = CommandLine.unsafeArgv
    exit(
        runFuzzer(&argc, &argv) { data, size in
            check(UnsafeBufferPointer(start: data, count: size))
            return 0
        })
}
