// libFuzzer target: E2EE v3 (SPEC §4.3), both directions a hostile party controls. The first byte picks:
//   `A` (answer): the rest is a response envelope (stream form, or JSON when it starts with `{`) that the client
//       opener must accept or refuse with a `V3Client.Failure`;
//   anything else: the input is a request envelope, parsed and opened by the proxy's codec at a fixed time with
//       the independent vectors' X25519 key (so the committed seeds, copies of those vectors' envelopes, open);
//       `@kc` stands for the key list's id the fuzzer could not guess. An opened request gets its answer sealed.
// Any input must be accepted or refused with an `E2EEError`: no crash, no hang, cost linear in its size.
import Crypto
import E2EE
import FuzzSupport
import Foundation
import JSON
import Signing

let now = 1_764_900_000
let x25519 = try! Curve25519.KeyAgreement.PrivateKey(
    rawRepresentation: Hex.decode("aea3bd118e9ff00d15871a07cc2b0b1408c87d2eaad04fa0a62f4ad87baccd0a")!)
let pair = try! V3KeyPair(x25519: x25519, xwingSeed: [UInt8](repeating: 3, count: 32))
let ring = try! V3KeyRing(lifetime: 86_400, grace: 300, now: now) { pair }
let codec = V3Codec(keys: ring, replayWindow: 300)
let kcToken = Array("@kc".utf8)
let kc = Array(pair.keyConfigID.utf8)
let client = try! V3Client(keyConfig: pair.keyConfig)
let opener = try! client.seal(Array("{}".utf8), route: "/r", model: "", stream: false, timestamp: Int64(now)).opener

func test(_ bytes: UnsafeBufferPointer<UInt8>) {
    if bytes.first == UInt8(ascii: "A") {
        let answer = Array(bytes.dropFirst())
        _ = try? answer.first == UInt8(ascii: "{") ? opener.openJSON(answer) : opener.openStream(answer)
        return
    }
    var input = Array(bytes)
    if let range = input.firstRange(of: kcToken) { input.replaceSubrange(range, with: kc) }
    do {
        let envelope = try V3Envelope(parsing: input)
        let (_, session) = try codec.open(envelope, route: "/v1/chat/completions", now: now)
        var framer = V3StreamFramer(sealer: session.responseSealer(), padBytes: 64, coalesce: .zero)
        _ = framer.add(input, atEventBoundary: true)
        _ = framer.finish(usage: nil, done: true)
    } catch {
        return
    }
}

fuzz(test)
