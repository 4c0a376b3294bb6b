import Attestation
import ChutesAttestation
import ChutesE2EE
import Crypto
import JSON
import Signing

/// `GET /v1/attestation/chain` (SPEC §7.2): this proxy's attestation for a nonce, plus either its own signed
/// verification of every instance of a Chutes model for that nonce (`proxy`), or Chutes' evidence as received
/// with a signed statement binding its hash to the nonce (`passthrough`). A client holding the proxy's attested
/// key can then check the chain client → proxy (TDX) → instance (TDX, verified by the proxy).
struct AttestationChain: Sendable {
    let chutes: ChutesMode
    let attestation: AttestationService
    let keys: SigningKeys

    enum Mode: String {
        case proxy, passthrough
    }

    /// The raw query values; nil means absent.
    struct Query {
        let model: String?
        let nonce: String?
        let signingAlgo: String?
        let verifyMode: String?
    }

    func respond(_ query: Query) async throws(ProxyError) -> JSONValue {
        // Cheap checks first, so a malformed request costs no evidence fetch and no quote.
        // The same answers as the report's own checks (SPEC §6).
        guard let algo = SigningAlgo(rawValue: query.signingAlgo ?? "ecdsa") else {
            throw ProxyError(AttestationError.invalidSigningAlgo)
        }
        let nonce: String
        if let given = query.nonce {
            guard given.utf8.count == 64, Hex.decode(given) != nil else {
                throw ProxyError(AttestationError.invalidNonce)
            }
            nonce = given.lowercased()
        } else {
            nonce = ChutesAttestor.freshNonce()
        }
        guard let mode = Mode(rawValue: query.verifyMode ?? "proxy") else {
            throw .invalidRequest("verify_mode must be proxy or passthrough")
        }
        guard let model = query.model, !model.isEmpty else { throw .invalidRequest("model is required") }
        // With Chutes off no model is a Chutes model: the SPEC's 404, not the completion routes' 503.
        if case .disabled = chutes { throw Self.notChutes }
        guard let relay = try chutes.upstream().transport.relay else { throw Self.notChutes }
        let chute: ChuteModel
        do throws(ChutesE2EEError) {
            chute = try await relay.client.resolver.resolve(model)
        } catch .unknownModel {
            throw Self.notChutes
        } catch {
            throw .chutesAttestationFailed
        }

        var body: JSONObject = ["version": "1", "verify_mode": .string(mode.rawValue)]
        switch mode {
        case .proxy:
            body["verification_receipt"] = try await verificationReceipt(
                relay: relay, chute: chute, model: model, nonce: nonce, algo: algo)
        case .passthrough:
            let document: JSONValue
            do throws(ChutesE2EEError) {
                let bytes = try await relay.directory.fetchEvidence(chuteID: chute.chuteID, nonce: nonce)
                guard bytes.count <= ChutesEvidence.maxBytes, let parsed = try? JSONValue(parsing: bytes) else {
                    throw .malformed("evidence is not JSON")
                }
                document = parsed
            } catch {
                throw .chutesAttestationFailed
            }
            let digest = Hex.encode(SHA256.hash(data: document.canonicalSerialized()))
            body["upstream"] = ["attestation": document, "attestation_sha256": .string(digest)]
            body["binding_proof"] = signed(
                ["nonce": .string(nonce), "model": .string(model), "upstream_attestation_sha256": .string(digest)],
                algo: algo)
        }
        let report: JSONValue
        do throws(AttestationError) {
            report = try await attestation.report(
                AttestationQuery(signingAlgo: algo.rawValue, nonce: nonce, signingAddress: nil, version: nil))
        } catch {
            throw ProxyError(error)
        }
        body["proxy"] = [
            "signing_public_key": report["signing_public_key"] ?? .string(keys.publicKeyHex(for: algo)),
            "attestation": report,
        ]
        return .object(body)
    }

    static let notChutes = ProxyError(.notFound, type: "model_not_found", message: "The model is not served by Chutes")

    /// The proxy's verdict on every instance in the evidence answer for this nonce, signed.
    private func verificationReceipt(
        relay: ChutesE2EETransport, chute: ChuteModel, model: String, nonce: String, algo: SigningAlgo
    ) async throws(ProxyError) -> JSONValue {
        guard let attestor = relay.attestor else {
            throw ProxyError(
                .serviceUnavailable, type: "chutes_misconfigured",
                message: "The Chutes upstream is misconfigured: CHUTES_TDX_MEASUREMENTS_FILE is not set, so "
                    + "instances cannot be verified (verify_mode=passthrough needs none)")
        }
        // The keys the relay lists now: a quote must bind the key a request would be sealed to.
        let listed = (try? await relay.client.pool.listedKeys(chute.chuteID)) ?? [:]
        let verdicts: [InstanceVerdict]
        switch await attestor.evidence(chuteID: chute.chuteID, nonce: nonce) {
        case .failure: throw .chutesAttestationFailed
        case .success(let (_, judged)): verdicts = judged
        }
        var results: [JSONValue] = []
        var quoteVerified = 0
        var bindingVerified = 0
        var passed = 0
        for verdict in verdicts {
            let keyBound = listed[verdict.instanceID].map { verdict.binds(key: $0.base64) } ?? false
            let binding = verdict.certificateBound && keyBound
            let error: String? =
                verdict.failure
                ?? (listed[verdict.instanceID] == nil ? "instance_not_listed" : keyBound ? nil : "key_binding_mismatch")
            if verdict.quoteVerified { quoteVerified += 1 }
            if binding { bindingVerified += 1 }
            if verdict.quoteVerified && binding && error == nil { passed += 1 }
            results.append([
                "instance_id": .string(verdict.instanceID), "quote_verified": .bool(verdict.quoteVerified),
                "binding_verified": .bool(binding), "tcb_status": verdict.tcbStatus.map { .string($0) } ?? .null,
                "mr_td": verdict.mrTD.map { .string($0) } ?? .null, "error": error.map { .string($0) } ?? .null,
            ])
        }
        let payload: JSONValue = [
            "result": .string(passed > 0 ? "pass" : "fail"), "model": .string(model), "nonce": .string(nonce),
            "verification_summary": [
                "total_instances": .number(String(verdicts.count)),
                "quote_verified_instances": .number(String(quoteVerified)),
                "binding_verified_instances": .number(String(bindingVerified)),
            ],
            "instance_results": .array(results),
        ]
        return signed(payload, algo: algo)
    }

    /// `{"payload", "signing_algo", "signing_address", "signature"}` over the payload's canonical JSON.
    private func signed(_ payload: JSONValue, algo: SigningAlgo) -> JSONValue {
        let text = String(decoding: payload.canonicalSerialized(), as: UTF8.self)
        return [
            "payload": payload, "signing_algo": .string(algo.rawValue),
            "signing_address": .string(keys.address(for: algo)), "signature": .string(keys.sign(text, with: algo)),
        ]
    }
}
