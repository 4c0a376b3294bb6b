import NIOCore

/// What the pool's state machine reads of a request that may wait for a connection: `Exchange` in production, a
/// stand-in in tests.
protocol PoolWaiter: AnyObject {
    /// The event loop it runs on (its index in the pool): a request never leaves its loop.
    var loopIndex: Int { get }
    /// It needs a connection of its own, never a kept-alive one (a streamed body, or a retry after a kept-alive
    /// connection failed it).
    var wantsFresh: Bool { get }
    /// Its place in the line and whether it still waits there: kept by `Waiters` only.
    var ticket: UInt64 { get set }
    var isWaiting: Bool { get set }
}

/// Every decision of the connection pool, as a value, in the style of postgres-nio's pool state machine: which
/// connection serves a request, when one is opened, who waits and who is served next, which idle connection
/// closes. The pool feeds it events (a request, a connection free again or closed, a connect that failed, a
/// waiter that left or waited too long, the sweeper, shutdown) under one lock and carries out the action each
/// returns on the right event loop. It holds no channel, promise, timer or clock (time comes in as `now`), so
/// every transition is tested without a socket.
///
/// Invariants: `open` counts connections open or being opened and never exceeds `maxConnections`; requests wait
/// only while every slot is taken; a request leaves the line once (served, cancelled or timed out), so it is
/// handed at most one slot or connection and never after it left.
struct PoolStateMachine<Connection: AnyObject, Waiter: PoolWaiter> {
    /// An idle connection and when it became idle.
    struct Idle {
        let connection: Connection
        let since: NIODeadline
    }

    /// The answer to a request.
    enum RequestAction {
        /// Run it on this idle connection of its own loop.
        case use(Connection)
        /// A slot is reserved for it: open a connection on its loop.
        case connect
        /// Every slot is taken: it waits in line (arm its wait timer). `retiring`, an idle connection that
        /// cannot serve it (another loop's, or any kept-alive one for a request wanting a fresh one), is to be
        /// closed so that its slot comes to the line.
        case wait(retiring: (Connection, loop: Int)?)
        case fail(UpstreamHTTPError)
    }

    /// The answer to a connection free again after an exchange.
    enum ReleaseAction {
        /// Kept idle for the next request of its loop.
        case keep
        /// Serve this waiter of its loop on it (stop the waiter's timer).
        case use(Waiter)
        /// Close it: requests wait that it cannot serve (other loops', or wanting a fresh connection), and its slot
        /// passes to the longest of them when it has closed; or the pool is shut down.
        case close
    }

    /// The answer to a slot coming free (a connection closed, a connect failed, a reserved slot went unused).
    enum SlotAction {
        case none
        /// The slot passes to this waiter, the longest in any line: open a connection for it on its loop.
        case connect(Waiter)
    }

    let maxConnections: Int
    /// An idle connection older than this is closed rather than reused.
    let idleTimeout: TimeAmount
    /// Connections open or being opened.
    private(set) var open = 0
    /// The most at once so far.
    private(set) var peak = 0
    /// Per loop, most recently used last: reuse the warmest connection, let the coldest age out.
    private var idle: [[Idle]]
    private var waiters: Waiters<Waiter>
    private(set) var isShutDown = false

    init(loops: Int, maxConnections: Int, idleTimeout: TimeAmount) {
        self.maxConnections = maxConnections
        self.idleTimeout = idleTimeout
        self.idle = Array(repeating: [], count: loops)
        self.waiters = Waiters(loops: loops)
    }

    var waiting: Int { waiters.count }
    var idleCount: Int { idle.reduce(0) { $0 + $1.count } }

    // MARK: Events

    /// A request to send. Idle connections of its loop found too old are removed and returned in `stale`, to be
    /// closed (their slots come free when they have).
    mutating func request(_ waiter: Waiter, now: NIODeadline) -> (action: RequestAction, stale: [Connection]) {
        guard !isShutDown else { return (.fail(.shutDown), []) }
        let loop = waiter.loopIndex
        let stale = removeStale(loop: loop, now: now)
        if !waiter.wantsFresh, let warmest = idle[loop].popLast() {
            return (.use(warmest.connection), stale)
        }
        if open < maxConnections {
            open += 1
            peak = max(peak, open)
            return (.connect, stale)
        }
        waiters.append(waiter)
        return (.wait(retiring: takeRetiring(for: waiter)), stale)
    }

    /// Connection `connection` of loop `loop` finished an exchange and may serve another.
    mutating func released(_ connection: Connection, loop: Int, now: NIODeadline) -> ReleaseAction {
        guard !isShutDown else { return .close }
        if let front = waiters.first(onLoop: loop), !front.wantsFresh {
            _ = waiters.popFirst(onLoop: loop)
            return .use(front)
        }
        if !waiters.isEmpty { return .close }
        idle[loop].append(Idle(connection: connection, since: now))
        return .keep
    }

    /// Connection `connection` of loop `loop` closed (whatever closed it; reported once per connection): it
    /// leaves the idle list if it was there, and its slot comes free.
    mutating func closed(_ connection: Connection, loop: Int) -> SlotAction {
        if let index = idle[loop].lastIndex(where: { $0.connection === connection }) {
            idle[loop].remove(at: index)
        }
        return slotFreed()
    }

    /// A slot came free without a connection closing: a connect failed, or the waiter it was passed to had left
    /// by the time it could use it.
    mutating func slotFreed() -> SlotAction {
        if !isShutDown, let waiter = waiters.popFirst() { return .connect(waiter) }
        open -= 1
        return .none
    }

    /// The waiter's client left. True when it was still in line (now out of it); false when it was already handed
    /// a slot or connection (its runner then gives that back) or had left before.
    mutating func cancelled(_ waiter: Waiter) -> Bool {
        waiters.remove(waiter)
    }

    /// The waiter's wait timer fired. True when it was still in line (now out of it, to fail); false when a slot
    /// or connection was handed to it meanwhile (a late timer).
    mutating func waitTimedOut(_ waiter: Waiter) -> Bool {
        waiters.remove(waiter)
    }

    /// The idle connections of loop `loop` older than the idle timeout, removed, to be closed.
    mutating func sweep(loop: Int, now: NIODeadline) -> [Connection] {
        removeStale(loop: loop, now: now)
    }

    /// The pool takes no more requests: the idle connections (to close, per loop) and the waiters (to fail) leave
    /// it. Exchanges in flight finish; their connections then close (`released` answers `close`).
    mutating func shutdown() -> (idle: [[Connection]], waiters: [Waiter]) {
        isShutDown = true
        let connections = idle.map { $0.map(\.connection) }
        idle = Array(repeating: [], count: idle.count)
        var failed: [Waiter] = []
        while let waiter = waiters.popFirst() { failed.append(waiter) }
        return (connections, failed)
    }

    // MARK: Helpers

    /// Appends happen in time order on each loop, so the stale ones are a prefix.
    private mutating func removeStale(loop: Int, now: NIODeadline) -> [Connection] {
        let oldest = now - idleTimeout
        guard let first = idle[loop].first, first.since <= oldest else { return [] }
        let count = idle[loop].prefix { $0.since <= oldest }.count
        let stale = idle[loop].prefix(count).map(\.connection)
        idle[loop].removeFirst(count)
        return stale
    }

    /// An idle connection whose slot may go to the line: the coldest of another loop, or of the waiter's own loop
    /// when it wants a fresh connection (its loop's idle ones cannot serve it). Needed because connections serve
    /// only their own loop: an idle one on a loop where nothing finishes would never be handed over.
    private mutating func takeRetiring(for waiter: Waiter) -> (Connection, loop: Int)? {
        for loop in idle.indices where !idle[loop].isEmpty {
            if loop == waiter.loopIndex && !waiter.wantsFresh { continue }
            return (idle[loop].removeFirst().connection, loop)
        }
        return nil
    }
}
