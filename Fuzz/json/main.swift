// libFuzzer target: the JSON parser and the scanner. Any input must parse or throw (never crash, never hang),
// whatever parses must serialise to text that parses back to the same value (numbers kept verbatim), and the
// scanner the pipeline validates requests with must accept exactly what the strict parser accepts, with
// duplicate keys refused by both or neither (SPEC §2: a repeated key is a 400, at any depth).

import FuzzSupport
import JSON

func test(_ bytes: UnsafeBufferPointer<UInt8>) {
    let strict = (try? JSONValue(parsing: bytes, rejectingDuplicateKeys: true)) != nil
    let scanned =
        (try? JSONScan(
            scanning: UnsafeRawBufferPointer(bytes), topLevelKeys: ["stream"], rejectingDuplicateKeys: true)) != nil
    guard strict == scanned else { fatalError("the scanner and the strict parser disagree") }
    guard let value = try? JSONValue(parsing: bytes) else { return }
    let text = value.serialized()
    guard let again = try? JSONValue(parsing: text) else { fatalError("serialised output does not parse") }
    guard again == value else { fatalError("round trip changed the value") }
}

fuzz(test)
