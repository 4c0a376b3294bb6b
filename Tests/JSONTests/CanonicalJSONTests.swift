import JSON
import Testing

/// Known answers from `python3 -c 'import json; print(json.dumps(v, sort_keys=True, separators=(",", ":")))'`.
@Suite struct CanonicalJSONTests {
    private func canonical(_ value: JSONValue) -> String {
        String(decoding: value.canonicalSerialized(), as: UTF8.self)
    }

    private func canonical(parsing text: String) throws -> String {
        canonical(try JSONValue(parsing: Array(text.utf8)))
    }

    @Test func keysAreSortedByCodePoint() {
        let value: JSONValue = ["b": 1, "a": 2, "B": 3, "é": 4, "aa": 5]
        #expect(canonical(value) == #"{"B":3,"a":2,"aa":5,"b":1,"\u00e9":4}"#)
    }

    @Test func astralKeysSortAfterTheBasicPlaneNotBetweenAsUTF16Would() {
        // By UTF-16 units U+1F600 (D83D DE00) would come before U+E000; by code point it is last.
        let value: JSONValue = ["\u{1F600}": 1, "\u{FFFF}": 2, "\u{E000}": 3, "z": 4]
        #expect(canonical(value) == #"{"z":4,"\ue000":3,"\uffff":2,"\ud83d\ude00":1}"#)
    }

    @Test func canonicallyEquivalentKeysStayTwoKeysInCodePointOrder() throws {
        // Swift's String `<` and `==` see these as one string; Python does not.
        let text = "{\"\u{E9}\":1,\"e\u{301}\":2}"
        #expect(try canonical(parsing: text) == #"{"e\u0301":2,"\u00e9":1}"#)
    }

    @Test func nonASCIIIsEscapedWithLowercaseHexAndSurrogatePairs() {
        #expect(canonical("é日本😀") == #""\u00e9\u65e5\u672c\ud83d\ude00""#)
        #expect(
            canonical(["\u{2028}\u{2029}", "\u{FEFF}", "\u{FFFF}", "\u{10FFFF}"])
                == #"["\u2028\u2029","\ufeff","\uffff","\udbff\udfff"]"#)
    }

    @Test func slashIsNotEscapedButQuoteAndBackslashAre() {
        #expect(canonical(#"a/b\c"d"#) == #""a/b\\c\"d""#)
    }

    @Test func controlCharactersAndDeleteAreEscapedAsPythonDoes() {
        let value = JSONValue.string("\n\r\t\u{8}\u{C}\u{0}\u{1}\u{1F}\u{7F} ~")
        #expect(canonical(value) == #""\n\r\t\b\f\u0000\u0001\u001f\u007f ~""#)
    }

    @Test func nestedObjectsAndArraysAreSortedWithoutWhitespace() throws {
        let text = #"{ "z" : [1, {"y": null, "x": true}], "a": {"c": false, "b": [ ]}, "m": { } }"#
        #expect(try canonical(parsing: text) == #"{"a":{"b":[],"c":false},"m":{},"z":[1,{"x":true,"y":null}]}"#)
    }

    @Test func integersAreWrittenAsPythonWritesThem() throws {
        #expect(
            try canonical(parsing: "[-0, 0, 123456789012345678901234567890, -5]")
                == "[0,0,123456789012345678901234567890,-5]")
    }

    @Test func duplicateKeysBuiltByHandKeepTheirOrder() {
        let object = JSONObject([.init(key: "k", value: 2), .init(key: "a", value: 0), .init(key: "k", value: 1)])
        #expect(canonical(.object(object)) == #"{"a":0,"k":2,"k":1}"#)
    }

    @Test func aSignatureRecordIsItsOwnCanonicalFormOnceSorted() throws {
        // The shape of a §5 record: ASCII strings, null, and a nested attestation object.
        let text = #"""
            {"text":"ab:cd","upstream":"chutes","chutes_transport":"e2ee","chutes_instance_id":null,
            "chutes_attestation":{"verified":true,"mr_td":"00ff","instance_id":"i-1"}}
            """#
        #expect(
            try canonical(parsing: text)
                == #"{"chutes_attestation":{"instance_id":"i-1","mr_td":"00ff","verified":true},"#
                + #""chutes_instance_id":null,"chutes_transport":"e2ee","text":"ab:cd","upstream":"chutes"}"#)
    }
}
