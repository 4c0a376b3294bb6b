import Crypto
import JSON
import Signing
import Testing

@testable import E2EE

/// SPEC §4, "Confidentiality under a hostile gateway": what an E2EE request may ask for, and what of a
/// response may leave the proxy.
@Suite struct RequestPolicyTests {
    let parties: Parties

    init() throws {
        parties = try Parties()
    }

    /// A v2 body with one encrypted message and `extra` members.
    func body(_ algo: SigningAlgo = .ecdsa, _ extra: [(String, JSONValue)] = []) throws -> JSONValue {
        var object: JSONObject = [
            "model": "m",
            "messages": [
                [
                    "role": "user",
                    "content": .string(try parties.clientEncrypt("hi", algo: algo, aad: requestAAD(algo, m: 0))),
                ]
            ],
        ]
        for (name, value) in extra { object[name] = value }
        return .object(object)
    }

    func open(_ extra: [(String, JSONValue)]) throws -> E2EEError? {
        var value = try body(.ecdsa, extra)
        let session = try parties.session(.ecdsa)
        do throws(E2EEError) {
            try parties.server.openRequest(&value, session: session)
            return nil
        } catch {
            return error
        }
    }

    static let refusals: [(String, JSONValue)] = [
        ("logprobs", true), ("logprobs", 1), ("logprobs", "true"),
        ("top_logprobs", 5), ("top_logprobs", "0"), ("top_logprobs", .number("0.5")),
        ("prompt_logprobs", 0), ("prompt_logprobs", 3), ("prompt_logprobs", false),
        ("echo", true), ("echo", 1),
        ("return_token_ids", true), ("return_tokens_as_token_ids", true),
        ("tool_choice", "auto"), ("tool_choice", "required"),
        ("tool_choice", ["type": "function", "function": ["name": "f"]]),
        ("function_call", "auto"), ("function_call", ["name": "f"]),
        ("tools", [["type": "function", "function": ["name": "f"]]]),
        ("functions", [["name": "f"]]),
    ]

    @Test(arguments: 0..<refusals.count)
    func refusedParametersAreNamed(index: Int) throws {
        let (name, value) = Self.refusals[index]
        #expect(try open([(name, value)]) == .unsupportedParameter(name))
        #expect(E2EEError.unsupportedParameter(name).type == "e2ee_unsupported_parameter")
        #expect(E2EEError.unsupportedParameter(name).message.contains(name))
    }

    @Test func harmlessValuesPass() throws {
        let harmless: [[(String, JSONValue)]] = [
            [("logprobs", false)], [("logprobs", nil)], [("top_logprobs", 0)], [("top_logprobs", .number("0.0"))],
            [("top_logprobs", nil)], [("prompt_logprobs", nil)], [("echo", false)], [("return_token_ids", false)],
            [("return_tokens_as_token_ids", nil)], [("tool_choice", "none")], [("function_call", "none")],
            [("tools", [])], [("tools", nil)], [("functions", [])],
            [("tools", [["type": "function", "function": ["name": "f"]]]), ("tool_choice", "none")],
            [("n", 3), ("stop", ["a", "b"]), ("max_tokens", 5), ("stream", true), ("parallel_tool_calls", true)],
        ]
        for extra in harmless { #expect(try open(extra) == nil, "\(extra)") }
    }

    @Test func toolsNeedToolChoiceNoneNotJustFunctionCallNone() throws {
        let tools: JSONValue = [["type": "function", "function": ["name": "f"]]]
        #expect(try open([("tools", tools), ("function_call", "none")]) == .unsupportedParameter("tools"))
        #expect(try open([("tools", tools), ("tool_choice", nil)]) == .unsupportedParameter("tools"))
    }

    @Test func refusalComesAfterTheFieldChecksAndBeforeDecryption() throws {
        let session = try parties.session(.ecdsa)
        // A content that is not hex is reported first (the table's order)...
        var notHex: JSONValue = ["messages": [["role": "user", "content": "plain"]], "logprobs": true]
        #expect(throws: E2EEError.invalidContent("messages[0].content")) {
            try parties.server.openRequest(&notHex, session: session)
        }
        // ...and a refused parameter before a ciphertext that would not decrypt.
        let wrongAAD = try parties.clientEncrypt("x", algo: .ecdsa, aad: requestAAD(.ecdsa, model: "other", m: 0))
        var tampered: JSONValue = [
            "model": "m", "messages": [["role": "user", "content": .string(wrongAAD)]], "echo": true,
        ]
        #expect(throws: E2EEError.unsupportedParameter("echo")) {
            try parties.server.openRequest(&tampered, session: session)
        }
    }

    @Test func aRequestWithoutAnEncryptedFieldIsRefused() throws {
        let session = try parties.session(.ecdsa)
        let bodies: [JSONValue] = [
            [:], ["model": "m"], ["messages": "x"], ["messages": []], ["messages": [["role": "user", "content": nil]]],
            ["messages": [["role": "user", "content": [["type": "image_url", "image_url": ["url": "u"]]]]]],
            ["messages": [["role": "user", "content": 42], "not a message"]], [1, 2], "text", nil,
        ]
        for original in bodies {
            var body = original
            #expect(throws: E2EEError.noEncryptedField) { try parties.server.openRequest(&body, session: session) }
            #expect(body == original)
        }
        #expect(E2EEError.noEncryptedField.type == "invalid_e2ee_request")
    }

    /// `count` fields, all sealed under one client ephemeral key (one ECDH on each side).
    func fields(_ count: Int, algo: SigningAlgo, ephemeral: EphemeralKey) throws -> [JSONValue] {
        let serverKey = E2EEPublicKey(hex: parties.serverKeys.publicKeyHex(for: algo), algorithm: algo)!
        let key = E2EECrypto.aesKey(sharedSecret: try ephemeral.sharedSecret(with: serverKey), algorithm: algo)
        return try (0..<count).map { index in
            let field = try E2EECrypto.seal(
                plaintext: Array("part \(index)".utf8), key: key, ephemeralPublic: ephemeral.publicBytes,
                nonce: E2EECrypto.randomNonce(), aad: Array(requestAAD(algo, m: 0, c: index).utf8))
            return ["type": "text", "text": .string(Hex.encode(field))]
        }
    }

    static func ephemeral(_ algo: SigningAlgo) -> EphemeralKey {
        algo == .ecdsa ? .ecdsa(Secp256k1PrivateKey()) : .ed25519(Curve25519.KeyAgreement.PrivateKey())
    }

    @Test(arguments: SigningAlgo.allCases)
    func atMost1024FieldsAndOneKeyAgreementPerEphemeralKey(algo: SigningAlgo) throws {
        let session = try parties.session(algo)
        let items = try fields(E2EESessionPolicy.maxEncryptedFields, algo: algo, ephemeral: Self.ephemeral(algo))
        var body: JSONValue = ["model": "m", "messages": [["role": "user", "content": .array(items)]]]
        #expect(try parties.server.open(&body, session: session) == 1)
        #expect(body["messages"]?.arrayValue?[0]["content"]?.arrayValue?[1023]["text"] == "part 1023")

        // One more field, even a garbage one, is refused before anything is decrypted or hex-decoded.
        var tooMany: JSONValue = [
            "model": "m", "messages": [["role": "user", "content": .array(items + [["type": "text", "text": "zz"]])]],
        ]
        #expect(throws: E2EEError.tooManyFields) { try parties.server.openRequest(&tooMany, session: session) }
        var spread: JSONValue = [
            "model": "m",
            "messages": .array(Array(repeating: ["role": "user", "content": "not even hex"], count: 1025)),
        ]
        #expect(throws: E2EEError.tooManyFields) { try parties.server.openRequest(&spread, session: session) }
    }

    @Test(arguments: SigningAlgo.allCases)
    func distinctEphemeralKeysEachCostOneAgreement(algo: SigningAlgo) throws {
        let first = Self.ephemeral(algo)
        let second = Self.ephemeral(algo)
        let a = try fields(3, algo: algo, ephemeral: first)
        let b = try fields(3, algo: algo, ephemeral: second)
        var body: JSONValue = ["model": "m", "messages": [["role": "user", "content": [a[0], b[1], a[2]]]]]
        #expect(try parties.server.open(&body, session: try parties.session(algo)) == 2)
    }

    @Test func nonceIs16To128PrintableASCIIWithoutBar() {
        let valid = [
            "0123456789abcdef", String(repeating: "a", count: 128), "550e8400-e29b-41d4-a716-446655440000",
            "q83vEjRWeJq83vEjRWeJ+/==", "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{}~",
        ]
        let invalid = [
            "0123456789abcde", String(repeating: "a", count: 129), "0123456789|abcdef", "0123456789 abcdef",
            "0123456789abcdeé", "0123456789abcde\u{7F}", "0123456789abcdef\t", "ééééééééééééééééé",
        ]
        for nonce in valid { #expect(E2EESessionPolicy.isValidNonce(nonce), "\(nonce)") }
        for nonce in invalid { #expect(!E2EESessionPolicy.isValidNonce(nonce), "\(nonce)") }
    }
}

@Suite struct ResponseAllowListTests {
    let parties: Parties
    let sealer: ResponseSealer
    let algo = SigningAlgo.ecdsa

    init() throws {
        parties = try Parties()
        sealer = try parties.server.responseSealer(for: try parties.session(.ecdsa))
    }

    func sealed(_ value: JSONValue, stream: Bool = false) throws -> JSONValue {
        var copy = value
        if stream { try sealer.sealChunk(&copy) } else { try sealer.seal(&copy) }
        return copy
    }

    @Test func topLevelKeepsOnlyItsMetadataOfTheRightType() throws {
        let response: JSONValue = [
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1_700_000_000, "model": "m",
            "system_fingerprint": "fp", "prompt_logprobs": [nil, ["1": ["decoded_token": "secret"]]],
            "prompt_token_ids": [1, 2], "kv_transfer_params": ["x": "secret"], "content": "secret", "choices": [],
        ]
        #expect(
            try sealed(response) == [
                "id": "chatcmpl-1", "object": "chat.completion", "created": 1_700_000_000, "model": "m",
                "system_fingerprint": "fp", "choices": [],
            ])
        let wrongTypes: JSONValue = [
            "id": ["secret"], "object": 5, "created": "secret", "model": ["content": "secret"],
            "system_fingerprint": nil, "usage": "secret", "choices": ["content": "secret"],
        ]
        #expect(try sealed(wrongTypes) == ["system_fingerprint": nil])
    }

    @Test func usageKeepsOnlyTheThreeTokenCounts() throws {
        let response: JSONValue = [
            "usage": [
                "prompt_tokens": 5, "completion_tokens": 2, "note": "secret", "flag": true, "nothing": nil,
                "prompt_tokens_details": ["cached_tokens": 1, "text": "secret", "deeper": ["n": 1]],
                "list": [1, "secret"],
            ]
        ]
        #expect(
            try sealed(response) == [
                "usage": ["prompt_tokens": 5, "completion_tokens": 2]
            ])
    }

    @Test func choicesKeepIndexKnownFinishReasonAndRole() throws {
        let response: JSONValue = [
            "choices": [
                [
                    "index": 0, "finish_reason": "stop", "stop_reason": "secret", "logprobs": ["content": []],
                    "token_ids": [1], "text": "secret",
                    "message": [
                        "role": "assistant", "tool_calls": [["function": ["arguments": "secret"]]],
                        "refusal": "secret", "function_call": ["arguments": "secret"], "annotations": [],
                        "message": ["content": "secret"],
                    ],
                ],
                ["index": "secret", "finish_reason": "secret", "message": ["role": 7]],
                ["index": 2, "finish_reason": nil, "message": "secret"],
                "secret",
            ]
        ]
        #expect(
            try sealed(response) == [
                "choices": [
                    ["index": 0, "finish_reason": "stop", "message": ["role": "assistant"]], ["message": [:]],
                    ["index": 2, "finish_reason": nil], [:],
                ]
            ])
        for reason in ResponseSealer.finishReasons {
            #expect(
                try sealed(["choices": [["finish_reason": .string(reason)]]]) == [
                    "choices": [["finish_reason": .string(reason)]]
                ])
        }
    }

    @Test func sealedFieldsAreEncryptedWhenStringsKeptWhenNullDroppedOtherwise() throws {
        let response: JSONValue = [
            "id": "chatcmpl-1", "model": "m",
            "choices": [
                ["message": ["content": "answer", "reasoning": nil, "reasoning_content": ["secret"]]],
                ["message": ["content": [["type": "text", "text": "secret"]], "reasoning": 5]],
            ],
        ]
        let out = try sealed(response)
        let first = try #require(out["choices"]?.arrayValue?[0]["message"]?.objectValue)
        #expect(first.keys == ["content", "reasoning"])
        #expect(first["reasoning"] == .null)
        let field = try #require(first["content"]?.stringValue)
        #expect(try parties.clientDecrypt(field, algo: algo, aad: responseAAD(algo, field: "content")) == "answer")
        #expect(out["choices"]?.arrayValue?[1] == ["message": [:]])
    }

    @Test func streamEventsUseTheSameAllowListOverDelta() throws {
        let event: JSONValue = [
            "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [
                [
                    "index": 0, "finish_reason": nil, "logprobs": ["content": [["token": "secret"]]],
                    "delta": [
                        "role": "assistant", "content": "", "tool_calls": [["function": ["arguments": "secret"]]],
                    ],
                    "message": ["content": "secret"],
                ]
            ],
            "usage": ["completion_tokens": 1],
        ]
        #expect(
            try sealed(event, stream: true) == [
                "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [["index": 0, "finish_reason": nil, "delta": ["role": "assistant"]]],
                "usage": ["completion_tokens": 1],
            ])
        // A JSON response's `delta`, and a stream event's `message`, are not where the text goes: dropped.
        #expect(try sealed(["choices": [["delta": ["content": "secret"]]]]) == ["choices": [[:]]])
    }

    @Test func aResponseThatIsNotAnObjectBecomesEmpty() throws {
        for value: JSONValue in ["secret", ["secret"], 5, nil, true] {
            #expect(try sealed(value) == [:])
            #expect(try sealed(value, stream: true) == [:])
        }
    }

    // MARK: property: nothing leaves that was not sealed or allow-listed

    /// SplitMix64: a seeded generator, so a failure reproduces.
    struct SeededGenerator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    /// Random documents in the shape of chat responses, every string a distinct marker.
    struct Generator {
        var random: SeededGenerator
        var counter = 0
        /// Member names, allow-listed ones included so they turn up at every depth.
        static let names = [
            "id", "object", "created", "model", "system_fingerprint", "usage", "choices", "index", "finish_reason",
            "message", "delta", "role", "content", "reasoning_content", "reasoning", "logprobs", "tool_calls",
            "refusal", "stop_reason", "prompt_tokens", "prompt_tokens_details", "text", "x-extra",
        ]

        mutating func marker() -> String {
            counter += 1
            return "leak\(counter)x\(random.next() % 1_000_000)"
        }

        mutating func scalar() -> JSONValue {
            switch random.next() % 6 {
            case 0: return .null
            case 1: return .bool(random.next() % 2 == 0)
            case 2: return .integer(Int(random.next() % 1000))
            case 3: return .string(["stop", "length", "assistant"][Int(random.next() % 3)])
            default: return .string(marker())
            }
        }

        mutating func value(depth: Int) -> JSONValue {
            guard depth > 0, random.next() % 3 != 0 else { return scalar() }
            if random.next() % 2 == 0 {
                return .array((0..<Int(random.next() % 4)).map { _ in value(depth: depth - 1) })
            }
            return .object(object(depth: depth - 1))
        }

        mutating func object(depth: Int) -> JSONObject {
            var object = JSONObject()
            for _ in 0..<Int(random.next() % 5) {
                object[Self.names[Int(random.next() % UInt64(Self.names.count))]] = value(depth: depth)
            }
            return object
        }

        mutating func often() -> Bool { random.next() % 5 != 0 }

        /// Random members everywhere, and most of the time the allow-listed ones where they belong.
        mutating func response(container: String) -> JSONValue {
            var root = object(depth: 3)
            if often() { root["id"] = scalar() }
            if often() { root["model"] = scalar() }
            if often() { root["usage"] = .object(object(depth: 2)) }
            if often() {
                var choices: [JSONValue] = []
                for _ in 0..<Int(random.next() % 4) {
                    guard often() else {
                        choices.append(value(depth: 2))
                        continue
                    }
                    var choice = object(depth: 2)
                    if often() {
                        var fields = object(depth: 2)
                        for name in ResponseSealer.fieldNames + ["role"] where often() { fields[name] = scalar() }
                        choice[container] = .object(fields)
                    }
                    choices.append(.object(choice))
                }
                root["choices"] = .array(choices)
            }
            return .object(root)
        }
    }

    /// Every string in `value` with its path (object keys and array positions).
    static func strings(in value: JSONValue, path: [String] = []) -> [([String], String)] {
        switch value {
        case .string(let text): [(path, text)]
        case .array(let items): items.enumerated().flatMap { strings(in: $1, path: path + ["\($0)"]) }
        case .object(let object): object.members.flatMap { strings(in: $0.value, path: path + [$0.key]) }
        default: []
        }
    }

    static func value(at path: [String], in root: JSONValue) -> JSONValue? {
        var current: JSONValue? = root
        for step in path {
            switch current {
            case .object(let object)?: current = object[step]
            case .array(let items)?:
                guard let index = Int(step), items.indices.contains(index) else { return nil }
                current = items[index]
            default: return nil
            }
        }
        return current
    }

    @Test(arguments: [false, true])
    func nothingLeavesThatWasNotSealedOrAllowListed(stream: Bool) throws {
        let container = stream ? "delta" : "message"
        var generator = Generator(random: SeededGenerator(state: stream ? 0xE2EE : 0x5EA1))
        var sealedFields = 0
        for _ in 0..<400 {
            let input = generator.response(container: container)
            let output = try sealed(input, stream: stream)
            let model = E2EESessionPolicy.aadText(input["model"])
            let id = E2EESessionPolicy.aadText(input["id"])
            for (path, text) in Self.strings(in: output) {
                let original = Self.value(at: path, in: input)
                switch path.count {
                case 1 where ["id", "object", "model", "system_fingerprint"].contains(path[0]):
                    #expect(original == .string(text))
                case 3 where path[0] == "choices" && path[2] == "finish_reason":
                    #expect(original == .string(text) && ResponseSealer.finishReasons.contains(text))
                case 4 where path[0] == "choices" && path[2] == container && path[3] == "role":
                    #expect(original == .string(text))
                case 4
                where path[0] == "choices" && path[2] == container && ResponseSealer.fieldNames.contains(path[3]):
                    let aad = responseAAD(.ecdsa, model: model, id: id, choice: Int(path[1])!, field: path[3])
                    let plaintext = try parties.clientDecrypt(text, algo: .ecdsa, aad: aad)
                    #expect(original == .string(plaintext), "\(path)")
                    sealedFields += 1
                default:
                    Issue.record("string at \(path) left unsealed: \(text)")
                }
            }
            // And no marker of a value that did not belong at an allow-listed place reaches the bytes.
            let bytes = String(decoding: output.serialized(), as: UTF8.self)
            let kept = Set(Self.strings(in: output).map(\.1))
            for (_, text) in Self.strings(in: input) where text.hasPrefix("leak") && !kept.contains(text) {
                #expect(!bytes.contains(text))
            }
        }
        #expect(sealedFields > 100, "the generator must exercise sealing too")
    }
}
