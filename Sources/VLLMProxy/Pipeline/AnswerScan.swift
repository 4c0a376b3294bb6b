import E2EE
import JSON

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

// What the pipeline reads of an answer it otherwise passes or seals as received: its id and its usage.

/// The top-level `id` string and the clear part of `usage` (`response.usage` for the Responses API) of a JSON
/// object; nils when the bytes are not one or lack them.
func idAndUsage(in bytes: UnsafeRawBufferPointer) -> (String?, JSONObject?) {
    guard let scan = try? JSONScan(scanning: bytes, topLevelKeys: ["id", "usage", "response"]),
        scan.rootKind == .object
    else { return (nil, nil) }
    func parsed(_ value: JSONScan.Value?) -> JSONValue? {
        guard let value, value.kind == .object else { return nil }
        return try? JSONValue(parsing: UnsafeRawBufferPointer(rebasing: bytes[value.range]))
    }
    let response = parsed(scan.members[2])
    let id = scan.members[0].flatMap { JSONScan.string($0, in: bytes) } ?? response?["id"]?.stringValue
    let usage = V3Framing.clearUsage(parsed(scan.members[1]) ?? response?["usage"])
    return (id, usage)
}

/// Whether the bytes hold `"usage"`, optional whitespace, `:`, optional whitespace, `{`: a cheap test that
/// leaves out the `"usage": null` of every chunk but the last. A key spelt with escapes is missed; the clear
/// usage then lacks what the sealed one has, which the client detects (it fails closed, never open).
@inline(never)
func carriesUsageObject(_ bytes: UnsafeRawBufferPointer) -> Bool {
    guard let base = bytes.baseAddress else { return false }
    let key: StaticString = #""usage""#
    let keyLength = key.utf8CodeUnitCount
    var start = 0
    // memchr for each quote, memcmp for the key: this runs over every event of a sealed stream.
    while start + keyLength < bytes.count,
        let quote = memchr(base + start, Int32(UInt8(ascii: "\"")), bytes.count - start)
    {
        let at = base.distance(to: UnsafeRawPointer(quote))
        start = at + 1
        guard at + keyLength < bytes.count, memcmp(quote, key.utf8Start, keyLength) == 0 else { continue }
        var next = at + keyLength
        func skipSpace() {
            while next < bytes.count, [0x20, 0x09, 0x0a, 0x0d].contains(bytes[next]) { next += 1 }
        }
        skipSpace()
        guard next < bytes.count, bytes[next] == UInt8(ascii: ":") else { continue }
        next += 1
        skipSpace()
        if next < bytes.count, bytes[next] == UInt8(ascii: "{") { return true }
    }
    return false
}

/// The id an answer's record is stored under (SPEC §2): the top-level `id` string of a JSON object, else
/// the `id` of its `response` object (the Responses API's stream events); nil when the bytes have neither.
func answerID(in bytes: UnsafeRawBufferPointer) -> String? {
    guard let scan = try? JSONScan(scanning: bytes, topLevelKeys: ["id", "response"]), scan.rootKind == .object
    else { return nil }
    if let id = scan.members[0] { return JSONScan.string(id, in: bytes) }
    guard let response = scan.members[1], response.kind == .object else { return nil }
    let inner = UnsafeRawBufferPointer(rebasing: bytes[response.range])
    guard let nested = try? JSONScan(scanning: inner, topLevelKeys: ["id"]), let id = nested.members[0] else {
        return nil
    }
    return JSONScan.string(id, in: inner)
}
