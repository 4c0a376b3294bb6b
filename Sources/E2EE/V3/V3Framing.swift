import Foundation
import JSON

/// The wire envelopes of a v3 answer (SPEC §4.3): the JSON one (one final chunk holding the whole body) and
/// the event-stream one (the nonce, one sealed chunk per upstream read or coalesced reads, the final chunk,
/// clear usage, `[DONE]`). `padBytes` > 0 pads plaintexts to a multiple of it against the length side channel.
public enum V3Framing {
    /// `{"object":"e2ee.v3","e2ee":{"v":3,"n":…,"f":…},"usage":U}`, `usage` only when the body reported one.
    public static func jsonEnvelope(
        body: some DataProtocol, sealer: inout V3ResponseSealer, usage: JSONObject?, padBytes: Int
    ) -> [UInt8] {
        let gap = padding(for: body.count, to: padBytes)
        let final: [UInt8]
        if gap == 0 {
            final = sealer.seal(body, final: true)
        } else {
            // Trailing spaces after a JSON document are insignificant to every JSON reader.
            var padded: [UInt8] = []
            padded.reserveCapacity(body.count + gap)
            padded += body
            padded += repeatElement(UInt8(ascii: " "), count: gap)
            final = sealer.seal(padded, final: true)
        }
        // Reserved whole: an array outgrowing its capacity holds its old and new storage at once, and the
        // answer can be tens of MB. The members around `f` and `usage` take under 128 bytes.
        var out: [UInt8] = []
        out.reserveCapacity(
            (final.count + 2) / 3 * 4 + 128 + (usage.map { JSONValue.object($0).serializedCount } ?? 0))
        out += #"{"object":"e2ee.v3","e2ee":{"v":3,"n":""#.utf8
        Base64.encode(sealer.responseNonce, into: &out)
        out += #"","f":""#.utf8
        Base64.encode(final, into: &out)
        out += #""}"#.utf8
        if let usage {
            out += Array(#","usage":"#.utf8)
            JSONValue.object(usage).serialize(into: &out)
        }
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// The numeric top-level members of a usage object, the only part of it shown in clear (for billing).
    public static func clearUsage(_ usage: JSONValue?) -> JSONObject? {
        guard case .object(let object)? = usage else { return nil }
        return JSONObject(object.members.filter { if case .number = $0.value { true } else { false } })
    }

    /// How many bytes bring `count` to a multiple of `size` (0 when off).
    static func padding(for count: Int, to size: Int) -> Int {
        guard size > 0 else { return 0 }
        return (size - count % size) % size
    }

}

/// Standard base64 with padding (RFC 4648 §4), written straight into the output: going through `Data` and
/// `String` took three allocations per sealed chunk.
enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    static func encode(_ bytes: [UInt8], into out: inout [UInt8]) {
        let start = out.count
        let length = (bytes.count + 2) / 3 * 4
        out.append(contentsOf: repeatElement(0, count: length))
        // Written through raw pointers: appending byte by byte checked capacity and uniqueness each time.
        alphabet.withUnsafeBufferPointer { alphabet in
            bytes.withUnsafeBufferPointer { input in
                out.withUnsafeMutableBufferPointer { output in
                    var read = 0
                    var write = start
                    while read + 3 <= input.count {
                        let n = UInt32(input[read]) << 16 | UInt32(input[read + 1]) << 8 | UInt32(input[read + 2])
                        output[write] = alphabet[Int(n >> 18 & 63)]
                        output[write + 1] = alphabet[Int(n >> 12 & 63)]
                        output[write + 2] = alphabet[Int(n >> 6 & 63)]
                        output[write + 3] = alphabet[Int(n & 63)]
                        read += 3
                        write += 4
                    }
                    let rest = input.count - read
                    guard rest > 0 else { return }
                    let n = UInt32(input[read]) << 16 | (rest == 2 ? UInt32(input[read + 1]) << 8 : 0)
                    output[write] = alphabet[Int(n >> 18 & 63)]
                    output[write + 1] = alphabet[Int(n >> 12 & 63)]
                    output[write + 2] = rest == 2 ? alphabet[Int(n >> 6 & 63)] : UInt8(ascii: "=")
                    output[write + 3] = UInt8(ascii: "=")
                }
            }
        }
    }
}

/// Frames one v3 event stream. The owner feeds it the upstream's bytes as they arrive and writes what it
/// returns; it decides when a chunk is sealed (at once, or after `coalesce`, or — when padding — only at an
/// event boundary, so the SSE comment lines that pad it fall between events).
public struct V3StreamFramer: Sendable {
    private var sealer: V3ResponseSealer
    private let padBytes: Int
    private let coalesce: Duration
    private var pending: [UInt8] = []
    private var sentHeader = false
    private var sealedChunks = 0
    private var lastSeal: ContinuousClock.Instant?

    public init(sealer: V3ResponseSealer, padBytes: Int, coalesce: Duration) {
        self.sealer = sealer
        self.padBytes = padBytes
        self.coalesce = coalesce
    }

    /// Takes upstream bytes; returns the events to write now (possibly none while gathering).
    /// `atEventBoundary`: the bytes so far end between two events (only consulted when padding).
    public mutating func add(
        _ bytes: some DataProtocol, atEventBoundary: Bool, now: ContinuousClock.Instant = .now
    ) -> [UInt8] {
        pending += bytes
        guard !pending.isEmpty, atEventBoundary || padBytes == 0 else { return [] }
        // The first chunk is never held: the time to the first token is visible anyway.
        if coalesce > .zero, sealedChunks > 0, let lastSeal, now - lastSeal < coalesce { return [] }
        lastSeal = now
        return event(plaintext: padded(take()), final: false)
    }

    /// Ends the stream: whatever is still gathered plus `trailer` (the proxy's error event on failure) in the
    /// final chunk; then, on a normal end, the clear usage and `[DONE]`.
    public mutating func finish(trailer: [UInt8] = [], usage: JSONObject?, done: Bool) -> [UInt8] {
        var out = event(plaintext: padded(take() + trailer), final: true)
        if let usage {
            out += Array(#"data: {"object":"e2ee.v3.usage","choices":[],"usage":"#.utf8)
            JSONValue.object(usage).serialize(into: &out)
            out += Array("}\n\n".utf8)
        }
        if done { out += Array("data: [DONE]\n\n".utf8) }
        return out
    }

    private mutating func take() -> [UInt8] {
        defer { pending = [] }
        return pending
    }

    /// SSE comment lines (`:`, spaces, `\n`) appended after the last event, up to a multiple of `padBytes`.
    /// A comment line is at least two bytes, so a gap of one takes a whole extra block.
    private func padded(_ plaintext: [UInt8]) -> [UInt8] {
        var gap = V3Framing.padding(for: plaintext.count, to: padBytes)
        guard gap > 0 else { return plaintext }
        if gap == 1 { gap += padBytes }
        return plaintext + [UInt8(ascii: ":")] + [UInt8](repeating: UInt8(ascii: " "), count: gap - 2) + [
            UInt8(ascii: "\n")
        ]
    }

    private mutating func event(plaintext: [UInt8], final: Bool) -> [UInt8] {
        var out: [UInt8] = []
        if !sentHeader {
            sentHeader = true
            out += #"data: {"object":"e2ee.v3","e2ee":{"v":3,"n":""#.utf8
            Base64.encode(sealer.responseNonce, into: &out)
            out += "\"}}\n\n".utf8
        }
        let sealed = sealer.seal(plaintext, final: final)
        sealedChunks += 1
        out += final ? #"data: {"e2ee":{"f":""#.utf8 : #"data: {"e2ee":{"c":""#.utf8
        Base64.encode(sealed, into: &out)
        out += "\"}}\n\n".utf8
        return out
    }
}
