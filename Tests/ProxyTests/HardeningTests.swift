import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Testing

@testable import VLLMProxy

/// SPEC §2 hardening on real sockets: `stream` must be a boolean, event streams end events in every SSE
/// line-ending form, and an oversized event ends the stream with an in-band error and no receipt.
@Suite struct HardeningTests {
    @Test(arguments: [#""true""#, "1", "0", "[]", "{}", #""false""#, "1.0", #""""#])
    func aStreamFlagThatIsNotABooleanIs400(value: String) async throws {
        try await ProxyHarness.run { proxy in
            let body = #"{"model":"stub-model","stream":\#(value),"messages":[{"role":"user","content":"hi"}]}"#
            let reply = try await proxy.post("/v1/chat/completions", json: body)
            #expect(reply.status == 400)
            #expect(reply.errorType == "invalid_request_error")
            #expect(proxy.stub.requests.isEmpty, "nothing may reach the upstream")
            let text = try await proxy.post("/v1/completions", json: #"{"prompt":"p","stream":\#(value)}"#)
            #expect(text.status == 400 && text.errorType == "invalid_request_error")
        }
    }

    @Test(arguments: [("null", false), ("false", false), ("true", true)])
    func nullAndBooleansSelectTheAnswerShape(value: String, streamed: Bool) async throws {
        try await ProxyHarness.run { proxy in
            let body = #"{"model":"stub-model","stream":\#(value),"messages":[{"role":"user","content":"hi"}]}"#
            let reply = try await proxy.post("/v1/chat/completions", json: body)
            #expect(reply.status == 200)
            let type = reply.headers.first(name: "Content-Type")
            #expect(type == (streamed ? "text/event-stream" : "application/json"))
        }
    }

    /// An upstream that answers every chat request with `events` as an event stream, chunk by chunk.
    static func withEventStreamUpstream<T: Sendable>(
        _ chunks: [[UInt8]], _ body: (Int) async throws -> T
    ) async throws -> T {
        let router = Router()
        router.post("/v1/chat/completions") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/event-stream"],
                body: ResponseBody { writer in
                    for chunk in chunks { try await writer.write(ByteBuffer(bytes: chunk)) }
                    try await writer.finish(nil)
                })
        }
        let logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
        return try await withRunningApp(
            { onRunning in
                Application(
                    router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                    onServerRunning: onRunning, logger: logger)
            }, body)
    }

    static let streamRequest = #"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#

    @Test(arguments: ["\r\r", "\r\n\r\n", "\n\n", "\n\r\n"])
    func aPlainStreamIsSignedWhateverItsLineEndings(end: String) async throws {
        let id = "chatcmpl-endings-\(UUID().uuidString)"
        let events = #"data: {"id":"\#(id)","choices":[]}"# + end + "data: [DONE]" + end
        // Cut inside the terminators, so an event end spans two chunks.
        let bytes = Array(events.utf8)
        let chunks = stride(from: 0, to: bytes.count, by: 7).map { Array(bytes[$0..<min(bytes.count, $0 + 7)]) }
        try await Self.withEventStreamUpstream(chunks) { port in
            try await ProxyHarness.run(environment: ["VLLM_BASE_URL": "http://127.0.0.1:\(port)"]) { proxy in
                let reply = try await proxy.post("/v1/chat/completions", json: Self.streamRequest)
                #expect(reply.status == 200)
                #expect(reply.body == bytes, "a plain stream passes byte for byte")
                try await expectReceipt(proxy, id: id, request: Array(Self.streamRequest.utf8), response: reply.body)
            }
        }
    }

    @Test(arguments: [true, false])
    func anEventOverFourMebibytesEndsTheStreamWithAnErrorAndNoReceipt(idFirst: Bool) async throws {
        let id = "chatcmpl-huge-\(UUID().uuidString)"
        let first = Array(#"data: {"id":"\#(id)","choices":[]}"#.utf8) + Array("\n\n".utf8)
        // 4.25 MiB without a blank line, in 256 KiB chunks: before the id is known, or after (the plain relay then
        // no longer keeps events, but still counts).
        let piece = [UInt8](repeating: UInt8(ascii: "x"), count: 256 << 10)
        let huge = [Array("data: ".utf8)] + Array(repeating: piece, count: 17)
        let chunks = idFirst ? [first] + huge : huge + [Array("\n\n".utf8), first]
        try await Self.withEventStreamUpstream(chunks) { port in
            try await ProxyHarness.run(environment: ["VLLM_BASE_URL": "http://127.0.0.1:\(port)"]) { proxy in
                let reply = try await proxy.post("/v1/chat/completions", json: Self.streamRequest)
                #expect(reply.status == 200)
                #expect(reply.body.count < (4 << 20) + (256 << 10), "the stream ended at the cap")
                let last = try #require(reply.text.components(separatedBy: "\n\n").last { !$0.isEmpty })
                #expect(last.hasPrefix("data: {\"error\""))
                #expect(last.contains("upstream_event_too_large"))
                let receipt = try await proxy.request(.GET, "/v1/signature/\(id)")
                #expect(receipt.status == 404, "no receipt for a stream that ended in error")
            }
        }
    }
}
