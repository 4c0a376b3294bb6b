import Crypto
import JSON
import Signing
import Testing

@testable import E2EE

@Suite struct OpenRequestTests {
    let parties: Parties

    init() throws {
        parties = try Parties()
    }

    @Test(arguments: SigningAlgo.allCases)
    func decryptsStringAndTextItems(algo: SigningAlgo) throws {
        let session = try parties.session(algo)
        let image: JSONValue = ["type": "image_url", "image_url": ["url": "https://example.com/a.png"]]
        var body: JSONValue = [
            "model": "m",
            "messages": [
                [
                    "role": "system",
                    "content": .string(try parties.clientEncrypt("be brief", algo: algo, aad: requestAAD(algo, m: 0))),
                ],
                [
                    "role": "user",
                    "content": [
                        image,
                        [
                            "type": "text",
                            "text": .string(
                                try parties.clientEncrypt(
                                    "what is this?", algo: algo, aad: requestAAD(algo, m: 1, c: 1))),
                        ],
                        ["type": "text", "text": 5],
                        "not an object",
                    ],
                ],
                ["role": "assistant", "content": nil],
                ["role": "tool"],
                "not a message",
                ["role": "user", "content": 42],
            ],
            "temperature": .number("0.70"),
        ]
        try parties.server.openRequest(&body, session: session)
        let expected: JSONValue = [
            "model": "m",
            "messages": [
                ["role": "system", "content": "be brief"],
                [
                    "role": "user",
                    "content": [
                        image, ["type": "text", "text": "what is this?"], ["type": "text", "text": 5], "not an object",
                    ],
                ],
                ["role": "assistant", "content": nil],
                ["role": "tool"],
                "not a message",
                ["role": "user", "content": 42],
            ],
            "temperature": .number("0.70"),
        ]
        #expect(body == expected)
    }

    @Test(arguments: SigningAlgo.allCases)
    func v1HasNoAAD(algo: SigningAlgo) throws {
        let session = try parties.session(algo, v2: false)
        var body: JSONValue = [
            "model": "m",
            "messages": [["role": "user", "content": .string(try parties.clientEncrypt("hi", algo: algo, aad: nil))]],
        ]
        try parties.server.openRequest(&body, session: session)
        #expect(body["messages"]?.arrayValue?[0]["content"] == "hi")
    }

    @Test(arguments: SigningAlgo.allCases)
    func structuredContentRoundTrip(algo: SigningAlgo) throws {
        let session = try parties.session(algo)
        let structured: JSONValue = [
            ["type": "text", "text": "describe"], ["type": "image_url", "image_url": ["url": "data:,x"]],
        ]
        let plaintext = String(decoding: structured.serialized(), as: UTF8.self)
        var body: JSONValue = [
            "model": "m",
            "messages": [
                [
                    "role": "user",
                    "content": .string(try parties.clientEncrypt(plaintext, algo: algo, aad: requestAAD(algo, m: 0))),
                ]
            ],
        ]
        try parties.server.openRequest(&body, session: session)
        #expect(body["messages"]?.arrayValue?[0]["content"] == structured)

        // JSON that is not an array stays text.
        var objectBody: JSONValue = [
            "model": "m",
            "messages": [
                [
                    "role": "user",
                    "content": .string(try parties.clientEncrypt("{\"a\":1}", algo: algo, aad: requestAAD(algo, m: 0))),
                ]
            ],
        ]
        try parties.server.openRequest(&objectBody, session: session)
        #expect(objectBody["messages"]?.arrayValue?[0]["content"] == "{\"a\":1}")
    }

    @Test(arguments: SigningAlgo.allCases)
    func aadBindsModelMessageAndItem(algo: SigningAlgo) throws {
        let session = try parties.session(algo)
        let wrong: [(String, JSONValue)] = [
            // Encrypted for another model.
            (requestAAD(algo, model: "other", m: 0), "m"),
            // Encrypted for message 1, sent as message 0.
            (requestAAD(algo, m: 1), "m"),
            // Encrypted as a text item, sent as a string content.
            (requestAAD(algo, m: 0, c: 0), "m"),
        ]
        for (aad, model) in wrong {
            var body: JSONValue = [
                "model": model,
                "messages": [
                    ["role": "user", "content": .string(try parties.clientEncrypt("x", algo: algo, aad: aad))]
                ],
            ]
            #expect(throws: E2EEError.decryptionFailed) { try parties.server.openRequest(&body, session: session) }
        }
        var item: JSONValue = [
            "model": "m",
            "messages": [
                [
                    "role": "user",
                    "content": [
                        [
                            "type": "text",
                            "text": .string(
                                try parties.clientEncrypt("x", algo: algo, aad: requestAAD(algo, m: 0, c: 1))),
                        ]
                    ],
                ]
            ],
        ]
        #expect(throws: E2EEError.decryptionFailed) { try parties.server.openRequest(&item, session: session) }
        // A v2 ciphertext cannot be replayed as v1 (no AAD) either.
        var downgraded: JSONValue = [
            "model": "m",
            "messages": [
                [
                    "role": "user",
                    "content": .string(try parties.clientEncrypt("x", algo: algo, aad: requestAAD(algo, m: 0))),
                ]
            ],
        ]
        #expect(throws: E2EEError.decryptionFailed) {
            try parties.server.openRequest(&downgraded, session: parties.session(algo, v2: false))
        }
    }

    @Test func modelAADFollowsReferenceStringification() throws {
        let algo = SigningAlgo.ed25519
        let session = try parties.session(algo)
        var missing: JSONValue = [
            "messages": [
                [
                    "role": "user",
                    "content": .string(
                        try parties.clientEncrypt("x", algo: algo, aad: requestAAD(algo, model: "", m: 0))),
                ]
            ]
        ]
        try parties.server.openRequest(&missing, session: session)
        #expect(missing["messages"]?.arrayValue?[0]["content"] == "x")
    }

    @Test(arguments: SigningAlgo.allCases)
    func invalidContent(algo: SigningAlgo) throws {
        let session = try parties.session(algo)
        let cases: [(JSONValue, String)] = [
            ("not hex", "messages[0].content"),
            ("", "messages[0].content"),
            ("abc", "messages[0].content"),
            ([["type": "text", "text": "zz"]], "messages[0].content[0].text"),
        ]
        for (content, path) in cases {
            var body: JSONValue = ["model": "m", "messages": [["role": "user", "content": content]]]
            #expect(throws: E2EEError.invalidContent(path)) { try parties.server.openRequest(&body, session: session) }
        }
    }

    @Test(arguments: SigningAlgo.allCases)
    func malformedCiphertext(algo: SigningAlgo) throws {
        let session = try parties.session(algo)
        let good = try parties.clientEncrypt("hello", algo: algo, aad: requestAAD(algo, m: 0))
        let ephemeralHex = algo == .ecdsa ? 130 : 64
        var tampered = Array(good.utf8)
        tampered[tampered.count - 1] =
            tampered[tampered.count - 1] == UInt8(ascii: "0") ? UInt8(ascii: "1") : UInt8(ascii: "0")
        let badPoint =
            algo == .ecdsa
            ? "04" + String(repeating: "00", count: 64) + good.dropFirst(ephemeralHex)
            // A low-order X25519 point (u = 0).
            : String(repeating: "00", count: 32) + good.dropFirst(ephemeralHex)
        let fields = [
            String(good.prefix(ephemeralHex + 2 * 12 + 2 * 15)),  // shorter than key + nonce + tag
            String(good.prefix(ephemeralHex)),
            String(decoding: tampered, as: UTF8.self),
            String(good.dropLast(2)),
            badPoint,
        ]
        for field in fields {
            var body: JSONValue = ["model": "m", "messages": [["role": "user", "content": .string(field)]]]
            #expect(throws: E2EEError.decryptionFailed) { try parties.server.openRequest(&body, session: session) }
        }
    }

    @Test func aadTextMatchesPythonStr() {
        #expect(E2EESessionPolicy.aadText(nil) == "")
        #expect(E2EESessionPolicy.aadText("m") == "m")
        #expect(E2EESessionPolicy.aadText(.number("12")) == "12")
        #expect(E2EESessionPolicy.aadText(true) == "True")
        #expect(E2EESessionPolicy.aadText(.null) == "None")
    }
}

@Suite struct ResponseSealerTests {
    let parties: Parties

    init() throws {
        parties = try Parties()
    }

    /// Splits a field into (ephemeral public key hex, GCM nonce hex).
    private func prefix(_ field: String, _ algo: SigningAlgo) -> (String, String) {
        let keyLength = algo == .ecdsa ? 130 : 64
        return (String(field.prefix(keyLength)), String(field.dropFirst(keyLength).prefix(24)))
    }

    @Test(arguments: SigningAlgo.allCases)
    func sealsMessageFieldsWithOneEphemeralKey(algo: SigningAlgo) throws {
        let session = try parties.session(algo)
        let sealer = try parties.server.responseSealer(for: session)
        var response: JSONValue = [
            "id": "chatcmpl-1", "object": "chat.completion", "model": "m",
            "choices": [
                [
                    "index": 0,
                    "message": [
                        "role": "assistant", "content": "answer", "reasoning_content": "why", "reasoning": "why",
                        "tool_calls": [],
                    ],
                ],
                ["index": 1, "message": ["role": "assistant", "content": nil, "reasoning": "second"]],
            ],
            "usage": ["prompt_tokens": 3],
        ]
        try sealer.seal(&response)
        let choices = try #require(response["choices"]?.arrayValue)
        let first = try #require(choices[0]["message"])
        var ephemerals = Set<String>()
        var nonces = Set<String>()
        for (name, plaintext) in [("content", "answer"), ("reasoning_content", "why"), ("reasoning", "why")] {
            let field = try #require(first[name]?.stringValue)
            #expect(try parties.clientDecrypt(field, algo: algo, aad: responseAAD(algo, field: name)) == plaintext)
            // Bound to its field name and choice.
            let other = name == "content" ? "reasoning" : "content"
            #expect(throws: E2EEError.decryptionFailed) {
                try parties.clientDecrypt(field, algo: algo, aad: responseAAD(algo, field: other))
            }
            #expect(throws: E2EEError.decryptionFailed) {
                try parties.clientDecrypt(field, algo: algo, aad: responseAAD(algo, choice: 1, field: name))
            }
            let (ephemeral, nonce) = prefix(field, algo)
            ephemerals.insert(ephemeral)
            nonces.insert(nonce)
        }
        let second = try #require(choices[1]["message"])
        #expect(second["content"] == .null)
        let reasoning = try #require(second["reasoning"]?.stringValue)
        #expect(
            try parties.clientDecrypt(reasoning, algo: algo, aad: responseAAD(algo, choice: 1, field: "reasoning"))
                == "second")
        ephemerals.insert(prefix(reasoning, algo).0)
        nonces.insert(prefix(reasoning, algo).1)
        #expect(ephemerals.count == 1)
        #expect(nonces.count == 4)
        #expect(first["tool_calls"] == nil)
        #expect(response["usage"] == ["prompt_tokens": 3])
        #expect(response["id"] == "chatcmpl-1")

        // A second response gets its own ephemeral key.
        var again: JSONValue = ["id": "chatcmpl-1", "model": "m", "choices": [["message": ["content": "answer"]]]]
        try parties.server.responseSealer(for: session).seal(&again)
        let field = try #require(again["choices"]?.arrayValue?[0]["message"]?["content"]?.stringValue)
        #expect(!ephemerals.contains(prefix(field, algo).0))
    }

    @Test(arguments: SigningAlgo.allCases)
    func sealsStreamChunks(algo: SigningAlgo) throws {
        let session = try parties.session(algo)
        let sealer = try parties.server.responseSealer(for: session)
        var roleChunk: JSONValue = [
            "id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "m",
            "choices": [["index": 0, "delta": ["role": "assistant", "content": ""], "finish_reason": nil]],
        ]
        try sealer.sealChunk(&roleChunk)
        #expect(roleChunk["choices"]?.arrayValue?[0]["delta"] == ["role": "assistant"])

        var textChunk: JSONValue = [
            "id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "m",
            "choices": [["index": 0, "delta": ["content": "Hel", "reasoning": nil]]],
        ]
        try sealer.sealChunk(&textChunk)
        let delta = try #require(textChunk["choices"]?.arrayValue?[0]["delta"])
        #expect(delta["reasoning"] == .null)
        let content = try #require(delta["content"]?.stringValue)
        #expect(try parties.clientDecrypt(content, algo: algo, aad: responseAAD(algo, field: "content")) == "Hel")

        var reasoningChunk: JSONValue = [
            "id": "chatcmpl-1", "model": "m",
            "choices": [["index": 0, "delta": ["reasoning_content": "hmm", "reasoning": "hmm"]]],
        ]
        try sealer.sealChunk(&reasoningChunk)
        let reasoningDelta = try #require(reasoningChunk["choices"]?.arrayValue?[0]["delta"])
        for name in ["reasoning_content", "reasoning"] {
            let field = try #require(reasoningDelta[name]?.stringValue)
            #expect(try parties.clientDecrypt(field, algo: algo, aad: responseAAD(algo, field: name)) == "hmm")
            #expect(prefix(field, algo).0 == prefix(content, algo).0)
        }

        // The final usage chunk has no choices to touch.
        let usage: JSONValue = ["id": "chatcmpl-1", "model": "m", "choices": [], "usage": ["completion_tokens": 2]]
        var copy = usage
        try sealer.sealChunk(&copy)
        #expect(copy == usage)
    }

    @Test(arguments: SigningAlgo.allCases)
    func eachChunkBindsItsOwnModelAndID(algo: SigningAlgo) throws {
        let sealer = try parties.server.responseSealer(for: parties.session(algo))
        var chunk: JSONValue = ["id": "chatcmpl-9", "model": "served", "choices": [["delta": ["content": "x"]]]]
        try sealer.sealChunk(&chunk)
        let field = try #require(chunk["choices"]?.arrayValue?[0]["delta"]?["content"]?.stringValue)
        #expect(
            try parties.clientDecrypt(
                field, algo: algo, aad: responseAAD(algo, model: "served", id: "chatcmpl-9", field: "content")) == "x")
        #expect(throws: E2EEError.decryptionFailed) {
            try parties.clientDecrypt(field, algo: algo, aad: responseAAD(algo, field: "content"))
        }
    }

    @Test(arguments: SigningAlgo.allCases)
    func v1ResponsesHaveNoAAD(algo: SigningAlgo) throws {
        let sealer = try parties.server.responseSealer(for: parties.session(algo, v2: false))
        var response: JSONValue = ["id": "x", "model": "m", "choices": [["message": ["content": "plain v1"]]]]
        try sealer.seal(&response)
        let field = try #require(response["choices"]?.arrayValue?[0]["message"]?["content"]?.stringValue)
        #expect(try parties.clientDecrypt(field, algo: algo, aad: nil) == "plain v1")
    }

    @Test func emptyContentIsSealedInJSONResponses() throws {
        let algo = SigningAlgo.ecdsa
        let sealer = try parties.server.responseSealer(for: parties.session(algo))
        var response: JSONValue = ["id": "chatcmpl-1", "model": "m", "choices": [["message": ["content": ""]]]]
        try sealer.seal(&response)
        let field = try #require(response["choices"]?.arrayValue?[0]["message"]?["content"]?.stringValue)
        #expect(try parties.clientDecrypt(field, algo: algo, aad: responseAAD(algo, field: "content")) == "")
    }
}

@Suite struct RedactionTests {
    @Test(arguments: SigningAlgo.allCases)
    func secretsStayOutOfDescriptions(algo: SigningAlgo) throws {
        let parties = try Parties()
        let sealer = try parties.server.responseSealer(for: parties.session(algo))
        var rendered = ""
        dump(parties.server, to: &rendered)
        dump(sealer, to: &rendered)
        rendered += "\(parties.server) \(String(reflecting: parties.server)) \(sealer) \(String(reflecting: sealer))"
        let secrets = [
            E2EEVectors.shared.server.secp256k1_private_key, E2EEVectors.shared.server.ed25519_seed,
            E2EEVectors.shared.server.x25519_private_from_ed25519,
        ]
        for secret in secrets {
            #expect(!rendered.contains(secret))
            #expect(!rendered.contains(bytes(secret).map(String.init).joined(separator: ", ")))
        }
        #expect(!rendered.contains("SymmetricKey"))
    }
}
