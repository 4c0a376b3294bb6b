import NIOCore
import Testing

@testable import UpstreamHTTP

/// The pool's waiter line without sockets: order, leaving, and the memory a line may hold.
@Suite struct WaitersTests {
    /// Stand-in waiters: the line reads only their loop and keeps their place.
    struct Fixture {
        func exchange(loop index: Int) -> TestWaiter { TestWaiter(loop: index) }
    }

    @Test func theLongestWaiterOfAnyLoopGoesFirst() {
        let fixture = Fixture()
        var waiters = Waiters<TestWaiter>(loops: 3)
        let order = [2, 0, 2, 1, 0].map { fixture.exchange(loop: $0) }
        for exchange in order { waiters.append(exchange) }
        #expect(waiters.count == 5)
        for expected in order { #expect(waiters.popFirst() === expected) }
        #expect(waiters.popFirst() == nil)
        #expect(waiters.isEmpty)
    }

    @Test func aLoopsOwnLineIsServedInOrder() {
        let fixture = Fixture()
        var waiters = Waiters<TestWaiter>(loops: 2)
        let a = fixture.exchange(loop: 1)
        let b = fixture.exchange(loop: 0)
        let c = fixture.exchange(loop: 1)
        for exchange in [a, b, c] { waiters.append(exchange) }
        #expect(waiters.popFirst(onLoop: 1) === a)
        #expect(waiters.popFirst(onLoop: 1) === c)
        #expect(waiters.popFirst(onLoop: 1) == nil)
        #expect(waiters.popFirst() === b)
    }

    /// The defect of issue #20: a waiter whose client left stayed in line and was later sent, or took the freed
    /// slot while a live waiter behind it went on waiting.
    @Test func aWaiterThatLeftIsNeverServed() {
        let fixture = Fixture()
        var waiters = Waiters<TestWaiter>(loops: 2)
        let gone = fixture.exchange(loop: 0)
        let live = fixture.exchange(loop: 0)
        let other = fixture.exchange(loop: 1)
        for exchange in [gone, live, other] { waiters.append(exchange) }
        let left = waiters.remove(gone)
        let leftAgain = waiters.remove(gone)  // leaving twice is harmless
        #expect(left && !leftAgain)
        #expect(waiters.count == 2)
        #expect(waiters.popFirst() === live)
        let servedLeft = waiters.remove(live)  // served: no longer in line
        #expect(!servedLeft)
        let last = fixture.exchange(loop: 0)
        waiters.append(last)
        let lastLeft = waiters.remove(last)
        #expect(lastLeft)
        #expect(waiters.popFirst(onLoop: 0) == nil)
        #expect(waiters.popFirst() === other)
        #expect(waiters.isEmpty)
    }

    /// Leaving is O(1): the entry stays until it reaches the front or the line is compacted, so a line never
    /// holds much more than its waiters, however many leave behind a waiter that stays.
    @Test func goneEntriesAreBounded() {
        let fixture = Fixture()
        var waiters = Waiters<TestWaiter>(loops: 1)
        let first = fixture.exchange(loop: 0)
        waiters.append(first)
        for _ in 0..<10_000 {
            let passing = fixture.exchange(loop: 0)
            waiters.append(passing)
            waiters.remove(passing)
            #expect(waiters.entries(onLoop: 0) <= 2 * waiters.count + Waiters<TestWaiter>.compactionSlack + 1)
        }
        #expect(waiters.count == 1)
        #expect(waiters.popFirst() === first)
        #expect(waiters.entries(onLoop: 0) == 0)
    }

    @Test func manyWaitersLeavingInAnyOrderKeepTheRestInOrder() {
        let fixture = Fixture()
        var waiters = Waiters<TestWaiter>(loops: 4)
        let all = (0..<400).map { fixture.exchange(loop: $0 % 4) }
        for exchange in all { waiters.append(exchange) }
        var generator = SystemRandomNumberGenerator()
        let leaving = Set(all.indices.shuffled(using: &generator).prefix(300))
        for index in leaving { waiters.remove(all[index]) }
        let staying = all.indices.filter { !leaving.contains($0) }.map { all[$0] }
        #expect(waiters.count == staying.count)
        for expected in staying { #expect(waiters.popFirst() === expected) }
        #expect(waiters.isEmpty)
        for index in 0..<4 { #expect(waiters.entries(onLoop: index) == 0) }
    }
}

/// SPEC §2: a request is sent again only when the upstream cannot have read it.
@Suite struct ResendRuleTests {
    @Test func onlyAnUnansweredPromptCloseMayBeResent() {
        let soon = TimeAmount.milliseconds(5)
        #expect(ResendRule.mayHaveGoneUnread(after: .connectionClosed, answered: false, sentFor: soon))
        // A read timeout: the upstream had the request all along (issue #20: vLLM generated it twice).
        #expect(!ResendRule.mayHaveGoneUnread(after: .readTimeout, answered: false, sentFor: soon))
        #expect(
            !ResendRule.mayHaveGoneUnread(after: .readTimeout, answered: false, sentFor: .seconds(600)))
        // Bytes of an answer, even malformed ones, mean it was read.
        #expect(!ResendRule.mayHaveGoneUnread(after: .connectionClosed, answered: true, sentFor: soon))
        #expect(!ResendRule.mayHaveGoneUnread(after: .invalidResponse, answered: false, sentFor: soon))
        // A hang-up long after sending follows the upstream reading it.
        #expect(
            !ResendRule.mayHaveGoneUnread(
                after: .connectionClosed, answered: false, sentFor: ResendRule.crossedCloseWindow))
    }
}
