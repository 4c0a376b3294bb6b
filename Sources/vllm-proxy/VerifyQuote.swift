import ArgumentParser
import AsyncHTTPClient
import Foundation
import JSON
import SwiftASN1
import TDXCollateral
import TDXVerifier
import X509

/// `vllm-proxy verify-quote`: one TDX quote verified against collateral at a time (SPEC §6.2), with no network
/// unless `--pccs` asks to fetch the collateral from a PCCS; one JSON verdict on standard output; exit 0 verified,
/// 1 not (a fetch failure: `collateral_unavailable`), 2 unusable arguments.
struct VerifyQuote: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify-quote",
        abstract: "Verify a TDX quote against collateral (a file, or fetched with --pccs); print one JSON verdict.",
        discussion: """
            Exit 0 when the quote verified and its TCB status is in TDX_ACCEPTED_TCB_STATUSES (default \
            UpToDate,SWHardeningNeeded), 1 otherwise, 2 for unusable arguments. The trust root is Intel's SGX Root \
            CA pinned in the binary, unless --root-ca (or TDX_ROOT_CA_FILE) replaces it; the verdict names it.
            """)

    @Option(help: "The quote: raw bytes, or hex (an optional 0x prefix).")
    var quote: String
    @Option(help: "The collateral JSON (dcap-qvl's QuoteCollateralV3 shape); this or --pccs.")
    var collateral: String?
    @Option(help: "Fetch the collateral from this PCCS (v4 API; http:// only on loopback); this or --collateral.")
    var pccs: String?
    @Option(help: "Verification time, Unix seconds (default: now).")
    var now: Int64?
    @Option(name: .customLong("root-ca"), help: "A PEM or DER root that replaces Intel's (tests, private PKIs).")
    var rootCA: String?

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        let quoteBytes: [UInt8]
        var collateralValue: TDXCollateral?
        let root: TDXTrustRoot
        let accepted = Self.acceptedStatuses(environment)
        do {
            guard (collateral == nil) != (pccs == nil) else {
                throw ValidationError("exactly one of --collateral and --pccs is needed")
            }
            if let pccs, !PCCSCollateralSource.isAllowed(baseURL: pccs) {
                throw ValidationError("--pccs must be an https:// URL (http:// only on loopback)")
            }
            quoteBytes = try Self.quoteBytes(try Self.read(quote))
            if let collateral { collateralValue = try TDXCollateral(json: try Self.read(collateral)) }
            root = try Self.trustRoot(path: rootCA ?? environment["TDX_ROOT_CA_FILE"])
        } catch {
            FileHandle.standardError.write(Data("verify-quote: \(Self.describe(error))\n".utf8))
            throw ExitCode(2)
        }
        if root.name != "intel" {
            FileHandle.standardError.write(Data("verify-quote: warning: trust root replaced (\(root.name))\n".utf8))
        }
        var verdict = JSONObject()
        if let pccs, collateralValue == nil {
            do throws(TDXCollateralError) {
                collateralValue = try await Self.fetchCollateral(pccs: pccs, quote: quoteBytes)
            } catch {
                verdict["verified"] = false
                verdict["error"] = .string(error.reason)
                verdict["root_ca"] = .string(root.name)
                print(String(decoding: JSONValue.object(verdict).serialized(), as: UTF8.self))
                if case .unavailable(let detail) = error {
                    FileHandle.standardError.write(Data("verify-quote: \(detail)\n".utf8))
                }
                throw ExitCode(1)
            }
        }
        guard let collateralValue else { throw ExitCode(2) }
        do throws(TDXVerificationError) {
            let report = try TDXQuoteVerifier.verify(
                quote: quoteBytes, collateral: collateralValue,
                now: now ?? Int64(Date().timeIntervalSince1970), root: root)
            guard accepted.contains(report.status) else {
                throw TDXVerificationError.tcbStatusNotAccepted(report.status)
            }
            verdict["verified"] = true
            verdict["status"] = .string(report.status)
            verdict["advisory_ids"] = .array(report.advisoryIDs.map { .string($0) })
            verdict["td"] = .object(Self.fields(report.td))
            verdict["fmspc"] = .string(TDXHex.encode(report.fmspc))
            verdict["root_ca"] = .string(root.name)
            print(String(decoding: JSONValue.object(verdict).serialized(), as: UTF8.self))
        } catch {
            verdict["verified"] = false
            verdict["error"] = .string(error.reason)
            if case .tcbStatusNotAccepted(let status) = error { verdict["status"] = .string(status) }
            verdict["root_ca"] = .string(root.name)
            print(String(decoding: JSONValue.object(verdict).serialized(), as: UTF8.self))
            throw ExitCode(1)
        }
    }

    /// The quote's collateral from a PCCS (a fresh cache: each run is its own process).
    static func fetchCollateral(pccs: String, quote bytes: [UInt8]) async throws(TDXCollateralError) -> TDXCollateral {
        let quote: TDXQuote
        do {
            quote = try TDXQuote(parsing: bytes)
        } catch {
            throw .quote(error)
        }
        let http = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup)
        let source = PCCSCollateralSource(baseURL: pccs, httpClient: http) { Int64(Date().timeIntervalSince1970) }
        let result: Result<TDXCollateral, TDXCollateralError>
        do {
            result = .success(try await source.collateral(for: quote))
        } catch {
            result = .failure(error)
        }
        try? await http.shutdown()
        return try result.get()
    }

    static func fields(_ td: TDReport) -> JSONObject {
        [
            "mr_td": .string(TDXHex.encode(td.mrTD)), "rtmr0": .string(TDXHex.encode(td.rtmr[0])),
            "rtmr1": .string(TDXHex.encode(td.rtmr[1])), "rtmr2": .string(TDXHex.encode(td.rtmr[2])),
            "rtmr3": .string(TDXHex.encode(td.rtmr[3])), "mr_config_id": .string(TDXHex.encode(td.mrConfigID)),
            "mr_owner": .string(TDXHex.encode(td.mrOwner)), "mr_owner_config": .string(TDXHex.encode(td.mrOwnerConfig)),
            "report_data": .string(TDXHex.encode(td.reportData)),
            "td_attributes": .string(TDXHex.encode(td.tdAttributes)),
        ]
    }

    /// `TDX_ACCEPTED_TCB_STATUSES` (default `UpToDate,SWHardeningNeeded`), as both verify commands read it.
    static func acceptedStatuses(_ environment: [String: String]) -> Set<String> {
        Set(
            (environment["TDX_ACCEPTED_TCB_STATUSES"] ?? "UpToDate,SWHardeningNeeded").split(separator: ",")
                .map { $0.trimmingCharacters(in: .whitespaces) })
    }

    static func read(_ path: String) throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    /// Raw bytes, or hex text (with an optional 0x prefix and surrounding whitespace).
    static func quoteBytes(_ bytes: [UInt8]) throws -> [UInt8] {
        let text = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if let hex = TDXHex.decode(text), !hex.isEmpty { return hex }
        guard !bytes.isEmpty else { throw ValidationError("the quote file is empty") }
        return bytes
    }

    static func trustRoot(path: String?) throws -> TDXTrustRoot {
        guard let path else { return try IntelSGXRootCA.trustRoot() }
        let bytes = try read(path)
        if let pem = try? Certificate(pemEncoded: String(decoding: bytes, as: UTF8.self)) {
            return try TDXTrustRoot(der: try Self.der(pem))
        }
        return try TDXTrustRoot(der: bytes)
    }

    static func der(_ certificate: Certificate) throws -> [UInt8] {
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        return serializer.serializedBytes
    }

    static func describe(_ error: any Error) -> String {
        if let error = error as? TDXVerificationError { return error.reason }
        if let error = error as? CocoaError, let path = error.userInfo[NSFilePathErrorKey] {
            return "cannot read \(path)"
        }
        return "\(error)"
    }
}
