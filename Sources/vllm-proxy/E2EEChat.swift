import ArgumentParser
import AsyncHTTPClient
import Attestation
import Crypto
import E2EE
import Foundation
import JSON
import NIOCore
import Signing
import TDXVerifier

/// `vllm-proxy e2ee-chat`: one E2EE v3 chat completion against a running proxy, for trying v3 (every suite,
/// X-Wing included) without the Python client. It checks that the attestation report binds the key list it
/// seals to and that the receipt covers the bytes exchanged; it does not verify the quote itself.
struct E2EEChat: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "e2ee-chat",
        abstract: "Send one E2EE v3 chat completion to a running proxy and open the sealed answer.",
        discussion: """
            Fetches attestation version=3 with a fresh nonce, checks that the quote's report data binds the \
            signing address, the E2EE v3 key list and the GPU evidence to that nonce, seals the request (HPKE), \
            opens the answer (counters, final chunk, clear usage) and checks the receipt's text. The quote itself \
            is NOT verified here (only its report-data field is read): `vllm-proxy verify` checks it.
            """)

    @Argument(help: "The proxy's base URL, e.g. http://127.0.0.1:8000")
    var url: String
    @Option(help: "Bearer token (default: $TOKEN).")
    var token: String?
    @Option(help: "The user message.")
    var message: String = "hello, sealed"
    @Option(help: "Model name.")
    var model: String = "stub-model"
    @Flag(help: "Ask for a streamed answer.")
    var stream = false
    @Option(help: "x25519-aes256gcm, x25519-chacha20poly1305 or xwing-aes256gcm.")
    var suite: String = "x25519-aes256gcm"

    func run() async throws {
        guard let token = token ?? ProcessInfo.processInfo.environment["TOKEN"] else {
            throw ValidationError("a token is needed: --token or $TOKEN")
        }
        guard let suite = V3Suite.allCases.first(where: { $0.algoName == "hpke-\(suite)" }) else {
            throw ValidationError("unknown suite \(suite)")
        }
        let base = url.hasSuffix("/") ? String(url.dropLast()) : url
        let http = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup)
        do {
            try await exchange(base: base, token: token, suite: suite, http: http)
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }

    private func exchange(base: String, token: String, suite: V3Suite, http: HTTPClient) async throws {
        func call(_ path: String, body: [UInt8]? = nil, v3: Bool = false) async throws -> (Int, [UInt8]) {
            var request = HTTPClientRequest(url: base + path)
            request.headers.add(name: "Authorization", value: "Bearer \(token)")
            if let body {
                request.method = .POST
                request.headers.add(name: "Content-Type", value: "application/json")
                if v3 { request.headers.add(name: "X-E2EE-Version", value: "3") }
                request.body = .bytes(ByteBuffer(bytes: body))
            }
            let response = try await http.execute(request, timeout: .seconds(120))
            return (Int(response.status.code), Array(buffer: try await response.body.collect(upTo: 64 << 20)))
        }
        func fail(_ why: String) -> ExitCode {
            FileHandle.standardError.write(Data("e2ee-chat: \(why)\n".utf8))
            return ExitCode(1)
        }

        // 1. Attestation version 3, bound to a fresh nonce.
        let nonce = SecureRandom.bytes(32)
        let (status, reportBytes) = try await call("/v1/attestation/report?version=3&nonce=\(Hex.encode(nonce))")
        guard status == 200, let report = try? JSONValue(parsing: reportBytes), report["version"] == 3,
            let k = report["e2ee_v3_key_config"]?.stringValue.flatMap({ Data(base64Encoded: $0) }).map(Array.init),
            let address = report["signing_address"]?.stringValue, let quoteHex = report["intel_quote"]?.stringValue,
            let quote = Hex.decode(quoteHex), let addressBytes = Hex.decode(String(address.dropFirst(2)))
        else { throw fail("no usable attestation version 3 report (HTTP \(status))") }
        guard report["e2ee_versions"]?.arrayValue?.contains(3) == true else {
            throw fail("the proxy does not offer v3")
        }
        let client = try V3Client(keyConfig: k)
        guard report["e2ee_v3_key_config_id"]?.stringValue == client.keyConfigID else {
            throw fail("kc does not match K")
        }
        let tls = report["tls_cert_fingerprint"]?.stringValue.flatMap(Hex.decode)
        let expected = ReportData.v3(
            addressBytes: addressBytes, spkiSHA256: tls, keyConfig: k,
            nvidiaPayload: report["nvidia_payload"]?.stringValue, nonce: nonce)
        // The quote is parsed (v4 or v5) for its report data, the TD report's last 64 bytes; it is not verified here
        // (`vllm-proxy verify` does that).
        let reportData: [UInt8]
        do {
            reportData = try TDXQuote(parsing: quote).body.reportData
        } catch {
            throw fail("the report's quote does not parse as a TDX quote (\(error.reason))")
        }
        guard reportData == expected else {
            throw fail("the quote's report data does not bind this key list and nonce")
        }
        print("attested: kc \(client.keyConfigID), signer \(address) (quote not verified here: see vllm-proxy verify)")
        if tls != nil {
            print("note: the TLS key binding is taken from the report, not checked against the connection")
        }

        // 2. Sealed request, opened answer.
        let request: JSONValue = [
            "model": .string(model), "stream": .bool(stream),
            "messages": [["role": "user", "content": .string(message)]],
        ]
        let (envelope, opener) = try client.seal(
            request.serialized(), route: "/v1/chat/completions", model: model, stream: stream, suite: suite)
        let (answerStatus, answer) = try await call("/v1/chat/completions", body: envelope, v3: true)
        let opened: [UInt8]
        do {
            opened = try stream ? opener.openStream(answer) : opener.openJSON(answer)
        } catch {
            throw fail(
                "HTTP \(answerStatus): the answer did not open (\(error)): \(String(decoding: answer.prefix(300), as: UTF8.self))"
            )
        }
        print("HTTP \(answerStatus), \(suite.algoName), opened:")
        print(String(decoding: opened, as: UTF8.self))

        // 3. The receipt covers exactly the envelope sent and the bytes received.
        let id: String? =
            stream
            ? String(decoding: opened, as: UTF8.self).components(separatedBy: "\n").lazy
                .compactMap { try? JSONValue(parsing: Array($0.dropFirst(6).utf8))["id"]?.stringValue }.first
            : (try? JSONValue(parsing: opened))?["id"]?.stringValue
        guard answerStatus == 200, let id else { return }
        let (_, record) = try await call("/v1/signature/\(id)")
        let text = (try? JSONValue(parsing: record))?["text"]?.stringValue
        let mine = Hex.encode(Array(SHA256.hash(data: envelope))) + ":" + Hex.encode(Array(SHA256.hash(data: answer)))
        guard text == mine else { throw fail("the receipt for \(id) does not cover these bytes") }
        print("receipt for \(id) covers the bytes exchanged: \(mine)")
    }
}
