import ArgumentParser
import Foundation
import Logging
import Signing
import VLLMProxy

/// The `vllm-proxy` command: reads the environment, creates the keys, serves until SIGTERM/SIGINT.
@main
struct VLLMProxyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vllm-proxy",
        abstract: "Signing, end-to-end-encrypting proxy in front of vLLM, for confidential VMs.",
        discussion: "Configured entirely by environment variables:\n\n"
            + ProxyConfig.variables.map { name, defaultValue, meaning in
                "  \(name.padding(toLength: 30, withPad: " ", startingAt: 0)) \(meaning) [default: \(defaultValue)]"
            }.joined(separator: "\n")
    )

    func run() async throws {
        let config: ProxyConfig
        do {
            config = try ProxyConfig(environment: ProcessInfo.processInfo.environment)
        } catch {
            FileHandle.standardError.write(Data((error.description + "\n").utf8))
            throw ExitCode(2)
        }
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
        let services = ProxyServices(config: config, keys: keys, logger: logger)
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
