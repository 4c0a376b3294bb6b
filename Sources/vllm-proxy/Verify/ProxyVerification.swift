import AsyncHTTPClient
import Attestation
import Crypto
import E2EE
import Foundation
import JSON
import Signing
import TDXCollateral
import TDXVerifier
import X509

/// The checks of `vllm-proxy verify` (SPEC §6.2), run in order against one proxy; each yields a `Check`, and the
/// proxy is verified only when every one passed. Nothing here trusts a field of the report until the quote's
/// report data binds it: the signing key, `K`, the GPU evidence and the TLS key are all in the v3 identity.
struct ProxyVerification {
    /// What the code measured must equal; `allowAnyCode` passes the check without any (with a warning).
    struct Expectations {
        var composeHash: [UInt8]?
        var mrTD: [UInt8]?
        var rtmr: [[UInt8]?] = [nil, nil, nil]
        var allowAnyCode = false

        var isEmpty: Bool { composeHash == nil && mrTD == nil && rtmr.allSatisfy { $0 == nil } }
    }

    /// Everything the command line decided.
    struct Plan {
        let baseURL: String
        let token: String?
        let signingAlgo: String
        let collateral: TDXCollateral?
        let pccsURL: String
        let now: Int64?
        let tdxRoot: TDXTrustRoot
        let nvidiaRoot: NvidiaTrustRoot
        let acceptedStatuses: Set<String>
        let expected: Expectations
        let allowNoGPU: Bool
        let receiptID: String?
        /// A Chutes model whose `/v1/attestation/chain` verdict must be signed by the attested key and pass.
        var chutesModel: String? = nil
        /// The dstack KMS root the attested key's `key_provenance` chain must lead to (`--kms-root`).
        var kmsRoot: Secp256k1PublicKey? = nil
    }

    /// One check's result.
    struct Check {
        let name: String
        let passed: Bool
        let detail: String
    }

    /// All checks, the warnings, and what was learnt (for `--json`).
    struct Outcome {
        let url: String
        let checks: [Check]
        let warnings: [String]
        let facts: JSONObject

        var verified: Bool { !checks.isEmpty && checks.allSatisfy(\.passed) }

        var json: JSONObject {
            var object = facts
            object["verified"] = .bool(verified)
            object["url"] = .string(url)
            object["checks"] = .array(
                checks.map {
                    .object(["check": .string($0.name), "passed": .bool($0.passed), "detail": .string($0.detail)])
                })
            object["warnings"] = .array(warnings.map { .string($0) })
            return object
        }

        var text: String {
            var lines = ["vllm-proxy verify \(url)"]
            for warning in warnings { lines.append("  WARN  \(warning)") }
            let width = (checks.map(\.name.count).max() ?? 0) + 2
            for check in checks {
                lines.append(
                    "  \(check.passed ? "PASS" : "FAIL")  \(check.name.padding(toLength: width, withPad: " ", startingAt: 0))\(check.detail)"
                )
            }
            let failed = checks.filter { !$0.passed }
            lines.append(
                failed.isEmpty
                    ? "VERIFIED: all \(checks.count) checks passed."
                    : "NOT VERIFIED: \(failed.count) of \(checks.count) checks failed (\(failed.map(\.name).joined(separator: ", ")))."
            )
            return lines.joined(separator: "\n")
        }
    }

    let plan: Plan
    let progress: @Sendable (String) -> Void

    private final class Record {
        var checks: [Check] = []
        var warnings: [String] = []
        var facts = JSONObject()

        func add(_ name: String, _ passed: Bool, _ detail: String) {
            checks.append(Check(name: name, passed: passed, detail: detail))
        }
    }

    func run() async -> Outcome {
        let record = Record()
        if plan.tdxRoot.name != "intel" {
            record.warnings.append(
                "the TDX trust root is replaced (\(plan.tdxRoot.name)): quotes prove nothing about Intel hardware")
        }
        if plan.nvidiaRoot.name != "nvidia" {
            record.warnings.append("the NVIDIA trust root is replaced (\(plan.nvidiaRoot.name))")
        }
        record.facts["root_ca"] = .string(plan.tdxRoot.name)
        record.facts["nvidia_root_ca"] = .string(plan.nvidiaRoot.name)
        await check(record)
        return Outcome(url: plan.baseURL, checks: record.checks, warnings: record.warnings, facts: record.facts)
    }

    // MARK: The checks, in order

    private func check(_ record: Record) async {
        let now = plan.now ?? Int64(Date().timeIntervalSince1970)
        let nonce = SecureRandom.bytes(32)
        record.facts["nonce"] = .string(Hex.encode(nonce))
        progress("asking \(plan.baseURL) for attestation version 3 with a fresh nonce")
        let reportURL =
            plan.baseURL
            + "/v1/attestation/report?version=3&signing_algo=\(plan.signingAlgo)&nonce=\(Hex.encode(nonce))"
        let report: Report
        let tlsLeaf: [UInt8]?
        do {
            let response = try await AttestedFetch.get(reportURL, bearer: plan.token)
            guard response.status == 200 else {
                let excerpt = String(decoding: response.body.prefix(200), as: UTF8.self)
                record.add("attestation", false, "HTTP \(response.status) from the report route: \(excerpt)")
                return
            }
            report = try Report(parsing: response.body, algo: plan.signingAlgo)
            tlsLeaf = response.tlsLeafDER
        } catch {
            record.add("attestation", false, "\(error)")
            return
        }
        let spkiDigest: [UInt8]?
        if plan.baseURL.hasPrefix("https://") {
            guard let tlsLeaf, let digest = Self.spkiSHA256(ofCertificate: tlsLeaf) else {
                record.add("attestation", false, "no usable TLS certificate was captured from the connection")
                return
            }
            spkiDigest = digest
            record.add(
                "attestation", true,
                "version 3 report over TLS; the connection's certificate key has SPKI SHA-256 \(Hex.encode(digest))")
        } else {
            spkiDigest = nil
            record.add("attestation", true, "version 3 report over plain HTTP (no TLS key to bind)")
        }
        record.facts["signing_address"] = .string(report.signingAddress)
        record.facts["signing_algo"] = .string(plan.signingAlgo)

        // The quote: parsed for its TD report, then verified against collateral and the trust root.
        let quote: TDXQuote
        do {
            quote = try TDXQuote(parsing: report.quote)
        } catch {
            record.add("tdx_quote", false, "the quote does not parse: \(error.reason)")
            return
        }
        record.facts["td"] = .object(VerifyQuote.fields(quote.body))
        await verifyQuote(quote, bytes: report.quote, now: now, record)

        // The signing key the report names is the one its address is derived from.
        record.add(
            "signing_key", report.addressMatchesKey,
            report.addressMatchesKey
                ? "\(plan.signingAlgo) key \(report.signingAddress) (derived from signing_public_key)"
                : "signing_address is not the address of signing_public_key")

        // K, kc and the versions offered.
        if let client = try? V3Client(keyConfig: report.keyConfig) {
            let kcMatches = client.keyConfigID == report.keyConfigID
            let offersV3 = report.e2eeVersions.contains(3)
            record.add(
                "e2ee_key_config", kcMatches && offersV3,
                !kcMatches
                    ? "e2ee_v3_key_config_id is not the id of e2ee_v3_key_config"
                    : offersV3
                        ? "E2EE v3 key list kc \(client.keyConfigID) (X25519 and X-Wing); versions \(report.e2eeVersions)"
                        : "the proxy does not accept E2EE v3 (e2ee_versions \(report.e2eeVersions))")
        } else {
            record.add("e2ee_key_config", false, "e2ee_v3_key_config is not a well-formed v3 key list")
        }

        // The binding: the quote's report data is this nonce with the identity of everything above.
        let expected = ReportData.v3(
            addressBytes: report.addressBytes, spkiSHA256: spkiDigest, keyConfig: report.keyConfig,
            nvidiaPayload: report.nvidiaPayload, nonce: nonce)
        if report.requestNonce != Hex.encode(nonce) {
            record.add("report_data", false, "request_nonce is not the nonce asked for")
        } else if quote.body.reportData != expected {
            let hint =
                spkiDigest == nil
                ? "" : " (if a TLS-terminating gateway sits in front, the certificate seen is the gateway's)"
            record.add(
                "report_data", false,
                "the quote's report data does not bind this nonce, signing key, TLS key, key list and GPU evidence\(hint)"
            )
        } else {
            record.add(
                "report_data", true,
                "the quote binds this nonce, the signing key, \(spkiDigest == nil ? "no TLS key" : "this connection's TLS key"), the E2EE v3 key list and the GPU evidence"
            )
        }

        // What runs: the event log replayed to RTMR3, then the expectations.
        var composeHash: [UInt8]?
        var appID: [UInt8]?
        do throws(DstackEventLog.Failure) {
            let log = try DstackEventLog(parsing: Array(report.eventLog.utf8), quotedRTMR3: quote.body.rtmr[3])
            // dstack 0.5.1 and later also put the compose hash in MRCONFIGID (0x01 ‖ hash): both must agree.
            let configID = quote.body.mrConfigID
            if configID.first == 0x01, let hash = log.composeHash, Array(configID[1..<33]) != hash {
                record.add("event_log", false, "MRCONFIGID names another compose hash than the event log")
                checkMeasurements(quote.body, composeHash: nil, record)
                return await checkRest(report: report, nonce: nonce, now: now, appID: nil, record)
            }
            composeHash = log.composeHash
            appID = log.appID
            if let hash = log.composeHash { record.facts["compose_hash"] = .string(Hex.encode(hash)) }
            if let appID = log.appID { record.facts["app_id"] = .string(Hex.encode(appID)) }
            record.add(
                "event_log", true,
                "replays to RTMR3 (\(log.rtmr3Events.count) events); compose-hash \(log.composeHash.map { Hex.encode($0) } ?? "absent"), app-id \(log.appID.map { Hex.encode($0) } ?? "absent")"
            )
        } catch {
            record.add("event_log", false, error.detail)
        }
        checkMeasurements(quote.body, composeHash: composeHash, record)
        await checkRest(report: report, nonce: nonce, now: now, appID: appID, record)
    }

    /// The KMS provenance (with `--kms-root`, or when the report claims one), the GPUs, then the receipt.
    /// - Parameter appID: the app id the quoted event log names; nil when the event log failed.
    private func checkRest(report: Report, nonce: [UInt8], now: Int64, appID: [UInt8]?, _ record: Record) async {
        checkKMSProvenance(report: report, appID: appID, record)
        let gpu = GPUCheck.run(
            payload: report.nvidiaPayload, nonce: nonce, now: now, root: plan.nvidiaRoot, allowNoGPU: plan.allowNoGPU)
        if let warning = gpu.warning { record.warnings.append(warning) }
        record.add("gpu_evidence", gpu.passed, gpu.detail)

        if let receiptID = plan.receiptID {
            await checkReceipt(receiptID, report: report, record)
        }
        if let model = plan.chutesModel {
            await checkChutesChain(model, report: report, record)
        }
    }

    /// SPEC §5 `key_provenance`: the attested key's dstack chain leads, through the app key of the app id the quote's
    /// event log names, to the KMS root given with `--kms-root`. Without `--kms-root` it is reported, not checked; a
    /// report without provenance (random keys) adds no line unless a root was asked for.
    private func checkKMSProvenance(report: Report, appID: [UInt8]?, _ record: Record) {
        let algo = plan.signingAlgo
        let entry = report.keyProvenance.first {
            $0.path.hasSuffix(algo == "ecdsa" ? "/ecdsa-signing-key" : "/ed25519-signing-key")
        }
        guard let root = plan.kmsRoot else {
            guard let entry else { return }
            record.warnings.append("key_provenance is not checked: --kms-root names the KMS root it must lead to")
            record.add(
                "kms_provenance", true,
                "not checked (no --kms-root); the report says the \(algo) key is \(entry.path) from the dstack KMS")
            return
        }
        guard let entry else {
            record.add(
                "kms_provenance", false,
                "the report has no key_provenance for the \(algo) key (a proxy with SIGNING_KEY_SOURCE=random)")
            return
        }
        guard let appID else {
            record.add("kms_provenance", false, "no app-id from a verified event log to check the chain against")
            return
        }
        guard entry.purpose == KMSSigningKeys.purpose else {
            record.add(
                "kms_provenance", false, "\(entry.path) was issued for purpose \"\(entry.purpose)\", not \"signing\"")
            return
        }
        let key: DstackKeyChain.SignedKey
        if algo == "ecdsa" {
            guard let point = try? Secp256k1PublicKey(bytes: report.publicKey) else {
                record.add("kms_provenance", false, "signing_public_key is not a secp256k1 point")
                return
            }
            key = .secp256k1(point)
        } else {
            key = .ed25519(report.publicKey)
        }
        do throws(DstackKeyChain.Failure) {
            let signers = try DstackKeyChain.verify(
                chain: entry.signatureChain, purpose: entry.purpose, key: key, appID: appID, kmsRoot: root)
            record.facts["key_provenance"] = [
                "path": .string(entry.path), "purpose": .string(entry.purpose),
                "app_key": .string(Hex.encode(signers.appKey.compressed33)),
                "kms_root": .string(Hex.encode(root.compressed33)),
            ]
            record.add(
                "kms_provenance", true,
                "the \(algo) key is \(entry.path) of app \(Hex.encode(appID)), issued under the KMS root \(Hex.encode(root.compressed33)): every replica of this app holds it"
            )
        } catch {
            record.add("kms_provenance", false, "\(entry.path): \(error)")
        }
    }

    /// The chain's second hop (SPEC §7.2): the proxy's own verdict on the model's Chutes instances for a fresh
    /// nonce, signed over its canonical JSON by the key this run just attested. It rests on the proxy's
    /// verification of those instances; `verify` does not re-verify the instances' quotes itself.
    private func checkChutesChain(_ model: String, report: Report, _ record: Record) async {
        let nonce = Hex.encode(SecureRandom.bytes(32))
        let encoded = model.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? model
        let url =
            plan.baseURL
            + "/v1/attestation/chain?model=\(encoded)&nonce=\(nonce)&signing_algo=\(plan.signingAlgo)&verify_mode=proxy"
        progress("fetching the attestation chain of \(model)")
        do {
            let response = try await AttestedFetch.get(url, bearer: plan.token)
            guard response.status == 200, let object = try? JSONValue(parsing: response.body),
                let receipt = object["verification_receipt"], let payload = receipt["payload"],
                let signature = receipt["signature"]?.stringValue
            else {
                record.add("chutes_chain", false, "no verification receipt for \(model) (HTTP \(response.status))")
                return
            }
            let text = String(decoding: payload.canonicalSerialized(), as: UTF8.self)
            guard report.verifies(signature: signature, text: text) else {
                record.add(
                    "chutes_chain", false, "the chain's verdict is not signed by the attested \(plan.signingAlgo) key")
                return
            }
            guard payload["nonce"]?.stringValue == nonce, payload["model"]?.stringValue == model else {
                record.add("chutes_chain", false, "the signed verdict answers another nonce or model")
                return
            }
            let results = payload["instance_results"]?.arrayValue ?? []
            let passed = results.filter {
                $0["quote_verified"] == true && $0["binding_verified"] == true && $0["error"] == .null
            }
            record.facts["chutes_chain"] = payload
            guard payload["result"]?.stringValue == "pass", !passed.isEmpty else {
                let errors = results.compactMap { $0["error"]?.stringValue }
                record.add(
                    "chutes_chain", false,
                    "no instance of \(model) passed the proxy's verification (\(errors.joined(separator: ", ")))")
                return
            }
            let statuses = Set(passed.compactMap { $0["tcb_status"]?.stringValue }).sorted().joined(separator: ", ")
            record.add(
                "chutes_chain", true,
                "\(passed.count) of \(results.count) instances of \(model) verified by the attested proxy (\(statuses))"
            )
        } catch {
            record.add("chutes_chain", false, "\(error)")
        }
    }

    private func verifyQuote(_ quote: TDXQuote, bytes: [UInt8], now: Int64, _ record: Record) async {
        let collateral: TDXCollateral
        if let given = plan.collateral {
            collateral = given
        } else {
            progress("fetching collateral from \(plan.pccsURL)")
            do {
                collateral = try await VerifyQuote.fetchCollateral(pccs: plan.pccsURL, quote: bytes)
            } catch {
                record.add("tdx_quote", false, "collateral_unavailable: \(error.reason)")
                return
            }
        }
        do throws(TDXVerificationError) {
            let verified = try TDXQuoteVerifier.verify(
                quote: bytes, collateral: collateral, now: now, root: plan.tdxRoot)
            record.facts["tcb_status"] = .string(verified.status)
            record.facts["advisory_ids"] = .array(verified.advisoryIDs.map { .string($0) })
            record.facts["fmspc"] = .string(TDXHex.encode(verified.fmspc))
            let origin =
                plan.tdxRoot.name == "intel"
                ? "a genuine Intel TDX platform (Intel's pinned SGX root)"
                : "a platform certified by the replaced root \(plan.tdxRoot.name), not Intel's"
            record.add("tdx_quote", true, "signed by \(origin); FMSPC \(TDXHex.encode(verified.fmspc))")
            let accepted = plan.acceptedStatuses.contains(verified.status)
            let advisories =
                verified.advisoryIDs.isEmpty ? "" : "; advisories \(verified.advisoryIDs.joined(separator: ","))"
            record.add(
                "tcb_status", accepted,
                accepted
                    ? "\(verified.status) is accepted\(advisories)"
                    : "\(verified.status) is not in TDX_ACCEPTED_TCB_STATUSES (\(plan.acceptedStatuses.sorted().joined(separator: ",")))\(advisories)"
            )
        } catch {
            record.add("tdx_quote", false, "\(error.reason): \(error)")
        }
    }

    private func checkMeasurements(_ td: TDReport, composeHash: [UInt8]?, _ record: Record) {
        let expected = plan.expected
        if expected.isEmpty {
            if expected.allowAnyCode {
                record.warnings.append(
                    "--allow-any-code: the code running is not checked; the quote proves only genuine hardware")
                record.add("measurement", true, "not checked (--allow-any-code)")
            } else {
                record.add(
                    "measurement", false,
                    "no expectation given (--expect-compose-hash, --expect-mr-td): a quote alone proves only genuine hardware, not which code runs; --allow-any-code accepts that"
                )
            }
            return
        }
        var mismatches: [String] = []
        var matched: [String] = []
        if let want = expected.composeHash {
            if composeHash == want {
                matched.append("compose-hash")
            } else {
                mismatches.append(
                    "compose-hash is \(composeHash.map { Hex.encode($0) } ?? "absent (or the event log failed)"), expected \(Hex.encode(want))"
                )
            }
        }
        if let want = expected.mrTD {
            if td.mrTD == want { matched.append("MRTD") } else { mismatches.append("MRTD is \(Hex.encode(td.mrTD))") }
        }
        for (index, want) in expected.rtmr.enumerated() {
            guard let want else { continue }
            if td.rtmr[index] == want {
                matched.append("RTMR\(index)")
            } else {
                mismatches.append("RTMR\(index) is \(Hex.encode(td.rtmr[index]))")
            }
        }
        record.add(
            "measurement", mismatches.isEmpty,
            mismatches.isEmpty ? "\(matched.joined(separator: ", ")) as expected" : mismatches.joined(separator: "; "))
    }

    private func checkReceipt(_ id: String, report: Report, _ record: Record) async {
        let encoded = id.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? id
        let url = plan.baseURL + "/v1/signature/\(encoded)?signing_algo=\(plan.signingAlgo)"
        progress("fetching the signature record of \(id)")
        do {
            let response = try await AttestedFetch.get(url, bearer: plan.token)
            guard response.status == 200, let object = try? JSONValue(parsing: response.body),
                let text = object["text"]?.stringValue, let signature = object["signature"]?.stringValue
            else {
                record.add("receipt", false, "no signature record for \(id) (HTTP \(response.status))")
                return
            }
            guard report.verifies(signature: signature, text: text) else {
                record.add("receipt", false, "the record's signature is not by the attested \(plan.signingAlgo) key")
                return
            }
            record.facts["receipt_text"] = .string(text)
            // The record's other fields (upstream, Chutes transport and attestation) are covered by
            // record_signature (SPEC §5); records the Python implementation wrote have none.
            if let stored = object["record"], let recordSignature = object["record_signature"]?.stringValue {
                guard
                    report.verifies(
                        signature: recordSignature, text: String(decoding: stored.canonicalSerialized(), as: UTF8.self))
                else {
                    record.add("receipt", false, "the record's record_signature is not by the attested key")
                    return
                }
                record.facts["receipt_record"] = stored
                record.add("receipt", true, "\(id): \(text) and its record signed by the attested key")
                return
            }
            record.add("receipt", true, "\(id): \(text) signed by the attested key (no record_signature)")
        } catch {
            record.add("receipt", false, "\(error)")
        }
    }

    /// SHA-256 of a DER certificate's SubjectPublicKeyInfo (what the v2/v3 identities bind), computed as the proxy
    /// computes it for its own certificate.
    static func spkiSHA256(ofCertificate der: [UInt8]) -> [UInt8]? {
        guard let certificate = try? Certificate(derEncoded: der) else { return nil }
        return try? SubjectPublicKeyInfoDigest.sha256(certificate.publicKey)
    }
}

/// The fields of an attestation report `verify` reads, each checked for shape (they are the proxy's word until the
/// quote's report data binds them).
struct Report {
    let signingAlgo: String
    let signingAddress: String
    let addressBytes: [UInt8]
    let publicKey: [UInt8]
    let requestNonce: String
    let quote: [UInt8]
    let eventLog: String
    let nvidiaPayload: String?
    let keyConfig: [UInt8]
    let keyConfigID: String
    let e2eeVersions: [Int]
    /// `key_provenance` (SPEC §5), empty when absent; not bound by the quote, so only a chain check gives it weight.
    let keyProvenance: [KeyProvenance.Entry]

    struct Malformed: Error, CustomStringConvertible {
        let description: String
    }

    init(parsing body: [UInt8], algo: String) throws {
        guard let object = try? JSONValue(parsing: body), object["version"] == 3 else {
            throw Malformed(description: "the answer is not an attestation version 3 report")
        }
        func field(_ name: String) throws -> String {
            guard let value = object[name]?.stringValue else {
                throw Malformed(description: "the report has no \(name)")
            }
            return value
        }
        signingAlgo = try field("signing_algo")
        guard signingAlgo == algo else { throw Malformed(description: "the report is for \(signingAlgo), not \(algo)") }
        signingAddress = try field("signing_address")
        let addressHex = signingAddress.hasPrefix("0x") ? String(signingAddress.dropFirst(2)) : signingAddress
        guard let address = Hex.decode(addressHex), address.count == (algo == "ecdsa" ? 20 : 32) else {
            throw Malformed(description: "signing_address is not a \(algo) address")
        }
        addressBytes = address
        var keyHex = try field("signing_public_key")
        if keyHex.hasPrefix("0x") { keyHex.removeFirst(2) }
        guard var key = Hex.decode(keyHex) else { throw Malformed(description: "signing_public_key is not hex") }
        if algo == "ecdsa", key.count == 65, key.first == 0x04 { key.removeFirst() }
        guard key.count == (algo == "ecdsa" ? 64 : 32) else {
            throw Malformed(description: "signing_public_key is not a \(algo) public key")
        }
        publicKey = key
        requestNonce = try field("request_nonce")
        var quoteHex = try field("intel_quote")
        if quoteHex.hasPrefix("0x") { quoteHex.removeFirst(2) }
        guard let quote = Hex.decode(quoteHex), !quote.isEmpty else {
            throw Malformed(description: "intel_quote is not hex")
        }
        self.quote = quote
        eventLog = try field("event_log")
        nvidiaPayload = object["nvidia_payload"]?.stringValue
        guard let k = Data(base64Encoded: try field("e2ee_v3_key_config")).map(Array.init), !k.isEmpty,
            k.count <= Int(UInt16.max)
        else { throw Malformed(description: "e2ee_v3_key_config is not base64 of a key list") }
        keyConfig = k
        keyConfigID = try field("e2ee_v3_key_config_id")
        e2eeVersions =
            object["e2ee_versions"]?.arrayValue?.compactMap { value -> Int? in
                if case .number(let text) = value { return Int(text) }
                return nil
            } ?? []
        keyProvenance = try Self.provenance(object["key_provenance"])
    }

    /// The entries of `key_provenance`; a field that is there but not of the SPEC's shape is malformed.
    private static func provenance(_ value: JSONValue?) throws -> [KeyProvenance.Entry] {
        guard let value, value != .null else { return [] }
        guard let object = value.objectValue else { throw Malformed(description: "key_provenance is not an object") }
        return try object.map { path, entry in
            guard let purpose = entry["purpose"]?.stringValue, let links = entry["signature_chain"]?.arrayValue else {
                throw Malformed(description: "key_provenance[\(path)] has no purpose or signature_chain")
            }
            let chain = try links.map { link in
                guard let text = link.stringValue, let bytes = Hex.decode(text) else {
                    throw Malformed(
                        description: "key_provenance[\(path)].signature_chain holds something other than hex")
                }
                return bytes
            }
            return KeyProvenance.Entry(path: path, purpose: purpose, signatureChain: chain)
        }
    }

    /// Whether `signing_address` is the address of `signing_public_key`.
    var addressMatchesKey: Bool {
        signingAlgo == "ecdsa" ? Array(Keccak256.hash(publicKey).suffix(20)) == addressBytes : publicKey == addressBytes
    }

    /// Whether `signature` (§5's encoding) over `text` is by this report's key.
    func verifies(signature: String, text: String) -> Bool {
        if signingAlgo == "ecdsa" {
            guard signature.hasPrefix("0x"), let bytes = Hex.decode(signature.dropFirst(2)), bytes.count == 65,
                let key = try? Secp256k1PublicKey.recover(signature: bytes, digest: EIP191.digest(Array(text.utf8)))
            else { return false }
            return key.raw64 == publicKey
        }
        guard let bytes = Hex.decode(signature), bytes.count == 64,
            let key = try? Curve25519.Signing.PublicKey(rawRepresentation: publicKey)
        else { return false }
        return key.isValidSignature(bytes, for: Array(text.utf8))
    }
}
