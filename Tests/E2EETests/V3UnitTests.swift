import Crypto
import Foundation
import JSON
import Signing
import Testing

@testable import E2EE

/// E2EE v3's pieces without sockets: the envelope's step-1 checks, key rotation, and the stream framer's
/// padding and coalescing (SPEC §4.3).
@Suite struct V3UnitTests {
    static let pair = try! V3KeyPair.generate()
    static let client = try! V3Client(keyConfig: pair.keyConfig)

    static func envelope(_ e2ee: String, model: String = #""model":"m","#, stream: String = #""stream":false,"#)
        -> [UInt8]
    {
        Array("{\(model)\(stream)\"e2ee\":\(e2ee)}".utf8)
    }

    static let goodReq = Data(V3Suite.x25519AES256GCM.header + [UInt8](repeating: 7, count: 32 + 16))
        .base64EncodedString()

    @Test(arguments: [
        // Not JSON, not an object, repeated keys, nulls, wrong types, extra members.
        Array("not json".utf8), Array("[1]".utf8),
        Array(#"{"e2ee":{"v":3,"kc":"k","ts":1,"req":"\#(goodReq)"},"e2ee":{}}"#.utf8),
        envelope(#"{"v":3,"kc":"k","ts":1,"req":"\#(goodReq)","extra":1}"#),
        envelope(#"{"v":3,"kc":"k","ts":1}"#),
        envelope(#"{"v":4,"kc":"k","ts":1,"req":"\#(goodReq)"}"#),
        envelope(#"{"v":"3","kc":"k","ts":1,"req":"\#(goodReq)"}"#),
        envelope(#"{"v":3,"kc":null,"ts":1,"req":"\#(goodReq)"}"#),
        envelope(#"{"v":3,"kc":"k","ts":1.5,"req":"\#(goodReq)"}"#),
        envelope(#"{"v":3,"kc":"k","ts":1e3,"req":"\#(goodReq)"}"#),
        envelope(#"{"v":3,"kc":"k","ts":"1","req":"\#(goodReq)"}"#),
        envelope(#"{"v":3,"kc":"k","ts":99999999999999999999,"req":"\#(goodReq)"}"#),
        envelope(#"{"v":3,"kc":"k","ts":1,"req":"not base64!"}"#),
        envelope(#"{"v":3,"kc":"k","ts":1,"req":"AAAA"}"#),
        envelope(#"{"v":3,"kc":"k","ts":1,"req":"\#(goodReq)"}"#, model: #""model":null,"#),
        envelope(#"{"v":3,"kc":"k","ts":1,"req":"\#(goodReq)"}"#, model: #""model":1,"#),
        envelope(#"{"v":3,"kc":"k","ts":1,"req":"\#(goodReq)"}"#, stream: #""stream":"true","#),
        envelope(#"{"v":3,"kc":"k","ts":1,"req":"\#(goodReq)"}"#, stream: #""stream":null,"#),
        Array(#"{"model":"m","max_tokens":1,"e2ee":{"v":3,"kc":"k","ts":1,"req":"\#(goodReq)"}}"#.utf8),
        // A suite the key list does not offer: X-Wing with ChaCha20-Poly1305, key_id 2, another KDF.
        envelope(
            #"{"v":3,"kc":"k","ts":1,"req":"\#(Data([1, 0x64, 0x7a, 0, 1, 0, 3] + [UInt8](repeating: 0, count: 1200)).base64EncodedString())"}"#
        ),
        envelope(
            #"{"v":3,"kc":"k","ts":1,"req":"\#(Data([2, 0, 0x20, 0, 1, 0, 2] + [UInt8](repeating: 0, count: 64)).base64EncodedString())"}"#
        ),
        envelope(
            #"{"v":3,"kc":"k","ts":1,"req":"\#(Data([0, 0, 0x20, 0, 2, 0, 2] + [UInt8](repeating: 0, count: 64)).base64EncodedString())"}"#
        ),
        // X-Wing's enc is 1 120 bytes: a shorter `req` is malformed.
        envelope(
            #"{"v":3,"kc":"k","ts":1,"req":"\#(Data(V3Suite.xwingAES256GCM.header + [UInt8](repeating: 0, count: 1000)).base64EncodedString())"}"#
        ),
    ])
    func malformedEnvelopes(body: [UInt8]) {
        #expect(throws: E2EEError.v3Malformed) { _ = try V3Envelope(parsing: body) }
    }

    @Test func minimalEnvelopeDefaultsModelAndStream() throws {
        let parsed = try V3Envelope(parsing: Array(#"{"e2ee":{"v":3,"kc":"k","ts":-5,"req":"\#(Self.goodReq)"}}"#.utf8))
        #expect(parsed.model == "")
        #expect(parsed.stream == false)
        #expect(parsed.timestamp == -5)
        #expect(parsed.ciphertext.count == 16)
    }

    @Test func errorsComeInTheSpecsOrder() throws {
        let ring = try V3KeyRing(lifetime: 600, grace: 300, now: 1000) { Self.pair }
        let codec = V3Codec(keys: ring, replayWindow: 300)
        let request = Array(#"{"model":"m"}"#.utf8)
        // Stale time beats an unknown key; an unknown key beats a ciphertext that does not open.
        let stale = try Self.client.seal(request, route: "/r", model: "m", stream: false, timestamp: 500).envelope
        var unknown = try JSONValue(parsing: stale).objectValue!
        var e2ee = unknown["e2ee"]!.objectValue!
        e2ee["kc"] = "ffff"
        unknown["e2ee"] = .object(e2ee)
        #expect(throws: E2EEError.v3InvalidTimestamp) {
            _ = try codec.open(try V3Envelope(parsing: JSONValue.object(unknown).serialized()), route: "/r", now: 1000)
        }
        #expect(throws: E2EEError.keyUnknown) {
            _ = try codec.open(try V3Envelope(parsing: JSONValue.object(unknown).serialized()), route: "/r", now: 500)
        }
        #expect(throws: E2EEError.decryptionFailed) {
            _ = try codec.open(try V3Envelope(parsing: stale), route: "/other", now: 500)
        }
        // Opens, but the sealed object's stream differs from the clear one.
        let lying = try Self.client.seal(
            Array(#"{"model":"m","stream":true}"#.utf8), route: "/r", model: "m", stream: false, timestamp: 1000)
        #expect(throws: E2EEError.v3EnvelopeMismatch) {
            _ = try codec.open(try V3Envelope(parsing: lying.envelope), route: "/r", now: 1000)
        }
        let notObject = try Self.client.seal(Array("[]".utf8), route: "/r", model: "", stream: false, timestamp: 1000)
        #expect(throws: E2EEError.v3EnvelopeMismatch) {
            _ = try codec.open(try V3Envelope(parsing: notObject.envelope), route: "/r", now: 1000)
        }
        let repeated = try Self.client.seal(
            Array(#"{"model":"m","model":"m"}"#.utf8), route: "/r", model: "m", stream: false, timestamp: 1000)
        #expect(throws: E2EEError.v3EnvelopeMismatch) {
            _ = try codec.open(try V3Envelope(parsing: repeated.envelope), route: "/r", now: 1000)
        }
    }

    @Test func keysRotateAndThePreviousPairOpensForTheReplayWindow() throws {
        let first = try V3KeyPair.generate()
        let second = try V3KeyPair.generate()
        let third = try V3KeyPair.generate()
        let pairs = Mutexed([first, second, third])
        let ring = try V3KeyRing(lifetime: 600, grace: 300, now: 0) { pairs.next() }
        #expect(ring.current(now: 599).keyConfigID == first.keyConfigID)
        #expect(ring.current(now: 600).keyConfigID == second.keyConfigID)
        #expect(ring.pair(keyConfigID: first.keyConfigID, now: 900)?.keyConfigID == first.keyConfigID)
        #expect(ring.pair(keyConfigID: first.keyConfigID, now: 901) == nil)
        #expect(ring.pair(keyConfigID: second.keyConfigID, now: 901)?.keyConfigID == second.keyConfigID)
        // Long overdue: the old pair gets no grace at all.
        #expect(ring.pair(keyConfigID: second.keyConfigID, now: 5000) == nil)
        #expect(ring.current(now: 5000).keyConfigID == third.keyConfigID)
        #expect(Set([first, second, third].map(\.keyConfigID)).count == 3)
    }

    static func session() throws -> (V3Session, V3ResponseOpener) {
        let ring = try V3KeyRing(lifetime: 600, grace: 300, now: 1000) { Self.pair }
        let (envelope, opener) = try Self.client.seal(
            Array(#"{"model":"m"}"#.utf8), route: "/r", model: "m", stream: false, timestamp: 1000)
        let (_, session) = try V3Codec(keys: ring, replayWindow: 300).open(
            try V3Envelope(parsing: envelope), route: "/r", now: 1000)
        return (session, opener)
    }

    /// Sealed chunk plaintext lengths (ciphertext minus the tag) of a framed stream.
    static func chunkLengths(_ stream: [UInt8]) -> [Int] {
        String(decoding: stream, as: UTF8.self).components(separatedBy: "\n\n").compactMap { event in
            guard let json = try? JSONValue(parsing: Array(event.dropFirst(6).utf8)),
                let chunk = json["e2ee"]?["c"]?.stringValue ?? json["e2ee"]?["f"]?.stringValue,
                let bytes = Data(base64Encoded: chunk)
            else { return nil }
            return bytes.count - V3Suite.tagLength
        }
    }

    @Test(arguments: [0, 1, 64, 256])
    func paddedStreamsOpenToTheUpstreamsBytesPlusComments(pad: Int) throws {
        let (session, opener) = try Self.session()
        var framer = V3StreamFramer(sealer: session.responseSealer(), padBytes: pad, coalesce: .zero)
        let upstream = [
            "data: {\"id\":\"a\",\"choices\":[]}\n\n", "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}",
            "\n\n", "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}}\n\ndata: [DONE]\n\n",
        ]
        var wire: [UInt8] = []
        var boundary = true
        for piece in upstream {
            boundary = piece.hasSuffix("\n\n")
            wire += framer.add(Array(piece.utf8), atEventBoundary: boundary)
        }
        wire += framer.finish(usage: ["prompt_tokens": 1], done: true)
        let opened = String(decoding: try opener.openStream(wire), as: UTF8.self)
        let withoutPadding = opened.split(separator: "\n", omittingEmptySubsequences: false)
            .filter { !($0.hasPrefix(":") && $0.dropFirst().allSatisfy { $0 == " " }) }.joined(separator: "\n")
        #expect(withoutPadding == upstream.joined())
        if pad > 1 {
            for length in Self.chunkLengths(wire) { #expect(length % pad == 0) }
        }
        // The chunk cut mid-event is held while padding (so padding falls between events), sent at once otherwise.
        #expect(Self.chunkLengths(wire).count == (pad > 0 ? 3 : 4) + 1)
    }

    @Test func coalescingHoldsAllButTheFirstChunk() throws {
        let (session, opener) = try Self.session()
        var framer = V3StreamFramer(sealer: session.responseSealer(), padBytes: 0, coalesce: .milliseconds(50))
        let start = ContinuousClock.now
        var wire = framer.add(Array("data: 1\n\n".utf8), atEventBoundary: true, now: start)
        #expect(!wire.isEmpty)  // the first chunk is never held
        #expect(framer.add(Array("data: 2\n\n".utf8), atEventBoundary: true, now: start + .milliseconds(10)).isEmpty)
        #expect(framer.add(Array("data: 3\n\n".utf8), atEventBoundary: true, now: start + .milliseconds(40)).isEmpty)
        let gathered = framer.add(Array("data: 4\n\n".utf8), atEventBoundary: true, now: start + .milliseconds(60))
        #expect(Self.chunkLengths(gathered) == [27])
        wire += gathered
        wire += framer.finish(usage: nil, done: true)
        #expect(try opener.openStream(wire) == Array("data: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\n".utf8))
    }

    @Test func jsonEnvelopePadsWithTrailingSpaces() throws {
        let (session, opener) = try Self.session()
        var sealer = session.responseSealer()
        let body = Array(#"{"id":"x","usage":{"prompt_tokens":3,"prompt_tokens_details":{"cached_tokens":1}}}"#.utf8)
        let envelope = V3Framing.jsonEnvelope(
            body: body, sealer: &sealer, usage: V3Framing.clearUsage(try JSONValue(parsing: body)["usage"]),
            padBytes: 128)
        let json = try JSONValue(parsing: envelope)
        #expect(json["usage"] == ["prompt_tokens": 3])  // numbers only in clear
        let opened = try opener.openJSON(envelope)
        #expect(opened.count == 128)
        #expect(try JSONValue(parsing: opened) == JSONValue(parsing: body))
    }
}

/// Hands out prepared values in order, from any thread (the key ring's generator is `@Sendable`).
final class Mutexed<Value: Sendable>: @unchecked Sendable {
    private var values: [Value]
    private let lock = NSLock()
    init(_ values: [Value]) { self.values = values }
    func next() -> Value { lock.withLock { values.removeFirst() } }
}

@Suite struct Base64Tests {
    @Test func agreesWithFoundationForEveryLengthAndRandomBytes() {
        var generator = SystemRandomNumberGenerator()
        for length in 0..<200 {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            var out: [UInt8] = []
            Base64.encode(bytes, into: &out)
            #expect(String(decoding: out, as: UTF8.self) == Data(bytes).base64EncodedString())
        }
    }
}
