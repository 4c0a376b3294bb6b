import ChutesE2EE
import Foundation
import HTTPTypes
import Hummingbird
import JSON
import NIOCore
import Synchronization

/// DEVELOPMENT ONLY, NOT SECURE: plays Chutes' E2EE relay and one GPU instance for `scripts/dev` (the
/// instance key lives in this process, so nothing it "protects" is protected). Adds to the Chutes-like stub
/// `/e2e/instances/{chute_id}` (one instance, single-use nonces) and `/e2e/invoke` (opens the request,
/// answers the echo sealed to the request's response key, JSON or stream).
public final class ChutesE2EEDevRelay: Sendable {
    /// The chute the stub's one model runs on.
    public static let chuteID = "00000000-0000-4000-8000-00000000c0de"
    static let instanceID = "dev-instance-1"
    static let noncesPerFetch = 16
    static let nonceLifetime = 55.0

    private let instance: ChutesE2EEInstance
    private let nonces = Mutex<[String: ContinuousClock.Instant]>([:])

    public init() throws {
        instance = try ChutesE2EEInstance()
    }

    /// What `/v1/models` adds to the stub's model entry in E2EE mode.
    static let modelFields: JSONObject = ["chute_id": .string(chuteID), "confidential_compute": true]

    func instances(chuteID: String) -> Response {
        guard chuteID == Self.chuteID else { return StubUpstream.json(.notFound, ["detail": "no such chute"]) }
        let expiry = ContinuousClock.now + .seconds(Self.nonceLifetime)
        let fresh = (0..<Self.noncesPerFetch).map { _ in
            (0..<16).map { _ in String(UInt8.random(in: 0...255), radix: 16) }.joined()
        }
        nonces.withLock { pool in
            let now = ContinuousClock.now
            pool = pool.filter { $0.value > now }
            for nonce in fresh { pool[nonce] = expiry }
        }
        return StubUpstream.json(
            .ok,
            [
                "instances": [
                    [
                        "instance_id": .string(Self.instanceID), "e2e_pubkey": .string(instance.publicKeyBase64),
                        "nonces": .array(fresh.map { .string($0) }),
                    ]
                ],
                "nonce_expires_in": .number(String(Int(Self.nonceLifetime))),
            ])
    }

    /// Checks the invoke headers, spends the nonce, opens the request and seals the echo answer.
    func invoke(_ request: Request, blob: [UInt8]) throws -> Response {
        guard request.headers[HTTPField.Name("X-Instance-Id")!] == Self.instanceID else {
            return StubUpstream.json(.gone, ["detail": "instance gone"])
        }
        let nonce = request.headers[HTTPField.Name("X-E2E-Nonce")!] ?? ""
        let valid = nonces.withLock { pool in pool.removeValue(forKey: nonce).map { $0 > .now } ?? false }
        guard valid else { return StubUpstream.json(.forbidden, ["detail": "nonce invalid or spent"]) }
        guard let (payload, responseKey) = try? instance.openRequest(blob) else {
            return StubUpstream.json(.badRequest, ["detail": "could not decrypt"])
        }
        let body = JSONValue.object(payload)
        let model = body["model"]?.stringValue ?? "stub-model"
        let reply = "Echo: " + StubUpstream.lastText(body, chat: true)
        let id = "chatcmpl-dev-e2e-" + UUID().uuidString.lowercased()
        let octets: HTTPFields = [.contentType: "application/octet-stream"]
        guard request.headers[HTTPField.Name("X-E2E-Stream")!] == "true" else {
            let answer: JSONValue = [
                "id": .string(id), "object": "chat.completion", "created": .integer(StubUpstream.created),
                "model": .string(model),
                "choices": [
                    ["index": 0, "message": ["role": "assistant", "content": .string(reply)], "finish_reason": "stop"]
                ],
                "usage": ["prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7],
            ]
            let sealed = try responseKey.sealResponse(answer.serialized())
            return Response(status: .ok, headers: octets, body: .init(byteBuffer: ByteBuffer(bytes: sealed)))
        }
        let (initEvent, streamKey) = try responseKey.streamInit()
        func line(_ delta: JSONObject, finish: String?) -> [UInt8] {
            let chunk: JSONValue = [
                "id": .string(id), "object": "chat.completion.chunk", "created": .integer(StubUpstream.created),
                "model": .string(model),
                "choices": [["index": 0, "delta": .object(delta), "finish_reason": finish.map { .string($0) } ?? nil]],
            ]
            return Array("data: ".utf8) + chunk.serialized()
        }
        var events: [JSONValue] = [["e2e_init": .string(initEvent)]]
        var lines = [line(["role": "assistant", "content": ""], finish: nil)]
        for (index, word) in reply.split(separator: " ").enumerated() {
            lines.append(line(["content": .string(index == 0 ? String(word) : " " + word)], finish: nil))
        }
        lines.append(line([:], finish: "stop"))
        for plain in lines { events.append(["e2e": .string(try streamKey.seal(plain))]) }
        events.append(["usage": ["prompt_tokens": 5, "completion_tokens": .integer(lines.count), "total_tokens": 7]])
        var out = ByteBuffer()
        for event in events { out.writeBytes(Array("data: ".utf8) + event.serialized() + Array("\n\n".utf8)) }
        out.writeString("data: [DONE]\n\n")
        return Response(
            status: .ok, headers: [.contentType: "text/event-stream"], body: .init(byteBuffer: out))
    }
}
