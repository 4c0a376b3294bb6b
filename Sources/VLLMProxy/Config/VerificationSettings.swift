import Foundation
import TDXCollateral
import TDXVerifier

/// How this proxy verifies other TEEs' attestation (SPEC §6.2; used by the Chutes chain, §7.2): where collateral
/// comes from, which TCB statuses pass, and the trust roots — pinned unless `TDX_ROOT_CA_FILE` /
/// `NVIDIA_ROOT_CA_FILE` replace them, which start-up logs as a warning naming the replacement.
public struct VerificationSettings: Sendable {
    public var pccsURL: String
    public var acceptedTCBStatuses: Set<String>
    public var tdxRoot: TDXTrustRoot
    public var nvidiaRoot: NvidiaTrustRoot

    /// The statuses a TCB level can report that an operator may accept; `Revoked` is never acceptable.
    public static let acceptableStatuses: Set<String> = [
        "UpToDate", "SWHardeningNeeded", "ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded", "OutOfDate",
        "OutOfDateConfigurationNeeded", "TDRelaunchAdvised", "TDRelaunchAdvisedConfigurationNeeded",
    ]

    /// Reads and checks the four variables: a PCCS over https (http only on loopback), known statuses, and root
    /// files that hold one certificate each.
    static func read(_ string: (String) -> String?) throws(ConfigError) -> VerificationSettings {
        let pccsURL = string("PCCS_URL") ?? "https://pccs.phala.network"
        guard PCCSCollateralSource.isAllowed(baseURL: pccsURL) else {
            throw .malformed("PCCS_URL", "must be an https:// URL (http:// only on loopback)")
        }
        let statuses = (string("TDX_ACCEPTED_TCB_STATUSES") ?? "UpToDate,SWHardeningNeeded").split(separator: ",")
            .map { String($0).trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard !statuses.isEmpty else { throw .malformed("TDX_ACCEPTED_TCB_STATUSES", "names no status") }
        if let unknown = statuses.first(where: { !acceptableStatuses.contains($0) }) {
            throw .malformed(
                "TDX_ACCEPTED_TCB_STATUSES",
                "names \(unknown.prefix(64)), not one of \(acceptableStatuses.sorted().joined(separator: ", "))")
        }
        let tdxRoot: TDXTrustRoot
        if let path = string("TDX_ROOT_CA_FILE") {
            tdxRoot = try root("TDX_ROOT_CA_FILE", path) { der throws(TDXVerificationError) in
                try TDXTrustRoot(der: der)
            }
        } else {
            do { tdxRoot = try IntelSGXRootCA.trustRoot() } catch {
                preconditionFailure("the pinned Intel root parses")
            }
        }
        let nvidiaRoot: NvidiaTrustRoot
        if let path = string("NVIDIA_ROOT_CA_FILE") {
            nvidiaRoot = try root("NVIDIA_ROOT_CA_FILE", path) { der throws(GPUEvidenceError) in
                try NvidiaTrustRoot(der: der)
            }
        } else {
            do { nvidiaRoot = try NvidiaDeviceRootCA.trustRoot() } catch {
                preconditionFailure("the pinned NVIDIA root parses")
            }
        }
        return VerificationSettings(
            pccsURL: pccsURL, acceptedTCBStatuses: Set(statuses), tdxRoot: tdxRoot, nvidiaRoot: nvidiaRoot)
    }

    /// One certificate from a PEM (or DER) file, or the one-line error naming the variable.
    private static func root<Root, Failure: Error>(
        _ name: String, _ path: String, _ make: ([UInt8]) throws(Failure) -> Root
    ) throws(ConfigError) -> Root {
        guard let bytes = FileManager.default.contents(atPath: path).map(Array.init) else {
            throw .malformed(name, "cannot be read")
        }
        let der: [UInt8]
        let text = String(decoding: bytes, as: UTF8.self)
        if let begin = text.range(of: "-----BEGIN CERTIFICATE-----"),
            let end = text.range(of: "-----END CERTIFICATE-----", range: begin.upperBound..<text.endIndex),
            let decoded = Data(
                base64Encoded: text[begin.upperBound..<end.lowerBound].filter { !$0.isWhitespace }.description)
        {
            der = Array(decoded)
        } else {
            der = bytes
        }
        do {
            return try make(der)
        } catch {
            throw .malformed(name, "does not hold a certificate (PEM or DER)")
        }
    }

    /// The start-up warnings: one per replaced root, naming it.
    public var warnings: [String] {
        var lines: [String] = []
        if tdxRoot.name != "intel" {
            lines.append(
                "TDX_ROOT_CA_FILE replaces Intel's pinned SGX root with \(tdxRoot.name): tests and private PKIs only")
        }
        if nvidiaRoot.name != "nvidia" {
            lines.append("NVIDIA_ROOT_CA_FILE replaces NVIDIA's pinned device root with \(nvidiaRoot.name)")
        }
        return lines
    }
}
