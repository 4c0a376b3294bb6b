import ArgumentParser
import DevStubs
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOSSL

/// Runs the development upstream stand-in: vLLM by default, Chutes-like with `--api-key` and TLS.
/// Not a model (it echoes) and not secure: for development and tests only.
@main
struct StubVLLMCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stub-vllm",
        abstract: "Development stand-in for vLLM or Chutes (echoes; NOT a model, NOT secure).")

    @Option(help: "Address to listen on.") var host = "127.0.0.1"
    @Option(help: "Port to listen on (0 = any free port).") var port = 8001
    @Option(help: "Require 'Authorization: Bearer <key>' on /v1 routes, like Chutes.") var apiKey: String?
    @Option(help: "PEM certificate chain to serve HTTPS with (needs --tls-key).") var tlsCert: String?
    @Option(help: "PEM private key for --tls-cert.") var tlsKey: String?
    @Flag(
        name: .customLong("chutes-e2ee"),
        help: "Also serve Chutes' E2EE endpoints with an in-process ML-KEM-768 instance (DEV ONLY, NOT SECURE).")
    var chutesE2EE = false

    func run() async throws {
        let stub = StubUpstream(apiKey: apiKey, e2ee: chutesE2EE ? try ChutesE2EEDevRelay() : nil)
        let server: HTTPServerBuilder
        switch (tlsCert, tlsKey) {
        case (let cert?, let key?):
            let tls = TLSConfiguration.makeServerConfiguration(
                certificateChain: try NIOSSLCertificate.fromPEMFile(cert).map { .certificate($0) },
                privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem)))
            server = try .tls(StubUpstream.server, tlsConfiguration: tls)
        case (nil, nil):
            server = StubUpstream.server
        default:
            throw ValidationError("--tls-cert and --tls-key go together")
        }
        let app = Application(
            router: stub.router(),
            server: server,
            configuration: .init(address: .hostname(host, port: port), serverName: nil),
            onServerRunning: { channel in
                // Unbuffered, so a harness reading our stdout through a pipe sees it at once.
                let port = channel.localAddress?.port.map(String.init) ?? "?"
                FileHandle.standardOutput.write(Data("stub-vllm listening on \(port)\n".utf8))
            },
            logger: Logger(label: "stub-vllm"))
        try await app.runService()
    }
}
