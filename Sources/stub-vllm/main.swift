import ArgumentParser
import DevStubs
import Hummingbird
import Logging

/// Runs the development vLLM stand-in. Not a model: it echoes, for development and tests only.
@main
struct StubVLLMCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stub-vllm", abstract: "Development stand-in for vLLM (echoes; NOT a model, NOT secure).")

    @Option(help: "Address to listen on.") var host = "127.0.0.1"
    @Option(help: "Port to listen on (0 = any free port).") var port = 8001

    func run() async throws {
        let stub = StubVLLM()
        let app = Application(
            router: stub.router(),
            configuration: .init(address: .hostname(host, port: port), serverName: nil),
            onServerRunning: { channel in
                print("stub-vllm listening on \(channel.localAddress?.port.map(String.init) ?? "?")")
            },
            logger: Logger(label: "stub-vllm"))
        try await app.runService()
    }
}
