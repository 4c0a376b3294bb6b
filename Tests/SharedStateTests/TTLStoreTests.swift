import Synchronization
import Testing

@testable import SharedState

/// A clock tests move by hand.
final class ManualClock: Sendable {
    private let current = Mutex(ContinuousClock.now)
    func now() -> ContinuousClock.Instant { current.withLock { $0 } }
    func advance(_ duration: Duration) { current.withLock { $0 += duration } }
}

@Suite struct TTLStoreTests {
    @Test func valuesExpireAfterTheirTTL() async {
        let clock = ManualClock()
        let store = TTLStore(now: clock.now)
        await store.put("k", [1, 2], ttl: .seconds(10))
        #expect(await store.get("k") == [1, 2])
        clock.advance(.seconds(9))
        #expect(await store.get("k") == [1, 2])
        clock.advance(.seconds(1))
        #expect(await store.get("k") == nil)
    }

    @Test func claimSucceedsOnceUntilExpiry() async {
        let clock = ManualClock()
        let store = TTLStore(now: clock.now)
        #expect(await store.claim("n", ttl: .seconds(300)) == .claimed)
        #expect(await store.claim("n", ttl: .seconds(300)) == .alreadyClaimed)
        clock.advance(.seconds(301))
        #expect(await store.claim("n", ttl: .seconds(300)) == .claimed)
    }

    @Test func insertIfAbsentNeverReplacesALiveValue() async {
        let clock = ManualClock()
        let store = TTLStore(now: clock.now)
        #expect(await store.insertIfAbsent("r", [1], ttl: .seconds(10)) == .inserted)
        #expect(await store.insertIfAbsent("r", [2], ttl: .seconds(10)) == .alreadyPresent)
        #expect(await store.get("r") == [1], "the first value stays")
        clock.advance(.seconds(9))
        #expect(await store.insertIfAbsent("r", [3], ttl: .seconds(10)) == .alreadyPresent)
        #expect(await store.get("r") == [1], "a refused insert does not extend the first value's life either")
        clock.advance(.seconds(1))
        #expect(await store.get("r") == nil)
        #expect(await store.insertIfAbsent("r", [4], ttl: .seconds(10)) == .inserted, "an expired value is gone")
        #expect(await store.get("r") == [4])
    }

    @Test func insertIfAbsentAtCapacityFollowsTheFullPolicy() async {
        let evicting = TTLStore(capacity: 1)
        #expect(await evicting.insertIfAbsent("a", [1], ttl: .seconds(60)) == .inserted)
        #expect(await evicting.insertIfAbsent("b", [2], ttl: .seconds(60)) == .inserted)
        #expect(await evicting.get("a") == nil)
        let refusing = TTLStore(capacity: 1, whenFull: .refuse)
        #expect(await refusing.insertIfAbsent("a", [1], ttl: .seconds(60)) == .inserted)
        #expect(await refusing.insertIfAbsent("b", [2], ttl: .seconds(60)) == .notStored)
        #expect(await refusing.insertIfAbsent("a", [3], ttl: .seconds(60)) == .alreadyPresent)
        #expect(await refusing.get("a") == [1])
    }

    @Test func concurrentInsertsOfOneKeyHaveOneWinner() async {
        let store = TTLStore()
        let outcomes = await withTaskGroup(of: InsertOutcome.self) { group in
            for index in 0..<64 { group.addTask { await store.insertIfAbsent("k", [UInt8(index)], ttl: .seconds(60)) } }
            return await group.reduce(into: [InsertOutcome]()) { $0.append($1) }
        }
        #expect(outcomes.filter { $0 == .inserted }.count == 1)
        #expect(outcomes.filter { $0 == .alreadyPresent }.count == 63)
    }

    @Test func oldestEntriesAreEvictedPastCapacity() async {
        let store = TTLStore(capacity: 3)
        for index in 0..<5 { await store.put("k\(index)", [UInt8(index)], ttl: .seconds(60)) }
        #expect(store.count == 3)
        #expect(await store.get("k0") == nil)
        #expect(await store.get("k1") == nil)
        #expect(await store.get("k4") == [4])
    }

    @Test func rewritingAKeyRefreshesItsPlaceInLine() async {
        let store = TTLStore(capacity: 2)
        await store.put("a", [1], ttl: .seconds(60))
        await store.put("b", [2], ttl: .seconds(60))
        await store.put("a", [3], ttl: .seconds(60))
        await store.put("c", [4], ttl: .seconds(60))
        #expect(await store.get("a") == [3])
        #expect(await store.get("b") == nil)
        #expect(await store.get("c") == [4])
    }

    @Test func expiredEntriesAreDroppedWithoutBeingRead() async {
        let clock = ManualClock()
        let store = TTLStore(now: clock.now)
        for index in 0..<100 { await store.put("k\(index)", [0], ttl: .seconds(1)) }
        clock.advance(.seconds(2))
        await store.put("fresh", [1], ttl: .seconds(1))
        #expect(store.count == 1)
    }

    @Test func manyInsertionsStayBounded() async {
        let store = TTLStore(capacity: 100)
        for index in 0..<10_000 { await store.put("k\(index)", [], ttl: .seconds(60)) }
        #expect(store.count == 100)
    }

    @Test func aFullClaimStoreNeverEvictsALiveClaim() async {
        let clock = ManualClock()
        let store = TTLStore(capacity: 3, whenFull: .refuse, now: clock.now)
        for index in 0..<3 { #expect(await store.claim("c\(index)", ttl: .seconds(60)) == .claimed) }
        // However many fresh keys arrive, every captured claim stays and the newcomers are refused.
        for index in 3..<1000 { #expect(await store.claim("c\(index)", ttl: .seconds(60)) == .full) }
        for index in 0..<3 { #expect(await store.claim("c\(index)", ttl: .seconds(60)) == .alreadyClaimed) }
        #expect(store.count == 3)
    }

    @Test func aFullClaimStoreAlsoDropsPutsRatherThanEvict() async {
        let store = TTLStore(capacity: 1, whenFull: .refuse)
        #expect(await store.claim("c", ttl: .seconds(60)) == .claimed)
        await store.put("other", [1], ttl: .seconds(60))
        #expect(await store.get("other") == nil)
        #expect(await store.claim("c", ttl: .seconds(60)) == .alreadyClaimed)
    }

    @Test func expiredClaimsAreReclaimedEvenBehindALongerLivedOne() async {
        let clock = ManualClock()
        let store = TTLStore(capacity: 3, whenFull: .refuse, now: clock.now)
        // Claim lifetimes vary (timestamp + window − now): the first-inserted one outlives the others.
        #expect(await store.claim("long", ttl: .seconds(600)) == .claimed)
        #expect(await store.claim("short1", ttl: .seconds(1)) == .claimed)
        #expect(await store.claim("short2", ttl: .seconds(2)) == .claimed)
        #expect(await store.claim("new", ttl: .seconds(60)) == .full)
        clock.advance(.seconds(1))
        #expect(await store.claim("new", ttl: .seconds(60)) == .claimed)
        #expect(await store.claim("newer", ttl: .seconds(60)) == .full)
        clock.advance(.seconds(1))
        #expect(await store.claim("newer", ttl: .seconds(60)) == .claimed)
        #expect(await store.claim("short1", ttl: .seconds(60)) == .full)
        #expect(await store.claim("long", ttl: .seconds(60)) == .alreadyClaimed)
        clock.advance(.seconds(600))
        #expect(await store.claim("long", ttl: .seconds(60)) == .claimed)
    }

    @Test func anEvictingStoreEvictsTheEntryClosestToExpiry() async {
        let clock = ManualClock()
        let store = TTLStore(capacity: 2, now: clock.now)
        await store.put("late", [1], ttl: .seconds(600))
        await store.put("early", [2], ttl: .seconds(10))
        await store.put("new", [3], ttl: .seconds(60))
        #expect(await store.get("early") == nil)
        #expect(await store.get("late") == [1])
        #expect(await store.get("new") == [3])
    }

    @Test func rewritingOneLiveKeyForeverKeepsTheQueueBounded() async {
        let store = TTLStore(capacity: 100)
        await store.put("other", [0], ttl: .seconds(3600))
        for index in 0..<20_000 { await store.put("hot", [UInt8(index % 256)], ttl: .seconds(3600)) }
        #expect(store.count == 2)
        #expect(store.queuedDeadlines <= 2 * 2 + 64)
        #expect(await store.get("hot") == [UInt8(19_999 % 256)])
        #expect(await store.get("other") == [0])
    }

    @Test func claimsMixedWithExpiryStayExact() async {
        // A seeded walk over claims, expiries and a full store, checked against a plain dictionary model.
        let clock = ManualClock()
        let store = TTLStore(capacity: 16, whenFull: .refuse, now: clock.now)
        var model: [String: Int] = [:]  // key -> expiry in whole seconds
        var time = 0
        var seed: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next(_ bound: Int) -> Int {
            seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((seed >> 33) % UInt64(bound))
        }
        for _ in 0..<5_000 {
            if next(4) == 0 {
                let step = next(3)
                clock.advance(.seconds(step))
                time += step
            }
            let key = "k\(next(40))"
            let ttl = 1 + next(10)
            model = model.filter { $0.value > time }
            let expected: ClaimOutcome =
                model[key] != nil ? .alreadyClaimed : model.count >= 16 ? .full : .claimed
            if expected == .claimed { model[key] = time + ttl }
            #expect(await store.claim(key, ttl: .seconds(ttl)) == expected)
        }
    }
}
