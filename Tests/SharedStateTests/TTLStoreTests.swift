import SharedState
import Synchronization
import Testing

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
}
