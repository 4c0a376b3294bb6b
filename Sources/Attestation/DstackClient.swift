import AsyncHTTPClient
import Foundation
import JSON
import Logging
import NIOCore
import Signing

/// JSON-over-HTTP client of the dstack guest agent, which produces TDX quotes for this VM.
public struct DstackClient: Sendable {
    /// Where the agent listens.
    public enum Endpoint: Sendable, Equatable {
        /// HTTP over a unix socket; the production agent is at `/var/run/dstack.sock`.
        case unixSocket(path: String)
        /// An `http://` or `https://` base URL (the dstack simulator, development agents).
        case url(String)

        /// The socket dstack mounts into application containers.
        public static let defaultSocketPath = "/var/run/dstack.sock"

        /// Interprets `DSTACK_SIMULATOR_ENDPOINT`: unset or empty → the default socket; `http(s)://…` → URL;
        /// anything else → a socket path.
        public init(parsing value: String?) {
            guard let value, !value.isEmpty else {
                self = .unixSocket(path: Self.defaultSocketPath)
                return
            }
            let lowered = value.lowercased()
            if lowered.hasPrefix("http://") || lowered.hasPrefix("https://") {
                self = .url(value)
            } else {
                self = .unixSocket(path: value)
            }
        }

        /// Where the agent is, for a log or error line: the socket path or the URL.
        public var summary: String {
            switch self {
            case .unixSocket(let path): "unix socket \(path)"
            case .url(let url): url
            }
        }

        func url(for path: String) -> String? {
            switch self {
            case .unixSocket(let socketPath):
                return URL(httpURLWithSocketPath: socketPath, uri: path)?.absoluteString
            case .url(let base):
                var base = base
                while base.hasSuffix("/") { base.removeLast() }
                return base + path
            }
        }
    }

    /// What `/GetQuote` answers.
    public struct Quote: Sendable {
        /// The TDX quote as lowercase hex.
        public var quote: String
        /// The event log, as the agent sent it (dstack sends a JSON-encoded string).
        public var eventLog: JSONValue
        /// The VM configuration, as the agent sent it.
        public var vmConfig: JSONValue
    }

    private let endpoint: Endpoint
    private let httpClient: HTTPClient
    private let timeout: Duration
    private let logger: Logger

    /// Largest answer accepted; quotes are ~5 KiB and `Info` carries the app compose file, so this is generous.
    private static let maxResponseBytes = 4 << 20

    /// - Parameters:
    ///   - httpClient: the process-wide client; supports `http+unix://` for the socket.
    ///   - timeout: bound on each whole call (connect, answer, body); quotes normally take well under a second.
    public init(endpoint: Endpoint, httpClient: HTTPClient, timeout: Duration = .seconds(5), logger: Logger) {
        self.endpoint = endpoint
        self.httpClient = httpClient
        self.timeout = timeout
        self.logger = logger
    }

    /// `POST /GetQuote` for 64 bytes of report data.
    public func getQuote(reportData: [UInt8]) async throws(AttestationError) -> Quote {
        var body = JSONObject()
        body["report_data"] = .string(Hex.encode(reportData))
        let answer = try await attestationCall("/GetQuote", body: body)
        guard let quote = answer["quote"]?.stringValue, !quote.isEmpty, let quoteBytes = Hex.decode(quote) else {
            logger.error("dstack agent answered /GetQuote without a hex quote")
            throw .agentUnavailable(Self.malformed)
        }
        // A quote over other report data would bind nothing; refuse it rather than pass it on.
        if let echoed = answer["report_data"]?.stringValue, Hex.decode(echoed) != reportData {
            logger.error("dstack agent answered /GetQuote for different report data")
            throw .agentUnavailable(Self.malformed)
        }
        return Quote(
            quote: Hex.encode(quoteBytes),
            eventLog: answer["event_log"] ?? .null,
            vmConfig: answer["vm_config"] ?? .null
        )
    }

    /// `POST /Info`; `tcb_info`, which dstack sends as a JSON-encoded string, comes back as an object.
    public func info() async throws(AttestationError) -> JSONValue {
        var answer = try await attestationCall("/Info", body: JSONObject())
        if let text = answer["tcb_info"]?.stringValue,
            let parsed = try? JSONValue(parsing: Array(text.utf8)),
            parsed.objectValue != nil
        {
            answer["tcb_info"] = parsed
        }
        return .object(answer)
    }

    /// A key from `POST /GetKey` (SPEC §5): the 32 derived bytes and the hex-decoded signature chain.
    public struct DerivedKey: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
        /// The secret: a secp256k1 scalar or an Ed25519 seed. Never printed (see `description`).
        public let key: [UInt8]
        /// dstack's chain, `[app signature, KMS signature]` (see `DstackKeyChain`), as sent.
        public let signatureChain: [[UInt8]]

        public var description: String {
            "DerivedKey(key: redacted, signature_chain: \(signatureChain.count) signatures)"
        }
        public var debugDescription: String { description }
        public var customMirror: Mirror {
            Mirror(self, children: ["signatureChain": signatureChain.map { Hex.encode($0) }], displayStyle: .struct)
        }
    }

    /// `POST /GetKey` with `{"path", "purpose", "algorithm"}`: the key every instance of this app derives for
    /// `path`, and the chain that proves the app's KMS issued it. `algorithm` (`secp256k1` or `ed25519`) does not
    /// change the bytes (dstack derives them from the path alone); it chooses which public key the chain signs.
    /// - Throws: `AgentFailure` with the reason; a key that is not 32 bytes of hex or a chain that is not a list
    ///   of hex strings is `.malformed`.
    public func getKey(path: String, purpose: String, algorithm: String) async throws(AgentFailure) -> DerivedKey {
        var body = JSONObject()
        body["path"] = .string(path)
        body["purpose"] = .string(purpose)
        body["algorithm"] = .string(algorithm)
        let answer = try await call("/GetKey", body: body)
        guard let keyHex = answer["key"]?.stringValue, let key = Hex.decode(keyHex), key.count == 32 else {
            throw .malformed("its key is not 32 bytes of hex")
        }
        guard let links = answer["signature_chain"]?.arrayValue else {
            throw .malformed("it has no signature_chain list")
        }
        var chain: [[UInt8]] = []
        for link in links {
            guard let text = link.stringValue, let bytes = Hex.decode(text) else {
                throw .malformed("its signature_chain holds something other than hex strings")
            }
            chain.append(bytes)
        }
        return DerivedKey(key: key, signatureChain: chain)
    }

    /// Why a call to the agent failed; `reason` is one clause, never an internal address or an underlying error.
    public enum AgentFailure: Error, Sendable, Equatable {
        case unreachable
        case timedOut
        case status(UInt)
        case malformed(String)

        public var reason: String {
            switch self {
            case .unreachable: "the dstack guest agent cannot be reached"
            case .timedOut: "the dstack guest agent did not answer in time"
            case .status(let status): "the dstack guest agent answered with status \(status)"
            case .malformed(let what): "the dstack guest agent returned a malformed answer (\(what))"
            }
        }
    }

    private static let malformed = "Attestation is unavailable: the dstack guest agent returned a malformed answer"

    /// `call` for the attestation routes, whose 503 message names no detail of the malformed answer.
    private func attestationCall(_ path: String, body: JSONObject) async throws(AttestationError) -> JSONObject {
        do {
            return try await call(path, body: body)
        } catch .malformed {
            throw .agentUnavailable(Self.malformed)
        } catch {
            throw .agentUnavailable("Attestation is unavailable: " + error.reason)
        }
    }

    private func call(_ path: String, body: JSONObject) async throws(AgentFailure) -> JSONObject {
        guard let url = endpoint.url(for: path) else {
            logger.error("dstack agent endpoint cannot form a URL", metadata: ["endpoint": "\(endpoint)"])
            throw .unreachable
        }
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(bytes: JSONValue.object(body).serialized()))

        let outcome = await withTimeout(timeout) { [httpClient, logger, request] () async throws -> (UInt, [UInt8]) in
            let response = try await httpClient.execute(
                request, timeout: .nanoseconds(Int64(timeout.nanoseconds)), logger: logger)
            let bytes = try await response.body.collect(upTo: Self.maxResponseBytes)
            return (response.status.code, Array(bytes.readableBytesView))
        }
        let status: UInt
        let bytes: [UInt8]
        switch outcome {
        case .timedOut:
            logger.error("dstack agent timed out", metadata: ["path": "\(path)"])
            throw .timedOut
        case .failed(let error) where Task.isCancelled:
            logger.debug("dstack agent call abandoned", metadata: ["path": "\(path)", "error": "\(error)"])
            throw .unreachable
        case .failed(let error):
            logger.error("dstack agent unreachable", metadata: ["path": "\(path)", "error": "\(error)"])
            throw .unreachable
        case .finished(let result):
            (status, bytes) = result
        }
        guard (200..<300).contains(status) else {
            logger.error("dstack agent failed", metadata: ["path": "\(path)", "status": "\(status)"])
            throw .status(status)
        }
        guard let answer = (try? JSONValue(parsing: bytes))?.objectValue else {
            logger.error("dstack agent answered with something other than a JSON object", metadata: ["path": "\(path)"])
            throw .malformed("not a JSON object")
        }
        return answer
    }
}

extension Duration {
    fileprivate var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}

/// How a time-bounded operation ended.
enum TimedOutcome<Value: Sendable>: Sendable {
    case finished(Value)
    case failed(any Error)
    case timedOut
}

/// Runs `operation`, cancelling it once `limit` has passed; the HTTP client's own deadline stops at the response
/// head, and an agent that sends a head and then stalls must not hold a request forever.
func withTimeout<Value: Sendable>(
    _ limit: Duration,
    _ operation: @escaping @Sendable () async throws -> Value
) async -> TimedOutcome<Value> {
    await withTaskGroup(of: TimedOutcome<Value>.self) { group in
        group.addTask {
            do { return .finished(try await operation()) } catch { return .failed(error) }
        }
        group.addTask {
            do {
                try await Task.sleep(for: limit)
                return .timedOut
            } catch {
                // The caller went away (a sibling request failed first); that is not the agent being slow.
                return .failed(error)
            }
        }
        let first = await group.next() ?? .timedOut
        group.cancelAll()
        return first
    }
}
