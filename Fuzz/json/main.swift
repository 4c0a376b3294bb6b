// libFuzzer target: the JSON parser. Any input must parse or throw (never crash, never hang), and whatever
// parses must serialise to text that parses back to the same value (numbers kept verbatim).
import JSON
#if canImport(Glibc)
    import Glibc
#endif

@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzer(
    _ argc: UnsafeMutablePointer<Int32>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ test: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
) -> Int32

func test(_ bytes: UnsafeBufferPointer<UInt8>) {
    guard let value = try? JSONValue(parsing: bytes) else { return }
    let text = value.serialized()
    guard let again = try? JSONValue(parsing: text) else { fatalError("serialised output does not parse") }
    guard again == value else { fatalError("round trip changed the value") }
}

var argc = CommandLine.argc
var argv = CommandLine.unsafeArgv
exit(
    runFuzzer(&argc, &argv) { data, size in
        test(UnsafeBufferPointer(start: data, count: size))
        return 0
    })
