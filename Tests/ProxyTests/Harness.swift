import AsyncHTTPClient
import Crypto
import DevStubs
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import Signing
import VLLMProxy

/// Runs a Hummingbird application on an ephemeral loopback port for the duration of `body`, then stops it
/// gracefully, never by cancelling it (see `withGracefullyStoppedServer` for why).
/// - Parameter drainLimit: how long requests still in flight at the end may take before they are cancelled.
func withRunningApp<App: ApplicationProtocol, T: Sendable>(
    drainLimit: Duration = .seconds(10),
    _ makeApp: (@escaping @Sendable (any Channel) async -> Void) -> App,
    _ body: (Int) async throws -> T
) async throws -> T {
    try await withGracefullyStoppedServer(drainLimit: drainLimit) { onRunning in
        let app = makeApp { channel in await onRunning(channel.localAddress?.port) }
        return { try await app.run() }
    } _: { port in
        guard let port else { throw HarnessError.didNotStart }
        return try await body(port)
    }
}

/// A stub's drain limit: it is stopped after the proxy and the proxy's clients, so whatever it still serves
/// then is an answer the proxy abandoned (a stalled or slow one), not worth waiting for.
let abandonedAnswersDrainLimit: Duration = .seconds(2)

enum HarnessError: Error { case didNotStart }

/// `body`'s result or error, so that cleanup can run on both paths before the error is rethrown.
func capture<T>(_ body: () async throws -> T) async -> Result<T, any Error> {
    do {
        return .success(try await body())
    } catch {
        return .failure(error)
    }
}

/// The real proxy application in front of the real stub vLLM, both on loopback sockets.
struct ProxyHarness: Sendable {
    static let token = "test-token-\(UInt64.random(in: 0...UInt64.max))"

    let stub: StubUpstream
    let proxyPort: Int
    let stubPort: Int
    let keys: SigningKeys
    let client: HTTPClient

    var base: String { "http://127.0.0.1:\(proxyPort)" }

    /// Starts stub and proxy; `environment` overrides the proxy's variables (`VLLM_BASE_URL` defaults to the stub).
    static func run<T: Sendable>(
        environment overrides: [String: String] = [:], _ body: (ProxyHarness) async throws -> T
    ) async throws -> T {
        let stub = StubUpstream()
        // Quiet loggers: tests assert on responses; the interop suite checks the binary's real log output.
        let logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
        return try await withRunningApp(drainLimit: abandonedAnswersDrainLimit) { onRunning in
            Application(
                router: stub.router(), server: StubUpstream.server,
                configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                onServerRunning: onRunning, logger: logger)
        } _: { stubPort in
            var environment = [
                "TOKEN": token, "MODEL_NAME": "test-model", "HOST": "127.0.0.1", "PORT": "0",
                "VLLM_BASE_URL": "http://127.0.0.1:\(stubPort)", "METRICS_POLL_INTERVAL_SECONDS": "0.5",
            ]
            environment.merge(overrides) { $1 }
            let config = try ProxyConfig(environment: environment)
            let keys = SigningKeys()
            let services = try ProxyServices(config: config, keys: keys, logger: logger)
            let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup)
            // Stopped in order: the test's client (so no request of the test's is left for the proxy to drain),
            // the proxy (serving what it still has in flight, then its upstream clients), then the stub.
            let outcome = await capture {
                try await withRunningApp({ buildApplication(services, onServerRunning: $0) }) { port in
                    let result = await capture {
                        try await body(
                            ProxyHarness(stub: stub, proxyPort: port, stubPort: stubPort, keys: keys, client: client))
                    }
                    try await client.shutdown()
                    return try result.get()
                }
            }
            // The proxy's resources were stopped by its own service group (ResourcesService), after its server.
            if case .failure = outcome { try? await client.shutdown() }
            return try outcome.get()
        }
    }

    /// A response read whole: status, headers and the exact body bytes.
    struct Reply: Sendable {
        let status: Int
        let headers: HTTPHeaders
        let body: [UInt8]
        var text: String { String(decoding: body, as: UTF8.self) }
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] ?? [:] }
        var errorType: String? { (json["error"] as? [String: Any])?["type"] as? String }
    }

    func request(
        _ method: HTTPMethod, _ path: String, body: [UInt8]? = nil, headers: [(String, String)] = [],
        auth: Bool = true
    ) async throws -> Reply {
        var request = HTTPClientRequest(url: base + path)
        request.method = method
        if auth { request.headers.add(name: "Authorization", value: "Bearer \(Self.token)") }
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
        let response = try await client.execute(request, timeout: .seconds(30))
        let bytes = try await response.body.collect(upTo: 64 << 20)
        return Reply(status: Int(response.status.code), headers: response.headers, body: Array(buffer: bytes))
    }

    func post(_ path: String, json: String, headers: [(String, String)] = [], auth: Bool = true) async throws -> Reply {
        try await request(.POST, path, body: Array(json.utf8), headers: headers, auth: auth)
    }
}

func sha256Hex(_ bytes: [UInt8]) -> String {
    Hex.encode(SHA256.hash(data: bytes))
}
