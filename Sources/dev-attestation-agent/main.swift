import ArgumentParser
import DevStubs
import Logging

/// Runs the development dstack-agent stand-in. Its quotes are fake: NOT SECURE, never for production.
@main
struct DevAttestationAgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev-attestation-agent",
        abstract: "Development stand-in for the dstack guest agent (fake quotes, NOT SECURE)."
    )

    @Option(help: "Listen on this unix socket path (as /var/run/dstack.sock does).")
    var socket: String?

    @Option(help: "Listen on this TCP host (when --socket is not given).")
    var host = "127.0.0.1"

    @Option(help: "Listen on this TCP port (when --socket is not given).")
    var port = 8090

    @Option(help: "Answer every call with this HTTP status instead (exercises the proxy's 503 path).")
    var failWithStatus: Int?

    func run() async throws {
        let logger = Logger(label: "dev-attestation-agent")
        let address: DevAttestationAgent.Address =
            socket.map { .unixSocket(path: $0) } ?? .tcp(host: host, port: port)
        let behaviour: DevAttestationAgent.Behaviour = failWithStatus.map { .failing(status: $0) } ?? .normal
        logger.warning("dev-attestation-agent serves FAKE quotes: development only, NOT SECURE")
        try await DevAttestationAgent(address: address, behaviour: behaviour, logger: logger)
            .run(gracefulShutdownSignals: true) { port in
                logger.info(
                    "listening", metadata: ["address": "\(address)", "port": "\(port.map(String.init) ?? "-")"])
            }
    }
}
