import ArgumentParser
import Foundation
import Logging
import Signing
import VLLMProxy

/// The `vllm-proxy` command: `serve` (the default) runs the proxy; `healthcheck` is the container's probe.
struct VLLMProxyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vllm-proxy",
        abstract: "Signing, end-to-end-encrypting proxy in front of vLLM, for confidential VMs.",
        discussion: "Configured entirely by environment variables:\n\n"
            + ProxyConfig.variables.map { variable in
                "  \(variable.name.padding(toLength: 30, withPad: " ", startingAt: 0)) \(variable.helpText)"
            }.joined(separator: "\n"),
        subcommands: [Serve.self, Healthcheck.self, E2EEChat.self, VerifyQuote.self, Verify.self],
        defaultSubcommand: Serve.self
    )
}

extension VLLMProxyCommand {
    /// The process's entry point, called by main.swift once NIO runs Swift concurrency. (From top-level code,
    /// `main()` resolves to ParsableCommand's synchronous overload, which would only print the help.)
    static func runAsEntryPoint() async {
        await main()
    }
}

/// Reads the environment, creates the keys, serves until SIGTERM/SIGINT.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the proxy (the default when no subcommand is given).")

    func run() async throws {
        let config = try readConfig(failing: ExitCode(2))
        // The composition root is the one place process-wide logging is set up.
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = config.logLevel
            return handler
        }
        let logger = Logger(label: "vllm-proxy")
        if let files = raiseOpenFileLimit() {
            logger.info("open-file limit: \(files.after) (was \(files.before))")
        }
        let keys = SigningKeys()
        let services = try ProxyServices(config: config, keys: keys, logger: logger)
        logger.info(
            "signing keys created in memory",
            metadata: ["ecdsa_address": "\(keys.ecdsaAddress)", "ed25519_address": "\(keys.ed25519Address)"])
        logger.info("upstream vllm: \(config.vllmBaseURL)")
        logger.info("\(services.chutes.logLine)")
        logger.info("\(config.redis.map(\.summary) ?? "redis: not configured (state is in-process only)")")
        if let endpoint = config.dstackEndpoint {
            logger.warning(
                "DSTACK_SIMULATOR_ENDPOINT is set (\(endpoint)): attestation comes from a simulator, NOT a TEE. Never use this in production."
            )
        }
        for warning in config.verification.warnings + services.chutes.warnings {
            logger.warning("\(warning)")
        }
        if config.gpuNoHardwareMode {
            logger.warning("GPU_NO_HW_MODE is on: attestation carries no GPU evidence. Development only.")
        }
        await services.start()
        let app = buildApplication(services)
        do {
            try await app.runService()
        } catch {
            try? await services.shutdown()
            throw error
        }
        try await services.shutdown()
    }
}

/// Exits 0 when the proxy configured by this environment answers `GET /` with 200, else 1 (Docker's
/// HEALTHCHECK convention). It reads the same variables as `serve`, so it probes the port the proxy uses.
struct Healthcheck: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Probe the running proxy's GET / (exit 0 healthy, 1 unhealthy); for container health checks.")

    func run() async throws {
        let config = try readConfig(failing: ExitCode(1), prefix: "unhealthy: ")
        let url = LivenessProbe.url(host: config.host, port: config.port)
        guard await LivenessProbe.check(url: url) else {
            FileHandle.standardError.write(Data("unhealthy: no 200 from GET \(url)\n".utf8))
            throw ExitCode(1)
        }
    }
}

/// The configuration from this process's environment; an invalid one is reported on standard error (after
/// `prefix`) and ends the command with `exit`.
private func readConfig(failing exit: ExitCode, prefix: String = "") throws -> ProxyConfig {
    do {
        return try ProxyConfig(environment: ProcessInfo.processInfo.environment)
    } catch {
        FileHandle.standardError.write(Data((prefix + error.description + "\n").utf8))
        throw exit
    }
}
