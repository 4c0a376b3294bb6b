import Foundation
import JSON
import Synchronization
import Testing

@testable import ChutesE2EE

/// A clock tests move by hand.
final class ManualClock: Sendable {
    private let instant = Mutex(ContinuousClock.now)
    var now: @Sendable () -> ContinuousClock.Instant { { [self] in instant.withLock { $0 } } }
    func advance(_ duration: Duration) { instant.withLock { $0 += duration } }
}

/// A relay whose listings are scripted: each instance fetch hands out fresh nonces unless told otherwise.
final class FakeDirectory: ChutesE2EEDirectory, Sendable {
    struct State {
        var models: [ChuteModel] = []
        var modelFetches = 0
        var instanceFetches = 0
        var instanceIDs = ["inst-a", "inst-b"]
        var noncesPerInstance = 4
        var lifetime: Duration = .seconds(55)
        /// When set, the next listings repeat these nonces instead of minting fresh ones.
        var repeatNonces: [String]?
        var failNext: ChutesE2EEError?
        var serial = 0
    }

    let state = Mutex(State())
    let keys: [String: ChutesE2EEInstance]

    init(instances: [String] = ["inst-a", "inst-b", "inst-c"]) throws {
        var keys: [String: ChutesE2EEInstance] = [:]
        for id in instances { keys[id] = try ChutesE2EEInstance() }
        self.keys = keys
    }

    func fetchModels() async throws(ChutesE2EEError) -> [ChuteModel] {
        state.withLock {
            $0.modelFetches += 1
            return $0.models
        }
    }

    func fetchInstances(chuteID: String) async throws(ChutesE2EEError) -> InstanceListing {
        let result: Result<InstanceListing, ChutesE2EEError> = state.withLock { state in
            state.instanceFetches += 1
            if let failure = state.failNext {
                state.failNext = nil
                return .failure(failure)
            }
            var instances: [InstanceListing.Instance] = []
            for id in state.instanceIDs {
                var nonces: [String] = []
                if let repeated = state.repeatNonces {
                    nonces = repeated
                } else {
                    for _ in 0..<state.noncesPerInstance {
                        state.serial += 1
                        nonces.append("n\(state.serial)")
                    }
                }
                instances.append(.init(instanceID: id, publicKey: keys[id]!.publicKey, nonces: nonces))
            }
            return .success(InstanceListing(instances: instances, nonceLifetime: state.lifetime))
        }
        return try result.get()
    }

    var instanceFetches: Int { state.withLock { $0.instanceFetches } }
}

/// Waits (bounded, generously for a loaded CI machine) for a background refill to land; fails the test
/// instead of hanging.
func eventually(_ condition: () async -> Bool) async throws {
    let deadline = ContinuousClock.now + .seconds(10)
    while ContinuousClock.now < deadline {
        if await condition() { return }
        try await Task.sleep(for: .milliseconds(5))
    }
    Issue.record("condition not met within 10 s")
}

@Suite struct NoncePoolTests {
    @Test func everyNonceIsHandedOutOnceAndTheFirstTakeFetches() async throws {
        let directory = try FakeDirectory()
        let pool = NoncePool(directory: directory)
        var seen = Set<String>()
        for _ in 0..<40 {
            let ticket = try await pool.take("chute")
            #expect(seen.insert(ticket.nonce).inserted)
        }
        #expect(directory.instanceFetches >= 5)
    }

    @Test func refillsAheadOfExhaustion() async throws {
        let directory = try FakeDirectory()
        let pool = NoncePool(directory: directory)
        _ = try await pool.take("chute")  // 8 listed, 7 left; low water is 2
        #expect(directory.instanceFetches == 1)
        for _ in 0..<5 { _ = try await pool.take("chute") }  // 2 left: a refill starts in the background
        try await eventually { directory.instanceFetches == 2 }
        try await eventually { await pool.remaining("chute") == 8 }
    }

    @Test func concurrentTakesOnAnEmptyPoolShareOneFetch() async throws {
        let directory = try FakeDirectory()
        directory.state.withLock { $0.noncesPerInstance = 20 }
        let pool = NoncePool(directory: directory)
        let nonces = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<20 { group.addTask { try await pool.take("chute").nonce } }
            return try await group.reduce(into: [String]()) { $0.append($1) }
        }
        #expect(Set(nonces).count == 20)
        #expect(directory.instanceFetches == 1)
    }

    /// A burst larger than one listing: the waiters left over fetch again instead of failing (found by the interop
    /// suite: 71 of 200 concurrent requests failed with 100 nonces per listing).
    @Test func aBurstLargerThanOneListingFetchesAgainInsteadOfFailing() async throws {
        let directory = try FakeDirectory()
        directory.state.withLock { $0.noncesPerInstance = 5 }  // 10 per listing
        let pool = NoncePool(directory: directory)
        let nonces = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<30 { group.addTask { try await pool.take("chute").nonce } }
            return try await group.reduce(into: [String]()) { $0.append($1) }
        }
        #expect(Set(nonces).count == 30)
        #expect(directory.instanceFetches <= 8)
    }

    /// Nonces are taken only from instances the gate's filter admits; others stay unspent.
    @Test func onlyAdmittedInstancesAreUsed() async throws {
        let directory = try FakeDirectory()
        let pool = NoncePool(directory: directory)
        for _ in 0..<6 {
            #expect(try await pool.take("chute", where: { id, _ in id == "inst-b" }).instanceID == "inst-b")
        }
        await #expect(throws: ChutesE2EEError.noInstances) {
            try await pool.take("chute", where: { _, _ in false })
        }
    }

    @Test func aNonceRepeatedByALaterListingIsNeverUsedAgain() async throws {
        let directory = try FakeDirectory()
        directory.state.withLock {
            $0.instanceIDs = ["inst-a"]
            $0.repeatNonces = ["x1", "x2", "x3"]
        }
        let pool = NoncePool(directory: directory)
        var seen: [String] = []
        for _ in 0..<3 { seen.append(try await pool.take("chute").nonce) }
        #expect(Set(seen) == ["x1", "x2", "x3"])
        await #expect(throws: ChutesE2EEError.noInstances) { try await pool.take("chute") }
        directory.state.withLock { $0.repeatNonces = ["x2", "x4"] }
        #expect(try await pool.take("chute").nonce == "x4")
    }

    @Test func expiredNoncesAreNotUsed() async throws {
        let clock = ManualClock()
        let directory = try FakeDirectory()
        directory.state.withLock { $0.lifetime = .seconds(10) }
        let pool = NoncePool(directory: directory, now: clock.now)
        let first = try await pool.take("chute")
        #expect(directory.instanceFetches == 1)
        clock.advance(.seconds(8.5))  // a margin of lifetime/5 = 2 s: already stale
        let second = try await pool.take("chute")
        #expect(directory.instanceFetches == 2)
        #expect(first.nonce != second.nonce)
    }

    @Test func invalidateRefetchesAndDropInstanceMovesToAnother() async throws {
        let directory = try FakeDirectory()
        let pool = NoncePool(directory: directory)
        let first = try await pool.take("chute")
        await pool.invalidate("chute")
        _ = try await pool.take("chute")
        #expect(directory.instanceFetches == 2)

        let ticket = try await pool.take("chute")
        await pool.dropInstance("chute", instanceID: ticket.instanceID)
        for _ in 0..<3 { #expect(try await pool.take("chute").instanceID != ticket.instanceID) }
        // A later listing that still names the gone instance does not bring it back.
        await pool.invalidate("chute")
        for _ in 0..<4 { #expect(try await pool.take("chute").instanceID != ticket.instanceID) }
        _ = first
    }

    @Test func aFailedFetchIsTheCallersErrorAndTheNextTakeTriesAgain() async throws {
        let directory = try FakeDirectory()
        directory.state.withLock { $0.failNext = .directoryStatus(429) }
        let pool = NoncePool(directory: directory)
        await #expect(throws: ChutesE2EEError.directoryStatus(429)) { try await pool.take("chute") }
        _ = try await pool.take("chute")
    }

    @Test func atMostMaxChutesAreKept() async throws {
        let clock = ManualClock()
        let directory = try FakeDirectory()
        let pool = NoncePool(directory: directory, maxChutes: 2, now: clock.now)
        for chute in ["c1", "c2", "c3"] {
            _ = try await pool.take(chute)
            clock.advance(.seconds(1))
        }
        #expect(await pool.remaining("c1") == 0)
        #expect(await pool.remaining("c2") == 7)
        #expect(await pool.remaining("c3") == 7)
    }
}

@Suite struct ChuteResolverTests {
    static let models = [
        ChuteModel(id: "vendor/A", chuteID: "11111111-2222-3333-4444-555555555555", confidentialCompute: true),
        ChuteModel(id: "vendor/B", chuteID: "chute-b", confidentialCompute: false),
    ]

    @Test func cachesForTheTTLAndRefreshesOnceOnAMiss() async throws {
        let clock = ManualClock()
        let directory = try FakeDirectory()
        directory.state.withLock { $0.models = Self.models }
        let resolver = ChuteResolver(directory: directory, now: clock.now)
        #expect(try await resolver.resolve("vendor/A").chuteID == Self.models[0].chuteID)
        #expect(try await resolver.resolve("vendor/B").confidentialCompute == false)
        #expect(directory.state.withLock { $0.modelFetches } == 1)
        // A miss right after a refresh does not fetch again (no flood from unknown names) …
        await #expect(throws: ChutesE2EEError.unknownModel) { try await resolver.resolve("vendor/C") }
        #expect(directory.state.withLock { $0.modelFetches } == 1)
        // … but once the miss interval passed, one refresh finds a model that appeared meanwhile.
        directory.state.withLock {
            $0.models.append(ChuteModel(id: "vendor/C", chuteID: "chute-c", confidentialCompute: true))
        }
        clock.advance(.seconds(11))
        #expect(try await resolver.resolve("vendor/C").chuteID == "chute-c")
        #expect(directory.state.withLock { $0.modelFetches } == 2)
        clock.advance(.seconds(301))
        _ = try await resolver.resolve("vendor/A")
        #expect(directory.state.withLock { $0.modelFetches } == 3)
    }

    @Test func chuteIDsResolveToo() async throws {
        let directory = try FakeDirectory()
        directory.state.withLock { $0.models = Self.models }
        let resolver = ChuteResolver(directory: directory)
        #expect(try await resolver.resolve(Self.models[0].chuteID) == Self.models[0])
        let unknown = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
        #expect(
            try await resolver.resolve(unknown)
                == ChuteModel(id: unknown, chuteID: unknown, confidentialCompute: false))
    }
}

@Suite struct DirectoryParsingTests {
    @Test func modelListing() throws {
        let listing = Array(
            #"{"data":[{"id":"a","chute_id":"c-a","confidential_compute":true},{"id":"b","chute_id":"c b"},{"id":"c"},{"id":"d","chute_id":"c-d","confidential_compute":"yes"}]}"#
                .utf8)
        #expect(
            try ChuteModel.parseListing(listing) == [
                ChuteModel(id: "a", chuteID: "c-a", confidentialCompute: true),
                ChuteModel(id: "d", chuteID: "c-d", confidentialCompute: false),
            ])
        #expect(throws: ChutesE2EEError.self) { try ChuteModel.parseListing(Array("[]".utf8)) }
    }

    @Test func instanceListingKeepsOnlyUsableEntries() throws {
        let key = try ChutesE2EEInstance().publicKeyBase64
        let listing = Array(
            """
            {"instances":[
              {"instance_id":"i-1","e2e_pubkey":"\(key)","nonces":["n1","bad nonce","n2\\r\\nX: y",7,"n3"]},
              {"instance_id":"i 2","e2e_pubkey":"\(key)","nonces":["n4"]},
              {"instance_id":"i-3","e2e_pubkey":"AAAA","nonces":["n5"]}
            ],"nonce_expires_in":100000}
            """.utf8)
        let parsed = try InstanceListing.parse(listing)
        #expect(parsed.instances.map(\.instanceID) == ["i-1"])
        #expect(parsed.instances[0].nonces == ["n1", "n3"])
        #expect(parsed.nonceLifetime == .seconds(3600))
        let defaulted = try InstanceListing.parse(Array(#"{"instances":[]}"#.utf8))
        #expect(defaulted.nonceLifetime == .seconds(55))
        #expect(throws: ChutesE2EEError.self) { try InstanceListing.parse(Array("{}".utf8)) }
    }
}

/// What the fake relay was sent.
final class SentRequests: Sendable {
    let list = Mutex([InvokeRequest]())
}

/// Records what the client reports, for the retry tests.
final class RecordingObserver: ChutesE2EEObserver {
    let events = Mutex([String]())
    func refilled(ahead: Bool) { events.withLock { $0.append(ahead ? "refill-ahead" : "refill") } }
    func refillFailed(_ error: ChutesE2EEError) { events.withLock { $0.append("refill-failed") } }
    func retried(status: Int) { events.withLock { $0.append("retry-\(status)") } }
    var retries: [String] { events.withLock { $0.filter { $0.hasPrefix("retry") } } }
}

@Suite struct ChutesE2EEClientTests {
    let directory: FakeDirectory
    let observer = RecordingObserver()
    let client: ChutesE2EEClient
    let chute = Self.chuteA
    static let chuteA = ChuteModel(id: "vendor/A", chuteID: "chute-a", confidentialCompute: true)

    init() throws {
        directory = try FakeDirectory()
        directory.state.withLock {
            $0.models = [
                Self.chuteA, ChuteModel(id: "vendor/plain", chuteID: "chute-p", confidentialCompute: false),
            ]
        }
        client = ChutesE2EEClient(directory: directory, teeOnly: true, observer: observer)
    }

    /// Sends through the fake: the instance named in the request opens it; statuses are scripted.
    func run(statuses: [Int]) async throws -> (Invocation<Int>, [InvokeRequest]) {
        let sent = SentRequests()
        let invocation = try await client.invoke(
            ["model": "vendor/A", "messages": []], chute: chute, stream: false, path: "/v1/chat/completions",
            send: { (request: InvokeRequest) throws -> Int in
                let (payload, _) = try directory.keys[request.instanceID]!.openRequest(request.blob)
                #expect(payload["model"] == "vendor/A")
                return sent.list.withLock {
                    $0.append(request)
                    return statuses[$0.count - 1]
                }
            }, status: { $0 })
        return (invocation, sent.list.withLock { $0 })
    }

    @Test func sendsWithTheRelaysHeaders() async throws {
        let (invocation, sent) = try await run(statuses: [200])
        #expect(invocation.response == 200 && sent.count == 1)
        let headers = Dictionary(uniqueKeysWithValues: sent[0].headers.map { ($0.name, $0.value) })
        #expect(headers["X-Chute-Id"] == "chute-a")
        #expect(headers["X-Instance-Id"] == invocation.instanceID)
        #expect(headers["X-E2E-Stream"] == "false")
        #expect(headers["X-E2E-Path"] == "/v1/chat/completions")
        #expect(headers["Content-Type"] == "application/octet-stream")
        #expect(observer.retries.isEmpty)
    }

    @Test func a403IsRetriedOnceWithFreshNonces() async throws {
        let (invocation, sent) = try await run(statuses: [403, 200])
        #expect(invocation.response == 200 && sent.count == 2)
        #expect(sent[0].nonce != sent[1].nonce)
        #expect(directory.instanceFetches == 2)
        #expect(observer.retries == ["retry-403"])
    }

    @Test func a410IsRetriedOnceOnAnotherInstance() async throws {
        let (invocation, sent) = try await run(statuses: [410, 200])
        #expect(invocation.response == 200)
        #expect(sent[0].instanceID != sent[1].instanceID)
        #expect(observer.retries == ["retry-410"])
    }

    @Test func aSecondRefusalIsTheAnswer() async throws {
        let (invocation, sent) = try await run(statuses: [403, 410])
        #expect(invocation.response == 410 && sent.count == 2)
    }

    @Test func teeOnlyRefusesBeforeAnythingIsSent() async throws {
        await #expect(throws: ChutesE2EEError.notConfidential) {
            try await client.chute(for: ["model": "vendor/plain"])
        }
        await #expect(throws: ChutesE2EEError.unknownModel) { try await client.chute(for: ["messages": []]) }
        #expect(try await client.chute(for: ["model": "vendor/A"]) == chute)
        #expect(directory.instanceFetches == 0)
    }
}

/// The spent-nonce table: found by nonce, forgotten oldest first, expired ones at the front dropped.
@Suite struct SpentNoncesTests {
    @Test func expiredNoncesAreForgottenAndTheTableIsCapped() {
        let start = ContinuousClock.now
        var spent = SpentNonces()
        for index in 0..<10 { spent.insert("early-\(index)", until: start + .seconds(10)) }
        for index in 0..<10 { spent.insert("late-\(index)", until: start + .seconds(60)) }
        spent.insert("early-0", until: start + .seconds(10))  // handed out twice: remembered once
        #expect(spent.count == 20 && spent.contains("early-3"))
        spent.prune(now: start + .seconds(30), keepingAtMost: 100)
        #expect(spent.count == 10 && !spent.contains("early-3") && spent.contains("late-3"))
        spent.prune(now: start + .seconds(30), keepingAtMost: 4)
        #expect(spent.count == 4 && !spent.contains("late-5") && spent.contains("late-6") && spent.contains("late-9"))
    }

    @Test func pruningAFullTableCostsWhatItForgets() {
        let start = ContinuousClock.now
        var spent = SpentNonces()
        for index in 0..<16_384 { spent.insert("n\(index)", until: start + .seconds(600)) }
        // Each refill at the cap forgets a few: no sort of everything (a sort per refill was the old cost).
        for round in 0..<1_000 {
            spent.insert("m\(round)", until: start + .seconds(600))
            spent.prune(now: start, keepingAtMost: 16_384)
        }
        #expect(spent.count == 16_384 && spent.contains("m999") && !spent.contains("n999"))
    }
}
