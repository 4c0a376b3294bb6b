import ChutesE2EE
import Foundation
import Signing

/// Receives what attestation does, for metrics (the proxy counts them in Prometheus).
public protocol ChutesAttestationObserver: Sendable {
    /// One instance's evidence was judged: `result` is `pass` or `fail`, `reason` the first failed check
    /// (`ok` on a pass).
    func instanceVerified(result: String, reason: String)
    /// An evidence fetch ended after `seconds`; `outcome` is `ok` or why it failed.
    func evidenceFetched(seconds: Double, outcome: String)
    /// Verified instances now cached, over every chute.
    func cachedInstances(_ count: Int)
}

/// The proxy's gate to Chutes instances (SPEC §7.2): an instance key is used only after the instance's TDX
/// evidence, fetched with a fresh nonce, verified and bound that key. Verified instances are cached per chute
/// for `ttl` or until the instance leaves the listing; at most one evidence fetch per chute runs at a time, and
/// after a failed one the chute is not fetched again for `retryAfter`.
public actor ChutesAttestor: ChutesInstanceGate {
    public typealias FetchEvidence =
        @Sendable (_ chuteID: String, _ nonce: String) async throws(ChutesE2EEError) -> [UInt8]

    private struct Cached {
        let verdict: InstanceVerdict
        let attested: AttestedInstance
        let expiresAt: ContinuousClock.Instant
    }

    private struct ChuteState {
        var instances: [String: Cached] = [:]
        var lastFetch: ContinuousClock.Instant?
        var lastFailure: (at: ContinuousClock.Instant, reason: String)?
        var inFlight: Task<Void, Never>?
    }

    public nonisolated let verifier: ChutesEvidenceVerifier
    private let fetch: FetchEvidence
    private let ttl: Duration
    private let retryAfter: Duration
    private let now: @Sendable () -> ContinuousClock.Instant
    private let wallClock: @Sendable () -> Date
    private let observer: (any ChutesAttestationObserver)?
    private var chutes: [String: ChuteState] = [:]

    public init(
        verifier: ChutesEvidenceVerifier, ttl: Duration, retryAfter: Duration = .seconds(10),
        observer: (any ChutesAttestationObserver)? = nil,
        now: @escaping @Sendable () -> ContinuousClock.Instant = { .now },
        wallClock: @escaping @Sendable () -> Date = { Date() }, fetch: @escaping FetchEvidence
    ) {
        self.verifier = verifier
        self.fetch = fetch
        self.ttl = ttl
        self.retryAfter = retryAfter
        self.now = now
        self.wallClock = wallClock
        self.observer = observer
    }

    public func admission(chuteID: String, renew: Bool) async throws(ChutesE2EEError) -> InstanceAdmission {
        if let task = chutes[chuteID]?.inFlight {
            await task.value
            return try current(chuteID)
        }
        let state = chutes[chuteID] ?? ChuteState()
        let time = now()
        let live = state.instances.values.contains { $0.expiresAt > time }
        if renew, let last = state.lastFetch, time - last < retryAfter {
            // A relay that keeps listing unverified keys gets one evidence fetch per interval, not one per request.
            return try current(chuteID)
        }
        if !live || renew {
            if let failure = state.lastFailure, time - failure.at < retryAfter {
                throw .attestationFailed("evidence failed under \(retryAfter) ago (\(failure.reason))")
            }
            await fetchShared(chuteID)
        }
        return try current(chuteID)
    }

    public func listed(chuteID: String, instanceIDs: Set<String>) {
        guard var state = chutes[chuteID] else { return }
        state.instances = state.instances.filter { instanceIDs.contains($0.key) }
        chutes[chuteID] = state
        observer?.cachedInstances(cachedCount)
    }

    /// Chutes remembered (verified sets and recent failures), for tests.
    var chuteCount: Int { chutes.count }

    /// Verified instances cached now, over every chute.
    public var cachedCount: Int { chutes.values.reduce(0) { $0 + $1.instances.count } }

    /// The admission from what is cached and unexpired; throws when it admits nobody.
    private func current(_ chuteID: String) throws(ChutesE2EEError) -> InstanceAdmission {
        let time = now()
        guard let state = chutes[chuteID] else { throw .attestationFailed("no evidence for the chute") }
        let live = state.instances.filter { $0.value.expiresAt > time }
        guard !live.isEmpty else {
            throw .attestationFailed(state.lastFailure?.reason ?? "no instance of the chute is attested")
        }
        return InstanceAdmission { instanceID, key in
            guard let cached = live[instanceID], cached.verdict.binds(key: key) else { return nil }
            return cached.attested
        }
    }

    private func fetchShared(_ chuteID: String) async {
        if let task = chutes[chuteID]?.inFlight {
            await task.value
            return
        }
        if chutes[chuteID] == nil { makeRoom() }
        let task = Task { await self.refresh(chuteID) }
        chutes[chuteID, default: ChuteState()].inFlight = task
        await task.value
    }

    /// Most chutes remembered: a model name that looks like a chute id is tried as one, so a token holder could
    /// otherwise grow this map with made-up ids. Chutes with nothing verified go first, then any not fetching.
    static let maxChutes = 1024

    private func makeRoom() {
        guard chutes.count >= Self.maxChutes else { return }
        let idle = chutes.filter { $0.value.inFlight == nil }
        guard let victim = idle.first(where: { $0.value.instances.isEmpty }) ?? idle.first else { return }
        chutes[victim.key] = nil
    }

    /// One evidence fetch with a fresh nonce; a successful answer replaces the chute's verified set (an instance
    /// it no longer vouches for is dropped), a failed one keeps what is still unexpired.
    private func refresh(_ chuteID: String) async {
        let started = now()
        chutes[chuteID, default: ChuteState()].lastFetch = started
        let nonce = Self.freshNonce()
        let result = await evidence(chuteID: chuteID, nonce: nonce)
        var state = chutes[chuteID] ?? ChuteState()
        state.inFlight = nil
        switch result {
        case .failure(let failure):
            state.lastFailure = (now(), failure.reason)
        case .success(let (_, verdicts)):
            let verifiedAt = wallClock().formatted(.iso8601)
            var instances: [String: Cached] = [:]
            for verdict in verdicts where verdict.passed {
                instances[verdict.instanceID] = Cached(
                    verdict: verdict,
                    attested: AttestedInstance(
                        instanceID: verdict.instanceID, mrTD: verdict.mrTD ?? "", tcbStatus: verdict.tcbStatus ?? "",
                        quoteSHA256: verdict.quoteSHA256, verifiedAt: verifiedAt),
                    expiresAt: started + ttl)
            }
            state.instances = instances
            state.lastFailure =
                instances.isEmpty
                ? (now(), verdicts.first { !$0.passed }?.failure ?? "no_instances") : nil
        }
        chutes[chuteID] = state
        observer?.cachedInstances(cachedCount)
    }

    /// Fetches and judges a chute's evidence for `nonce`, without caching anything: the chain route asks with
    /// the client's nonce, which is not the proxy's to trust as fresh.
    public nonisolated func evidence(
        chuteID: String, nonce: String
    ) async -> Result<(ChutesEvidence, [InstanceVerdict]), ChutesEvidence.Malformed> {
        let clock = ContinuousClock()
        let started = clock.now
        let evidence: ChutesEvidence
        do {
            evidence = try ChutesEvidence(parsing: try await fetch(chuteID, nonce))
        } catch let error as ChutesEvidence.Malformed {
            observer?.evidenceFetched(seconds: (clock.now - started).seconds, outcome: error.reason)
            return .failure(error)
        } catch {
            let reason = (error as? ChutesE2EEError).map(Self.reason) ?? "evidence_unavailable"
            observer?.evidenceFetched(seconds: (clock.now - started).seconds, outcome: reason)
            return .failure(ChutesEvidence.Malformed(reason: reason))
        }
        observer?.evidenceFetched(seconds: (clock.now - started).seconds, outcome: "ok")
        var verdicts: [InstanceVerdict] = []
        let time = wallClock()
        for instance in evidence.instances {
            let verdict = await verifier.verify(instance, nonce: nonce, now: time)
            observer?.instanceVerified(result: verdict.passed ? "pass" : "fail", reason: verdict.failure ?? "ok")
            verdicts.append(verdict)
        }
        return .success((evidence, verdicts))
    }

    private static func reason(_ error: ChutesE2EEError) -> String {
        switch error {
        case .timeout: "evidence_timeout"
        case .directoryStatus(let status): "evidence_http_\(status)"
        default: "evidence_unavailable"
        }
    }

    /// 32 bytes from the system's CSPRNG, as 64 lowercase hex digits.
    public static func freshNonce() -> String { Hex.encode(SecureRandom.bytes(32)) }
}

extension Duration {
    fileprivate var seconds: Double {
        let (whole, attos) = components
        return Double(whole) + Double(attos) / 1e18
    }
}
