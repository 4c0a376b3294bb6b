import Foundation
import JSON
import Logging
import Signing
import Synchronization
import Testing

@testable import VLLMProxy

/// SPEC §2: a signature record, once stored, is never overwritten. vLLM's chat id is `chatcmpl-{request_id}`
/// and `request_id` is a body field any token holder sets (the stub echoes it the same way), so a second
/// answer under an id already used gets no record, and the first record is what every verifier keeps reading.
@Suite struct RecordUniquenessTests {
    static func body(_ content: String, requestID: String, stream: Bool = false) -> String {
        #"{"model":"stub-model","request_id":"\#(requestID)","stream":\#(stream),"#
            + #""messages":[{"role":"user","content":"\#(content)"}]}"#
    }

    @Test func aSecondAnswerWithTheSameRequestIDGetsNoRecordAndTheFirstSurvives() async throws {
        let requestID = "dup-\(UUID().uuidString)"
        let first = Self.body("the first answer", requestID: requestID)
        try await ProxyHarness.run { proxy in
            let original = try await proxy.post("/v1/chat/completions", json: first)
            #expect(original.status == 200)
            #expect(original.json["id"] as? String == "chatcmpl-\(requestID)", "the stub names it like vLLM")
            try await expectReceipt(
                proxy, id: "chatcmpl-\(requestID)", request: Array(first.utf8), response: original.body)

            // Another client reuses the id, streamed and not: each is answered, neither replaces the record.
            for stream in [false, true] {
                let second = Self.body("an answer to replace the first", requestID: requestID, stream: stream)
                let reply = try await proxy.post("/v1/chat/completions", json: second)
                #expect(reply.status == 200)
                #expect(reply.text.contains("chatcmpl-\(requestID)"))
                try await expectReceipt(
                    proxy, id: "chatcmpl-\(requestID)", request: Array(first.utf8), response: original.body)
            }

            let metrics = try await proxy.request(.GET, "/v1/metrics", auth: false)
            #expect(metrics.text.contains(#"vllm_proxy_receipts_duplicate_id_total{upstream="vllm"} 2"#))
            #expect(metrics.text.contains(#"vllm_proxy_receipts_total{upstream="vllm"} 1"#))
        }
    }

    @Test func aDuplicateIsLoggedOnceWithTheIdEscapedAndCounted() async throws {
        let log = CapturedLog()
        let config = try ProxyConfig(environment: [
            "TOKEN": ProxyHarness.token, "MODEL_NAME": "test-model", "HOST": "127.0.0.1", "PORT": "0",
            "VLLM_BASE_URL": "http://127.0.0.1:9",  // never contacted: receipts are issued directly
        ])
        let services = try ProxyServices(config: config, keys: SigningKeys(), logger: log.logger)
        let outcome = await capture {
            let receipts = services.receipts
            // An id chosen to forge log lines: it must reach the log as one escaped line.
            let chatID = "chatcmpl-evil\n[critical] forged line"
            let first = await receipts.issue(
                chatID: chatID, requestHash: "aa", responseHash: "bb", upstream: .vllm)
            #expect(first == .inserted)
            let second = await receipts.issue(
                chatID: chatID, requestHash: "cc", responseHash: "dd", upstream: .vllm)
            #expect(second == .alreadyPresent)
            #expect(await receipts.record(chatID: chatID)?["text"] == "aa:bb")

            let warnings = log.lines(at: .warning)
            #expect(warnings.count == 1, "\(log.all)")
            let warning = try #require(warnings.first)
            #expect(warning.contains(#""chatcmpl-evil\n[critical] forged line" already has a signature record"#))
            #expect(!warning.contains("\n"))
            #expect(!warning.contains("cc:dd") && !warning.contains("aa:bb"), "only the id, no record")
            let exposition = String(decoding: services.metrics.exposition(), as: UTF8.self)
            #expect(exposition.contains(#"vllm_proxy_receipts_duplicate_id_total{upstream="vllm"} 1"#))
        }
        try await services.shutdown()
        try outcome.get()
    }

    @Test func aFloodOfDuplicatesLogsTenLinesAndCountsEveryOne() async throws {
        let log = CapturedLog()
        let config = try ProxyConfig(environment: [
            "TOKEN": ProxyHarness.token, "MODEL_NAME": "test-model", "HOST": "127.0.0.1", "PORT": "0",
            "VLLM_BASE_URL": "http://127.0.0.1:9",
        ])
        let services = try ProxyServices(config: config, keys: SigningKeys(), logger: log.logger)
        let outcome = await capture {
            let receipts = services.receipts
            await receipts.issue(chatID: "chatcmpl-flood", requestHash: "aa", responseHash: "bb", upstream: .vllm)
            // A token holder repeating one request_id: each answer is counted, few are logged.
            for _ in 0..<200 {
                await receipts.issue(chatID: "chatcmpl-flood", requestHash: "cc", responseHash: "dd", upstream: .vllm)
            }
            #expect(log.lines(at: .warning).count == 10, "\(log.all.count) lines")
            let exposition = String(decoding: services.metrics.exposition(), as: UTF8.self)
            #expect(exposition.contains(#"vllm_proxy_receipts_duplicate_id_total{upstream="vllm"} 200"#))
        }
        try await services.shutdown()
        try outcome.get()
    }

    @Test func theRecordStoreHoldsReceiptStoreCapacityAndCountsEvictions() async throws {
        let config = try ProxyConfig(environment: [
            "TOKEN": ProxyHarness.token, "MODEL_NAME": "test-model", "HOST": "127.0.0.1", "PORT": "0",
            "VLLM_BASE_URL": "http://127.0.0.1:9", "RECEIPT_STORE_CAPACITY": "2",
        ])
        #expect(config.receiptStoreCapacity == 2)
        let services = try ProxyServices(config: config, keys: SigningKeys(), logger: Logger(label: "test"))
        let outcome = await capture {
            let receipts = services.receipts
            for index in 0..<3 {
                await receipts.issue(
                    chatID: "chatcmpl-\(index)", requestHash: "aa", responseHash: "bb", upstream: .vllm)
            }
            #expect(await receipts.record(chatID: "chatcmpl-0") == nil, "the soonest-expiring went first")
            #expect(await receipts.record(chatID: "chatcmpl-2") != nil)
            let exposition = String(decoding: services.metrics.exposition(), as: UTF8.self)
            #expect(exposition.contains("vllm_proxy_receipts_evicted_total 1"))
        }
        try await services.shutdown()
        try outcome.get()
    }

    @Test func theThrottleAdmitsABurstPerWindowAndSaysHowManyItLeftOut() {
        let throttle = LogThrottle(burst: 2, per: .seconds(10))
        let start = ContinuousClock.now
        #expect(throttle.admit(now: start) == 0)
        #expect(throttle.admit(now: start + .seconds(1)) == 0)
        #expect(throttle.admit(now: start + .seconds(2)) == nil)
        #expect(throttle.admit(now: start + .seconds(9)) == nil)
        // A new window: the first line carries the count of those left out.
        #expect(throttle.admit(now: start + .seconds(10)) == 2)
        #expect(throttle.admit(now: start + .seconds(11)) == 0)
        #expect(throttle.admit(now: start + .seconds(30)) == 0)
    }

    @Test func aLongIdIsCutShortInTheLog() {
        let logged = ReceiptIssuer.loggable("chatcmpl-" + String(repeating: "é", count: 500))
        #expect(logged.hasPrefix(#""chatcmpl-\u{00E9}"#))
        #expect(logged.hasSuffix(#"…""#))
        #expect(logged.count == 2 + 9 + 119 * 8 + 1, "128 scalars shown, each escaped")
    }
}

/// Collects log lines with their level.
private final class CapturedLog: Sendable {
    private let entries = Mutex<[(Logger.Level, String)]>([])

    var logger: Logger { Logger(label: "test") { _ in Handler(log: self) } }
    var all: [String] { entries.withLock { $0.map(\.1) } }
    func lines(at level: Logger.Level) -> [String] { entries.withLock { $0.filter { $0.0 == level }.map(\.1) } }

    private struct Handler: LogHandler {
        let log: CapturedLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            log.entries.withLock { $0.append((event.level, event.message.description)) }
        }
    }
}
