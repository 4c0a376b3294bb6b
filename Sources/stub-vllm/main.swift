import ArgumentParser
import DevStubs
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOSSL

/// Runs the development upstream stand-in: vLLM by default, Chutes-like with `--api-key` and TLS; with
/// `--chutes-e2ee` also Chutes' E2EE relay and one dev instance whose TDX evidence verifies against a throwaway
/// dev PKI (`--pccs-port`, `--dev-pki-dir`). Not a model (it echoes) and not secure: for development and tests only.
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
    @Option(
        help: """
            With --chutes-e2ee: also serve a PCCS stand-in with the collateral of the dev instance's quotes, over \
            plain HTTP on 127.0.0.1 at this port (0 = any free port).
            """)
    var pccsPort: Int?
    @Option(
        name: .customLong("dev-pki-dir"),
        help: """
            With --chutes-e2ee: write the dev instance's TDX root CA (\(ChutesE2EEDevRelay.rootPEMFileName)) and \
            measurements (\(ChutesE2EEDevRelay.measurementsFileName)) into this directory (a dev PKI, NOT SECURE).
            """)
    var devPKIDir: String?

    func validate() throws {
        if !chutesE2EE, pccsPort != nil || devPKIDir != nil {
            throw ValidationError("--pccs-port and --dev-pki-dir need --chutes-e2ee: they describe its dev instance")
        }
        if let pccsPort, !(0...65535).contains(pccsPort) { throw ValidationError("--pccs-port must be 0-65535") }
    }

    func run() async throws {
        let relay = chutesE2EE ? try ChutesE2EEDevRelay() : nil
        // Written before listening, so that once the files exist a script may start a proxy that reads them.
        if let relay, let devPKIDir { try relay.writeDevPKI(to: devPKIDir) }
        let stub = StubUpstream(apiKey: apiKey, e2ee: relay)
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
        var app = Application(
            router: stub.router(),
            server: server,
            configuration: .init(address: .hostname(host, port: port), serverName: nil),
            onServerRunning: { channel in
                // Unbuffered, so a harness reading our stdout through a pipe sees it at once.
                let port = channel.localAddress?.port.map(String.init) ?? "?"
                FileHandle.standardOutput.write(Data("stub-vllm listening on \(port)\n".utf8))
            },
            logger: Logger(label: "stub-vllm"))
        if let relay, let pccsPort {
            // Plain HTTP on loopback, apart from the TLS listener: a PCCS client takes http:// only to loopback
            // and would not trust the dev CA the Chutes listener serves with.
            app.addServices(
                Application(
                    router: relay.pccs.router(),
                    configuration: .init(address: .hostname("127.0.0.1", port: pccsPort), serverName: nil),
                    onServerRunning: { channel in
                        let port = channel.localAddress?.port.map(String.init) ?? "?"
                        FileHandle.standardOutput.write(Data("stub-vllm pccs listening on \(port)\n".utf8))
                    },
                    logger: Logger(label: "stub-vllm-pccs")))
        }
        try await app.runService()
    }
}
