import Crypto
import Foundation
import JSON

/// The client side of E2EE v3: seals a request to a proxy's attested key list `K` and opens its answer,
/// checking the counters, the final marker and the clear usage. Used by the Swift tests and the dev tools;
/// the Python client (`clients/python`) is the one for applications.
public struct V3Client: Sendable {
    /// The attested `K` and its `kc`.
    public let keyConfig: [UInt8]
    public let keyConfigID: String
    private let x25519: Curve25519.KeyAgreement.PublicKey
    private let xwing: XWingMLKEM768X25519.PublicKey

    /// Why a v3 answer was not accepted.
    public enum Failure: Error, Equatable, Sendable {
        case malformedKeyConfig, malformedAnswer, authenticationFailed, truncated, usageMismatch
    }

    public init(keyConfig: [UInt8]) throws(Failure) {
        // Two configs, in the order and shape V3KeyPair writes them (a client accepts nothing else).
        guard keyConfig.count > 52 + 6,
            let x25519 = try? Curve25519.KeyAgreement.PublicKey(rawRepresentation: keyConfig[5..<37]),
            let xwing = try? XWingMLKEM768X25519.PublicKey(rawRepresentation: keyConfig[52..<(keyConfig.count - 6)]),
            V3KeyPair.keyConfig(
                x25519PublicKey: Array(x25519.rawRepresentation), xwingPublicKey: Array(xwing.rawRepresentation))
                == keyConfig
        else { throw .malformedKeyConfig }
        self.keyConfig = keyConfig
        self.keyConfigID = V3KeyPair.keyConfigID(of: keyConfig)
        self.x25519 = x25519
        self.xwing = xwing
    }

    /// Seals `request` (a JSON object's bytes) for `route`; returns the envelope to send and what opens the
    /// answer. `model`/`stream` must be the request's own.
    public func seal(
        _ request: [UInt8], route: String, model: String, stream: Bool, suite: V3Suite = .x25519AES256GCM,
        timestamp: Int64 = Int64(Date().timeIntervalSince1970)
    ) throws -> (envelope: [UInt8], opener: V3ResponseOpener) {
        let info = Data(V3Envelope.info(suite: suite, route: route, model: model, stream: stream, timestamp: timestamp))
        var sender: HPKE.Sender =
            switch suite {
            case .x25519AES256GCM, .x25519ChaCha20Poly1305:
                try HPKE.Sender(recipientKey: x25519, ciphersuite: suite.ciphersuite, info: info)
            case .xwingAES256GCM: try HPKE.Sender(recipientKey: xwing, ciphersuite: suite.ciphersuite, info: info)
            }
        let ciphertext = try sender.seal(request)
        let secret = try sender.exportSecret(context: V3Codec.responseExportLabel, outputByteCount: 32)
        let enc = Array(sender.encapsulatedKey)
        let req = Data(suite.header + enc + ciphertext).base64EncodedString()
        let envelope: JSONValue = [
            "model": .string(model), "stream": .bool(stream),
            "e2ee": ["v": 3, "kc": .string(keyConfigID), "ts": .number(String(timestamp)), "req": .string(req)],
        ]
        return (envelope.serialized(), V3ResponseOpener(session: V3Session(suite: suite, enc: enc, secret: secret)))
    }
}

/// Opens one v3 answer (JSON or stream envelope) with the request's exported secret.
public struct V3ResponseOpener: Sendable {
    let session: V3Session

    /// The JSON envelope: the body bytes the upstream answered (padding left in), after checking that the clear
    /// usage equals the sealed one.
    public func openJSON(_ envelope: [UInt8]) throws(V3Client.Failure) -> [UInt8] {
        guard case .object(let root)? = try? JSONValue(parsing: envelope), root["object"] == "e2ee.v3",
            case .object(let e2ee)? = root["e2ee"], e2ee["v"] == 3,
            let nonce = e2ee["n"]?.stringValue.flatMap({ Data(base64Encoded: $0) }),
            let final = e2ee["f"]?.stringValue.flatMap({ Data(base64Encoded: $0) })
        else { throw .malformedAnswer }
        var opener = ChunkOpener(session: session, responseNonce: Array(nonce))
        let body = try opener.open(Array(final), final: true)
        let sealedUsage = body.withUnsafeBytes { idAndUsageOf($0) }
        guard sealedUsage == root["usage"]?.objectValue else { throw .usageMismatch }
        return body
    }

    /// The stream envelope (every byte of the event stream): the upstream's event-stream bytes.
    public func openStream(_ stream: [UInt8]) throws(V3Client.Failure) -> [UInt8] {
        var events = String(decoding: stream, as: UTF8.self).components(separatedBy: "\n\n")
        guard events.last == "" else { throw .truncated }
        events.removeLast()
        var opener: ChunkOpener?
        var body: [UInt8] = []
        var finished = false
        var clearUsage: JSONObject?
        var done = false
        for event in events {
            guard event.hasPrefix("data: "), !done else { throw .malformedAnswer }
            let data = event.dropFirst(6)
            if data == "[DONE]" {
                done = true
                continue
            }
            guard case .object(let object)? = try? JSONValue(parsing: Array(data.utf8)) else { throw .malformedAnswer }
            if object["object"] == "e2ee.v3.usage" {
                guard finished else { throw .malformedAnswer }
                clearUsage = object["usage"]?.objectValue
                continue
            }
            guard case .object(let e2ee)? = object["e2ee"], !finished else { throw .malformedAnswer }
            if let nonce = e2ee["n"]?.stringValue.flatMap({ Data(base64Encoded: $0) }) {
                guard opener == nil else { throw .malformedAnswer }
                opener = ChunkOpener(session: session, responseNonce: Array(nonce))
            } else if let chunk = e2ee["c"]?.stringValue.flatMap({ Data(base64Encoded: $0) }), opener != nil {
                let plaintext = try opener!.open(Array(chunk), final: false)
                guard !plaintext.isEmpty else { throw .malformedAnswer }
                body += plaintext
            } else if let chunk = e2ee["f"]?.stringValue.flatMap({ Data(base64Encoded: $0) }), opener != nil {
                body += try opener!.open(Array(chunk), final: true)
                finished = true
            } else {
                throw .malformedAnswer
            }
        }
        guard finished else { throw .truncated }
        // The last usage the sealed stream reported must be the clear one.
        var sealedUsage: JSONObject?
        // Padding puts comment lines between events, so data lines are looked for anywhere in an event.
        for line in String(decoding: body, as: UTF8.self).split(whereSeparator: { $0 == "\n" || $0 == "\r" })
        where line.hasPrefix("data: ") {
            if let usage = Array(line.dropFirst(6).utf8).withUnsafeBytes({ idAndUsageOf($0) }) { sealedUsage = usage }
        }
        guard sealedUsage == clearUsage else { throw .usageMismatch }
        return body
    }

    /// Opens chunks in order: chunk i under nonce base XOR i, so a dropped, repeated or moved chunk fails.
    struct ChunkOpener {
        private var sealer: V3ResponseSealer

        init(session: V3Session, responseNonce: [UInt8]) {
            sealer = V3ResponseSealer(session: session, responseNonce: responseNonce)
        }

        mutating func open(_ sealed: [UInt8], final: Bool) throws(V3Client.Failure) -> [UInt8] {
            guard sealed.count >= V3Suite.tagLength else { throw .authenticationFailed }
            let nonce = sealer.nextNonce()
            let aad: [UInt8] = final ? Array("final".utf8) : []
            let ciphertext = sealed.dropLast(V3Suite.tagLength)
            let tag = sealed.suffix(V3Suite.tagLength)
            do {
                switch sealer.suite {
                case .x25519AES256GCM, .xwingAES256GCM:
                    let box = try AES.GCM.SealedBox(nonce: AES.GCM.Nonce(data: nonce), ciphertext: ciphertext, tag: tag)
                    return Array(try AES.GCM.open(box, using: sealer.key, authenticating: aad))
                case .x25519ChaCha20Poly1305:
                    let box = try ChaChaPoly.SealedBox(
                        nonce: ChaChaPoly.Nonce(data: nonce), ciphertext: ciphertext, tag: tag)
                    return Array(try ChaChaPoly.open(box, using: sealer.key, authenticating: aad))
                }
            } catch {
                throw .authenticationFailed
            }
        }
    }
}

/// The clear usage numbers of a JSON body's `usage` (or `response.usage`), as the proxy shows them.
private func idAndUsageOf(_ bytes: UnsafeRawBufferPointer) -> JSONObject? {
    guard case .object(let root)? = try? JSONValue(parsing: bytes) else { return nil }
    return V3Framing.clearUsage(root["usage"] ?? root["response"]?["usage"])
}
