import ChutesE2EE
import Crypto
import DevStubs
import Foundation
import JSON
import SwiftASN1
import Synchronization
import TDXCollateral
import TDXVerifier
import Testing
import X509

@testable import ChutesAttestation

/// A dev TDX machine running "instances": quotes bind a nonce, an instance key text and a certificate's SPKI as
/// SPEC §7.2 says, and verify against the platform's throwaway root (DEVELOPMENT PKI, test only).
final class EvidenceFixture: Sendable {
    static let shared = try! EvidenceFixture()

    let platform: DevTDXPlatform
    let root: TDXTrustRoot
    let collateral: TDXCollateral
    let certificateDER: [UInt8]
    let otherCertificateDER: [UInt8]
    let policy: MeasurementPolicy

    init() throws {
        platform = try DevTDXPlatform()
        root = try TDXTrustRoot(der: platform.pki.rootDER)
        collateral = try TDXCollateral(json: platform.collateral.json)
        certificateDER = try Self.selfSigned("instance")
        otherCertificateDER = try Self.selfSigned("other")
        let guest = platform.guest
        policy = MeasurementPolicy(allowed: [
            .init(mrTD: guest.mrTD, rtmr0: guest.rtmr0to2[0], rtmr1: guest.rtmr0to2[1], rtmr2: guest.rtmr0to2[2])
        ])
    }

    static func selfSigned(_ name: String) throws -> [UInt8] {
        let key = P256.Signing.PrivateKey()
        let subject = try DistinguishedName { CommonName(name) }
        let certificate = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey),
            notValidBefore: Date().addingTimeInterval(-3600), notValidAfter: Date().addingTimeInterval(86_400),
            issuer: subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256, extensions: .init(),
            issuerPrivateKey: .init(key))
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        return serializer.serializedBytes
    }

    static func spkiDigest(_ der: [UInt8]) throws -> [UInt8] {
        let certificate = try Certificate(derEncoded: der)
        var serializer = DER.Serializer()
        try serializer.serialize(certificate.publicKey)
        return Array(SHA256.hash(data: serializer.serializedBytes))
    }

    /// One evidence entry whose quote binds `nonce ‖ key` and the certificate `boundCertificate` (default: the one sent).
    func entry(
        id: String, nonce: String, key: String, boundCertificate: [UInt8]? = nil, gpu: JSONValue = .array([])
    ) throws -> JSONValue {
        let keyDigest = Array(SHA256.hash(data: Array((nonce + key).utf8)))
        let quote = try platform.quote(
            reportData: keyDigest + (try Self.spkiDigest(boundCertificate ?? certificateDER)))
        return [
            "instance_id": .string(id), "quote": .string(Data(quote).base64EncodedString()), "gpu_evidence": gpu,
            "certificate": .string(Data(certificateDER).base64EncodedString()),
        ]
    }

    func verifier(
        policy: MeasurementPolicy? = nil, accepted: Set<String> = ["UpToDate", "SWHardeningNeeded"],
        requireGPU: Bool = false, collateralFails: Bool = false
    ) throws -> ChutesEvidenceVerifier {
        let collateral = self.collateral
        return ChutesEvidenceVerifier(
            policy: policy ?? self.policy, acceptedStatuses: accepted, tdxRoot: root,
            nvidiaRoot: try NvidiaDeviceRootCA.trustRoot(), requireGPUEvidence: requireGPU
        ) { _ throws(TDXCollateralError) in
            if collateralFails { throw .unavailable("test") }
            return collateral
        }
    }

    static func nonce() -> String { ChutesAttestor.freshNonce() }
    static let key = Data((0..<1184).map { UInt8($0 & 0xFF) }).base64EncodedString()
}

@Suite struct MeasurementPolicyTests {
    static let hex48 = String(repeating: "ab", count: 48)

    @Test func readsAListOfMeasurementSets() throws {
        let text =
            #"[{"mr_td":"\#(Self.hex48)","rtmr0":"\#(Self.hex48.uppercased())","rtmr1":"\#(Self.hex48)","rtmr2":"\#(Self.hex48)"}]"#
        let policy = try MeasurementPolicy(json: Array(text.utf8))
        #expect(policy.allowed.count == 1)
        #expect(policy.allowed.first?.rtmr0 == [UInt8](repeating: 0xAB, count: 48))
    }

    @Test(arguments: [
        ("", "is not a JSON list"), ("{}", "is not a JSON list"), ("[]", "allows no measurements"),
        (#"[{"mr_td":"ab"}]"#, "entry 0: mr_td is not 96 hex digits"),
        (#"[{"mr_td":"\#(hex48)","rtmr0":"\#(hex48)","rtmr1":"\#(hex48)"}]"#, "entry 0: rtmr2 is not 96 hex digits"),
    ])
    func refusesWhatIsNotAPolicy(text: String, message: String) {
        #expect {
            try MeasurementPolicy(json: Array(text.utf8))
        } throws: { error in
            (error as? MeasurementPolicy.PolicyError)?.message.hasPrefix(message) == true
        }
    }

    @Test func anUnreadableFileSaysSo() {
        #expect(throws: MeasurementPolicy.PolicyError("cannot be read")) {
            try MeasurementPolicy(path: "/nonexistent/measurements.json")
        }
    }
}

@Suite struct ChutesEvidenceVerifierTests {
    let fixture = EvidenceFixture.shared

    func verdicts(_ entries: [JSONValue], nonce: String, verifier: ChutesEvidenceVerifier) async throws
        -> [InstanceVerdict]
    {
        let document: JSONValue = ["evidence": .array(entries), "failed_instance_ids": []]
        let evidence = try ChutesEvidence(parsing: document.serialized())
        var out: [InstanceVerdict] = []
        for instance in evidence.instances { out.append(await verifier.verify(instance, nonce: nonce, now: Date())) }
        return out
    }

    @Test func aGoodInstancePassesAndBindsOnlyItsListedKeyForThisNonce() async throws {
        let nonce = EvidenceFixture.nonce()
        let verdict = try #require(
            try await verdicts(
                [try fixture.entry(id: "i-1", nonce: nonce, key: EvidenceFixture.key)], nonce: nonce,
                verifier: try fixture.verifier()
            ).first)
        #expect(verdict.passed && verdict.quoteVerified && verdict.certificateBound)
        #expect(verdict.tcbStatus == "UpToDate")
        #expect(verdict.mrTD == TDXHex.encode(fixture.platform.guest.mrTD))
        #expect(verdict.binds(key: EvidenceFixture.key))
        #expect(!verdict.binds(key: "B" + EvidenceFixture.key.dropFirst()))
    }

    @Test func aQuoteForAnotherNonceBindsNothing() async throws {
        let asked = EvidenceFixture.nonce()
        let stale = EvidenceFixture.nonce()
        let verdict = try #require(
            try await verdicts(
                [try fixture.entry(id: "i-1", nonce: stale, key: EvidenceFixture.key)], nonce: asked,
                verifier: try fixture.verifier()
            ).first)
        // The quote itself is genuine; only its binding to this nonce and key fails, and that is what gates use.
        #expect(verdict.quoteVerified)
        #expect(!verdict.binds(key: EvidenceFixture.key))
    }

    @Test func theCertificateMustBeTheOneTheQuoteBinds() async throws {
        let nonce = EvidenceFixture.nonce()
        let verdict = try #require(
            try await verdicts(
                [
                    try fixture.entry(
                        id: "i-1", nonce: nonce, key: EvidenceFixture.key,
                        boundCertificate: fixture.otherCertificateDER)
                ], nonce: nonce, verifier: try fixture.verifier()
            ).first)
        #expect(!verdict.passed && !verdict.certificateBound)
        #expect(verdict.failure == "certificate_binding_mismatch")
    }

    @Test func measurementsOutsideThePolicyFail() async throws {
        let nonce = EvidenceFixture.nonce()
        let other = MeasurementPolicy(allowed: [
            .init(
                mrTD: [UInt8](repeating: 1, count: 48), rtmr0: [UInt8](repeating: 0, count: 48),
                rtmr1: [UInt8](repeating: 0, count: 48), rtmr2: [UInt8](repeating: 0, count: 48))
        ])
        let verdict = try #require(
            try await verdicts(
                [try fixture.entry(id: "i-1", nonce: nonce, key: EvidenceFixture.key)], nonce: nonce,
                verifier: try fixture.verifier(policy: other)
            ).first)
        #expect(verdict.failure == "measurements_not_allowed" && !verdict.quoteVerified)
    }

    @Test func aStatusOutsideTheAcceptedSetFails() async throws {
        let nonce = EvidenceFixture.nonce()
        let verdict = try #require(
            try await verdicts(
                [try fixture.entry(id: "i-1", nonce: nonce, key: EvidenceFixture.key)], nonce: nonce,
                verifier: try fixture.verifier(accepted: ["SWHardeningNeeded"])
            ).first)
        #expect(verdict.failure == "tcb_status_not_accepted" && verdict.tcbStatus == "UpToDate")
    }

    @Test func collateralThatCannotBeHadFails() async throws {
        let nonce = EvidenceFixture.nonce()
        let verdict = try #require(
            try await verdicts(
                [try fixture.entry(id: "i-1", nonce: nonce, key: EvidenceFixture.key)], nonce: nonce,
                verifier: try fixture.verifier(collateralFails: true)
            ).first)
        #expect(verdict.failure == "collateral_unavailable")
    }

    @Test func gpuEvidenceMustVerifyWhenPresentAndWhenRequired() async throws {
        let nonce = EvidenceFixture.nonce()
        let garbage: JSONValue = .array([["certificate": "AAAA", "evidence": "AAAA", "arch": "HOPPER"]])
        let withGarbage = try #require(
            try await verdicts(
                [try fixture.entry(id: "i-1", nonce: nonce, key: EvidenceFixture.key, gpu: garbage)], nonce: nonce,
                verifier: try fixture.verifier()
            ).first)
        #expect(withGarbage.failure?.hasPrefix("gpu_") == true)
        let missing = try #require(
            try await verdicts(
                [try fixture.entry(id: "i-1", nonce: nonce, key: EvidenceFixture.key)], nonce: nonce,
                verifier: try fixture.verifier(requireGPU: true)
            ).first)
        #expect(missing.failure == "gpu_evidence_missing")
    }

    @Test func aBadEntryFailsAloneAndABadDocumentFailsWhole() async throws {
        let nonce = EvidenceFixture.nonce()
        let results = try await verdicts(
            [
                ["instance_id": "broken", "quote": "%%%", "certificate": "AAAA"],
                ["instance_id": "garbage", "quote": "AAAA", "certificate": "AAAA"],
                try fixture.entry(id: "good", nonce: nonce, key: EvidenceFixture.key),
            ], nonce: nonce, verifier: try fixture.verifier())
        #expect(results.map(\.failure) == ["quote_not_base64", results[1].failure, nil])
        #expect(results[1].failure != nil && !results[1].quoteVerified)
        for text in ["", "[]", #"{"evidence":{}}"#, "{}"] {
            #expect(throws: ChutesEvidence.Malformed.self) { try ChutesEvidence(parsing: Array(text.utf8)) }
        }
    }
}

/// Evidence served by a scripted relay, counting fetches.
final class ScriptedEvidence: Sendable {
    struct State {
        var fetches = 0
        var fail: ChutesE2EEError?
        var instances = ["i-1"]
        var key = EvidenceFixture.key
        var delay: Duration = .zero
    }
    let state = Mutex(State())
    let fixture = EvidenceFixture.shared

    var fetch: ChutesAttestor.FetchEvidence {
        { [self] _, nonce throws(ChutesE2EEError) in
            let (failure, ids, key, delay) = state.withLock { state in
                state.fetches += 1
                return (state.fail, state.instances, state.key, state.delay)
            }
            if delay > .zero { try? await Task.sleep(for: delay) }
            if let failure { throw failure }
            let entries = (try? ids.map { try fixture.entry(id: $0, nonce: nonce, key: key) }) ?? []
            return JSONValue.object(["evidence": .array(entries), "failed_instance_ids": []]).serialized()
        }
    }
    var fetches: Int { state.withLock { $0.fetches } }
}

final class TestClock: Sendable {
    private let instant = Mutex(ContinuousClock.now)
    var now: @Sendable () -> ContinuousClock.Instant { { [self] in instant.withLock { $0 } } }
    func advance(_ duration: Duration) { instant.withLock { $0 += duration } }
}

@Suite struct ChutesAttestorTests {
    let fixture = EvidenceFixture.shared
    let relay = ScriptedEvidence()
    let clock = TestClock()

    func attestor(ttl: Duration = .seconds(3600)) throws -> ChutesAttestor {
        ChutesAttestor(verifier: try fixture.verifier(), ttl: ttl, now: clock.now, fetch: relay.fetch)
    }

    func key(_ text: String = EvidenceFixture.key) throws -> InstancePublicKey {
        // Any ML-KEM-768 key will do for the binding: it is the text that is bound.
        try InstancePublicKey(base64: text)
    }

    static let realKey = try! ChutesE2EEInstance().publicKeyBase64

    @Test func manyColdRequestsShareOneFetch() async throws {
        relay.state.withLock {
            $0.key = Self.realKey
            $0.delay = .milliseconds(200)
        }
        let attestor = try attestor()
        let admitted = try await withThrowingTaskGroup(of: Bool.self) { group in
            for _ in 0..<200 {
                group.addTask {
                    let admission = try await attestor.admission(chuteID: "c", renew: false)
                    return admission.attestation(instanceID: "i-1", key: try key(Self.realKey)) != nil
                }
            }
            return try await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(admitted.count == 200 && admitted.allSatisfy { $0 })
        #expect(relay.fetches == 1)
    }

    @Test func anInstanceIsAdmittedOnlyForTheKeyItsQuoteBinds() async throws {
        relay.state.withLock { $0.key = Self.realKey }
        let attestor = try attestor()
        let admission = try await attestor.admission(chuteID: "c", renew: false)
        let attested = try #require(admission.attestation(instanceID: "i-1", key: try key(Self.realKey)))
        #expect(
            attested.tcbStatus == "UpToDate" && attested.quoteSHA256.count == 64 && attested.verifiedAt.hasSuffix("Z"))
        let swapped = try ChutesE2EEInstance().publicKeyBase64
        #expect(admission.attestation(instanceID: "i-1", key: try key(swapped)) == nil)
        #expect(admission.attestation(instanceID: "i-2", key: try key(Self.realKey)) == nil)
    }

    @Test func afterAFailedFetchTheChuteRestsTenSeconds() async throws {
        relay.state.withLock { $0.fail = .directoryStatus(500) }
        let attestor = try attestor()
        await #expect(throws: ChutesE2EEError.self) { try await attestor.admission(chuteID: "c", renew: false) }
        await #expect(throws: ChutesE2EEError.self) { try await attestor.admission(chuteID: "c", renew: false) }
        #expect(relay.fetches == 1)
        relay.state.withLock {
            $0.fail = nil
            $0.key = Self.realKey
        }
        clock.advance(.seconds(10))
        _ = try await attestor.admission(chuteID: "c", renew: false)
        #expect(relay.fetches == 2)
    }

    @Test func evidenceThatVerifiesNoInstanceIsAFailure() async throws {
        relay.state.withLock { $0.instances = [] }
        let attestor = try attestor()
        await #expect(throws: ChutesE2EEError.attestationFailed("no_instances")) {
            try await attestor.admission(chuteID: "c", renew: false)
        }
    }

    @Test func verifiedInstancesExpireAfterTheTTLAndWhenTheyLeaveTheListing() async throws {
        relay.state.withLock { $0.key = Self.realKey }
        let attestor = try attestor(ttl: .seconds(60))
        _ = try await attestor.admission(chuteID: "c", renew: false)
        _ = try await attestor.admission(chuteID: "c", renew: false)
        #expect(relay.fetches == 1)
        clock.advance(.seconds(61))
        _ = try await attestor.admission(chuteID: "c", renew: false)
        #expect(relay.fetches == 2)
        await attestor.listed(chuteID: "c", instanceIDs: ["someone-else"])
        #expect(await attestor.cachedCount == 0)
        _ = try await attestor.admission(chuteID: "c", renew: false)
        #expect(relay.fetches == 3)
    }

    @Test func madeUpChuteIDsCannotGrowTheCacheWithoutBound() async throws {
        relay.state.withLock { $0.fail = .directoryStatus(404) }
        let attestor = try attestor()
        for index in 0..<(ChutesAttestor.maxChutes + 100) {
            _ = try? await attestor.admission(chuteID: "made-up-\(index)", renew: false)
        }
        #expect(await attestor.chuteCount <= ChutesAttestor.maxChutes)
    }

    @Test func renewalsAreRateLimited() async throws {
        relay.state.withLock { $0.key = Self.realKey }
        let attestor = try attestor()
        _ = try await attestor.admission(chuteID: "c", renew: false)
        for _ in 0..<5 { _ = try await attestor.admission(chuteID: "c", renew: true) }
        #expect(relay.fetches == 1)
        clock.advance(.seconds(11))
        _ = try await attestor.admission(chuteID: "c", renew: true)
        #expect(relay.fetches == 2)
    }
}
