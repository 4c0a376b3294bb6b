import ArgumentParser
import AsyncHTTPClient
import Attestation
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
        // Before logging starts, so that a failure is the one line on standard error, as a configuration error is.
        let (keys, provenance) = try await signingKeys(config)
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
        pinMallocMmapThreshold()
        let services = try ProxyServices(config: config, keys: keys, keyProvenance: provenance, logger: logger)
        let addresses: Logger.Metadata = [
            "ecdsa_address": "\(keys.ecdsaAddress)", "ed25519_address": "\(keys.ed25519Address)",
        ]
        switch config.signingKeySource {
        case .random:
            logger.info("signing keys created in memory", metadata: addresses)
        case .kms:
            let paths = KMSSigningKeys.paths(modelName: config.modelName)
            logger.info(
                "signing keys derived through the dstack KMS (GetKey \(paths.ecdsa), \(paths.ed25519)): every replica of this app holds them",
                metadata: addresses)
            if config.e2eeMinVersion < 3 {
                // v1/v2 encrypt to the signing keys themselves, which are now the app's, not this process's.
                logger.warning(
                    "SIGNING_KEY_SOURCE=kms: E2EE v1/v2 requests are encrypted to the signing keys, which every replica and later version of this app can derive; E2EE_MIN_VERSION=3 keeps request contents under per-process keys"
                )
            }
        }
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
        // The application's service group stops the resources too (`ResourcesService`), after the server.
        try await buildApplication(services).runService()
    }
}

/// The signing keys `SIGNING_KEY_SOURCE` asks for, before anything serves. With `kms`, a failed or malformed `GetKey`
/// ends the process with exit status 2 and one line naming the path: never random keys instead, which would give
/// this replica an identity no client pinned.
private func signingKeys(_ config: ProxyConfig) async throws -> (SigningKeys, KeyProvenance?) {
    guard config.signingKeySource == .kms else { return (SigningKeys(), nil) }
    let endpoint = DstackClient.Endpoint(parsing: config.dstackEndpoint)
    // A client of its own, shut down before serving; its own logger is silent so the failure stays one line.
    var configuration = HTTPClient.Configuration()
    configuration.timeout = .init(connect: .seconds(2), read: .seconds(10))
    configuration.connectionPool.retryConnectionEstablishment = false
    let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    let silent = Logger(label: "vllm-proxy.kms", factory: { _ in SwiftLogNoOpLogHandler() })
    let agent = DstackClient(endpoint: endpoint, httpClient: client, timeout: .seconds(10), logger: silent)
    let result: Result<(keys: SigningKeys, provenance: KeyProvenance), KMSSigningKeys.Failure>
    do {
        result = .success(try await KMSSigningKeys.derive(modelName: config.modelName, agent: agent))
    } catch {
        result = .failure(error)
    }
    try? await client.shutdown()
    switch result {
    case .success(let derived):
        return (derived.keys, derived.provenance)
    case .failure(let failure):
        FileHandle.standardError.write(
            Data("signing keys (SIGNING_KEY_SOURCE=kms, agent \(endpoint.summary)): \(failure)\n".utf8))
        throw ExitCode(2)
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
