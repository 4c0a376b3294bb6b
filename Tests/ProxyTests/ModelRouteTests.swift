import Foundation
import NIOCore
import Testing

@testable import VLLMProxy

/// SPEC §2's other vLLM routes through the real app and the real stub (issue #21): each reaches vLLM's path,
/// passes byte for byte, and is signed where the route says, under the id the route says.
@Suite struct ModelRouteTests {
    @Test(arguments: [
        ("/v1/responses", #"{"model":"stub-model","input":"hello"}"#, "resp_"),
        ("/v1/embeddings", #"{"model":"stub-model","input":["a","b"]}"#, "embd-"),
        ("/v1/rerank", #"{"model":"stub-model","query":"q","documents":["a","b"]}"#, "rerank-"),
        ("/v1/score", #"{"model":"stub-model","text_1":"q","text_2":"a"}"#, "score-"),
    ])
    func jsonRoutesAreRelayedVerbatimAndSignedUnderTheAnswersID(path: String, body: String, prefix: String)
        async throws
    {
        try await ProxyHarness.run { proxy in
            let reply = try await proxy.post(path, json: body)
            #expect(reply.status == 200)
            #expect(reply.body == (try await directStub(proxy, path: path, body: body)))
            #expect(reply.headers.first(name: "X-Chat-Id") == nil)
            let id = try #require(reply.json["id"] as? String)
            #expect(id.hasPrefix(prefix))
            try await expectReceipt(proxy, id: id, request: Array(body.utf8), response: reply.body)
        }
    }

    @Test func aResponsesStreamIsSignedUnderTheFirstResponseID() async throws {
        let body = #"{"model":"stub-model","input":"stream me","stream":true}"#
        try await ProxyHarness.run { proxy in
            let reply = try await proxy.post("/v1/responses", json: body)
            #expect(reply.headers.first(name: "Content-Type") == "text/event-stream")
            #expect(reply.text.hasPrefix("event: response.created\ndata: "))
            let firstData = try #require(reply.text.split(separator: "\n").dropFirst().first).dropFirst(6)
            let event = try #require(try JSONSerialization.jsonObject(with: Data(firstData.utf8)) as? [String: Any])
            let id = try #require((event["response"] as? [String: Any])?["id"] as? String)
            try await expectReceipt(proxy, id: id, request: Array(body.utf8), response: reply.body)
        }
    }

    @Test func tokenizeGoesToVLLMsOwnPathAndIsNotSigned() async throws {
        try await ProxyHarness.run { proxy in
            let reply = try await proxy.post("/v1/tokenize", json: #"{"model":"stub-model","prompt":"ab"}"#)
            #expect(reply.status == 200)
            #expect(reply.json["tokens"] as? [Int] == [97, 98])
            #expect(proxy.stub.requests.last?.path == "/tokenize")
            let metrics = try await proxy.request(.GET, "/v1/metrics", auth: false)
            #expect(!metrics.text.contains(#"vllm_proxy_receipts_total{upstream="vllm"} 1"#), "no receipt issued")
        }
    }

    @Test func imagesAreSignedUnderAProxyMadeIDInTheHeader() async throws {
        let body = #"{"model":"stub-model","prompt":"a cat"}"#
        try await ProxyHarness.run { proxy in
            let reply = try await proxy.post("/v1/images/generations", json: body)
            #expect(reply.status == 200)
            let id = try #require(reply.headers.first(name: "X-Chat-Id"))
            #expect(id.hasPrefix("img-") && id.count == 4 + 32)
            #expect(reply.body == (try await directStub(proxy, path: "/v1/images/generations", body: body)))
            try await expectReceipt(proxy, id: id, request: Array(body.utf8), response: reply.body)
        }
    }

    @Test func uploadsMustBeMultipartFormsWithABoundary() {
        #expect(CompletionPipeline.isMultipartFormData("multipart/form-data; boundary=abc"))
        #expect(CompletionPipeline.isMultipartFormData(#"Multipart/Form-Data;BOUNDARY="a b""#))
        #expect(!CompletionPipeline.isMultipartFormData("multipart/form-data"))
        #expect(!CompletionPipeline.isMultipartFormData(#"multipart/form-data; boundary="""#))
        #expect(!CompletionPipeline.isMultipartFormData("application/json; boundary=abc"))
        #expect(!CompletionPipeline.isMultipartFormData("multipart/mixed; boundary=abc"))
    }

    @Test func theReceiptIDIsTheTopLevelIDElseTheResponsesID() {
        func id(_ json: String) -> String? { Array(json.utf8).withUnsafeBytes { answerID(in: $0) } }
        #expect(id(#"{"id":"chatcmpl-1","response":{"id":"resp_2"}}"#) == "chatcmpl-1")
        #expect(id(#"{"type":"response.created","response":{"id":"resp_2"}}"#) == "resp_2")
        #expect(id(#"{"type":"response.output_text.delta","delta":"x"}"#) == nil)
        #expect(id(#"{"response":"resp_3"}"#) == nil)
        #expect(id(#"{"response":{"object":{"id":"nested-too-deep"}}}"#) == nil)
        #expect(id("[1]") == nil)
    }
}
