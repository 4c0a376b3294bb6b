import NIOCore

/// Requests waiting for a connection at the pool's cap, first come first served.
///
/// One line per event loop, because a request never leaves its loop: a connection freed on a loop serves that
/// loop's longest waiter in O(1). A ticket orders waiters across lines, so a freed slot goes to the longest
/// waiter overall (a scan of the lines, one per loop). A waiter that leaves (its client went away, or it waited
/// for its whole timeout) is only marked as gone, O(1): its entry is dropped once it reaches the front, and a
/// line is compacted when its gone entries outnumber its waiters, so leaving is O(1) amortised and no line
/// holds more than about twice its waiters. Not thread-safe: the pool's state machine keeps it, behind the pool's lock.
struct Waiters<Waiter: PoolWaiter> {
    /// Oldest first. Invariant: the front entry of each line is waiting (gone ones are dropped from the front).
    private var lines: [CircularBuffer<Waiter>]
    /// Entries of each line still waiting.
    private var waitingIn: [Int]
    /// Waiters across every line.
    private(set) var count = 0
    private var nextTicket: UInt64 = 0

    /// Gone entries a line may hold beyond its waiters before it is compacted.
    static var compactionSlack: Int { 16 }

    init(loops: Int) {
        lines = (0..<loops).map { _ in CircularBuffer(initialCapacity: 4) }
        waitingIn = Array(repeating: 0, count: loops)
    }

    var isEmpty: Bool { count == 0 }

    /// Entries held by a loop's line, gone ones included (for tests of the memory bound).
    func entries(onLoop index: Int) -> Int { lines[index].count }

    mutating func append(_ waiter: Waiter) {
        precondition(!waiter.isWaiting, "a waiter waits in one place at a time")
        waiter.ticket = nextTicket
        nextTicket &+= 1
        waiter.isWaiting = true
        lines[waiter.loopIndex].append(waiter)
        waitingIn[waiter.loopIndex] += 1
        count += 1
    }

    /// Takes `waiter` out of line; false when it was not waiting (already served, or gone).
    @discardableResult
    mutating func remove(_ waiter: Waiter) -> Bool {
        guard waiter.isWaiting else { return false }
        waiter.isWaiting = false
        waitingIn[waiter.loopIndex] -= 1
        count -= 1
        tidy(waiter.loopIndex)
        return true
    }

    /// The longest waiter of loop `index`, if any, still in line.
    func first(onLoop index: Int) -> Waiter? { lines[index].first }

    /// The longest waiter of loop `index`, if any.
    mutating func popFirst(onLoop index: Int) -> Waiter? {
        guard let waiter = lines[index].popFirst() else { return nil }
        waiter.isWaiting = false
        waitingIn[index] -= 1
        count -= 1
        tidy(index)
        return waiter
    }

    /// The longest waiter of any loop, if any.
    mutating func popFirst() -> Waiter? {
        var oldest: (index: Int, ticket: UInt64)?
        for index in lines.indices {
            guard let front = lines[index].first else { continue }
            if oldest == nil || front.ticket < oldest!.ticket { oldest = (index, front.ticket) }
        }
        guard let oldest else { return nil }
        return popFirst(onLoop: oldest.index)
    }

    /// Restores the invariant of line `index` and bounds the gone entries it holds.
    private mutating func tidy(_ index: Int) {
        while let front = lines[index].first, !front.isWaiting { _ = lines[index].popFirst() }
        if lines[index].isEmpty {
            // A burst of waiters should not pin its memory for the life of the process.
            if lines[index].capacity > 64 { lines[index] = CircularBuffer(initialCapacity: 4) }
        } else if lines[index].count > 2 * waitingIn[index] + Self.compactionSlack {
            lines[index].removeAll { !$0.isWaiting }
        }
    }
}
