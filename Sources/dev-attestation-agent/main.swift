import ArgumentParser
import DevStubs
import Logging

/// Runs the development dstack-agent stand-in. Its quotes come from a throwaway dev PKI: NOT SECURE, never for
/// production.
@main
struct DevAttestationAgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev-attestation-agent",
        abstract: "Development stand-in for the dstack guest agent (quotes from a throwaway dev PKI, NOT SECURE)."
    )

    @Option(help: "Listen on this unix socket path (as /var/run/dstack.sock does).")
    var socket: String?

    @Option(help: "Listen on this TCP host (when --socket is not given).")
    var host = "127.0.0.1"

    @Option(help: "Listen on this TCP port (when --socket is not given; 0 picks a free port, logged).")
    var port = 8090

    @Option(help: "Answer every call with this HTTP status instead (exercises the proxy's 503 path).")
    var failWithStatus: Int?

    @Option(
        name: .customLong("dev-pki-dir"),
        help: ArgumentHelp(
            "Write the dev root CA (tdx-root.pem), the collateral (collateral.json) and the compose hash "
                + "(compose-hash) into this directory, for verifying the agent's quotes.",
            valueName: "dir"))
    var devPKIDir: String?

    func run() async throws {
        let logger = Logger(label: "dev-attestation-agent")
        let address: DevAttestationAgent.Address =
            socket.map { .unixSocket(path: $0) } ?? .tcp(host: host, port: port)
        let behaviour: DevAttestationAgent.Behaviour = failWithStatus.map { .failing(status: $0) } ?? .normal
        let platform = try DevTDXPlatform()
        logger.warning(
            "dev-attestation-agent quotes from a throwaway dev PKI made at start-up: development only, NOT SECURE")
        if let devPKIDir {
            try platform.write(to: devPKIDir)
            logger.warning(
                "wrote the dev PKI's root CA and collateral: a dev PKI, NOT SECURE (trusting it trusts this process)",
                metadata: ["dir": "\(devPKIDir)"])
        }
        try await DevAttestationAgent(address: address, behaviour: behaviour, platform: platform, logger: logger)
            .run(gracefulShutdownSignals: true) { port in
                logger.info(
                    "listening", metadata: ["address": "\(address)", "port": "\(port.map(String.init) ?? "-")"])
            }
    }
}
