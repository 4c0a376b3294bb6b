import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import JSON
import NIOCore
import Synchronization

/// A development stand-in for an OpenAI-compatible upstream — vLLM, or Chutes when given an API key:
/// chat and text completions (streamed or not), `/v1/models` and `/metrics`. It answers with an echo of
/// the last message so a caller can see what reached it.
///
/// Behaviour is chosen by the request's `model`, so tests need no side channel:
/// `stub-error-<status>` answers that status; `stub-slow-<ms>` waits before answering;
/// `stub-stall` streams one chunk then goes silent; `stub-long` streams many chunks slowly;
/// any model containing `reasoning` adds `reasoning_content` and `reasoning` fields;
/// `stub-echo-auth[-form]` answers 400 with the credential it received echoed in its body (as a careless
/// upstream might; see `echo(key:form:)`), to prove the proxy scrubs its key.
public final class StubUpstream: Sendable {
    /// One request as the stub received it.
    public struct Recorded: Sendable {
        public let method: String
        public let path: String
        /// Header values by lowercase (canonical) name.
        public let headers: [String: String]
        public let body: [UInt8]

        /// A header's value, looked up case-insensitively.
        public func header(_ name: String) -> String? { headers[name.lowercased()] }
    }

    private let recorded = Mutex<[Recorded]>([])
    private let waiting = Mutex<Double>(0)
    private let cancelled = Atomic<Int>(0)

    /// When set, `/v1/*` requires `Authorization: Bearer <apiKey>` and answers 401 otherwise, like Chutes.
    private let apiKey: String?

    public init(apiKey: String? = nil) { self.apiKey = apiKey }

    /// Requests received so far, oldest first.
    public var requests: [Recorded] { recorded.withLock { $0 } }
    public func reset() { recorded.withLock { $0.removeAll() } }
    /// Streams that ended because the reader went away (the proxy cancelled its upstream request).
    public var cancelledStreams: Int { cancelled.load(ordering: .relaxed) }
    /// The `vllm:num_requests_waiting` value `/metrics` reports.
    public func setWaiting(_ value: Double) { waiting.withLock { $0 = value } }

    public func router() -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.post("/v1/chat/completions") { request, _ in try await self.complete(request, chat: true) }
        router.post("/v1/completions") { request, _ in try await self.complete(request, chat: false) }
        router.get("/v1/models") { request, _ in
            self.record(request, body: [])
            if let refused = self.refuseWithoutKey(request) { return refused }
            return Self.json(
                .ok,
                [
                    "object": "list",
                    "data": [["id": "stub-model", "object": "model", "owned_by": "vllm-stub", "max_model_len": 4096]],
                ])
        }
        router.get("/metrics") { _, _ in
            let value = self.waiting.withLock { $0 }
            let text = """
                # HELP vllm:num_requests_waiting Number of requests waiting to be processed.
                # TYPE vllm:num_requests_waiting gauge
                vllm:num_requests_waiting{engine="0",model_name="stub-model"} \(value)
                # TYPE vllm:num_requests_waiting_by_reason gauge
                vllm:num_requests_waiting_by_reason{engine="0",reason="capacity"} 7.0
                # TYPE vllm:num_requests_running gauge
                vllm:num_requests_running{engine="0",model_name="stub-model"} 0.0

                """
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        // Test control: recorded requests as JSON, reset, and the congestion value.
        router.get("/stub/requests") { _, _ in
            let list = self.requests.map { recorded -> JSONValue in
                var headers = JSONObject()
                for (name, value) in recorded.headers { headers[name] = .string(value) }
                return [
                    "method": .string(recorded.method), "path": .string(recorded.path), "headers": .object(headers),
                    "body": .string(String(decoding: recorded.body, as: UTF8.self)),
                ]
            }
            return Self.json(.ok, .array(list))
        }
        router.post("/stub/reset") { _, _ in
            self.reset()
            return Self.json(.ok, [:])
        }
        router.post("/stub/waiting/{value}") { _, context in
            self.setWaiting(Double(try context.parameters.require("value")) ?? 0)
            return Self.json(.ok, [:])
        }
        return router
    }

    private func refuseWithoutKey(_ request: Request) -> Response? {
        guard let apiKey, request.headers[.authorization] != "Bearer \(apiKey)" else { return nil }
        return Self.json(.unauthorized, ["detail": "Invalid API key"])
    }

    private func record(_ request: Request, body: [UInt8]) {
        var headers: [String: String] = [:]
        for field in request.headers { headers[field.name.canonicalName] = field.value }
        let entry = Recorded(method: request.method.rawValue, path: request.uri.path, headers: headers, body: body)
        recorded.withLock { $0.append(entry) }
    }

    private func complete(_ request: Request, chat: Bool) async throws -> Response {
        let bytes = Array(buffer: try await request.body.collect(upTo: 64 << 20))
        record(request, body: bytes)
        if let refused = refuseWithoutKey(request) { return refused }
        let body = (try? JSONValue(parsing: bytes)) ?? [:]
        let model = body["model"]?.stringValue ?? "stub-model"
        if model.hasPrefix("stub-error-"), let code = Int(model.dropFirst("stub-error-".count)) {
            return Self.json(
                .init(code: code),
                [
                    "object": "error", "message": .string("stub error \(code)"), "type": "BadRequestError",
                    "param": nil,
                    "code": .integer(code),
                ])
        }
        if model.hasPrefix("stub-echo-auth") {
            let header = request.headers[.authorization] ?? ""
            return Self.echo(key: String(header.dropFirst("Bearer ".count)), form: String(model.dropFirst(14)))
        }
        if model.hasPrefix("stub-slow-"), let ms = Int(model.dropFirst("stub-slow-".count)) {
            try await Task.sleep(for: .milliseconds(ms))
        }
        // Deterministic answers (id from the body, fixed `created`) let a test compare the proxy's bytes with
        // the stub's own answer to the same request.
        let digest = SHA256.hash(data: bytes).prefix(12).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
        let id = (chat ? "chatcmpl-stub-" : "cmpl-stub-") + digest
        let reply = "Echo: " + Self.lastText(body, chat: chat)
        let reasoning = model.contains("reasoning") ? "Thinking about: \(Self.lastText(body, chat: chat))" : nil
        if body["stream"] == .bool(true) {
            return stream(id: id, model: model, reply: reply, reasoning: reasoning, chat: chat)
        }
        var choice: JSONObject = ["index": 0, "finish_reason": "stop", "logprobs": nil]
        if chat {
            var message: JSONObject = ["role": "assistant", "content": .string(reply), "tool_calls": []]
            if let reasoning {
                message["reasoning_content"] = .string(reasoning)
                message["reasoning"] = .string(reasoning)
            }
            choice["message"] = .object(message)
        } else {
            choice["text"] = .string(reply)
        }
        let words = reply.split(separator: " ").count
        return Self.json(
            .ok,
            [
                "id": .string(id), "object": chat ? "chat.completion" : "text_completion",
                "created": .integer(Self.created), "model": .string(model),
                "choices": [.object(choice)],
                "usage": [
                    "prompt_tokens": 5, "completion_tokens": .integer(words), "total_tokens": .integer(words + 5),
                ],
            ])
    }

    private func stream(id: String, model: String, reply: String, reasoning: String?, chat: Bool) -> Response {
        let created = Self.created
        @Sendable func chunk(_ delta: JSONObject?, text: String?, finish: String?) -> ByteBuffer {
            var choice: JSONObject = ["index": 0, "logprobs": nil, "finish_reason": finish.map { .string($0) } ?? nil]
            if chat { choice["delta"] = .object(delta ?? [:]) } else { choice["text"] = .string(text ?? "") }
            let event: JSONValue = [
                "id": .string(id), "object": chat ? "chat.completion.chunk" : "text_completion",
                "created": .integer(created), "model": .string(model), "choices": [.object(choice)],
            ]
            return ByteBuffer(bytes: Array("data: ".utf8) + event.serialized() + Array("\n\n".utf8))
        }
        let pieces = reply.split(separator: " ", omittingEmptySubsequences: false).enumerated().map {
            $0.offset == 0 ? String($0.element) : " " + $0.element
        }
        let (count, delay): (Int, Duration) =
            model == "stub-long" ? (2000, .milliseconds(5)) : (1, .zero)
        let stall = model == "stub-stall"
        @Sendable func write(_ writer: inout any ResponseBodyWriter) async throws {
            if chat { try await writer.write(chunk(["role": "assistant", "content": ""], text: nil, finish: nil)) }
            if stall { try await Task.sleep(for: .seconds(3600)) }
            if let reasoning {
                let delta: JSONObject = ["reasoning_content": .string(reasoning), "reasoning": .string(reasoning)]
                try await writer.write(chunk(delta, text: nil, finish: nil))
            }
            for _ in 0..<count {
                for piece in pieces {
                    try await writer.write(chunk(["content": .string(piece)], text: piece, finish: nil))
                    if delay > .zero { try await Task.sleep(for: delay) }
                }
            }
            try await writer.write(chunk([:], text: "", finish: "stop"))
            try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
            try await writer.finish(nil)
        }
        return Response(
            status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
            body: ResponseBody { writer in
                do {
                    try await write(&writer)
                } catch {
                    self.cancelled.add(1, ordering: .relaxed)
                    throw error
                }
            })
    }

    /// The text of the last message (chat) or the prompt (text completion), whatever its content shape.
    static func lastText(_ body: JSONValue, chat: Bool) -> String {
        guard chat else { return body["prompt"]?.stringValue ?? "" }
        guard let content = body["messages"]?.arrayValue?.last?["content"] else { return "" }
        if let text = content.stringValue { return text }
        let parts = content.arrayValue?.compactMap { $0["type"] == "text" ? $0["text"]?.stringValue : nil } ?? []
        return parts.joined(separator: " ")
    }

    static let created = 1_700_000_000

    /// A 400 whose body echoes the credential the way a careless upstream might: `stub-echo-auth` as is in
    /// `error`; `-detail` as is in `detail`; `-escaped` with one character JSON-escaped (`\u002d`); `-url`
    /// percent-encoded; `-split` cut into 6-character pieces across fields; `-masked` as `cpk-LEAKCA…wxyz`;
    /// `-text` in a body that is not JSON; `-clean` not at all (a plain `detail` message).
    static func echo(key: String, form: String) -> Response {
        let characters = Array(key)
        let body: String
        switch form {
        case "-detail": body = #"{"detail":"bad key \#(key)"}"#
        case "-escaped":
            let escaped = characters.enumerated().map { index, character in
                index == 3 ? String(format: "\\u%04x", character.unicodeScalars.first!.value) : String(character)
            }.joined()
            body = #"{"error":{"message":"bad key \#(escaped)","type":"invalid_request_error"}}"#
        case "-url":
            let encoded = key.utf8.map { String(format: "%%%02X", $0) }.joined()
            body = #"{"detail":"see https://chutes.example/keys?k=\#(encoded)"}"#
        case "-split":
            let pieces = stride(from: 0, to: characters.count, by: 6).map {
                String(characters[$0..<min(characters.count, $0 + 6)])
            }
            let fields = pieces.enumerated().map { #""p\#($0.offset)":"\#($0.element)""# }.joined(separator: ",")
            body = #"{"detail":"bad key","parts":{\#(fields)}}"#
        case "-masked":
            let masked = String(characters.prefix(10)) + "…" + String(characters.suffix(4))
            body = #"{"detail":"invalid key \#(masked)"}"#
        case "-text": body = "bad request; you sent Authorization: Bearer \(key)"
        case "-clean": body = #"{"detail":"model not found"}"#
        default: body = #"{"error":"bad request; you sent Authorization: Bearer \#(key)"}"#
        }
        return Response(
            status: .badRequest, headers: [.contentType: form == "-text" ? "text/plain" : "application/json"],
            body: .init(byteBuffer: ByteBuffer(string: body)))
    }

    static func json(_ status: HTTPResponse.Status, _ value: JSONValue) -> Response {
        Response(
            status: status, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: value.serialized())))
    }
}
