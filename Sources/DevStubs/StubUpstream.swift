import Crypto
import Foundation
import GuardedHTTP
import HTTPTypes
import Hummingbird
import HummingbirdCore
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
/// `stub-pause-<ms>` answers after `ms` when not streamed, and streams its first chunk at once and the rest
/// after `ms` of silence when streamed (a model "generating");
/// any model containing `reasoning` adds `reasoning_content` and `reasoning` fields;
/// `stub-large-<bytes>` replies (not streamed) with that many bytes of text instead of the echo, so a test
/// can measure what holding and sealing a large answer costs the proxy;
/// `stub-echo-auth[-form]` answers 400 with the credential it received echoed in its body (as a careless
/// upstream might; see `echo(key:form:)`), to prove the proxy scrubs its key. With a `ChutesE2EEDevRelay` it
/// also serves Chutes' E2EE endpoints and the instance evidence (development only).
///
/// Like vLLM, it also answers in ways that carry request or generated text outside `content`, so tests can
/// show the proxy keeps them from an E2EE client's gateway: a chat message without `role` gets vLLM's 400
/// that echoes the message; `logprobs`, `top_logprobs`, `prompt_logprobs`, `echo`, `return_token_ids` and
/// `tools` add what vLLM adds; a model containing `leaky` adds all of that and more (`tool_calls`,
/// `refusal`, `stop_reason`, array-valued content in a second choice, unknown fields at every level); a
/// model containing `stream-error` streams one piece, then vLLM's mid-stream error event echoing the
/// prompt (`stream-error-flat`: the older top-level shape).
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

    /// What became of the completion requests received: each one started ends either completed (its
    /// answer fully written) or cancelled (its reader went away first); the rest are still running.
    public struct Counts: Sendable, Equatable {
        public var started = 0
        public var completed = 0
        public var cancelled = 0
        public var running: Int { started - completed - cancelled }

        public init(started: Int = 0, completed: Int = 0, cancelled: Int = 0) {
            self.started = started
            self.completed = completed
            self.cancelled = cancelled
        }
    }

    private let recorded = Mutex<[Recorded]>([])
    private let waiting = Mutex<Double>(0)
    let cancelled = Atomic<Int>(0)
    let counts = Mutex(Counts())

    /// The server the stub must run on: without it a handler never learns that its client (the proxy) went
    /// away, so `counts` could not tell a cancelled upstream request from a finished one.
    public static var server: HTTPServerBuilder { .guardedHTTP1(limits: .none) }

    /// When set, `/v1/*` requires `Authorization: Bearer <apiKey>` and answers 401 otherwise, like Chutes.
    private let apiKey: String?

    /// When set, also Chutes' E2EE relay and instance (development only).
    private let e2ee: ChutesE2EEDevRelay?

    public init(apiKey: String? = nil, e2ee: ChutesE2EEDevRelay? = nil) {
        self.apiKey = apiKey
        self.e2ee = e2ee
    }

    /// Requests received so far, oldest first.
    public var requests: [Recorded] { recorded.withLock { $0 } }
    public func reset() {
        recorded.withLock { $0.removeAll() }
        counts.withLock { $0 = Counts() }
    }
    /// Completion requests started, completed and cancelled since the last reset.
    public var completionCounts: Counts { counts.withLock { $0 } }
    /// Streams that ended because the reader went away (the proxy cancelled its upstream request).
    public var cancelledStreams: Int { cancelled.load(ordering: .relaxed) }
    /// The `vllm:num_requests_waiting` value `/metrics` reports.
    public func setWaiting(_ value: Double) { waiting.withLock { $0 = value } }

    public func router() -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.post("/v1/chat/completions") { request, _ in try await self.complete(request, chat: true) }
        router.post("/v1/completions") { request, _ in try await self.complete(request, chat: false) }
        addModelRoutes(to: router)
        router.get("/v1/models") { request, _ in
            self.record(request, body: [])
            if let refused = self.refuseWithoutKey(request) { return refused }
            var model: JSONObject = [
                "id": "stub-model", "object": "model", "owned_by": "vllm-stub", "max_model_len": 4096,
            ]
            if self.e2ee != nil {
                for member in ChutesE2EEDevRelay.modelFields.members { model[member.key] = member.value }
            }
            return Self.json(.ok, ["object": "list", "data": [.object(model)]])
        }
        if let e2ee {
            router.get("/e2e/instances/{chute}") { request, context in
                self.record(request, body: [])
                if let refused = self.refuseWithoutKey(request) { return refused }
                return e2ee.instances(chuteID: try context.parameters.require("chute"))
            }
            router.post("/e2e/invoke") { request, _ in
                let blob = Array(buffer: try await request.body.collect(upTo: 64 << 20))
                self.record(request, body: blob)
                if let refused = self.refuseWithoutKey(request) { return refused }
                return try e2ee.invoke(request, blob: blob)
            }
            router.get("/chutes/{chute}/evidence") { request, context in
                self.record(request, body: [])
                if let refused = self.refuseWithoutKey(request) { return refused }
                return try e2ee.evidence(
                    chuteID: try context.parameters.require("chute"),
                    nonces: request.uri.queryParameters.getAll("nonce"))
            }
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
        router.get("/stub/counts") { _, _ in
            let counts = self.completionCounts
            return Self.json(
                .ok,
                [
                    "started": .integer(counts.started), "completed": .integer(counts.completed),
                    "cancelled": .integer(counts.cancelled), "running": .integer(counts.running),
                ])
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

    func refuseWithoutKey(_ request: Request) -> Response? {
        guard let apiKey, request.headers[.authorization] != "Bearer \(apiKey)" else { return nil }
        return Self.json(.unauthorized, ["detail": "Invalid API key"])
    }

    func record(_ request: Request, body: [UInt8]) {
        var headers: [String: String] = [:]
        for field in request.headers { headers[field.name.canonicalName] = field.value }
        let entry = Recorded(method: request.method.rawValue, path: request.uri.path, headers: headers, body: body)
        recorded.withLock { $0.append(entry) }
    }

    private func complete(_ request: Request, chat: Bool) async throws -> Response {
        counts.withLock { $0.started += 1 }
        do {
            let response = try await answer(request, chat: chat)
            // Streams count themselves once written; anything else is complete once built.
            if response.headers[.contentType] != "text/event-stream" { counts.withLock { $0.completed += 1 } }
            return response
        } catch {
            counts.withLock { $0.cancelled += 1 }
            throw error
        }
    }

    private func answer(_ request: Request, chat: Bool) async throws -> Response {
        let bytes = Array(buffer: try await request.body.collect(upTo: 64 << 20))
        record(request, body: bytes)
        if let refused = refuseWithoutKey(request) { return refused }
        let body = (try? JSONValue(parsing: bytes)) ?? [:]
        let model = body["model"]?.stringValue ?? "stub-model"
        if let failure = Self.errorAnswer(model) { return failure }
        if chat, let echoed = Self.messageWithoutRole(body) {
            // vLLM's request validation error, which quotes the offending input.
            let quoted = "{'content': '\(echoed)'}"
            return Self.json(
                .badRequest,
                [
                    "object": "error",
                    "message": .string(
                        "[{'type': 'missing', 'loc': ('body', 'messages', 0, 'role'), 'msg': 'Field required', 'input': \(quoted)}]"
                    ),
                    "type": "BadRequestError", "param": nil, "code": 400,
                ])
        }
        if model.hasPrefix("stub-echo-auth") {
            let header = request.headers[.authorization] ?? ""
            return Self.echo(key: String(header.dropFirst("Bearer ".count)), form: String(model.dropFirst(14)))
        }
        if model.hasPrefix("stub-slow-"), let ms = Int(model.dropFirst("stub-slow-".count)) {
            try await Task.sleep(for: .milliseconds(ms))
        }
        let pause =
            model.hasPrefix("stub-pause-")
            ? Int(model.dropFirst("stub-pause-".count)).map { Duration.milliseconds($0) } : nil
        if let pause, body["stream"] != .bool(true) { try await Task.sleep(for: pause) }
        // Deterministic answers (id from the body, fixed `created`) let a test compare the proxy's bytes with
        // the stub's own answer to the same request. Like vLLM, a `request_id` in the body chooses the id.
        let id = (chat ? "chatcmpl-" : "cmpl-") + (body["request_id"]?.stringValue ?? "stub-" + Self.digest(bytes))
        let prompt = Self.lastText(body, chat: chat)
        let leaks = Leaks(body)
        let reply = Self.largeReply(model) ?? (leaks.contains(.echo) ? prompt : "") + "Echo: " + prompt
        let reasoning = model.contains("reasoning") ? "Thinking about: \(prompt)" : nil
        if body["stream"] == .bool(true) {
            return stream(
                id: id, model: model, reply: reply, reasoning: reasoning, chat: chat, leaks: leaks, prompt: prompt,
                pause: pause, includeUsage: body["stream_options"]?["include_usage"] == .bool(true))
        }
        var choice: JSONObject = ["index": 0, "finish_reason": "stop", "logprobs": nil]
        if chat {
            var message: JSONObject = ["role": "assistant", "content": .string(reply), "tool_calls": []]
            if let reasoning {
                message["reasoning_content"] = .string(reasoning)
                message["reasoning"] = .string(reasoning)
            }
            leaks.add(to: &message, text: reply)
            choice["message"] = .object(message)
        } else {
            choice["text"] = .string(reply)
        }
        leaks.add(toChoice: &choice, text: reply)
        var choices: [JSONValue] = [.object(choice)]
        if chat, leaks.contains(.leaky) {
            // A second choice whose content is an array, as some upstreams send structured output.
            let parts: JSONValue = [["type": "text", "text": .string(reply)]]
            choices.append(["index": 1, "finish_reason": "stop", "message": ["role": "assistant", "content": parts]])
        }
        let words = reply.split(separator: " ").count
        var response: JSONObject = [
            "id": .string(id), "object": chat ? "chat.completion" : "text_completion",
            "created": .integer(Self.created), "model": .string(model),
            "choices": .array(choices),
            "usage": [
                "prompt_tokens": 5, "completion_tokens": .integer(words), "total_tokens": .integer(words + 5),
            ],
        ]
        leaks.add(toResponse: &response, prompt: prompt, text: reply, chat: chat)
        return Self.json(.ok, .object(response))
    }

    /// The `content` of the first chat message that has no `role`, as text (vLLM's 400 quotes it).
    static func messageWithoutRole(_ body: JSONValue) -> String? {
        for message in body["messages"]?.arrayValue ?? [] {
            guard case .object(let object) = message, object["role"] == nil else { continue }
            let content = object["content"] ?? ""
            return content.stringValue ?? String(decoding: content.serialized(), as: UTF8.self)
        }
        return nil
    }

    private func stream(
        id: String, model: String, reply: String, reasoning: String?, chat: Bool, leaks: Leaks, prompt: String,
        pause: Duration?, includeUsage: Bool
    ) -> Response {
        let created = Self.created
        @Sendable func chunk(_ delta: JSONObject?, text: String?, finish: String?) -> ByteBuffer {
            var choice: JSONObject = ["index": 0, "logprobs": nil, "finish_reason": finish.map { .string($0) } ?? nil]
            var delta = delta ?? [:]
            let piece = text ?? delta["content"]?.stringValue
            if let piece, !piece.isEmpty {
                leaks.add(to: &delta, text: piece)
                leaks.add(toChoice: &choice, text: piece)
            }
            if finish != nil, leaks.contains(.leaky) { choice["stop_reason"] = .string(reply) }
            if chat { choice["delta"] = .object(delta) } else { choice["text"] = .string(text ?? "") }
            var event: JSONObject = [
                "id": .string(id), "object": chat ? "chat.completion.chunk" : "text_completion",
                "created": .integer(created), "model": .string(model), "choices": [.object(choice)],
            ]
            if let piece, !piece.isEmpty { leaks.add(toResponse: &event, prompt: prompt, text: piece, chat: chat) }
            return ByteBuffer(bytes: Array("data: ".utf8) + JSONValue.object(event).serialized() + Array("\n\n".utf8))
        }
        @Sendable func event(_ value: JSONValue) -> ByteBuffer {
            ByteBuffer(bytes: Array("data: ".utf8) + value.serialized() + Array("\n\n".utf8))
        }
        // Not `cond ? error : nil`: JSONValue is nil-literal-expressible, so that `nil` would be `.null`.
        let failure: JSONValue? =
            model.contains("stream-error")
            ? Self.midStreamError(echoing: prompt, flat: model.contains("stream-error-flat")) : .none
        let pieces = reply.split(separator: " ", omittingEmptySubsequences: false).enumerated().map {
            $0.offset == 0 ? String($0.element) : " " + $0.element
        }
        let (count, delay): (Int, Duration) =
            model == "stub-long" ? (2000, .milliseconds(5)) : (1, .zero)
        let stall = model == "stub-stall"
        @Sendable func write(_ writer: inout any ResponseBodyWriter) async throws {
            if chat { try await writer.write(chunk(["role": "assistant", "content": ""], text: nil, finish: nil)) }
            if stall { try await Task.sleep(for: .seconds(3600)) }
            if let pause {
                if !chat { try await writer.write(chunk(nil, text: "", finish: nil)) }
                try await Task.sleep(for: pause)
            }
            if let reasoning {
                let delta: JSONObject = ["reasoning_content": .string(reasoning), "reasoning": .string(reasoning)]
                try await writer.write(chunk(delta, text: nil, finish: nil))
            }
            for _ in 0..<count {
                for piece in pieces {
                    try await writer.write(chunk(["content": .string(piece)], text: piece, finish: nil))
                    if let failure {
                        try await writer.write(event(failure))
                        try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
                        try await writer.finish(nil)
                        return
                    }
                    if delay > .zero { try await Task.sleep(for: delay) }
                }
            }
            if chat, leaks.contains(.leaky) {
                // A second choice whose content is an array, as some upstreams send structured output.
                let parts: JSONValue = [["type": "text", "text": .string(reply)]]
                try await writer.write(
                    event([
                        "id": .string(id), "object": "chat.completion.chunk", "created": .integer(created),
                        "model": .string(model),
                        "choices": [["index": 1, "finish_reason": nil, "delta": ["content": parts]]],
                    ]))
            }
            try await writer.write(chunk([:], text: "", finish: "stop"))
            if includeUsage {
                // As vLLM does for `stream_options.include_usage`: a last chunk with no choices and the usage.
                let words = reply.split(separator: " ").count * count
                try await writer.write(
                    event([
                        "id": .string(id), "object": chat ? "chat.completion.chunk" : "text_completion",
                        "created": .integer(created), "model": .string(model), "choices": [],
                        "usage": [
                            "prompt_tokens": 5, "completion_tokens": .integer(words),
                            "total_tokens": .integer(words + 5),
                            "prompt_tokens_details": ["cached_tokens": 0],
                        ],
                    ]))
            }
            try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
            try await writer.finish(nil)
        }
        return Response(
            status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
            body: ResponseBody { writer in
                do {
                    try await write(&writer)
                    self.counts.withLock { $0.completed += 1 }
                } catch {
                    self.cancelled.add(1, ordering: .relaxed)
                    self.counts.withLock { $0.cancelled += 1 }
                    throw error
                }
            })
    }

    /// vLLM's in-band error event; its message quotes the request, as vLLM's validation errors do.
    static func midStreamError(echoing prompt: String, flat: Bool) -> JSONValue {
        let error: JSONValue = [
            "object": "error", "message": .string("generation failed for input {'content': '\(prompt)'}"),
            "type": "BadRequestError", "param": nil, "code": 400,
        ]
        return flat ? error : ["error": error]
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

    /// The reply of `stub-large-<bytes>` (at most 64 MiB): lines of text, so its JSON has escapes as generated
    /// text does.
    static func largeReply(_ model: String) -> String? {
        guard model.hasPrefix("stub-large-"), let size = Int(model.dropFirst("stub-large-".count)),
            (0...(64 << 20)).contains(size)
        else { return nil }
        let line = "All work and no play makes a large answer.\n"
        let lines = String(repeating: line, count: size / line.utf8.count + 1)
        return String(decoding: lines.utf8.prefix(size), as: UTF8.self)
    }

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

/// What a request asks the stub to add beyond `content`, each as vLLM (or a careless upstream) would.
struct Leaks: OptionSet, Sendable {
    let rawValue: Int
    static let logprobs = Leaks(rawValue: 1)
    static let topLogprobs = Leaks(rawValue: 2)
    static let promptLogprobs = Leaks(rawValue: 4)
    static let echo = Leaks(rawValue: 8)
    static let tokenIDs = Leaks(rawValue: 16)
    static let tools = Leaks(rawValue: 32)
    /// Everything above (but `echo`) and more: `refusal`, `stop_reason`, unknown fields, array content.
    static let leaky = Leaks(rawValue: 64)

    init(rawValue: Int) { self.rawValue = rawValue }

    init(_ body: JSONValue) {
        func asked(_ name: String) -> Bool {
            guard let value = body[name], !value.isNull else { return false }
            return value != .bool(false) && value != .number("0")
        }
        var leaks: Leaks = []
        if (body["model"]?.stringValue ?? "").contains("leaky") {
            leaks = [.leaky, .logprobs, .topLogprobs, .promptLogprobs, .tokenIDs, .tools]
        }
        if asked("logprobs") { leaks.insert(.logprobs) }
        if asked("top_logprobs") { leaks.insert([.logprobs, .topLogprobs]) }
        if body["prompt_logprobs"].map({ !$0.isNull }) ?? false { leaks.insert(.promptLogprobs) }
        if asked("echo") { leaks.insert(.echo) }
        if asked("return_token_ids") || asked("return_tokens_as_token_ids") { leaks.insert(.tokenIDs) }
        if asked("tools") || asked("functions") { leaks.insert(.tools) }
        self = leaks
    }

    /// Token-level entries for `text`, one per word: the token text and its UTF-8 bytes.
    static func logprobs(_ text: String, top: Bool) -> JSONValue {
        let tokens = text.split(separator: " ").map { word -> JSONValue in
            let token: JSONObject = [
                "token": .string(String(word)), "logprob": .number("-0.25"),
                "bytes": .array(word.utf8.map { .integer($0) }),
            ]
            var entry = token
            entry["top_logprobs"] = top ? [.object(token)] : []
            return .object(entry)
        }
        return ["content": .array(tokens)]
    }

    /// Into a message or delta: tool calls whose arguments carry the text, `refusal`, unknown fields.
    func add(to message: inout JSONObject, text: String) {
        if contains(.tools) {
            let arguments = String(decoding: JSONValue.object(["text": .string(text)]).serialized(), as: UTF8.self)
            message["tool_calls"] = [
                [
                    "id": "call_stub", "type": "function", "index": 0,
                    "function": ["name": "echo", "arguments": .string(arguments)],
                ]
            ]
        }
        if contains(.leaky) {
            message["refusal"] = .string(text)
            message["function_call"] = ["name": "echo", "arguments": .string(text)]
            message["annotations"] = [["type": "note", "text": .string(text)]]
            message["audio"] = ["transcript": .string(text)]
            message["message"] = ["content": .string(text)]  // an allow-listed name at the wrong depth
        }
    }

    /// Into a choice: `logprobs`, `token_ids`, `stop_reason` and unknown fields.
    func add(toChoice choice: inout JSONObject, text: String) {
        if contains(.logprobs) { choice["logprobs"] = Self.logprobs(text, top: contains(.topLogprobs)) }
        if contains(.tokenIDs) { choice["token_ids"] = .array(text.utf8.map { .integer($0) }) }
        if contains(.leaky) {
            choice["stop_reason"] = .string(text)
            choice["text"] = .string(text)
            choice["content"] = .string(text)
        }
    }

    /// Into the response or event: `prompt_logprobs`, `prompt_token_ids` and unknown fields.
    func add(toResponse response: inout JSONObject, prompt: String, text: String, chat: Bool) {
        if contains(.promptLogprobs) {
            let entries = prompt.split(separator: " ").enumerated().map { offset, word -> JSONValue in
                ["\(offset + 1)": ["logprob": .number("-1.5"), "rank": 1, "decoded_token": .string(String(word))]]
            }
            response["prompt_logprobs"] = .array([nil] + entries)
        }
        if contains(.tokenIDs) { response["prompt_token_ids"] = .array(prompt.utf8.map { .integer($0) }) }
        if contains(.leaky) {
            response["kv_transfer_params"] = ["text": .string(text)]
            response["content"] = .string(text)
            response["system_fingerprint"] = ["content": .string(text)]  // allow-listed name, wrong type
            response["usage"] = [
                "prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6,
                "prompt_tokens_details": ["cached_tokens": 0, "note": .string(text)],
                "leak": .string(text),
            ]
        }
    }
}
