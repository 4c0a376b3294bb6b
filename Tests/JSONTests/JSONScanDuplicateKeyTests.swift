import Testing

@testable import JSON

/// `JSONScan(rejectingDuplicateKeys: true)`, which guards every request body (SPEC §2): it must find a key
/// repeated within any one object, decoded as Python decodes it, agree with the strict parser, never flag
/// keys that only repeat across objects, and stay linear for hostile objects.
@Suite struct JSONScanDuplicateKeyTests {
    static func scan(_ bytes: [UInt8]) -> Result<JSONScan, JSONParseError> {
        bytes.withUnsafeBytes { buffer in
            Result { () throws(JSONParseError) in
                try JSONScan(
                    scanning: buffer, topLevelKeys: ["stream"], flagging: "tool_calls", rejectingDuplicateKeys: true)
            }
        }
    }

    static func isDuplicate(_ text: String) -> Bool {
        if case .failure(.duplicateKey) = scan(Array(text.utf8)) { return true }
        return false
    }

    static func accepts(_ text: String) -> Bool {
        (try? scan(Array(text.utf8)).get()) != nil
    }

    /// `count` distinct keys `k0`, `k1`, … as object members (for objects past the linear comparison).
    static func members(_ count: Int, value: String = "0") -> String {
        (0..<count).map { #""k\#($0)":\#(value)"# }.joined(separator: ",")
    }

    @Test func findsARepeatedKeyAtTheTopLevel() {
        #expect(Self.isDuplicate(#"{"model":"m","stream":false,"messages":[],"stream":true}"#))
        #expect(Self.isDuplicate(#"{"messages":[{"role":"user"}],"messages":[]}"#))
        #expect(Self.isDuplicate(#"{"a":1,"a":1}"#))
        #expect(Self.isDuplicate(#"{"":1,"":2}"#))
        #expect(Self.isDuplicate(#"{ "a" : 1 , "b" : { } , "a" : null }"#))
        // Without the option the last occurrence wins, as before (upstream answers are read that way).
        let relaxed = Array(#"{"stream":false,"stream":true}"#.utf8).withUnsafeBytes { buffer in
            try? JSONScan(scanning: buffer, topLevelKeys: ["stream"])
        }
        #expect(relaxed?.members[0]?.kind == .true)
    }

    @Test func findsARepeatedKeyAtAnyDepth() {
        #expect(Self.isDuplicate(#"{"messages":[{"role":"user","role":"system","content":"x"}]}"#))
        #expect(Self.isDuplicate(#"[{"a":1},{"b":2,"b":3}]"#))
        #expect(Self.isDuplicate(#"{"a":[[{"b":{"c":1,"d":[],"c":2}}]]}"#))
        #expect(
            Self.isDuplicate(
                #"{"messages":[{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":"{}","name":"g"}}]}]}"#
            ))
        // After a nested object closes, its parent's keys are still compared.
        #expect(Self.isDuplicate(#"{"a":{"x":1,"y":2},"b":{"a":1},"a":3}"#))
        #expect(Self.isDuplicate(#"{"a":{"# + Self.members(40) + #"},"b":1,"a":2}"#))
    }

    /// Python decodes keys before comparing them: two spellings of one string are one key.
    @Test func comparesKeysDecoded() {
        #expect(Self.isDuplicate(#"{"a":1,"\u0061":2}"#))
        #expect(Self.isDuplicate(#"{"\u0061":1,"a":2}"#))
        #expect(Self.isDuplicate(#"{"\u0061b":1,"a\u0062":2}"#))
        #expect(Self.isDuplicate(#"{"stream":false,"str\u0065am":true}"#))
        #expect(Self.isDuplicate(#"{"\/":1,"/":2}"#))
        #expect(Self.isDuplicate(#"{"é":1,"\u00e9":2}"#))
        #expect(Self.isDuplicate(#"{"\u00E9":1,"\u00e9":2}"#))
        #expect(Self.isDuplicate(#"{"😀":1,"\ud83d\ude00":2}"#))
        #expect(Self.isDuplicate(#"{"a\"b":1,"a\u0022b":2}"#))
        // Different strings stay different: case, prefixes, and the two normal forms of "é".
        #expect(Self.accepts(#"{"a":1,"A":2,"ab":3,"\u0061c":4,"b\u0061":5}"#))
        #expect(Self.accepts(#"{"é":1,"e\u0301":2}"#))
        #expect(Self.accepts(#"{"a\\":1,"a\\\\":2,"a\"":3,"a":4}"#))
    }

    /// Past the linear comparison the keys go into a hash table: the same answers there.
    @Test func findsRepeatedKeysInLargeObjects() {
        let wide = Self.members(100)
        #expect(Self.accepts("{" + wide + "}"))
        for repeated in [#""k0""#, #""k15""#, #""k16""#, #""k99""#, #""\u006b42""#, #""k\u0035""#] {
            #expect(Self.isDuplicate("{" + wide + "," + repeated + ":1}"), "\(repeated)")
        }
        // The repeat just as the object moves into its table (its 17th key), and escaped keys in the table.
        #expect(Self.isDuplicate("{" + Self.members(16) + #","k3":1}"#))
        #expect(Self.isDuplicate("{" + Self.members(16) + #","\u006b16":1,"k16":2}"#))
        #expect(Self.accepts("{" + Self.members(16) + #","\u006bx":1,"k":2,"kx1":3}"#))
        // Nested objects inside a table-backed object keep their own keys apart.
        #expect(Self.accepts("{" + Self.members(30, value: #"{"k0":1,"k1":2}"#) + "}"))
        #expect(Self.isDuplicate("{" + Self.members(30, value: #"{"k0":1,"k1":2}"#) + #","k29":0}"#))
        #expect(Self.isDuplicate("{" + Self.members(30, value: #"{"k0":1,"k0":2}"#) + "}"))
    }

    /// Hundreds of nested objects open at once: of 15 keys (more keys than the stack's storage on the scan's
    /// frame) and of 30 (each with a table of its own, all freed when an error ends the scan midway).
    @Test func deepDocumentsOfWideObjects() {
        for width in [15, 30] {
            let opening = "{" + Self.members(width - 1) + #","z":"#
            let nested = String(repeating: opening, count: 200) + "1"
            #expect(Self.accepts(nested + String(repeating: "}", count: 200)))
            #expect(Self.isDuplicate(nested + #","\u006b3":1"# + String(repeating: "}", count: 200)))
            #expect(Self.isDuplicate(nested + String(repeating: "}", count: 150) + #","z":2}"#))
            guard case .failure(.unexpectedByte) = Self.scan(Array((nested + "]").utf8)) else {
                Issue.record("a broken document is not valid JSON")
                continue
            }
        }
    }

    @Test func keysRepeatedOnlyAcrossObjectsAreFine() {
        #expect(Self.accepts(#"[{"a":1},{"a":2},{"a":{"a":{"a":3}}}]"#))
        #expect(Self.accepts(#"{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}"#))
        #expect(Self.accepts(#"{"a":{"b":1},"b":{"a":1},"c":[{"a":1,"b":2},{"b":3,"a":4}]}"#))
        // Many sibling objects, small and large, and a parent that shares every key with its children.
        let siblings = (0..<200).map { index in index % 7 == 0 ? "{" + Self.members(20) + "}" : #"{"k0":1,"k1":2}"# }
        #expect(Self.accepts(#"{"list":["# + siblings.joined(separator: ",") + "]}"))
        #expect(Self.accepts("{" + Self.members(20, value: "{" + Self.members(20) + "}") + "}"))
    }

    /// A repeat and a syntax error in one body: whichever comes first is reported, exactly as the strict parser
    /// reports it, over random documents whose keys often repeat (in any spelling) and objects of any width.
    @Test func agreesWithTheStrictParserOnRandomDocuments() {
        var state: UInt64 = 0x2545_F491_4F6C_DD1D
        func next(_ bound: Int) -> Int {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return Int(state % UInt64(bound))
        }
        let spellings = [#""a""#, #""\u0061""#, #""b""#, #""\u0062""#, #""ab""#, #""a\u0062""#, #""é""#, #""\u00e9""#]
        func value(_ depth: Int) -> String {
            switch depth > 3 ? 0 : next(6) {
            case 0: return "1"
            case 1: return #""s""#
            case 2: return "[" + (0..<next(3)).map { _ in value(depth + 1) }.joined(separator: ",") + "]"
            default:
                // Mostly small objects, sometimes wider than the linear comparison.
                let count = next(4) == 0 ? 10 + next(30) : next(5)
                let keys = (0..<count).map { index in
                    next(3) == 0 ? spellings[next(spellings.count)] : #""u\#(index)""#
                }
                return "{" + keys.map { $0 + ":" + value(depth + 1) }.joined(separator: ",") + "}"
            }
        }
        var duplicates = 0
        var disagreements: [String] = []
        for round in 0..<3000 {
            var bytes = Array(value(0).utf8)
            if round % 3 == 0, !bytes.isEmpty {  // and now and then a broken one
                let breakers = Array(#"{}[]",:\"#.utf8)
                bytes.insert(breakers[next(breakers.count)], at: next(bytes.count))
            }
            let parsed = Result { () throws(JSONParseError) in
                try JSONValue(parsing: bytes, rejectingDuplicateKeys: true)
            }
            let scanned = Self.scan(bytes)
            switch (parsed, scanned) {
            case (.success, .success): break
            case (.failure(let a), .failure(let b)) where a == b:
                if case .duplicateKey = a { duplicates += 1 }
            default: disagreements.append(String(decoding: bytes, as: UTF8.self))
            }
        }
        #expect(disagreements.isEmpty, "\(disagreements.prefix(3))")
        #expect(duplicates > 300, "the documents must exercise the check")
    }

    /// Linear for hostile objects: 100 000 distinct keys, the same key 100 000 times, keys whose raw bytes
    /// differ but which decode alike, long keys that share a prefix, and 100 000 small objects. A pairwise
    /// comparison of the wide object's keys (5·10⁹ compares) would take minutes.
    @Test func hostileObjectsAreScannedInLinearTime() {
        let bodies: [(String, [UInt8], Bool)] = [
            ("100 000 distinct keys", Array(("{" + Self.members(100_000) + "}").utf8), true),
            (
                "100 000 distinct escaped keys",
                Array(("{" + (0..<100_000).map { #""\u006b\#($0)":0"# }.joined(separator: ",") + "}").utf8), true
            ),
            ("a repeat after 100 000 keys", Array(("{" + Self.members(100_000) + #","\u006b99999":1}"#).utf8), false),
            (
                "one key 100 000 times",
                Array(("{" + Array(repeating: #""k":0"#, count: 100_000).joined(separator: ",") + "}").utf8), false
            ),
            (
                "2 000 keys of 1 000 bytes sharing a prefix",
                Array(
                    ("{"
                        + (0..<2000).map { #""\#(String(repeating: "x", count: 1000))\#($0)":0"# }.joined(
                            separator: ",") + "}").utf8),
                true
            ),
            (
                "100 000 small objects",
                Array(
                    ("[" + Array(repeating: #"{"a":1,"b":2,"c":3}"#, count: 100_000).joined(separator: ",") + "]").utf8),
                true
            ),
        ]
        for (name, bytes, valid) in bodies {
            let clock = ContinuousClock()
            let start = clock.now
            let result = Self.scan(bytes)
            let elapsed = clock.now - start
            switch result {
            case .success: #expect(valid, "\(name)")
            case .failure(let error):
                #expect(!valid, "\(name): \(error)")
                #expect(throws: error) { try JSONValue(parsing: bytes, rejectingDuplicateKeys: true) }
            }
            // Tens of milliseconds in a debug build; the bound leaves room for a loaded machine.
            #expect(elapsed < .seconds(3), "\(name): \(elapsed)")
        }
    }
}
