import Foundation
import Testing

@testable import TDXVerifier

/// Event-log replay (SPEC §6.2) against a real dstack `GetQuote` answer (`Tests/TDX/samples/dstack-getquote.json`,
/// origin in its ORIGIN.md): the replay must give the quote's RTMR3, and every edit an attacker could make to the
/// log's RTMR3 part must fail.
@Suite struct DstackEventLogTests {
    /// The sample is not committed (it comes from a third-party repository): `scripts/samples` puts it in place
    /// where a snapshot of that repository exists; elsewhere these known-answer tests skip.
    static let sampleIsPresent = FileManager.default.fileExists(
        atPath: TDXVerifierTests.folder.appendingPathComponent("samples/dstack-getquote.json").path)

    struct Sample {
        let eventLog: String
        let quote: TDXQuote
    }

    static func sample() throws -> Sample {
        let data = Data(try TDXVerifierTests.bytes("samples/dstack-getquote.json"))
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: String])
        let quoteHex = try #require(object["quote"])
        let quoteBytes = try #require(TDXHex.decode(quoteHex))
        let eventLog = try #require(object["event_log"])
        return Sample(eventLog: eventLog, quote: try TDXQuote(parsing: quoteBytes))
    }

    static func events(_ text: String) throws -> [[String: Any]] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]])
    }

    static func text(_ events: [[String: Any]]) throws -> [UInt8] {
        Array(try JSONSerialization.data(withJSONObject: events))
    }

    @Test(.enabled(if: sampleIsPresent, "scripts/samples found no snapshot of nearai/vllm-proxy"))
    func realLogReplaysToTheQuotesRTMR3() throws {
        let sample = try Self.sample()
        let log = try DstackEventLog(parsing: Array(sample.eventLog.utf8), quotedRTMR3: sample.quote.body.rtmr[3])
        #expect(
            TDXHex.encode(log.composeHash ?? []) == "62dd36d22b7d704aaa4d598226801ed4e6a3bfd17dde762b2efd9876768be800")
        #expect(TDXHex.encode(log.appID ?? []) == "ab84a54bdaf082be00ea40e8e37bdeb5c15c58de")
        #expect(
            log.rtmr3Events.map(\.name) == [
                "system-preparing", "app-id", "compose-hash", "instance-id", "boot-mr-done", "mr-kms",
                "os-image-hash", "key-provider", "system-ready",
            ])
    }

    @Test(.enabled(if: sampleIsPresent, "scripts/samples found no snapshot of nearai/vllm-proxy"))
    func anotherRTMR3Fails() throws {
        let sample = try Self.sample()
        var other = sample.quote.body.rtmr[3]
        other[0] ^= 1
        #expect(throws: DstackEventLog.Failure.self) {
            try DstackEventLog(parsing: Array(sample.eventLog.utf8), quotedRTMR3: other)
        }
    }

    /// The attacker's edits: a payload swapped (the compose hash it wants reported), a digest edited to match
    /// it, an event dropped, added, or reordered. Each fails, by digest or by replay.
    @Test(.enabled(if: sampleIsPresent, "scripts/samples found no snapshot of nearai/vllm-proxy"))
    func everyEditOfTheRTMR3EventsFails() throws {
        let sample = try Self.sample()
        let rtmr3 = sample.quote.body.rtmr[3]
        let events = try Self.events(sample.eventLog)
        let composeIndex = try #require(events.firstIndex { $0["event"] as? String == "compose-hash" })
        let forged = String(repeating: "ab", count: 32)

        var payloadSwapped = events
        payloadSwapped[composeIndex]["event_payload"] = forged
        #expect(throws: DstackEventLog.Failure.digestMismatch(index: composeIndex, name: "compose-hash")) {
            try DstackEventLog(parsing: try Self.text(payloadSwapped), quotedRTMR3: rtmr3)
        }

        var digestToo = payloadSwapped
        digestToo[composeIndex]["digest"] = TDXHex.encode(
            DstackEventLog.runtimeDigest(name: "compose-hash", payload: TDXHex.decode(forged)!))
        #expect(throws: DstackEventLog.Failure.self) {
            try DstackEventLog(parsing: try Self.text(digestToo), quotedRTMR3: rtmr3)
        }

        var dropped = events
        dropped.remove(at: composeIndex)
        #expect(throws: DstackEventLog.Failure.self) {
            try DstackEventLog(parsing: try Self.text(dropped), quotedRTMR3: rtmr3)
        }

        var added = events
        added.append([
            "imr": 3, "event_type": 134_217_729, "event": "compose-hash", "event_payload": forged,
            "digest": TDXHex.encode(
                DstackEventLog.runtimeDigest(name: "compose-hash", payload: TDXHex.decode(forged)!)),
        ])
        #expect(throws: DstackEventLog.Failure.self) {
            try DstackEventLog(parsing: try Self.text(added), quotedRTMR3: rtmr3)
        }

        var reordered = events
        reordered.swapAt(composeIndex, composeIndex + 1)
        #expect(throws: DstackEventLog.Failure.self) {
            try DstackEventLog(parsing: try Self.text(reordered), quotedRTMR3: rtmr3)
        }

        // Events of RTMR0–2 are not replayed: editing one changes nothing here (the firmware's RTMRs are covered by
        // the expected measurements instead).
        var firmware = events
        firmware[0]["event_payload"] = "00"
        #expect(throws: Never.self) { try DstackEventLog(parsing: try Self.text(firmware), quotedRTMR3: rtmr3) }
    }

    @Test(arguments: [
        "", "{}", "[{}]", "[1]", #"[{"imr":3,"event_type":134217729,"digest":"00","event":"x","event_payload":""}]"#,
        #"[{"imr":3,"event_type":134217729,"digest":"\#(String(repeating: "0", count: 96))","event":"x","event_payload":"zz"}]"#,
    ])
    func malformedLogsFail(_ text: String) {
        #expect(throws: DstackEventLog.Failure.self) { try DstackEventLog(parsing: Array(text.utf8)) }
    }

    @Test func anEmptyLogReplaysToZero() throws {
        let log = try DstackEventLog(parsing: Array("[]".utf8))
        #expect(log.replayedRTMR3 == [UInt8](repeating: 0, count: 48))
        #expect(log.composeHash == nil)
    }

    @Test func oversizedLogsAreRefusedBeforeParsing() {
        let huge = [UInt8](repeating: 0x20, count: DstackEventLog.maxBytes + 1)
        #expect(throws: DstackEventLog.Failure.self) { try DstackEventLog(parsing: huge) }
    }
}
