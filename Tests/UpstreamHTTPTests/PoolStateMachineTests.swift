import NIOCore
import Testing

@testable import UpstreamHTTP

/// A request as the pool's machine sees it: its loop and whether it needs a fresh connection.
final class TestWaiter: PoolWaiter, CustomStringConvertible {
    let loopIndex: Int
    let wantsFresh: Bool
    var ticket: UInt64 = 0
    var isWaiting = false

    init(loop: Int, fresh: Bool = false) {
        self.loopIndex = loop
        self.wantsFresh = fresh
    }

    var description: String { "waiter(loop \(loopIndex)\(wantsFresh ? ", fresh" : ""))" }
}

/// A connection as the pool's machine sees it: an identity.
final class TestConnection {}

/// What the tests read of the machine's answers, so that each expectation is one line.
extension PoolStateMachine.RequestAction {
    var used: Connection? { if case .use(let connection) = self { connection } else { nil } }
    var connects: Bool { if case .connect = self { true } else { false } }
    var waits: Bool { if case .wait = self { true } else { false } }
    var retiring: (Connection, loop: Int)? { if case .wait(let retiring) = self { retiring } else { nil } }
    var refused: Bool { if case .fail(.shutDown) = self { true } else { false } }
}

extension PoolStateMachine.ReleaseAction {
    var served: Waiter? { if case .use(let waiter) = self { waiter } else { nil } }
    var closes: Bool { if case .close = self { true } else { false } }
    var keeps: Bool { if case .keep = self { true } else { false } }
}

extension PoolStateMachine.SlotAction {
    /// The waiter the slot passed to; nil when it was released.
    var handed: Waiter? { if case .connect(let waiter) = self { waiter } else { nil } }
}

/// Every transition of the pool's state machine, without a socket, a loop or a clock.
@Suite struct PoolStateMachineTests {
    typealias Machine = PoolStateMachine<TestConnection, TestWaiter>

    static let idleTimeout = TimeAmount.seconds(4)
    static func at(_ seconds: Int64) -> NIODeadline { .uptimeNanoseconds(UInt64(1_000 + seconds) * 1_000_000_000) }

    /// A machine with `loops` loops, room for `max` connections, and `open` of them idle on `loop` since time 0.
    static func machine(loops: Int = 2, max: Int, idleOn loop: Int = 0, open: Int = 0) -> (Machine, [TestConnection]) {
        var machine = Machine(loops: loops, maxConnections: max, idleTimeout: idleTimeout)
        let connections = (0..<open).map { _ in TestConnection() }
        for _ in connections {
            let action = machine.request(TestWaiter(loop: loop), now: at(0)).action
            #expect(action.connects)
        }
        for connection in connections {
            let action = machine.released(connection, loop: loop, now: at(0))
            #expect(action.keeps)
        }
        return (machine, connections)
    }

    /// A machine whose `max` slots are all taken by exchanges in flight on loop 0, and `waiting` in line, in order.
    static func busy(loops: Int = 2, max: Int = 1, waiting: [TestWaiter] = []) -> Machine {
        var machine = Machine(loops: loops, maxConnections: max, idleTimeout: idleTimeout)
        for _ in 0..<max { _ = machine.request(TestWaiter(loop: 0), now: at(0)) }
        for waiter in waiting { _ = machine.request(waiter, now: at(0)) }
        return machine
    }

    // MARK: Requests

    @Test func aRequestBelowTheCapReservesASlot() {
        var machine = Machine(loops: 2, maxConnections: 2, idleTimeout: Self.idleTimeout)
        let decision = machine.request(TestWaiter(loop: 1), now: Self.at(0))
        #expect(decision.action.connects && decision.stale.isEmpty)
        #expect(machine.open == 1 && machine.peak == 1 && machine.waiting == 0)
    }

    @Test func anIdleConnectionServesTheNextRequestOfItsLoopWarmestFirst() {
        var (machine, connections) = Self.machine(max: 4, open: 2)
        // Released in order: the second is the warmest.
        let action = machine.request(TestWaiter(loop: 0), now: Self.at(1)).action
        #expect(action.used === connections[1])
        #expect(machine.open == 2 && machine.idleCount == 1)
    }

    /// An exchange never leaves its loop: another loop's idle connection is not used below the cap.
    @Test func anIdleConnectionOfAnotherLoopIsNotUsed() {
        var (machine, _) = Self.machine(max: 4, idleOn: 0, open: 1)
        let action = machine.request(TestWaiter(loop: 1), now: Self.at(1)).action
        #expect(action.connects)
        #expect(machine.open == 2 && machine.idleCount == 1)
    }

    @Test func aRequestWantingAFreshConnectionNeverTakesAnIdleOne() {
        var (machine, _) = Self.machine(max: 4, open: 1)
        let action = machine.request(TestWaiter(loop: 0, fresh: true), now: Self.at(1)).action
        #expect(action.connects && machine.idleCount == 1)
    }

    @Test func idleConnectionsOlderThanTheIdleTimeoutAreClosedNotUsed() {
        var (machine, connections) = Self.machine(max: 4, open: 2)
        let decision = machine.request(TestWaiter(loop: 0), now: Self.at(4))
        #expect(decision.action.connects)
        #expect(decision.stale.count == 2)
        #expect(decision.stale.first === connections[0] && decision.stale.last === connections[1])
        // Their slots come free when they have closed.
        #expect(machine.open == 3 && machine.idleCount == 0)
        for connection in connections { _ = machine.closed(connection, loop: 0) }
        #expect(machine.open == 1)
    }

    @Test func atTheCapARequestWaits() {
        var machine = Self.busy()
        let waiter = TestWaiter(loop: 1)
        let action = machine.request(waiter, now: Self.at(0)).action
        #expect(action.waits && action.retiring == nil)
        #expect(machine.waiting == 1 && waiter.isWaiting && machine.open == 1)
    }

    /// Connections serve only their own loop: an idle one where nothing finishes would never be handed over, so it
    /// is closed and its slot comes to the line.
    @Test func atTheCapAnIdleConnectionOfAnotherLoopIsRetiredForTheWaiter() {
        var (machine, connections) = Self.machine(max: 1, idleOn: 0, open: 1)
        let waiter = TestWaiter(loop: 1)
        let action = machine.request(waiter, now: Self.at(1)).action
        #expect(action.retiring?.0 === connections[0] && action.retiring?.loop == 0)
        #expect(machine.idleCount == 0)
        // Once it has closed, its slot goes to the waiter.
        let next = machine.closed(connections[0], loop: 0).handed
        #expect(next === waiter && !waiter.isWaiting && machine.open == 1)
    }

    @Test func atTheCapAFreshRequestRetiresAnIdleConnectionOfItsOwnLoop() {
        var (machine, connections) = Self.machine(max: 1, idleOn: 0, open: 1)
        let action = machine.request(TestWaiter(loop: 0, fresh: true), now: Self.at(1)).action
        #expect(action.retiring?.0 === connections[0])
    }

    // MARK: Connections coming back

    @Test func aConnectionFreeAgainServesTheLongestWaiterOfItsLoop() {
        let first = TestWaiter(loop: 0)
        let second = TestWaiter(loop: 0)
        var machine = Self.busy(waiting: [first, second])
        let served = machine.released(TestConnection(), loop: 0, now: Self.at(1)).served
        #expect(served === first && !first.isWaiting && second.isWaiting)
        #expect(machine.idleCount == 0 && machine.open == 1)
    }

    @Test(arguments: [false, true])
    func aConnectionFreeAgainClosesForWaitersItCannotServe(waiterWantsFresh: Bool) {
        var machine = Self.busy()
        // Another loop's waiter, or one of its own loop wanting a fresh connection (an upload).
        let waiter = TestWaiter(loop: waiterWantsFresh ? 0 : 1, fresh: waiterWantsFresh)
        _ = machine.request(waiter, now: Self.at(0))
        let connection = TestConnection()
        let action = machine.released(connection, loop: 0, now: Self.at(1))
        #expect(action.closes && waiter.isWaiting)
        let next = machine.closed(connection, loop: 0).handed
        #expect(next === waiter)
    }

    @Test func aConnectionFreeAgainWithNobodyWaitingIsKept() {
        var machine = Self.busy()
        let action = machine.released(TestConnection(), loop: 0, now: Self.at(1))
        #expect(action.keeps && machine.idleCount == 1 && machine.open == 1)
    }

    // MARK: Slots coming free

    @Test func aClosedConnectionsSlotGoesToTheLongestWaiterOfAnyLoop() {
        var machine = Self.busy(loops: 3)
        let order = [TestWaiter(loop: 2), TestWaiter(loop: 1), TestWaiter(loop: 2)]
        for waiter in order { _ = machine.request(waiter, now: Self.at(0)) }
        for expected in order {
            let next = machine.closed(TestConnection(), loop: 0).handed
            #expect(next === expected)
        }
        #expect(machine.open == 1)
        let last = machine.closed(TestConnection(), loop: 0).handed
        #expect(last == nil && machine.open == 0)
    }

    /// The upstream hung up on an idle connection: it is gone from the idle list and never handed out.
    @Test func anIdleConnectionThatClosesLeavesTheIdleList() {
        var (machine, connections) = Self.machine(max: 2, open: 2)
        _ = machine.closed(connections[1], loop: 0)
        #expect(machine.idleCount == 1 && machine.open == 1)
        let action = machine.request(TestWaiter(loop: 0), now: Self.at(1)).action
        #expect(action.used === connections[0])
    }

    @Test func aFailedConnectFreesItsSlotForTheNextWaiter() {
        let waiter = TestWaiter(loop: 0)
        var machine = Self.busy(waiting: [waiter])
        let next = machine.slotFreed().handed
        #expect(next === waiter && machine.open == 1)
        let none = machine.slotFreed().handed
        #expect(none == nil && machine.open == 0)
    }

    // MARK: Waiters leaving

    /// Issue #20: a waiter whose client left is never sent, and the slot goes to the live waiter behind it.
    @Test func aCancelledWaiterIsNeverHandedASlot() {
        let leaving = TestWaiter(loop: 0)
        let staying = TestWaiter(loop: 0)
        var machine = Self.busy(waiting: [leaving, staying])
        let left = machine.cancelled(leaving)
        let leftAgain = machine.cancelled(leaving)
        #expect(left && !leftAgain, "leaving twice is harmless")
        #expect(machine.waiting == 1)
        let served = machine.released(TestConnection(), loop: 0, now: Self.at(1)).served
        #expect(served === staying)
    }

    /// Cancelled after it was handed a slot (while connecting): the machine says so, and the runner hands the slot
    /// on (`slotFreed`), to the next waiter.
    @Test func aWaiterCancelledAfterItWasHandedASlotPassesItOn() {
        let first = TestWaiter(loop: 0)
        let second = TestWaiter(loop: 0)
        var machine = Self.busy(waiting: [first, second])
        let handed = machine.closed(TestConnection(), loop: 0).handed
        #expect(handed === first)
        let stillInLine = machine.cancelled(first)
        #expect(!stillInLine, "no longer in line: its runner passes the slot on")
        let next = machine.slotFreed().handed
        #expect(next === second && machine.open == 1)
    }

    @Test func aWaitLongerThanTheTimeoutEndsInLine() {
        let waiter = TestWaiter(loop: 0)
        var machine = Self.busy(waiting: [waiter])
        let timedOut = machine.waitTimedOut(waiter)
        #expect(timedOut && machine.waiting == 0)
        let next = machine.closed(TestConnection(), loop: 0).handed
        #expect(next == nil)
    }

    /// The timer fires just after a slot was handed to the waiter: too late, the waiter is served.
    @Test func aLateWaitTimerIsIgnored() {
        let waiter = TestWaiter(loop: 0)
        var machine = Self.busy(waiting: [waiter])
        _ = machine.closed(TestConnection(), loop: 0)
        let timedOut = machine.waitTimedOut(waiter)
        #expect(!timedOut && machine.open == 1)
    }

    // MARK: Sweeping and shutdown

    @Test func theSweeperTakesOnlyConnectionsIdleTooLongOfItsLoop() {
        var machine = Self.busy(max: 8)
        let old = TestConnection()
        let young = TestConnection()
        let other = TestConnection()
        _ = machine.released(old, loop: 0, now: Self.at(0))
        _ = machine.released(other, loop: 1, now: Self.at(0))
        _ = machine.released(young, loop: 0, now: Self.at(3))
        let swept = machine.sweep(loop: 0, now: Self.at(5))
        #expect(swept.count == 1 && swept.first === old)
        #expect(machine.idleCount == 2)
        let again = machine.sweep(loop: 0, now: Self.at(5))
        #expect(again.isEmpty)
    }

    @Test func shutdownFailsWaitersClosesIdleConnectionsAndRefusesWhatFollows() {
        var (machine, connections) = Self.machine(loops: 2, max: 2, idleOn: 1, open: 2)
        _ = machine.request(TestWaiter(loop: 1), now: Self.at(1))  // takes one idle connection
        let waiter = TestWaiter(loop: 0, fresh: true)
        let action = machine.request(waiter, now: Self.at(1)).action
        #expect(action.retiring?.0 === connections[0])
        let (idle, waiters) = machine.shutdown()
        let idleLeft = idle.joined().count
        #expect(idleLeft == 0, "the only idle one was already retired")
        #expect(waiters.count == 1 && waiters.first === waiter && !waiter.isWaiting)
        let later = machine.request(TestWaiter(loop: 0), now: Self.at(2)).action
        #expect(later.refused)
        // The exchange in flight finishes; its connection then closes, and no slot passes to anyone.
        let release = machine.released(connections[1], loop: 1, now: Self.at(2))
        #expect(release.closes)
        let first = machine.closed(connections[1], loop: 1).handed
        let second = machine.closed(connections[0], loop: 1).handed
        #expect(first == nil && second == nil && machine.open == 0)
    }

    @Test func shutdownReturnsTheIdleConnectionsOfEveryLoop() {
        var machine = Self.busy(max: 2)
        _ = machine.released(TestConnection(), loop: 0, now: Self.at(0))
        _ = machine.released(TestConnection(), loop: 1, now: Self.at(0))
        let (idle, waiters) = machine.shutdown()
        #expect(idle.map(\.count) == [1, 1] && waiters.isEmpty)
        #expect(machine.idleCount == 0)
    }

    // MARK: Invariants under any order of events

    /// Random events against a model of what the runner does: the cap holds, nobody waits while a slot is free,
    /// every request is handed at most one slot or connection and never after it left, and every one ends.
    @Test(arguments: [1, 2, 3, 7, 42])
    func invariantsHoldUnderRandomEvents(seed: UInt64) {
        var random = XorShift(seed: seed)
        let loops = 3
        let max = 3
        var machine = Machine(loops: loops, maxConnections: max, idleTimeout: Self.idleTimeout)
        var waiting: [TestWaiter] = []
        var left: [ObjectIdentifier: Bool] = [:]
        var served: Set<ObjectIdentifier> = []
        var everyone: [TestWaiter] = []  // kept alive, so that identities are never reused
        var busy: [(TestConnection, Int)] = []  // serving an exchange
        var connecting = 0  // slots handed out, connection not open yet
        var idle: [(TestConnection, Int)] = []  // as the runner would see them (closing ones leave it)
        var now: Int64 = 0

        func serve(_ waiter: TestWaiter) {
            let id = ObjectIdentifier(waiter)
            #expect(!served.contains(id), "handed twice")
            #expect(left[id] != true, "handed after it left")
            served.insert(id)
            waiting.removeAll { $0 === waiter }
        }
        func slot(_ action: Machine.SlotAction) {
            if case .connect(let waiter) = action {
                serve(waiter)
                connecting += 1
            }
        }

        for _ in 0..<4_000 {
            now += Int64(random.next() % 2)
            switch random.next() % 8 {
            case 0, 1:
                let waiter = TestWaiter(loop: Int(random.next() % UInt64(loops)), fresh: random.next() % 5 == 0)
                everyone.append(waiter)
                let decision = machine.request(waiter, now: Self.at(now))
                switch decision.action {
                case .use(let connection):
                    serve(waiter)
                    idle.removeAll { $0.0 === connection }
                    busy.append((connection, waiter.loopIndex))
                case .connect:
                    serve(waiter)
                    connecting += 1
                case .wait(let retiring):
                    waiting.append(waiter)
                    if let (connection, loop) = retiring {
                        idle.removeAll { $0.0 === connection }
                        slot(machine.closed(connection, loop: loop))
                    }
                case .fail:
                    Issue.record("refused before shutdown")
                }
                // Closed after the request was answered, as the runner's retire is.
                for connection in decision.stale {
                    idle.removeAll { $0.0 === connection }
                    slot(machine.closed(connection, loop: waiter.loopIndex))
                }
            case 2 where connecting > 0:
                connecting -= 1
                if random.next() % 4 == 0 {
                    slot(machine.slotFreed())  // the connect failed
                } else {
                    busy.append((TestConnection(), Int(random.next() % UInt64(loops))))
                }
            case 3 where !busy.isEmpty:
                let (connection, loop) = busy.remove(at: Int(random.next() % UInt64(busy.count)))
                switch machine.released(connection, loop: loop, now: Self.at(now)) {
                case .keep: idle.append((connection, loop))
                case .use(let waiter):
                    serve(waiter)
                    busy.append((connection, loop))
                case .close: slot(machine.closed(connection, loop: loop))
                }
            case 4 where !busy.isEmpty:
                let (connection, loop) = busy.remove(at: Int(random.next() % UInt64(busy.count)))
                slot(machine.closed(connection, loop: loop))
            case 5 where !waiting.isEmpty:
                let waiter = waiting[Int(random.next() % UInt64(waiting.count))]
                let removed =
                    random.next() % 2 == 0 ? machine.cancelled(waiter) : machine.waitTimedOut(waiter)
                #expect(removed)
                left[ObjectIdentifier(waiter)] = true
                waiting.removeAll { $0 === waiter }
            case 6 where !idle.isEmpty:
                let (connection, loop) = idle.remove(at: Int(random.next() % UInt64(idle.count)))
                slot(machine.closed(connection, loop: loop))  // the upstream hung up
            case 7:
                let loop = Int(random.next() % UInt64(loops))
                for connection in machine.sweep(loop: loop, now: Self.at(now)) {
                    idle.removeAll { $0.0 === connection }
                    slot(machine.closed(connection, loop: loop))
                }
            default:
                break
            }
            #expect(machine.open <= max)
            #expect(machine.open == busy.count + connecting + idle.count, "every slot accounted for")
            #expect(machine.waiting == waiting.count)
            #expect(machine.waiting == 0 || machine.open == max, "nobody waits while a slot is free")
            #expect(machine.idleCount == idle.count)
        }
        // Drain: everything finishes, every waiter is served or left.
        while !busy.isEmpty || connecting > 0 {
            if connecting > 0 {
                connecting -= 1
                busy.append((TestConnection(), 0))
            }
            let (connection, loop) = busy.removeLast()
            slot(machine.closed(connection, loop: loop))
        }
        #expect(waiting.isEmpty)
        for (connection, loop) in idle { _ = machine.closed(connection, loop: loop) }
        #expect(machine.open == 0)
    }
}

/// A small seeded generator (xorshift64*): the random test replays the same events for a seed.
struct XorShift: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed | 1 }  // never zero: zero is xorshift's fixed point
    mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 0x2545_F491_4F6C_DD1D
    }
}
