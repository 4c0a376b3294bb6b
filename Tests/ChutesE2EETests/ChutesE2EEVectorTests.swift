import Crypto
import Foundation
import JSON
import Testing

@testable import ChutesE2EE

/// `Tests/Vectors/chutes_e2ee.json`, made with chutes-e2ee 0.1.0's own functions (see its generator).
enum Vectors {
    static let document: JSONValue = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Vectors/chutes_e2ee.json")
        do {
            return try JSONValue(parsing: Array(Data(contentsOf: url)))
        } catch {
            fatalError("cannot load \(url.path): \(error)")
        }
    }()

    static func string(_ path: String...) -> String {
        var value = document
        for key in path { value = value[key]! }
        return value.stringValue!
    }

    static func hex(_ path: String...) -> [UInt8] {
        var value = document
        for key in path { value = value[key]! }
        return unhex(value.stringValue!)
    }
}

func unhex(_ text: String) -> [UInt8] {
    var out: [UInt8] = []
    var index = text.startIndex
    while index < text.endIndex {
        let next = text.index(index, offsetBy: 2)
        out.append(UInt8(text[index..<next], radix: 16)!)
        index = next
    }
    return out
}

func json(_ bytes: [UInt8]) throws -> JSONValue { try JSONValue(parsing: bytes) }

@Suite struct ChutesE2EEVectorTests {
    @Test func mlkemSeedsGiveThePublicKeysAndDecapsulateToTheSharedSecrets() throws {
        for entry in Vectors.document["mlkem"]!.arrayValue! {
            let key = try MLKEM768.PrivateKey(
                seedRepresentation: unhex(entry["seed"]!.stringValue!), publicKey: nil)
            #expect(ChutesE2EEWire.base64(key.publicKey.rawRepresentation) == entry["public_key_b64"]!.stringValue!)
            let secret = try key.decapsulate(unhex(entry["ciphertext_hex"]!.stringValue!))
            #expect(secret.withUnsafeBytes { Array($0) } == unhex(entry["shared_secret_hex"]!.stringValue!))
        }
    }

    @Test func hkdfKeysPerPurpose() {
        for entry in Vectors.document["hkdf"]!.arrayValue! {
            let purpose = ChutesE2EEWire.Purpose(rawValue: entry["info"]!.stringValue!)!
            let key = ChutesE2EEWire.deriveKey(
                sharedSecret: SymmetricKey(data: unhex(entry["shared_secret_hex"]!.stringValue!)),
                ciphertext: unhex(entry["salt_hex"]!.stringValue!), purpose)
            #expect(key.withUnsafeBytes { Array($0) } == unhex(entry["key_hex"]!.stringValue!))
        }
    }

    @Test func aRequestBuiltByThePackageOpensOnTheInstanceSide() throws {
        let instance = try ChutesE2EEInstance(seed: Vectors.hex("package_request", "instance_seed"))
        #expect(instance.publicKeyBase64 == Vectors.string("package_request", "instance_public_key_b64"))
        let (payload, responseKey) = try instance.openRequest(Vectors.hex("package_request", "blob_hex"))
        var withoutKey = payload
        #expect(withoutKey["e2e_response_pk"]?.stringValue == Vectors.string("package_request", "e2e_response_pk_b64"))
        withoutKey["e2e_response_pk"] = nil
        #expect(JSONValue.object(withoutKey) == Vectors.document["package_request"]!["payload"]!)
        #expect(ChutesE2EEWire.base64(responseKey.key.rawRepresentation) == payload["e2e_response_pk"]!.stringValue!)
    }

    @Test func aFullyFixedRequestOpens() throws {
        let instance = try ChutesE2EEInstance(seed: Vectors.hex("fixed_request", "instance_seed"))
        let (payload, _) = try instance.openRequest(Vectors.hex("fixed_request", "blob_hex"))
        #expect(JSONValue.object(payload) == (try json(Array(Vectors.string("fixed_request", "plaintext_json").utf8))))
    }

    @Test func aSealedAnswerOpensWithTheResponseKey() throws {
        let key = try ResponseKey(seed: Vectors.hex("response", "response_seed"))
        let opened = try key.openResponse(Vectors.hex("response", "blob_hex"))
        #expect(try json(opened) == Vectors.document["response"]!["json"]!)
    }

    @Test func streamInitAndChunks() throws {
        let key = try ResponseKey(seed: Vectors.hex("stream", "response_seed"))
        let streamKey = try key.streamKey(initEvent: Vectors.string("stream", "e2e_init"))
        #expect(streamKey.bytes == Vectors.hex("stream", "stream_key_hex"))
        var decoder = ChutesE2EEStreamDecoder(responseKey: key)
        let initEvent = JSONValue.object(["e2e_init": .string(Vectors.string("stream", "e2e_init"))]).serialized()
        #expect(try decoder.decode(initEvent) == .nothing)
        for chunk in Vectors.document["stream"]!["chunks"]!.arrayValue! {
            let line = Array(chunk["line"]!.stringValue!.utf8)
            #expect(try streamKey.open(chunk["e2e"]!.stringValue!) == line)
            let event = JSONValue.object(["e2e": chunk["e2e"]!]).serialized()
            // A sealed `data: [DONE]` ends the answer: the caller writes the client's own [DONE] (SPEC §7.2).
            let expected: ChutesE2EEStreamDecoder.Output =
                line.elementsEqual("data: [DONE]".utf8) ? .done : .event(line + Array("\n\n".utf8))
            #expect(try decoder.decode(event) == expected)
        }
    }

    @Test func tamperedTruncatedOrForeignBlobsAreRefused() throws {
        let key = try ResponseKey(seed: Vectors.hex("response", "response_seed"))
        var blob = Vectors.hex("response", "blob_hex")
        for index in [0, 1087, 1088, 1099, 1100, blob.count - 1] {
            var tampered = blob
            tampered[index] ^= 0x01
            #expect(throws: ChutesE2EEError.decryptionFailed) { try key.openResponse(tampered) }
        }
        #expect(throws: ChutesE2EEError.self) { try key.openResponse(blob.prefix(1088 + 27)) }
        #expect(throws: ChutesE2EEError.self) { try key.openResponse([UInt8]()) }
        let other = try ResponseKey(seed: Array(repeating: 7, count: 64))
        #expect(throws: ChutesE2EEError.decryptionFailed) { try other.openResponse(blob) }
        blob.removeLast()
        #expect(throws: ChutesE2EEError.decryptionFailed) { try key.openResponse(blob) }
    }
}

@Suite struct ChutesE2EERoundTripTests {
    @Test func requestSealedHereOpensOnTheInstanceAndTheAnswerComesBack() throws {
        let instance = try ChutesE2EEInstance()
        let payload: JSONObject = [
            "model": "m", "messages": [["role": "user", "content": "Grüße 世界"]], "temperature": .number("0.70"),
        ]
        let sealed = try InstancePublicKey(base64: instance.publicKeyBase64).seal(payload)
        #expect(sealed.blob.count > 1088 + 12 + 16)
        let (opened, responsePublicKey) = try instance.openRequest(sealed.blob)
        var expected = payload
        expected["e2e_response_pk"] = .string(sealed.responseKey.publicKeyBase64)
        #expect(opened == expected)
        let answer = Array(#"{"id":"x","choices":[]}"#.utf8)
        #expect(try sealed.responseKey.openResponse(responsePublicKey.sealResponse(answer)) == answer)
        let (initEvent, streamKey) = try responsePublicKey.streamInit()
        #expect(try sealed.responseKey.streamKey(initEvent: initEvent).bytes == streamKey.bytes)
    }

    @Test func eachRequestHasItsOwnResponseKey() throws {
        let key = try InstancePublicKey(base64: ChutesE2EEInstance().publicKeyBase64)
        let first = try key.seal(["model": "m"])
        let second = try key.seal(["model": "m"])
        #expect(first.responseKey.publicKeyBase64 != second.responseKey.publicKeyBase64)
    }

    @Test func inflationIsBounded() throws {
        let bomb = try ChutesE2EEWire.gzip(Array(repeating: 0x20, count: 1 << 20))
        #expect(bomb.count < 4096)
        #expect(throws: ChutesE2EEError.self) { try ChutesE2EEWire.gunzip(bomb, limit: 1 << 16) }
        #expect(try ChutesE2EEWire.gunzip(bomb).count == 1 << 20)
        #expect(throws: ChutesE2EEError.self) { try ChutesE2EEWire.gunzip(Array("not gzip".utf8)) }
    }

    @Test func publicKeysMustBeMLKEM768() {
        #expect(throws: ChutesE2EEError.self) { try InstancePublicKey(base64: "AAAA") }
        #expect(throws: ChutesE2EEError.self) { try InstancePublicKey(base64: "not base64!") }
        #expect(throws: ChutesE2EEError.self) {
            try InstancePublicKey(base64: Data(repeating: 0, count: 1183).base64EncodedString())
        }
    }
}

@Suite struct ChutesE2EEStreamDecoderTests {
    let instance: ChutesE2EEInstance
    let responseKey: ResponseKey
    let streamKey: StreamKey
    let initEvent: [UInt8]

    init() throws {
        instance = try ChutesE2EEInstance()
        let sealed = try instance.publicKey.seal(["model": "m"])
        responseKey = sealed.responseKey
        let (_, responsePublicKey) = try instance.openRequest(sealed.blob)
        let (event, key) = try responsePublicKey.streamInit()
        streamKey = key
        initEvent = JSONValue.object(["e2e_init": .string(event)]).serialized()
    }

    func chunk(_ line: String) throws -> [UInt8] {
        JSONValue.object(["e2e": .string(try streamKey.seal(Array(line.utf8)))]).serialized()
    }

    @Test func usageErrorDoneAndUnknownEvents() throws {
        var decoder = ChutesE2EEStreamDecoder(responseKey: responseKey)
        #expect(try decoder.decode(initEvent) == .nothing)
        #expect(
            try decoder.decode(Array(#"{"usage": {"total_tokens": 3}}"#.utf8))
                == .event(Array("data: {\"usage\":{\"total_tokens\":3}}\n\n".utf8)))
        #expect(try decoder.decode(Array(" [DONE] ".utf8)) == .done)
        #expect(
            try decoder.decode(Array(#"{"e2e_error": {"message": "boom"}}"#.utf8))
                == .error(ChutesE2EEStreamDecoder.errorEvent + Array("\n\n".utf8)))
        #expect(try decoder.decode(Array(#"{"something": 1}"#.utf8)) == .nothing)
        #expect(try decoder.decode(Array("not json".utf8)) == .nothing)
        #expect(try decoder.decode(chunk("data: [DONE]")) == .done)
    }

    /// SPEC §7.2: what a relay sends in clear never reaches the client — an id, choices or text put beside `usage`
    /// (measured: such an event was relayed and signed), non-numeric or oversized counts, an error's text — and a
    /// sealed chunk replayed ends the stream.
    @Test func relayMadeEventsAreRebuiltOrRefused() throws {
        var decoder = ChutesE2EEStreamDecoder(responseKey: responseKey)
        _ = try decoder.decode(initEvent)
        let forged =
            #"{"usage": {"prompt_tokens": 1, "total_tokens": "9", "completion_tokens": 1e3, "INJECTED": 7}, "#
            + #""id": "chatcmpl-CHOSEN", "choices": [{"delta": {"content": "INJECTED"}}]}"#
        #expect(
            try decoder.decode(Array(forged.utf8)) == .event(Array("data: {\"usage\":{\"prompt_tokens\":1}}\n\n".utf8)))
        #expect(
            try decoder.decode(Array(#"{"usage": "INJECTED"}"#.utf8)) == .event(Array("data: {\"usage\":{}}\n\n".utf8)))
        #expect(
            try decoder.decode(Array(#"{"usage": {"total_tokens": 12345678901234567890}}"#.utf8))
                == .event(Array("data: {\"usage\":{}}\n\n".utf8)))
        let error = try decoder.decode(Array(#"{"e2e_error": {"message": "INJECTED"}}"#.utf8))
        guard case .error(let bytes) = error else { Issue.record("not an error: \(error)"); return }
        #expect(!String(decoding: bytes, as: UTF8.self).contains("INJECTED"))
        let sealed = try chunk("data: {}")
        #expect(try decoder.decode(sealed) == .event(Array("data: {}\n\n".utf8)))
        #expect(throws: ChutesE2EEError.self) { try decoder.decode(sealed) }
    }

    @Test func chunksBeforeInitOrThatDoNotOpenEndTheStream() throws {
        var decoder = ChutesE2EEStreamDecoder(responseKey: responseKey)
        #expect(throws: ChutesE2EEError.self) { try decoder.decode(chunk("data: {}")) }
        _ = try decoder.decode(initEvent)
        #expect(throws: ChutesE2EEError.self) {
            try decoder.decode(Array(#"{"e2e": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}"#.utf8))
        }
        #expect(throws: ChutesE2EEError.self) { try decoder.decode(Array(#"{"e2e": 5}"#.utf8)) }
        // A decrypted chunk must be exactly one SSE data line.
        #expect(throws: ChutesE2EEError.self) { try decoder.decode(chunk("data: {}\n\ndata: {}")) }
        #expect(throws: ChutesE2EEError.self) { try decoder.decode(chunk("event: x")) }
        #expect(try decoder.decode(chunk("data: {}")) == .event(Array("data: {}\n\n".utf8)))
    }
}
