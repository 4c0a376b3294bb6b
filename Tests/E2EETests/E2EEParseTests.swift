import Crypto
import Signing
import Testing

@testable import E2EE

@Suite struct E2EEParseTests {
    let parties: Parties

    init() throws {
        parties = try Parties()
    }

    private func parse(_ headers: E2EEHeaders, now: Int = vectorTimestamp) throws(E2EEError) -> E2EEMode {
        try parties.server.parse(headers, now: now)
    }

    private func expectError(
        _ expected: E2EEError, _ headers: E2EEHeaders, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(throws: expected, sourceLocation: sourceLocation) { try parse(headers) }
    }

    @Test func noKeyHeadersIsPlain() throws {
        guard case .plain = try parse(E2EEHeaders()) else { Issue.record("expected plain"); return }
        // Only the three key headers select E2EE; stray version/nonce headers do not.
        guard case .plain = try parse(E2EEHeaders(version: "2", nonce: vectorNonce, timestamp: "1")) else {
            Issue.record("expected plain")
            return
        }
        guard case .plain = try parse(E2EEHeaders(signingAlgo: " ", clientPublicKey: "")) else {
            Issue.record("blank headers count as absent")
            return
        }
    }

    @Test(arguments: SigningAlgo.allCases)
    func validV1AndV2(algo: SigningAlgo) throws {
        let v1 = try parties.session(algo, v2: false)
        #expect(v1.version == .v1)
        #expect(v1.algorithm == algo)
        #expect(v1.replayKey(modelName: "m") == nil)
        let v2 = try parties.session(algo)
        #expect(v2.version == .v2(nonce: vectorNonce, timestamp: String(vectorTimestamp)))
        #expect(v2.replayKey(modelName: "my-model") == "my-model:e2ee_replay:\(algo):\(vectorTimestamp):\(vectorNonce)")
        #expect(v2.responseHeaders.map(\.value) == ["true", "2", algo.rawValue])
        #expect(v2.clientKey == E2EEPublicKey(hex: parties.clientKeys.publicKeyHex(for: algo), algorithm: algo))
    }

    @Test func versionSelection() throws {
        var headers = parties.headers(.ecdsa)
        headers.version = nil
        // Nonce and timestamp without a version header still mean v2.
        guard case .encrypted(let implicit) = try parse(headers) else { throw E2EEError.decryptionFailed }
        #expect(implicit.version == .v2(nonce: vectorNonce, timestamp: "1700000000"))
        headers.version = "1"
        guard case .encrypted(let explicitV1) = try parse(headers) else { throw E2EEError.decryptionFailed }
        #expect(explicitV1.version.headerValue == "2")
        headers = parties.headers(.ecdsa, v2: false)
        headers.version = "1"
        guard case .encrypted(let v1) = try parse(headers) else { throw E2EEError.decryptionFailed }
        #expect(v1.version == .v1)
        #expect(E2EEMode.encrypted(v1).responseHeaders.map(\.value) == ["true", "1", "ecdsa"])
        #expect(E2EEMode.plain.responseHeaders.map(\.value) == ["false"])
    }

    @Test func algorithmIsCaseInsensitiveAndKeysAcceptBothForms() throws {
        var headers = parties.headers(.ecdsa)
        headers.signingAlgo = "ECDSA"
        headers.modelPublicKey = "04" + parties.serverKeys.ecdsaPublicKeyHex.uppercased()
        headers.clientPublicKey = "04" + parties.clientKeys.ecdsaPublicKeyHex
        guard case .encrypted(let session) = try parse(headers) else { throw E2EEError.decryptionFailed }
        #expect(session.algorithm == .ecdsa)
        headers = parties.headers(.ed25519)
        headers.signingAlgo = " Ed25519 "
        guard case .encrypted = try parse(headers) else { throw E2EEError.decryptionFailed }
    }

    @Test func headerMissing() {
        let full = parties.headers(.ecdsa)
        #expect(errorType(E2EEHeaders(signingAlgo: "ecdsa")) == "e2ee_header_missing")
        for drop in [\E2EEHeaders.signingAlgo, \.clientPublicKey, \.modelPublicKey] {
            var headers = full
            headers[keyPath: drop] = nil
            #expect(errorType(headers) == "e2ee_header_missing")
        }
        var onlyNonce = full
        onlyNonce.timestamp = nil
        #expect(errorType(onlyNonce) == "e2ee_header_missing")
        var onlyTimestamp = full
        onlyTimestamp.nonce = nil
        #expect(errorType(onlyTimestamp) == "e2ee_header_missing")
        var v2WithoutThem = parties.headers(.ecdsa, v2: false)
        v2WithoutThem.version = "2"
        #expect(errorType(v2WithoutThem) == "e2ee_header_missing")
    }

    @Test func invalidSigningAlgo() {
        var headers = parties.headers(.ecdsa)
        headers.signingAlgo = "rsa"
        expectError(.invalidSigningAlgo, headers)
    }

    @Test(arguments: [
        "zz", "abc", "0x" + String(repeating: "ab", count: 64), String(repeating: "ab", count: 63),
        String(repeating: "00", count: 64), String(repeating: "01", count: 64),
        "05" + String(repeating: "ab", count: 64),
    ])
    func invalidEcdsaKeys(key: String) {
        var headers = parties.headers(.ecdsa)
        headers.clientPublicKey = key
        expectError(.invalidPublicKey("X-Client-Pub-Key"), headers)
        headers = parties.headers(.ecdsa)
        headers.modelPublicKey = key
        expectError(.invalidPublicKey("X-Model-Pub-Key"), headers)
    }

    /// Ed25519 encodings that are not usable keys: y ≥ p, not on the curve, the identity (y = 1), and
    /// low-order points whose X25519 shared secret would be zero.
    static let invalidEd25519Keys: [String] = [
        "zz",
        String(repeating: "ab", count: 31),
        String(repeating: "ab", count: 33),
        // y = p (non-canonical zero) and y = 2^255 - 1.
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        // y = 2: x² = 3 / (4d + 1) is not a square.
        "0200000000000000000000000000000000000000000000000000000000000000",
        // y = 1, the identity; also with the sign bit set.
        "0100000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000080",
        // y = p - 1 (order 2, u = 0) and y = 0 (order 4, u = 1).
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "0000000000000000000000000000000000000000000000000000000000000000",
        // An order-8 point.
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    ]

    @Test(arguments: invalidEd25519Keys)
    func invalidEd25519ClientKeys(key: String) {
        var headers = parties.headers(.ed25519)
        headers.clientPublicKey = key
        expectError(.invalidPublicKey("X-Client-Pub-Key"), headers)
    }

    @Test func modelKeyMismatch() {
        var headers = parties.headers(.ecdsa)
        headers.modelPublicKey = parties.clientKeys.ecdsaPublicKeyHex
        expectError(.modelKeyMismatch, headers)
        headers = parties.headers(.ed25519)
        headers.modelPublicKey = parties.clientKeys.ed25519Address
        expectError(.modelKeyMismatch, headers)
        // The other algorithm's key is the wrong length for this one.
        headers = parties.headers(.ed25519)
        headers.modelPublicKey = parties.serverKeys.ecdsaPublicKeyHex
        expectError(.invalidPublicKey("X-Model-Pub-Key"), headers)
    }

    @Test(arguments: ["4", "0", "v2", "2.0"])
    func invalidVersion(version: String) {
        var headers = parties.headers(.ecdsa)
        headers.version = version
        expectError(.invalidVersion, headers)
    }

    @Test func invalidNonce() {
        var headers = parties.headers(.ed25519)
        headers.nonce = "0123456789abcde"
        expectError(.invalidNonce, headers)
        headers.nonce = "0123456789abcdef"
        #expect(errorType(headers) == nil)
        // At most 128 characters (a claim key's size is bounded), and never the AAD's separator.
        headers.nonce = String(repeating: "n", count: 129)
        expectError(.invalidNonce, headers)
        headers.nonce = "0123456789abcdef|ts=1"
        expectError(.invalidNonce, headers)
        headers.nonce = String(repeating: "n", count: 128)
        #expect(errorType(headers) == nil)
    }

    @Test(arguments: ["abc", "12.5", "1e9", "", "+-5", "99999999999999999999999"])
    func invalidTimestampText(timestamp: String) {
        var headers = parties.headers(.ecdsa)
        headers.timestamp = timestamp
        // An empty timestamp is an absent one, so that is a missing header instead.
        #expect(errorType(headers) == (timestamp.isEmpty ? "e2ee_header_missing" : "e2ee_invalid_timestamp"))
    }

    @Test func timestampWindow() throws {
        let now = vectorTimestamp
        for (offset, valid) in [(0, true), (300, true), (-300, true), (301, false), (-301, false), (-now, false)] {
            let headers = parties.headers(.ecdsa, timestamp: now + offset)
            #expect(errorType(headers) == (valid ? nil : "e2ee_invalid_timestamp"), "offset \(offset)")
        }
        var signed = parties.headers(.ecdsa)
        signed.timestamp = "+0\(vectorTimestamp)"
        guard case .encrypted(let session) = try parse(signed) else { throw E2EEError.decryptionFailed }
        // The AAD and replay key use the integer, as the reference did.
        #expect(session.version == .v2(nonce: vectorNonce, timestamp: "1700000000"))
    }

    @Test func validationOrder() {
        // Each pair: the earlier row of the table wins over the later one.
        var headers = parties.headers(.ecdsa)
        headers.signingAlgo = "rsa"
        headers.timestamp = nil
        #expect(errorType(headers) == "e2ee_header_missing")

        headers = parties.headers(.ecdsa)
        headers.signingAlgo = "rsa"
        headers.clientPublicKey = "zz"
        #expect(errorType(headers) == "e2ee_invalid_signing_algo")

        headers = parties.headers(.ecdsa)
        headers.clientPublicKey = "zz"
        headers.modelPublicKey = parties.clientKeys.ecdsaPublicKeyHex
        #expect(errorType(headers) == "e2ee_invalid_public_key")

        headers = parties.headers(.ecdsa)
        headers.modelPublicKey = parties.clientKeys.ecdsaPublicKeyHex
        headers.version = "4"
        #expect(errorType(headers) == "e2ee_model_key_mismatch")

        headers = parties.headers(.ecdsa)
        headers.version = "4"
        headers.nonce = "short"
        #expect(errorType(headers) == "e2ee_invalid_version")

        headers = parties.headers(.ecdsa)
        headers.nonce = "short"
        headers.timestamp = "soon"
        #expect(errorType(headers) == "e2ee_invalid_nonce")
    }

    @Test func headersPresence() {
        #expect(E2EEHeaders().isEmpty)
        #expect(!E2EEHeaders().anyPresent)
        #expect(E2EEHeaders(nonce: "x").anyPresent)
        #expect(E2EEHeaders(version: "  ").isEmpty)
        let lookup = ["X-Signing-Algo": "ecdsa", "X-E2EE-Timestamp": "5"]
        let headers = E2EEHeaders { lookup[$0] }
        #expect(headers.signingAlgo == "ecdsa")
        #expect(headers.timestamp == "5")
        #expect(headers.clientPublicKey == nil)
        #expect(E2EEHeaders.allNames.count == 6)
    }

    @Test func errorTypesAndMessages() {
        let table: [(E2EEError, String)] = [
            (.headerMissing("x"), "e2ee_header_missing"), (.invalidSigningAlgo, "e2ee_invalid_signing_algo"),
            (.invalidPublicKey("X-Client-Pub-Key"), "e2ee_invalid_public_key"),
            (.modelKeyMismatch, "e2ee_model_key_mismatch"), (.invalidVersion, "e2ee_invalid_version"),
            (.invalidNonce, "e2ee_invalid_nonce"), (.invalidTimestamp, "e2ee_invalid_timestamp"),
            (.invalidContent("messages[0].content"), "invalid_e2ee_request"),
            (.decryptionFailed, "e2ee_decryption_failed"), (.replayDetected, "e2ee_replay_detected"),
        ]
        for (error, type) in table {
            #expect(error.type == type)
            #expect(error.httpStatus == 400)
            #expect(!error.message.isEmpty)
        }
        #expect(E2EEError.encryptionFailed.httpStatus == 500)
    }

    private func errorType(_ headers: E2EEHeaders) -> String? {
        do {
            _ = try parse(headers)
            return nil
        } catch {
            return error.type
        }
    }
}
