// libFuzzer target: E2EE header validation and ciphertext-field decoding. The input is six header lines
// (X-Signing-Algo, X-Client-Pub-Key, X-Model-Pub-Key, X-E2EE-Version, X-E2EE-Nonce, X-E2EE-Timestamp; an empty
// line is an absent header) and then a JSON body whose message contents are decrypted. `@own-ecdsa`,
// `@own-ed25519` and `@client-ed25519` in a header stand for keys the fuzzer could not guess, so that it gets
// past the key checks to the field decoder. Any input must be accepted or refused with an `E2EEError`.
import Crypto
import E2EE
import FuzzSupport
import JSON
import Signing

// Fixed keys, so a crashing input replays the same way.
let keys = SigningKeys(
    secp256k1: try! Secp256k1PrivateKey(rawRepresentation: [UInt8](repeating: 7, count: 32)),
    ed25519: try! Curve25519.Signing.PrivateKey(rawRepresentation: [UInt8](repeating: 9, count: 32)))
let clientEd25519 = try! Curve25519.Signing.PrivateKey(rawRepresentation: [UInt8](repeating: 5, count: 32))
let codec = E2EESessionPolicy(keys: keys, replayWindow: 300)
let now = 1_700_000_000
let substitutions = [
    "@own-ecdsa": keys.ecdsaPublicKeyHex, "@own-ed25519": keys.ed25519Address,
    "@client-ed25519": Hex.encode(clientEd25519.publicKey.rawRepresentation),
]

func test(_ bytes: UnsafeBufferPointer<UInt8>) {
    var lines = bytes.split(separator: UInt8(ascii: "\n"), maxSplits: 6, omittingEmptySubsequences: false)
        .map { Array($0) }
    while lines.count < 7 { lines.append([]) }
    let values: [String?] = lines.prefix(6).map { line in
        guard !line.isEmpty else { return nil }
        let text = String(decoding: line, as: UTF8.self)
        return substitutions[text] ?? text
    }
    let headers = E2EEHeaders(
        signingAlgo: values[0], clientPublicKey: values[1], modelPublicKey: values[2], version: values[3],
        nonce: values[4], timestamp: values[5])
    do {
        guard case .encrypted(let session) = try codec.parse(headers, now: now) else { return }
        var body = try JSONValue(parsing: lines[6])
        try codec.openRequest(&body, session: session)
        _ = try codec.responseSealer(for: session)
    } catch {
        return
    }
}

fuzz(test)
