import ArgumentParser
import Foundation
import JSON
import Signing
import TDXCollateral
import TDXVerifier

/// `vllm-proxy verify URL` (SPEC §6.2): checks a running proxy's attestation end to end with a fresh nonce — the
/// quote against Intel's pinned root, the report data binding this nonce to the signing key, the TLS key of this
/// very connection, the E2EE v3 key list and the GPU evidence; the event log, the expected code, the GPU evidence
/// itself and optionally one receipt. One line per check (or `--json`); exit 0 only when every check passed.
struct Verify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Verify a running proxy's attestation end to end; exit 0 only when every check passes.",
        discussion: """
            Asks URL for /v1/attestation/report?version=3 with a fresh nonce and checks: the TDX quote (Intel's \
            pinned root unless --root-ca or TDX_ROOT_CA_FILE; collateral from --collateral, or --pccs / PCCS_URL, \
            default https://pccs.phala.network) and its TCB status (TDX_ACCEPTED_TCB_STATUSES); that the report data \
            is this nonce with the v3 identity of the reported signing key, the TLS certificate of this connection \
            (https), the E2EE v3 key list and the GPU evidence; the dstack event log against RTMR3; the code \
            measured (--expect-compose-hash, --expect-mr-td, --expect-rtmr0..2; without any, this check fails \
            unless --allow-any-code); the NVIDIA GPU evidence (NVIDIA's pinned root unless --nvidia-root-ca or \
            NVIDIA_ROOT_CA_FILE); with --receipt, one signature record against the attested key; with --kms-root, \
            that the attested key's key_provenance chain leads to that dstack KMS root for the quoted app id. Exit \
            0 when every check passed, 1 when one failed, 2 for unusable arguments.
            """)

    @Argument(help: "The proxy's base URL, e.g. https://proxy.example.com")
    var url: String
    @Option(help: "Bearer token (default: $TOKEN).")
    var token: String?
    @Option(name: .customLong("signing-algo"), help: "ecdsa or ed25519: which signing key to attest.")
    var signingAlgo = "ecdsa"
    @Option(help: "The collateral JSON (QuoteCollateralV3 shape) instead of fetching it from a PCCS.")
    var collateral: String?
    @Option(help: "Fetch collateral from this PCCS (default: $PCCS_URL, else https://pccs.phala.network).")
    var pccs: String?
    @Option(help: "Verification time, Unix seconds (default: now).")
    var now: Int64?
    @Option(name: .customLong("root-ca"), help: "A PEM or DER root that replaces Intel's (tests, private PKIs).")
    var rootCA: String?
    @Option(name: .customLong("nvidia-root-ca"), help: "A PEM or DER root that replaces NVIDIA's device root.")
    var nvidiaRootCA: String?
    @Option(name: .customLong("expect-compose-hash"), help: "The app's compose hash (hex) the event log must hold.")
    var expectComposeHash: String?
    @Option(name: .customLong("expect-mr-td"), help: "The TD's MRTD (hex) the quote must hold.")
    var expectMrTd: String?
    @Option(name: .customLong("expect-rtmr0"), help: "RTMR0 (hex) the quote must hold.")
    var expectRtmr0: String?
    @Option(name: .customLong("expect-rtmr1"), help: "RTMR1 (hex) the quote must hold.")
    var expectRtmr1: String?
    @Option(name: .customLong("expect-rtmr2"), help: "RTMR2 (hex) the quote must hold.")
    var expectRtmr2: String?
    @Flag(name: .customLong("allow-any-code"), help: "Pass the measurement check with no expectation (a warning).")
    var allowAnyCode = false
    @Flag(name: .customLong("allow-no-gpu"), help: "Pass the GPU check when the proxy reports no GPU (a warning).")
    var allowNoGPU = false
    @Option(help: "A chat id whose signature record must verify against the attested key.")
    var receipt: String?
    @Option(
        name: .customLong("chutes-model"),
        help: "A Chutes model whose /v1/attestation/chain verdict must pass, signed by the attested key.")
    var chutesModel: String?
    @Option(
        name: .customLong("kms-root"),
        help: ArgumentHelp(
            "The dstack KMS root public key (secp256k1, hex, compressed or not), or a file holding it: the attested "
                + "key's key_provenance must lead to it (a proxy with SIGNING_KEY_SOURCE=kms).",
            valueName: "hex-or-file"))
    var kmsRoot: String?
    @Flag(help: "Print one JSON object instead of lines.")
    var json = false

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        let plan: ProxyVerification.Plan
        do {
            plan = try makePlan(environment: environment)
        } catch {
            FileHandle.standardError.write(Data("verify: \(VerifyQuote.describe(error))\n".utf8))
            throw ExitCode(2)
        }
        let quiet = json
        let progress: @Sendable (String) -> Void = { line in
            if !quiet { FileHandle.standardError.write(Data("  … \(line)\n".utf8)) }
        }
        let outcome = await ProxyVerification(plan: plan, progress: progress).run()
        if json {
            print(String(decoding: JSONValue.object(outcome.json).serialized(), as: UTF8.self))
        } else {
            print(outcome.text)
        }
        if !outcome.verified { throw ExitCode(1) }
    }

    private func makePlan(environment: [String: String]) throws -> ProxyVerification.Plan {
        guard let algo = ["ecdsa", "ed25519"].first(where: { $0 == signingAlgo.lowercased() }) else {
            throw ValidationError("--signing-algo must be ecdsa or ed25519")
        }
        guard url.hasPrefix("http://") || url.hasPrefix("https://") else {
            throw ValidationError("the URL must start with http:// or https://")
        }
        if collateral != nil, pccs != nil { throw ValidationError("--collateral and --pccs exclude each other") }
        let pccsURL = pccs ?? environment["PCCS_URL"] ?? "https://pccs.phala.network"
        if collateral == nil, !PCCSCollateralSource.isAllowed(baseURL: pccsURL) {
            throw ValidationError("the PCCS must be an https:// URL (http:// only on loopback)")
        }
        func hex(_ text: String?, _ what: String, _ count: Int) throws -> [UInt8]? {
            guard let text else { return nil }
            let trimmed = text.hasPrefix("0x") ? String(text.dropFirst(2)) : text
            guard let bytes = TDXHex.decode(trimmed), bytes.count == count else {
                throw ValidationError("--\(what) must be \(count) bytes of hex")
            }
            return bytes
        }
        var expected = ProxyVerification.Expectations()
        expected.composeHash = try hex(expectComposeHash, "expect-compose-hash", 32)
        expected.mrTD = try hex(expectMrTd, "expect-mr-td", 48)
        expected.rtmr = [
            try hex(expectRtmr0, "expect-rtmr0", 48), try hex(expectRtmr1, "expect-rtmr1", 48),
            try hex(expectRtmr2, "expect-rtmr2", 48),
        ]
        expected.allowAnyCode = allowAnyCode
        if let receipt, receipt.isEmpty || receipt.utf8.count > 256 || receipt.contains("/") {
            throw ValidationError("--receipt must be a chat id")
        }
        let collateralValue: TDXCollateral? =
            if let collateral { try TDXCollateral(json: try VerifyQuote.read(collateral)) } else { nil }
        let tdxRoot = try VerifyQuote.trustRoot(path: rootCA ?? environment["TDX_ROOT_CA_FILE"])
        let nvidiaRoot: NvidiaTrustRoot
        if let path = nvidiaRootCA ?? environment["NVIDIA_ROOT_CA_FILE"] {
            nvidiaRoot = try NvidiaTrustRoot(pem: String(decoding: try VerifyQuote.read(path), as: UTF8.self))
        } else {
            nvidiaRoot = try NvidiaDeviceRootCA.trustRoot()
        }
        if let chutesModel, chutesModel.isEmpty || chutesModel.utf8.count > 256 {
            throw ValidationError("--chutes-model must be a model name")
        }
        var plan = ProxyVerification.Plan(
            baseURL: url.hasSuffix("/") ? String(url.dropLast()) : url,
            token: token ?? environment["TOKEN"],
            signingAlgo: algo,
            collateral: collateralValue,
            pccsURL: pccsURL,
            now: now,
            tdxRoot: tdxRoot,
            nvidiaRoot: nvidiaRoot,
            acceptedStatuses: VerifyQuote.acceptedStatuses(environment),
            expected: expected,
            allowNoGPU: allowNoGPU,
            receiptID: receipt
        )
        plan.chutesModel = chutesModel
        plan.kmsRoot = try kmsRoot.map(Self.kmsRootKey)
        return plan
    }

    /// `--kms-root`: hex (an optional `0x`), or a file holding it; dstack's KMS publishes its root compressed.
    private static func kmsRootKey(_ argument: String) throws -> Secp256k1PublicKey {
        var text = argument
        if FileManager.default.isReadableFile(atPath: argument) {
            text = String(decoding: try VerifyQuote.read(argument), as: UTF8.self)
        }
        text = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if text.hasPrefix("0x") { text.removeFirst(2) }
        guard let bytes = Hex.decode(text),
            let key = try?
                (bytes.count == 33 ? Secp256k1PublicKey(compressed: bytes) : Secp256k1PublicKey(bytes: bytes))
        else {
            throw ValidationError(
                "--kms-root must be a secp256k1 public key in hex (33, 64 or 65 bytes), or a file holding one")
        }
        return key
    }
}
