import Testing

@testable import JSON

/// The scanner must accept exactly what the parser accepts (the pipeline relies on it instead of parsing),
/// and find top-level members the way parsing would (decoded keys, last occurrence wins).
@Suite struct JSONScanTests {
    static func scan(_ text: String, keys: [StaticString] = [], flag: StaticString? = nil) throws -> JSONScan {
        try Array(text.utf8).withUnsafeBytes { buffer in
            try JSONScan(scanning: buffer, topLevelKeys: keys, flagging: flag)
        }
    }

    static func accepts(_ bytes: [UInt8]) -> (scan: Bool, parse: Bool) {
        let scanned = bytes.withUnsafeBytes { (try? JSONScan(scanning: $0)) != nil }
        return (scanned, (try? JSONValue(parsing: bytes)) != nil)
    }

    static let samples: [String] = [
        #"{"model":"m","stream":true,"messages":[{"role":"user","content":"h\u00e9llo \ud83d\ude00"}]}"#,
        #"{"a":[1,-0.5e+3,2E-2,0,{"b":null,"c":false}],"d":"x\"y\\z\/\b\f\n\r\t"}"#,
        #"  [ "é", "日本", "🙂" , 1.0 ]  "#,
        "{}", "[]", "\"\"", "0", "-0", "true", "null",
    ]

    static let invalid: [[UInt8]] = [
        Array("{".utf8), Array("{\"a\"}".utf8), Array("[1,]".utf8), Array("01".utf8), Array("1.".utf8),
        Array("-".utf8), Array("\"\\x\"".utf8), Array("\"\\ud800\"".utf8), Array("\"\\udc00\"".utf8),
        Array("\"\\ud800\\u0041\"".utf8), Array("{} x".utf8), Array("tru".utf8), [0x22, 0x0A, 0x22],
        [0x22, 0xC0, 0x80, 0x22], [0x22, 0xED, 0xA0, 0x80, 0x22], [0x22, 0xF4, 0x90, 0x80, 0x80, 0x22],
        [0x22, 0xE2, 0x82, 0x22], [0x22, 0xC3, 0x5C, 0x6E, 0x22], Array(repeating: UInt8(ascii: "["), count: 300),
    ]

    @Test func agreesWithTheParserOnSamplesAndKnownBadInput() {
        for text in Self.samples {
            let result = Self.accepts(Array(text.utf8))
            #expect(result.scan && result.parse, "\(text)")
        }
        for bytes in Self.invalid {
            let result = Self.accepts(bytes)
            #expect(!result.scan && !result.parse, "\(bytes)")
        }
    }

    /// Deterministic mutations (byte flips, insertions, deletions, truncations) of the samples: any
    /// disagreement between scanner and parser is a bug the proxy would turn into a wrong 400 or a pass.
    @Test func agreesWithTheParserOnOneHundredThousandMutations() {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> UInt64 {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return state
        }
        let alphabet =
            Array(#"{}[]",:\ue0123456789-+.Etrufalsn"#.utf8) + [
                0x00, 0x1F, 0x80, 0xBF, 0xC3, 0xE2, 0xED, 0xF0, 0xF4, 0xFF,
            ]
        var disagreements: [[UInt8]] = []
        for round in 0..<100_000 {
            var bytes = Array(Self.samples[round % Self.samples.count].utf8)
            for _ in 0..<(1 + Int(next() % 3)) {
                let position = bytes.isEmpty ? 0 : Int(next() % UInt64(bytes.count))
                let byte = alphabet[Int(next() % UInt64(alphabet.count))]
                switch next() % 4 {
                case 0 where !bytes.isEmpty: bytes[position] = byte
                case 1: bytes.insert(byte, at: position)
                case 2 where !bytes.isEmpty: bytes.remove(at: position)
                default: bytes = Array(bytes.prefix(position))
                }
            }
            let result = Self.accepts(bytes)
            if result.scan != result.parse { disagreements.append(bytes) }
        }
        #expect(disagreements.isEmpty, "\(disagreements.prefix(5).map { String(decoding: $0, as: UTF8.self) })")
    }

    @Test func findsTopLevelMembersAsParsingWould() throws {
        let text =
            #"{"stream":false,"x":{"stream":true,"id":"inner"},"str\u0065am":true,"id":"chat-\u00e9","tool_calls":1}"#
        let bytes = Array(text.utf8)
        try bytes.withUnsafeBytes { buffer in
            let scan = try JSONScan(
                scanning: buffer, topLevelKeys: ["stream", "id", "missing"], flagging: "tool_calls")
            #expect(scan.rootKind == .object)
            #expect(scan.members[0]?.kind == .true)  // the escaped duplicate key, last, wins
            #expect(scan.members[1].flatMap { JSONScan.string($0, in: buffer) } == "chat-é")
            #expect(scan.members[2] == nil)
            #expect(scan.sawFlaggedKey)
        }
    }

    @Test func flagsKeysAtAnyDepthButNotValues() throws {
        #expect(try Self.scan(#"{"messages":[{"tool_calls":[]}]}"#, flag: "tool_calls").sawFlaggedKey)
        #expect(try !Self.scan(#"{"content":"tool_calls"}"#, flag: "tool_calls").sawFlaggedKey)
        #expect(try Self.scan(#"[1,2]"#, keys: ["a"]).members == [nil])
        #expect(try Self.scan(#"[1,2]"#).rootKind == .array)
    }
}
