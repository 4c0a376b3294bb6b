import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import JSON
import NIOCore

/// vLLM's serving routes besides completions, with deterministic answers (derived from the request's bytes),
/// so every route of SPEC §2 can be tried in dev mode and its receipts checked: the Responses API (streamed
/// with `event:` lines, or not), embeddings (8 dimensions, `float` or `base64`), rerank, score,
/// tokenize/detokenize (a token is a UTF-8 byte), audio transcriptions and translations (multipart; JSON, text
/// or a vLLM-style event stream when the form asks; a WAV is described by its header) and image generations (a
/// 1×1 PNG). `stub-error-<status>` answers that status on each; `stub-slow-<ms>` waits first (JSON routes);
/// `stub-unserved` answers FastAPI's 404, as vLLM does for a route its model does not serve.
extension StubUpstream {
    func addModelRoutes(to router: Router<BasicRequestContext>) {
        router.post("/v1/responses") { request, _ in
            try await self.counted(request) { body, bytes in self.responses(body, bytes: bytes) }
        }
        router.post("/v1/embeddings") { request, _ in
            try await self.counted(request) { body, bytes in Self.json(.ok, Self.embeddings(body, bytes: bytes)) }
        }
        router.post("/v1/rerank") { request, _ in
            try await self.counted(request) { body, bytes in Self.json(.ok, Self.rerank(body, bytes: bytes)) }
        }
        router.post("/v1/score") { request, _ in
            try await self.counted(request) { body, bytes in Self.json(.ok, Self.score(body, bytes: bytes)) }
        }
        router.post("/tokenize") { request, _ in
            try await self.counted(request) { body, _ in
                let text = body["prompt"]?.stringValue ?? Self.lastText(body, chat: true)
                let tokens = text.utf8.map { JSONValue.integer(Int($0)) }
                return Self.json(
                    .ok, ["count": .integer(tokens.count), "max_model_len": 4096, "tokens": .array(tokens)])
            }
        }
        router.post("/detokenize") { request, _ in
            try await self.counted(request) { body, _ in
                let bytes = (body["tokens"]?.arrayValue ?? []).compactMap { $0.intValue.flatMap(UInt8.init(exactly:)) }
                return Self.json(.ok, ["prompt": .string(String(decoding: bytes, as: UTF8.self))])
            }
        }
        router.post("/v1/images/generations") { request, _ in
            try await self.counted(request) { body, _ in
                let count = max(1, min(body["n"]?.intValue ?? 1, 4))
                let prompt = body["prompt"]?.stringValue ?? ""
                let image: JSONValue = [
                    "b64_json": .string(Self.onePixelPNG), "revised_prompt": .string("Echo: " + prompt),
                ]
                return Self.json(
                    .ok, ["created": .integer(Self.created), "data": .array(Array(repeating: image, count: count))])
            }
        }
        for (path, task) in [("/v1/audio/transcriptions", "Transcript"), ("/v1/audio/translations", "Translation")] {
            router.post(RouterPath(path)) { request, _ in try await self.audio(request, task: task) }
        }
    }

    /// Collects and records a JSON request, answers the common test models, then `answer`; counted like a
    /// completion (a stream counts itself once written).
    private func counted(
        _ request: Request, answer: (JSONValue, [UInt8]) async throws -> Response
    ) async throws -> Response {
        counts.withLock { $0.started += 1 }
        let bytes = Array(buffer: try await request.body.collect(upTo: 64 << 20))
        record(request, body: bytes)
        let response: Response
        if let refused = refuseWithoutKey(request) {
            response = refused
        } else {
            let body = (try? JSONValue(parsing: bytes)) ?? [:]
            let model = body["model"]?.stringValue ?? "stub-model"
            if let failure = Self.testModelAnswer(model) {
                response = failure
            } else {
                if model.hasPrefix("stub-slow-"), let ms = Int(model.dropFirst("stub-slow-".count)) {
                    do {
                        try await Task.sleep(for: .milliseconds(ms))
                    } catch {
                        counts.withLock { $0.cancelled += 1 }
                        throw error
                    }
                }
                response = try await answer(body, bytes)
            }
        }
        if response.headers[.contentType] != "text/event-stream" { counts.withLock { $0.completed += 1 } }
        return response
    }

    static func testModelAnswer(_ model: String) -> Response? {
        if model == "stub-unserved" { return json(.notFound, ["detail": "Not Found"]) }
        return errorAnswer(model)
    }

    /// `stub-error-<status>`: vLLM's error shape with that status (every route, completions included).
    static func errorAnswer(_ model: String) -> Response? {
        guard model.hasPrefix("stub-error-"), let code = Int(model.dropFirst("stub-error-".count)) else { return nil }
        return json(
            .init(code: code),
            [
                "object": "error", "message": .string("stub error \(code)"), "type": "BadRequestError",
                "param": nil, "code": .integer(code),
            ])
    }

    /// A short hex digest of the request bytes: ids and numbers that repeat for the same request.
    static func digest(_ bytes: some Sequence<UInt8>, count: Int = 12) -> String {
        SHA256.hash(data: Array(bytes)).prefix(count).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }

    /// A number in [0, 1) from the digest of `seed`.
    static func unitNumber(_ seed: String, _ index: Int) -> Double {
        let bytes = Array(SHA256.hash(data: Array("\(index):\(seed)".utf8)))
        let word = bytes.prefix(4).reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        return Double(word) / 4_294_967_296
    }

    // MARK: Responses API

    private func responses(_ body: JSONValue, bytes: [UInt8]) -> Response {
        let model = body["model"]?.stringValue ?? "stub-model"
        let input: String
        if let text = body["input"]?.stringValue {
            input = text
        } else {
            input = Self.lastText(["messages": body["input"] ?? []], chat: true)
        }
        let id = "resp_" + (body["request_id"]?.stringValue ?? Self.digest(bytes))
        let messageID = "msg_" + Self.digest(bytes, count: 8)
        let reply = "Echo: " + input
        let words = reply.split(separator: " ").count
        func response(status: String, text: String?) -> JSONValue {
            var object: JSONObject = [
                "id": .string(id), "object": "response", "created_at": .integer(Self.created), "model": .string(model),
                "status": .string(status), "error": nil, "incomplete_details": nil, "instructions": nil,
                "metadata": [:], "parallel_tool_calls": true, "temperature": .decimal(1.0), "top_p": .decimal(1.0),
                "tool_choice": "auto",
                "tools": [], "output": [],
            ]
            if let text {
                object["output"] = [
                    [
                        "type": "message", "id": .string(messageID), "role": "assistant", "status": "completed",
                        "content": [["type": "output_text", "text": .string(text), "annotations": []]],
                    ]
                ]
                object["usage"] = [
                    "input_tokens": 5, "input_tokens_details": ["cached_tokens": 0], "output_tokens": .integer(words),
                    "output_tokens_details": ["reasoning_tokens": 0], "total_tokens": .integer(words + 5),
                ]
            }
            return .object(object)
        }
        guard body["stream"] == .bool(true) else { return Self.json(.ok, response(status: "completed", text: reply)) }
        var events: [(String, JSONValue)] = [
            ("response.created", ["type": "response.created", "response": response(status: "in_progress", text: nil)])
        ]
        let pieces = reply.split(separator: " ").enumerated().map {
            $0.offset == 0 ? String($0.element) : " " + $0.element
        }
        for piece in pieces {
            events.append(
                (
                    "response.output_text.delta",
                    [
                        "type": "response.output_text.delta", "item_id": .string(messageID), "output_index": 0,
                        "content_index": 0, "delta": .string(piece),
                    ]
                ))
        }
        events.append(
            (
                "response.completed",
                ["type": "response.completed", "response": response(status: "completed", text: reply)]
            ))
        var stream = ByteBuffer()
        for (number, (name, var data)) in events.enumerated() {
            if case .object(var object) = data {
                object["sequence_number"] = .integer(number)
                data = .object(object)
            }
            stream.writeString("event: \(name)\ndata: ")
            stream.writeBytes(data.serialized())
            stream.writeString("\n\n")
        }
        let finished = stream
        return Response(
            status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
            body: ResponseBody { writer in
                do {
                    try await writer.write(finished)
                    try await writer.finish(nil)
                    self.counts.withLock { $0.completed += 1 }
                } catch {
                    self.counts.withLock { $0.cancelled += 1 }
                    throw error
                }
            })
    }

    // MARK: Embeddings, rerank, score

    static func embeddings(_ body: JSONValue, bytes: [UInt8]) -> JSONValue {
        let inputs: [String] =
            if let text = body["input"]?.stringValue { [text] } else {
                (body["input"]?.arrayValue ?? []).map {
                    $0.stringValue ?? String(decoding: $0.serialized(), as: UTF8.self)
                }
            }
        let base64 = body["encoding_format"] == "base64"
        var data: [JSONValue] = []
        var tokens = 0
        for (index, input) in inputs.enumerated() {
            let vector = (0..<8).map { Float(unitNumber(input, $0) * 2 - 1) }
            tokens += input.split(separator: " ").count
            let embedding: JSONValue =
                if base64 {
                    .string(
                        Data(vector.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) })
                            .base64EncodedString())
                } else {
                    .array(vector.map { JSONValue.decimal(Double($0)) })
                }
            data.append(["index": .integer(index), "object": "embedding", "embedding": embedding])
        }
        return [
            "id": .string("embd-" + (body["request_id"]?.stringValue ?? digest(bytes))), "object": "list",
            "created": .integer(created), "model": body["model"] ?? "stub-model", "data": .array(data),
            "usage": ["prompt_tokens": .integer(tokens), "total_tokens": .integer(tokens)],
        ]
    }

    static func rerank(_ body: JSONValue, bytes: [UInt8]) -> JSONValue {
        let query = body["query"]?.stringValue ?? ""
        let documents = (body["documents"]?.arrayValue ?? []).map { $0.stringValue ?? $0["text"]?.stringValue ?? "" }
        var results: [(Int, Double)] = documents.enumerated().map {
            ($0.offset, unitNumber(query + "\u{0}" + $0.element, 0))
        }
        results.sort { $0.1 > $1.1 }
        if let top = body["top_n"]?.intValue, top > 0 { results = Array(results.prefix(top)) }
        return [
            "id": .string("rerank-" + (body["request_id"]?.stringValue ?? digest(bytes))),
            "model": body["model"] ?? "stub-model",
            "usage": ["total_tokens": .integer(documents.count * 4)],
            "results": .array(
                results.map {
                    [
                        "index": .integer($0.0), "document": ["text": .string(documents[$0.0])],
                        "relevance_score": JSONValue.decimal($0.1),
                    ]
                }),
        ]
    }

    static func score(_ body: JSONValue, bytes: [UInt8]) -> JSONValue {
        let first = body["text_1"]?.stringValue ?? ""
        let seconds =
            body["text_2"]?.stringValue.map { [$0] } ?? (body["text_2"]?.arrayValue ?? []).compactMap(\.stringValue)
        return [
            "id": .string("score-" + (body["request_id"]?.stringValue ?? digest(bytes))), "object": "list",
            "created": .integer(created), "model": body["model"] ?? "stub-model",
            "data": .array(
                seconds.enumerated().map {
                    [
                        "index": .integer($0.offset), "object": "score",
                        "score": JSONValue.decimal(unitNumber(first + "\u{0}" + $0.element, 0)),
                    ]
                }),
            "usage": ["prompt_tokens": .integer(seconds.count * 4), "total_tokens": .integer(seconds.count * 4)],
        ]
    }

    // MARK: Audio

    private func audio(_ request: Request, task: String) async throws -> Response {
        counts.withLock { $0.started += 1 }
        let bytes = Array(buffer: try await request.body.collect(upTo: 256 << 20))
        record(request, body: bytes)
        if let refused = refuseWithoutKey(request) {
            counts.withLock { $0.completed += 1 }
            return refused
        }
        guard let boundary = request.headers[.contentType].flatMap(Self.boundary(of:)),
            let form = Self.parseForm(bytes, boundary: boundary), let file = form["file"]
        else {
            counts.withLock { $0.completed += 1 }
            return Self.json(
                .badRequest,
                [
                    "object": "error", "message": "expected a multipart form with a file", "type": "BadRequestError",
                    "param": nil, "code": 400,
                ])
        }
        let model = form["model"].map { String(decoding: $0.data, as: UTF8.self) } ?? "stub-model"
        if let failure = Self.testModelAnswer(model) {
            counts.withLock { $0.completed += 1 }
            return failure
        }
        let text = "\(task) of \(Self.describeAudio(file.data)) named \(file.filename ?? "audio")"
        let format = form["response_format"].map { String(decoding: $0.data, as: UTF8.self) } ?? "json"
        let streamAsked =
            form["stream"].map { String(decoding: $0.data, as: UTF8.self).lowercased() == "true" } ?? false
        if streamAsked {
            let id = "trsc-" + Self.digest(bytes)
            var stream = ByteBuffer()
            for (index, word) in text.split(separator: " ").enumerated() {
                let event: JSONValue = [
                    "id": .string(id), "object": "transcription.chunk", "created": .integer(Self.created),
                    "model": .string(model),
                    "choices": [["delta": ["content": .string((index == 0 ? "" : " ") + word)], "finish_reason": nil]],
                ]
                stream.writeString("data: ")
                stream.writeBytes(event.serialized())
                stream.writeString("\n\n")
            }
            stream.writeString("data: [DONE]\n\n")
            counts.withLock { $0.completed += 1 }
            return Response(
                status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
                body: .init(byteBuffer: stream))
        }
        counts.withLock { $0.completed += 1 }
        if format == "text" {
            return Response(
                status: .ok, headers: [.contentType: "text/plain; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        return Self.json(.ok, ["text": .string(text), "usage": ["type": "duration", "seconds": 1]])
    }

    /// "a 1.00 s WAV (16000 Hz, 1 channel)" from a RIFF/WAVE header, else "N bytes of audio".
    static func describeAudio(_ data: [UInt8]) -> String {
        func le(_ at: Int, _ count: Int) -> Int {
            (0..<count).reduce(0) { $0 | Int(data[at + $1]) << (8 * $1) }
        }
        guard data.count >= 44, data.starts(with: Array("RIFF".utf8)), Array(data[8..<12]) == Array("WAVE".utf8) else {
            return "\(data.count) bytes of audio"
        }
        let channels = le(22, 2)
        let rate = le(24, 4)
        let byteRate = le(28, 4)
        let seconds = byteRate > 0 ? Double(data.count - 44) / Double(byteRate) : 0
        return String(format: "a %.2f s WAV (%d Hz, %d channel%@)", seconds, rate, channels, channels == 1 ? "" : "s")
    }

    /// The boundary parameter of a `multipart/form-data` content type.
    static func boundary(of contentType: String) -> String? {
        for parameter in contentType.split(separator: ";").dropFirst() {
            let pair = parameter.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if pair.count == 2, pair[0].lowercased() == "boundary" {
                return pair[1].trimmingCharacters(in: CharacterSet(charactersIn: "\""))
            }
        }
        return nil
    }

    /// One form field: its bytes and, for a file, its name.
    struct FormField {
        let data: [UInt8]
        let filename: String?
    }

    /// A minimal multipart/form-data reader (RFC 7578), enough for the stub: fields by name.
    static func parseForm(_ body: [UInt8], boundary: String) -> [String: FormField]? {
        let delimiter = Array("--\(boundary)".utf8)
        var fields: [String: FormField] = [:]
        let positions = body.ranges(of: delimiter).map(\.lowerBound)
        guard positions.count >= 2 else { return nil }
        for (start, end) in zip(positions, positions.dropFirst()) {
            var part = Array(body[(start + delimiter.count)..<end])
            if part.starts(with: [13, 10]) { part.removeFirst(2) }
            if part.count >= 2, part.suffix(2) == [13, 10] { part.removeLast(2) }
            guard let split = part.firstRange(of: [13, 10, 13, 10])?.lowerBound else { continue }
            let head = String(decoding: part[..<split], as: UTF8.self)
            let data = Array(part[(split + 4)...])
            guard
                let disposition = head.split(separator: "\r\n").first(where: {
                    $0.lowercased().hasPrefix("content-disposition")
                })
            else { continue }
            func parameter(_ name: String) -> String? {
                guard let range = disposition.range(of: "\(name)=\"") else { return nil }
                let rest = disposition[range.upperBound...]
                return rest.firstIndex(of: "\"").map { String(rest[..<$0]) }
            }
            guard let name = parameter(" name") ?? parameter(";name") else { continue }
            fields[name] = FormField(data: data, filename: parameter("filename"))
        }
        return fields
    }

    /// A valid 1×1 PNG.
    static let onePixelPNG =
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
}

extension JSONValue {
    /// A JSON number from a Double (finite values only, as the stub makes them).
    fileprivate static func decimal(_ value: Double) -> JSONValue { .number(String(value)) }

    /// An integer-valued number's value.
    fileprivate var intValue: Int? {
        if case .number(let text) = self { return Int(text) }
        return nil
    }
}
