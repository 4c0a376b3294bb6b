import JSON
import Testing

@Suite struct JSONParsingTests {
    @Test func roundTripPreservesOrderAndNumberLiterals() throws {
        let text = #"{"z":1,"a":[0.7,-1e+10,1.0E-3,true,false,null],"m":{"k":"v"}}"#
        let value = try JSONValue(parsing: Array(text.utf8))
        #expect(String(decoding: value.serialized(), as: UTF8.self) == text)
        #expect(value.objectValue?.keys == ["z", "a", "m"])
    }

    @Test func whitespaceIsAcceptedAndDroppedOnSerialisation() throws {
        let value = try JSONValue(parsing: Array(" { \"a\" : [ 1 , 2 ] }\n".utf8))
        #expect(String(decoding: value.serialized(), as: UTF8.self) == #"{"a":[1,2]}"#)
    }

    @Test func escapesAndSurrogatesDecode() throws {
        let value = try JSONValue(parsing: Array(#""a\"b\\c\/d\n\u00e9\ud83d\ude00""#.utf8))
        #expect(value.stringValue == "a\"b\\c/d\né😀")
        let back = String(decoding: value.serialized(), as: UTF8.self)
        #expect(back == "\"a\\\"b\\\\c/d\\né😀\"")
    }

    @Test func controlCharactersAreEscapedOnOutput() {
        let value = JSONValue.string("\u{01}\t")
        #expect(String(decoding: value.serialized(), as: UTF8.self) == #""\u0001\t""#)
    }

    @Test func serializedCountIsTheSerialisationsLength() throws {
        let text = #"{"a":[1,-2.5e3,true,false,null,{}],"b":"q\"\\\n\r\t\b\f\u0001 é😀","":[]}"#
        for value in [try JSONValue(parsing: Array(text.utf8)), "", [], .object([:]), .null, .number("0")] {
            #expect(value.serializedCount == value.serialized().count)
        }
    }

    @Test func duplicateKeysKeepTheLastValue() throws {
        let value = try JSONValue(parsing: Array(#"{"a":1,"a":2}"#.utf8))
        #expect(value["a"] == .number("2"))
        #expect(value.objectValue?.count == 1)
    }

    @Test func duplicateKeysInLargeObjectsKeepTheLastValueAtTheFirstPosition() throws {
        // Past the linear-scan limit duplicates are found through the hash index; same answer either way.
        let keys = (0..<40).map { "\"k\($0)\":\($0)" }.joined(separator: ",")
        let text = "{\(keys),\"k3\":\"again\",\"k39\":null,\"new\":1,\"k0\":[]}"
        let object = try #require(try JSONValue(parsing: Array(text.utf8)).objectValue)
        #expect(object.count == 41)
        #expect(object.keys.prefix(4) == ["k0", "k1", "k2", "k3"])
        #expect(object.keys.last == "new")
        #expect(object["k3"] == .string("again"))
        #expect(object["k39"] == .null)
        #expect(object["k0"] == .array([]))
    }

    @Test(arguments: [2, 40])
    func keysAreCodePointSequencesAsInPython(padding: Int) throws {
        // "é" precomposed and decomposed are canonically equivalent Swift strings, but two keys for Python's
        // json (and so for the reference): both stay, in small objects and in indexed large ones alike.
        let filler = (0..<padding).map { "\"f\($0)\":0," }.joined()
        let text = "{\(filler)\"\u{E9}\":1,\"e\u{301}\":2,\"\u{E9}\":3}"
        let object = try #require(try JSONValue(parsing: Array(text.utf8)).objectValue)
        #expect(object.count == padding + 2)
        #expect(object.members.suffix(2).map(\.value) == [.number("3"), .number("2")])
    }

    @Test func oneHundredThousandDistinctKeysParse() throws {
        let text = "{" + (0..<100_000).map { "\"k\($0)\":0" }.joined(separator: ",") + "}"
        let object = try #require(try JSONValue(parsing: Array(text.utf8)).objectValue)
        #expect(object.count == 100_000)
        #expect(object["k99999"] == .number("0"))
    }

    @Test func hugeNumbersKeepTheirLiteral() throws {
        let literal = "-" + String(repeating: "9", count: 100_000) + ".5e+" + String(repeating: "9", count: 1000)
        #expect(try JSONValue(parsing: Array(literal.utf8)) == .number(literal))
    }

    @Test(arguments: [
        "", "{", "[1,]", "{\"a\":}", "01", "1.", "-", "1e", "tru", "\"abc", "{\"a\" 1}", "[1] 2", "\"\u{01}\"",
        "\"\\x\"", "\"\\ud800\"", "\"\\udc00\"", "{1:2}", "nul", "[1 2]",
    ])
    func malformedDocumentsAreRejected(text: String) {
        #expect(throws: JSONParseError.self) { try JSONValue(parsing: Array(text.utf8)) }
    }

    @Test func invalidUTF8IsRejected() {
        #expect(throws: JSONParseError.self) { try JSONValue(parsing: [0x22, 0xFF, 0x22]) }
    }

    @Test func deepNestingIsRefusedNotCrashed() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: JSONParseError.tooDeep) { try JSONValue(parsing: Array(deep.utf8)) }
        let fine = String(repeating: "[", count: 200) + String(repeating: "]", count: 200)
        #expect(throws: Never.self) { try JSONValue(parsing: Array(fine.utf8)) }
    }

    @Test func objectSubscriptSetsReplacesAndRemoves() {
        var object: JSONObject = ["a": 1, "b": 2]
        object["a"] = "x"
        object["c"] = nil
        object["b"] = nil
        object["d"] = true
        #expect(String(decoding: JSONValue.object(object).serialized(), as: UTF8.self) == #"{"a":"x","d":true}"#)
    }
}
