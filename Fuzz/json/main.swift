// libFuzzer target: the JSON parser. Any input must parse or throw (never crash, never hang), and whatever
// parses must serialise to text that parses back to the same value (numbers kept verbatim).

import FuzzSupport
import JSON

func test(_ bytes: UnsafeBufferPointer<UInt8>) {
    guard let value = try? JSONValue(parsing: bytes) else { return }
    let text = value.serialized()
    guard let again = try? JSONValue(parsing: text) else { fatalError("serialised output does not parse") }
    guard again == value else { fatalError("round trip changed the value") }
}

fuzz(test)
