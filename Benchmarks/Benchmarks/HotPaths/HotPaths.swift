import Benchmark
import Crypto
import E2EE
import Foundation
import JSON
import NIOCore
import SSE
import Signing
import TDXVerifier

// Micro-benchmarks of the work the proxy does per request and per stream chunk (`scripts/microbench`).
// Each benchmark measures one operation per inner iteration; inputs are built once, outside the measurement.
// Wall time is noisy on a shared machine; malloc counts (and instructions, where the kernel exposes the
// counter) are deterministic and the numbers to compare between commits.

let benchmarks: @Sendable () -> Void = {
    // Each sample runs the operation 1 000 times (`scaledIterations`) and reports per operation, so the
    // harness's own mallocs between samples (16 per sample here) vanish from the counts.
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .instructions, .mallocCountTotal],
        timeUnits: .nanoseconds,
        warmupIterations: 2,
        scalingFactor: .kilo,
        maxDuration: .seconds(2),
        maxIterations: 1_000
    )
    // For operations of 100 µs and more: a sample then takes 0.1 s or longer.
    var slow = Benchmark.defaultConfiguration
    slow.warmupIterations = 1
    slow.maxDuration = .seconds(4)

    // The harness's own cost per operation: should read 0 mallocs and a few nanoseconds.
    Benchmark("Baseline: empty iteration") { benchmark in
        for index in benchmark.scaledIterations { blackHole(index) }
    }

    // MARK: JSON

    let smallRequest = Fixtures.smallRequest
    let largeRequest = Fixtures.largeRequest
    let response = Fixtures.response
    Benchmark("JSON parse request \(smallRequest.count) B") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try? JSONValue(parsing: smallRequest)) }
    }
    Benchmark("JSON parse request \(largeRequest.count) B") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try? JSONValue(parsing: largeRequest)) }
    }
    Benchmark("JSON parse response \(response.count) B") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try? JSONValue(parsing: response)) }
    }
    // What the pipeline does instead of parsing where nothing changes: a validating scan that reads a plain
    // request's `stream` (and looks for `tool_calls`), or a response's `id`.
    Benchmark("JSON scan request \(smallRequest.count) B") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(scanRequest(smallRequest)) }
    }
    Benchmark("JSON scan request \(largeRequest.count) B") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(scanRequest(largeRequest)) }
    }
    Benchmark("JSON scan response \(response.count) B for its id") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(response.withUnsafeBytes { topLevelID(in: $0) }) }
    }
    let parsedLarge = try! JSONValue(parsing: largeRequest)
    let parsedResponse = try! JSONValue(parsing: response)
    Benchmark("JSON serialise request \(largeRequest.count) B") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(parsedLarge.serialized()) }
    }
    Benchmark("JSON serialise response \(response.count) B") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(parsedResponse.serialized()) }
    }

    // MARK: Hashing and signing (one receipt: SHA-256 of both bodies, then both signatures over the text)

    Benchmark("SHA-256 hex of request \(largeRequest.count) B") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(Hex.encode(SHA256.hash(data: largeRequest))) }
    }
    let receiptText = Fixtures.receiptText
    Benchmark("Keccak-256 of receipt text \(receiptText.utf8.count) B") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(Keccak256.hash(receiptText.utf8)) }
    }
    let keys = SigningKeys()
    Benchmark("Sign receipt ECDSA (EIP-191, secp256k1 recoverable)") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(keys.signECDSA(receiptText)) }
    }
    Benchmark("Sign receipt Ed25519") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(keys.signEd25519(receiptText)) }
    }

    // MARK: E2EE v2

    let e2ee = Fixtures.E2EE.load()
    for algo in SigningAlgo.allCases {
        let request = e2ee.requests[algo]!
        Benchmark("E2EE open v2 request, 2 fields, \(algo.rawValue)", configuration: slow) { benchmark in
            for _ in benchmark.scaledIterations {
                guard case .encrypted(let session) = try! e2ee.codec.parse(request.headers, now: e2ee.now) else {
                    fatalError("fixture headers do not ask for E2EE")
                }
                var body = request.body
                try! e2ee.codec.openRequest(&body, session: session)
                blackHole(body)
            }
        }
        Benchmark("E2EE seal response, \(algo.rawValue)") { benchmark in
            for _ in benchmark.scaledIterations {
                let sealer = try! e2ee.codec.responseSealer(for: request.session)
                var sealed = parsedResponse
                try! sealer.seal(&sealed)
                blackHole(sealed)
            }
        }
    }

    // MARK: SSE relay of a 64-chunk stream, one event per upstream chunk as vLLM sends them

    let stream = Fixtures.streamChunks
    Benchmark("SSE split \(stream.count)-chunk stream") { benchmark in
        for _ in benchmark.scaledIterations {
            var splitter = SSEEventSplitter()
            for chunk in stream { blackHole(try! splitter.append(chunk)) }
        }
    }
    // What the pipeline's plain relay does: split events only until the chat id is seen, hash every byte.
    Benchmark("SSE relay plain \(stream.count)-chunk stream") { benchmark in
        for _ in benchmark.scaledIterations {
            var splitter = SSEEventSplitter()
            var hasher = SHA256()
            var chatID: String?
            for chunk in stream {
                let events = try! splitter.append(chunk)
                for event in events where chatID == nil {
                    guard let data = sseData(of: event), let id = data.withUnsafeBytes({ topLevelID(in: $0) })
                    else { continue }
                    chatID = id
                    splitter.keepsEvents = false
                }
                chunk.withUnsafeReadableBytes { hasher.update(bufferPointer: $0) }
            }
            blackHole(Hex.encode(hasher.finalize()))
        }
    }
    // The sealed relay: every event parsed, its delta sealed, re-serialised and re-framed, then hashed.
    let ecdsaSession = e2ee.requests[.ecdsa]!.session
    var slowest = slow  // ~1 ms per stream: a sample takes a second
    slowest.maxDuration = .seconds(10)
    Benchmark("SSE relay sealed \(stream.count)-chunk stream, ecdsa", configuration: slowest) { benchmark in
        for _ in benchmark.scaledIterations {
            let sealer = try! e2ee.codec.responseSealer(for: ecdsaSession)
            var splitter = SSEEventSplitter()
            var hasher = SHA256()
            for chunk in stream {
                var out = ByteBuffer()
                for event in try! splitter.append(chunk) {
                    guard let data = sseData(of: event) else { continue }
                    if data.elementsEqual("[DONE]".utf8) {
                        out.writeString("data: [DONE]\n\n")
                        continue
                    }
                    guard var json = try? JSONValue(parsing: data) else { continue }
                    try! sealer.sealChunk(&json)
                    out.writeString("data: ")
                    out.writeBytes(json.serialized())
                    out.writeString("\n\n")
                }
                out.withUnsafeReadableBytes { hasher.update(bufferPointer: $0) }
            }
            blackHole(Hex.encode(hasher.finalize()))
        }
    }

    // MARK: E2EE v3 and TDX quote verification

    let v3Pair = try! V3KeyPair.generate()
    let v3Ring = try! V3KeyRing(lifetime: 86_400, grace: 300, now: 1_000) { v3Pair }
    let v3Codec = V3Codec(keys: v3Ring, replayWindow: 300)
    let v3Client = try! V3Client(keyConfig: v3Pair.keyConfig)
    // Distinct envelopes, sealed outside the measurement (opening one does not consume it here: no replay store).
    let v3Envelopes = (0..<64).map { _ in
        try! V3Envelope(
            parsing: v3Client.seal(
                smallRequest, route: "/v1/chat/completions", model: Fixtures.model, stream: false,
                timestamp: 1_000
            ).envelope)
    }
    Benchmark("E2EE v3 open (X25519+AES-256-GCM) and answer keys", configuration: slow) { benchmark in
        for index in benchmark.scaledIterations {
            let (_, session) = try! v3Codec.open(
                v3Envelopes[index % v3Envelopes.count], route: "/v1/chat/completions", now: 1_000)
            blackHole(session.responseSealer())
        }
    }

    // A TDX quote with its (cached) collateral: the synthetic default of Tests/TDX, at its time.
    let tdx = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Tests/TDX/synthetic/default")
    let tdxQuote = Array(try! Data(contentsOf: tdx.appendingPathComponent("quote.bin")))
    let tdxCollateral = try! TDXCollateral(json: Array(try! Data(contentsOf: tdx.appendingPathComponent("collateral.json"))))
    let tdxRoot = try! TDXTrustRoot(der: Array(try! Data(contentsOf: tdx.appendingPathComponent("root.der"))))
    Benchmark("TDX quote verification (collateral in memory)", configuration: slow) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try! TDXQuoteVerifier.verify(quote: tdxQuote, collateral: tdxCollateral, now: 1_767_225_600, root: tdxRoot))
        }
    }
}

/// A plain request's scan as the pipeline does it (`DecodedRequest`).
func scanRequest(_ bytes: [UInt8]) -> Bool? {
    bytes.withUnsafeBytes { buffer in
        guard
            let scan = try? JSONScan(
                scanning: buffer, topLevelKeys: ["stream", "e2ee"], flagging: "tool_calls", rejectingDuplicateKeys: true)
        else {
            return nil
        }
        return scan.members[0]?.kind == .true || scan.sawFlaggedKey
    }
}

/// The top-level `id` string of a JSON object, as the pipeline reads it (`answerID` in Pipeline/AnswerScan.swift, less its `response.id` fallback).
func topLevelID(in bytes: UnsafeRawBufferPointer) -> String? {
    guard let scan = try? JSONScan(scanning: bytes, topLevelKeys: ["id"]), scan.rootKind == .object,
        let id = scan.members[0]
    else { return nil }
    return JSONScan.string(id, in: bytes)
}

/// The inputs: typical OpenAI-style chat bodies of the sizes the proxy sees, and the E2EE fixture.
enum Fixtures {
    static let model = "meta-llama/Llama-3.3-70B-Instruct"

    /// A one-question chat request (~300 B).
    static let smallRequest = Array(
        """
        {"model":"\(model)","messages":[{"role":"system","content":"You are a helpful assistant."},\
        {"role":"user","content":"What is the capital of France, and why is it famous? Please answer in two \
        sentences."}],"max_tokens":256,"temperature":0.7,"top_p":0.95,"stream":false}
        """.utf8)

    /// A multi-turn conversation (~8 KB) with the escapes and non-ASCII text real chats carry.
    static let largeRequest: [UInt8] = {
        let paragraph =
            "The Eiffel Tower, completed in 1889 for the Exposition Universelle, was at first criticised by "
            + "artists as \\\"useless and monstrous\\\"; today it is the symbol of Paris (Île-de-France).\\n"
        var messages = [#"{"role":"system","content":"You are a careful assistant. Cite sources."}"#]
        for turn in 0..<8 {
            let role = turn % 2 == 0 ? "user" : "assistant"
            let content = String(repeating: paragraph, count: 5)
            messages.append(#"{"role":"\#(role)","content":"\#(content)"}"#)
        }
        return Array(
            """
            {"model":"\(model)","messages":[\(messages.joined(separator: ","))],"max_tokens":1024,\
            "temperature":0.2,"stream":false,"user":"bench"}
            """.utf8)
    }()

    /// A non-streamed chat completion as vLLM answers it.
    static let response = Array(
        """
        {"id":"chatcmpl-8f14e45fceea167a5a36dedd4bea2543","object":"chat.completion","created":1700000000,\
        "model":"\(model)","choices":[{"index":0,"message":{"role":"assistant","content":"The capital of \
        France is Paris. It is famous for the Eiffel Tower, the Louvre, its cafés and its long history as a \
        centre of art, fashion and science.","reasoning_content":null,"tool_calls":[]},"logprobs":null,\
        "finish_reason":"stop","stop_reason":null}],"usage":{"prompt_tokens":42,"total_tokens":79,\
        "completion_tokens":37,"prompt_tokens_details":null},"prompt_logprobs":null}
        """.utf8)

    /// `{sha256(request)}:{sha256(response)}`, the text every receipt signs.
    static let receiptText =
        Hex.encode(SHA256.hash(data: smallRequest)) + ":" + Hex.encode(SHA256.hash(data: response))

    /// 63 content deltas and `[DONE]`, one event per chunk.
    static let streamChunks: [ByteBuffer] = {
        let words = ["The", " capital", " of", " France", " is", " Paris", ",", " a", " city", " of"]
        var chunks = (0..<63).map { index in
            let finish = index == 62 ? #""stop""# : "null"
            return ByteBuffer(
                string: """
                    data: {"id":"chatcmpl-8f14e45fceea167a5a36dedd4bea2543","object":"chat.completion.chunk",\
                    "created":1700000000,"model":"\(model)","choices":[{"index":0,"delta":{"content":\
                    "\(words[index % words.count])"},"logprobs":null,"finish_reason":\(finish)}]}\n\n
                    """)
        }
        chunks.append(ByteBuffer(string: "data: [DONE]\n\n"))
        return chunks
    }()

    /// `Fixtures/e2ee_requests.json` (written by `make_fixtures.py`): the server keys and, per algorithm, a
    /// v2 request with two encrypted messages and its headers.
    struct E2EE: Sendable {
        struct Request: Sendable {
            let headers: E2EEHeaders
            let body: JSONValue
            let session: E2EESession
        }

        let codec: E2EESessionPolicy
        let now: Int
        let requests: [SigningAlgo: Request]

        static func load() -> E2EE {
            // Benchmarks/Benchmarks/HotPaths/HotPaths.swift → Benchmarks/Fixtures/
            let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().appendingPathComponent("Fixtures/e2ee_requests.json")
            guard let data = FileManager.default.contents(atPath: url.path),
                let fixture = try? JSONValue(parsing: Array(data)), let server = fixture["server"],
                let secp = server["secp256k1_private_key"]?.stringValue.flatMap(Hex.decode),
                let seed = server["ed25519_seed"]?.stringValue.flatMap(Hex.decode),
                case .number(let nowText)? = fixture["timestamp"], let now = Int(nowText)
            else { fatalError("cannot load \(url.path)") }
            let keys = SigningKeys(
                secp256k1: try! Secp256k1PrivateKey(rawRepresentation: secp),
                ed25519: try! Curve25519.Signing.PrivateKey(rawRepresentation: seed))
            let codec = E2EESessionPolicy(keys: keys, replayWindow: 300)
            var requests: [SigningAlgo: Request] = [:]
            for algo in SigningAlgo.allCases {
                guard let entry = fixture[algo.rawValue], let headerObject = entry["headers"]?.objectValue,
                    let bodyText = entry["body"]?.stringValue, let body = try? JSONValue(parsing: bodyText.utf8)
                else { fatalError("no \(algo.rawValue) request in \(url.path)") }
                let headers = E2EEHeaders { name in headerObject[name]?.stringValue }
                guard case .encrypted(let session) = try! codec.parse(headers, now: now) else {
                    fatalError("the \(algo.rawValue) fixture does not ask for E2EE")
                }
                requests[algo] = Request(headers: headers, body: body, session: session)
            }
            return E2EE(codec: codec, now: now, requests: requests)
        }
    }
}
