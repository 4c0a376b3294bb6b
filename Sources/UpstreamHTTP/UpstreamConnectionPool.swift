import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization

/// Keep-alive HTTP/1.1 connections to one upstream, kept per event loop: a request made on an event loop
/// (as every request task is when NIO runs Swift concurrency) is served by a connection on that same loop,
/// so its bytes never cross threads — nginx's model. Connections beyond `maxConnections` wait for one to
/// free up; idle ones close after `idleTimeout`.
public final class UpstreamConnectionPool: Sendable {
    /// Limits and timeouts of a pool.
    public struct Configuration: Sendable {
        /// Open connections across every loop; requests beyond it wait (FIFO) for one.
        public var maxConnections: Int
        public var connectTimeout: TimeAmount
        /// An idle connection older than this is closed rather than reused. Keep it below the upstream's own
        /// keep-alive timeout (uvicorn, vLLM's server: 5 s) so that the upstream rarely closes one under us.
        public var idleTimeout: TimeAmount
        /// TLS for `https` endpoints (nil: the system's default trust).
        public var tls: TLSConfiguration?

        public init(
            maxConnections: Int = 16384, connectTimeout: TimeAmount = .seconds(10),
            idleTimeout: TimeAmount = .seconds(4), tls: TLSConfiguration? = nil
        ) {
            self.maxConnections = maxConnections
            self.connectTimeout = connectTimeout
            self.idleTimeout = idleTimeout
            self.tls = tls
        }
    }

    public let endpoint: UpstreamEndpoint
    private let configuration: Configuration
    private let group: MultiThreadedEventLoopGroup
    private let loops: [LoopPool]
    private let sslContext: NIOSSLContext?
    private let open = Atomic<Int>(0)
    private let peak = Atomic<Int>(0)
    private let waiters: Mutex<Waiters>
    /// `waiters.count`, stored under its lock: a finished exchange checks it without taking the lock.
    private let waiting = Atomic<Int>(0)
    private let shutDown = Atomic<Bool>(false)
    /// The endpoint's address when its host is an IP literal: no resolver round trip (a thread hop through
    /// getaddrinfo) for each new connection.
    private let address: SocketAddress?

    public init(
        endpoint: UpstreamEndpoint, configuration: Configuration = .init(),
        group: MultiThreadedEventLoopGroup = .singleton
    ) throws {
        self.endpoint = endpoint
        self.configuration = configuration
        self.group = group
        if endpoint.isTLS {
            var tls = configuration.tls ?? .makeClientConfiguration()
            tls.applicationProtocols = ["http/1.1"]
            self.sslContext = try NIOSSLContext(configuration: tls)
        } else {
            self.sslContext = nil
        }
        self.address = try? SocketAddress(ipAddress: endpoint.host, port: endpoint.port)
        self.loops = group.makeIterator().enumerated().map { LoopPool(eventLoop: $1, index: $0) }
        self.waiters = Mutex(Waiters(loops: loops.count))
        for pool in loops {
            let idleTimeout = configuration.idleTimeout
            pool.eventLoop.execute { pool.startSweeping(every: idleTimeout) }
        }
    }

    /// Sends `head` (+ `body`) and returns once the head arrived — with the whole body for `.collect`.
    /// At the cap it first waits for a connection, for at most `readTimeout` (then `.poolTimeout`).
    /// Cancelling the calling task fails the exchange with `.cancelled`: a waiting one is never sent, one in
    /// flight closes its connection.
    public func execute(
        _ head: HTTPRequestHead, body: ByteBuffer?, mode: UpstreamResponseMode, readTimeout: TimeAmount
    ) async throws -> UpstreamHTTPResponse {
        var head = head
        head.headers.replaceOrAdd(name: "Content-Length", value: String(body?.readableBytes ?? 0))
        let exchange = begin(head, body: body, streamsBody: false, mode: mode, readTimeout: readTimeout)
        return try await withTaskCancellationHandler {
            try await exchange.promise.futureResult.get()
        } onCancel: {
            exchange.eventLoop.execute { self.cancel(exchange) }
        }
    }

    /// Like `execute`, but the caller streams the body: `pump` writes it through the writer it is given once a
    /// connection sent the head (`head` carries `Content-Length` or `Transfer-Encoding: chunked`), and the
    /// body's end follows when `pump` returns. If `pump` throws, the connection closes (the upstream never
    /// takes a part for the whole) and its error is what this throws. If the answer's head comes first, what
    /// is left of the body is not sent. Never sent twice, on a fresh connection, never reused afterwards.
    public func execute(
        _ head: HTTPRequestHead,
        streamingBody pump: @escaping @Sendable (UpstreamRequestBodyWriter) async throws -> Void,
        mode: UpstreamResponseMode, readTimeout: TimeAmount
    ) async throws -> UpstreamHTTPResponse {
        let exchange = begin(head, body: nil, streamsBody: true, mode: mode, readTimeout: readTimeout)
        let failure = PumpFailure()
        return try await withTaskCancellationHandler {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    guard let promise = exchange.bodyWriter, let writer = try? await promise.futureResult.get()
                    else { return }  // ended before a connection took it: the exchange says why
                    do {
                        try await pump(writer)
                        try await writer.end()
                    } catch {
                        // Stopped because the answer came first: the answer stands.
                        if Task.isCancelled { return }
                        // Kept before the abort, whose failure of the exchange the caller then sees.
                        failure.record(error)
                        writer.abort(.cancelled)
                    }
                }
                do {
                    let response = try await exchange.promise.futureResult.get()
                    group.cancelAll()
                    return response
                } catch {
                    group.cancelAll()
                    try? await group.waitForAll()
                    throw failure.error ?? error
                }
            }
        } onCancel: {
            exchange.eventLoop.execute { self.cancel(exchange) }
        }
    }

    private func begin(
        _ head: HTTPRequestHead, body: ByteBuffer?, streamsBody: Bool, mode: UpstreamResponseMode,
        readTimeout: TimeAmount
    ) -> Exchange {
        var head = head
        if !endpoint.pathPrefix.isEmpty { head.uri = endpoint.pathPrefix + head.uri }
        head.headers.replaceOrAdd(name: "Host", value: endpoint.hostHeader)
        let pool = currentPool()
        let exchange = Exchange(
            head: head, body: body, streamsBody: streamsBody, mode: mode, readTimeout: readTimeout,
            eventLoop: pool.eventLoop, loopIndex: pool.index)
        // A streamed body cannot be sent again, so it does not risk a keep-alive connection the upstream may
        // be closing just now.
        if pool.eventLoop.inEventLoop {
            start(exchange, on: pool, fresh: streamsBody)
        } else {
            pool.eventLoop.execute { self.start(exchange, on: pool, fresh: streamsBody) }
        }
        return exchange
    }

    /// Closes idle connections and refuses new requests; exchanges in flight finish on their own.
    public func shutdown() async {
        shutDown.store(true, ordering: .relaxed)
        for pool in loops {
            try? await pool.eventLoop.submit { pool.closeAll() }.get()
        }
        while let exchange = withWaiters({ $0.popFirst() }) {
            exchange.eventLoop.execute {
                exchange.stopWaitTimer()
                exchange.fail(.shutDown)
            }
        }
    }

    /// Whether `shutdown` was called: the pool takes no more requests.
    public var isShutDown: Bool { shutDown.load(ordering: .relaxed) }
    /// Open connections (for metrics and tests).
    public var openConnections: Int { open.load(ordering: .relaxed) }
    /// The most connections open at once so far.
    public var peakConnections: Int { peak.load(ordering: .relaxed) }
    /// Requests waiting for a connection (for tests).
    var waitingRequests: Int { waiting.load(ordering: .relaxed) }
    /// Idle keep-alive connections over every loop (for tests: an answer is read before its connection is back).
    var idleConnections: Int { loops.reduce(0) { $0 + $1.idleCount.load(ordering: .sequentiallyConsistent) } }

    // MARK: Internals (on the pool's event loop)

    private func currentPool() -> LoopPool {
        if let current = MultiThreadedEventLoopGroup.currentEventLoop {
            for pool in loops where pool.eventLoop === current { return pool }
        }
        let next = group.next()
        return loops.first { $0.eventLoop === next } ?? loops[0]
    }

    /// The waiter line, its count mirrored for lock-free reads. Sequentially consistent: a waiter joining the line
    /// then looking for idle connections, and a connection turning idle then looking for waiters, cannot both
    /// miss each other (see `wait` and `reusable`).
    @discardableResult
    private func withWaiters<T>(_ body: (inout Waiters) -> T) -> T {
        waiters.withLock { waiters in
            let result = body(&waiters)
            waiting.store(waiters.count, ordering: .sequentiallyConsistent)
            return result
        }
    }

    private func start(_ exchange: Exchange, on pool: LoopPool, fresh: Bool = false) {
        guard !exchange.cancelled else { return exchange.fail(.cancelled) }
        guard !shutDown.load(ordering: .relaxed) else { return exchange.fail(.shutDown) }
        if !fresh, let handler = pool.takeIdle(maxAge: configuration.idleTimeout) {
            handler.start(exchange)
            return
        }
        guard reserveConnection() else { return wait(exchange, on: pool) }
        connect(for: exchange)
    }

    /// At the cap: the exchange waits in line for a slot or a connection of its loop, for at most its read
    /// timeout (`UPSTREAM_TIMEOUT_SECONDS`; a wait that long is an upstream not answering in time too).
    private func wait(_ exchange: Exchange, on pool: LoopPool) {
        exchange.waitTimer = pool.eventLoop.scheduleTask(in: exchange.readTimeout) { [self] in
            // Already taken from the line: a slot or connection is on its way to it.
            guard withWaiters({ $0.remove(exchange) }) else { return }
            exchange.waitTimer = nil
            exchange.fail(.poolTimeout)
        }
        withWaiters { $0.append(exchange) }
        // A slot freed between the check and the joining (its release found nobody waiting) goes to the line.
        if reserveConnection() { passSlot() }
        // Connections serve only their own loop: every open one may be idle on other loops, where no finishing
        // exchange would ever hand it over. One of them is closed, and its slot comes to the line.
        for other in loops where other !== pool && other.idleCount.load(ordering: .sequentiallyConsistent) > 0 {
            other.eventLoop.execute { self.shedIdle(other) }
            break
        }
    }

    /// The caller's task was cancelled (on the exchange's loop, so ordered with `start`): a waiting exchange
    /// leaves the line and is never sent; one in flight drops its connection (its state is unknown
    /// mid-exchange, so it is never reused).
    private func cancel(_ exchange: Exchange) {
        // Already answered: the connection may be back in the pool serving someone else by now.
        guard !exchange.completed else { return }
        exchange.cancelled = true
        if exchange.waitTimer != nil {
            withWaiters { $0.remove(exchange) }
            exchange.stopWaitTimer()
        }
        exchange.fail(.cancelled)
        exchange.connection?.close(promise: nil)
    }

    private func reserveConnection() -> Bool {
        var current = open.load(ordering: .relaxed)
        while current < configuration.maxConnections {
            let (exchanged, original) = open.compareExchange(
                expected: current, desired: current + 1, ordering: .relaxed)
            if exchanged {
                peak.max(current + 1, ordering: .relaxed)
                return true
            }
            current = original
        }
        return false
    }

    /// A connection slot came free (a connection closed, or a reservation went unused): it passes straight to
    /// the longest waiter, which connects on its own loop; with nobody waiting it is released. Decided under the
    /// line's lock, so a request joining the line meanwhile either is found here or finds the slot released.
    private func passSlot() {
        let waiter = withWaiters { waiters -> Exchange? in
            if let waiter = waiters.popFirst() { return waiter }
            open.subtract(1, ordering: .relaxed)
            return nil
        }
        guard let waiter else { return }
        if waiter.eventLoop.inEventLoop {
            connectWaiter(waiter)
        } else {
            waiter.eventLoop.execute { self.connectWaiter(waiter) }
        }
    }

    /// On the waiter's loop, with a slot reserved for it.
    private func connectWaiter(_ waiter: Exchange) {
        waiter.stopWaitTimer()
        // Its client left after it was taken from the line: the slot goes on to the next waiter.
        guard !waiter.cancelled, !waiter.completed else { return passSlot() }
        guard !shutDown.load(ordering: .relaxed) else {
            waiter.fail(.shutDown)
            return passSlot()
        }
        connect(for: waiter)
    }

    /// On `pool`'s loop while requests wait: an idle connection serves a waiter of its own loop, or closes so
    /// that its slot goes to the longest waiter (`closed` → `passSlot`).
    private func shedIdle(_ pool: LoopPool) {
        guard waiting.load(ordering: .sequentiallyConsistent) > 0,
            let handler = pool.takeIdle(maxAge: configuration.idleTimeout)
        else { return }
        if let waiter = withWaiters({ $0.popFirst(onLoop: pool.index) }) {
            waiter.stopWaitTimer()
            handler.start(waiter)
        } else {
            handler.retire()
        }
    }

    /// Opens a connection (a slot is already reserved) on the exchange's loop and starts the exchange on it.
    private func connect(for exchange: Exchange) {
        let eventLoop = exchange.eventLoop
        let pool = loops[exchange.loopIndex]
        let sslContext = self.sslContext
        let resolved = self.address
        // SNI names a host, never an IP literal.
        let serverHostname = resolved == nil ? endpoint.host : nil
        let callbacks = UpstreamConnectionHandler.Callbacks(
            reusable: { handler in
                pool.putIdle(handler)
                // Looked at only once the connection is listed as idle, as a joining waiter looks at idle
                // connections only once it is in line: one of the two sees the other. At the cap, the freed
                // connection serves a waiter of its own loop, or closes so that its slot goes to the longest
                // waiter, who connects on its own loop (an exchange never leaves its loop).
                if self.waiting.load(ordering: .sequentiallyConsistent) > 0 { self.shedIdle(pool) }
            },
            closed: { handler in
                pool.remove(handler)
                self.passSlot()
            },
            retry: { exchange in self.start(exchange, on: pool, fresh: true) })
        ClientBootstrap(group: eventLoop)
            .connectTimeout(configuration.connectTimeout)
            // Each connection keeps its receive buffer for reuse; NIO's default first size (2 KiB) per open
            // stream added up. It grows after a full read (a large answer), up to 64 KiB.
            .channelOption(
                .recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 512, maximum: 65536)
            )
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let sslContext {
                        try sync.addHandler(NIOSSLClientHandler(context: sslContext, serverHostname: serverHostname))
                    }
                    try sync.addHTTPClientHandlers()
                    try sync.addHandler(UpstreamConnectionHandler(callbacks: callbacks))
                }
            }
            .connect(to: resolved, orHost: endpoint.host, port: endpoint.port)
            .assumeIsolated()
            .whenComplete { result in
                switch result {
                case .success(let channel):
                    guard
                        let handler = try? channel.pipeline.syncOperations.handler(type: UpstreamConnectionHandler.self)
                    else {
                        // Without its handler the channel's close reports to nobody: the slot is passed on here.
                        channel.close(promise: nil)
                        self.passSlot()
                        return exchange.fail(.connectionClosed)
                    }
                    // An exchange cancelled meanwhile is failed there, unsent, and the new connection serves the
                    // next waiter or goes idle.
                    handler.start(exchange)
                case .failure(let error):
                    self.passSlot()
                    exchange.fail(Self.connectError(error))
                }
            }
    }

    private static func connectError(_ error: any Error) -> UpstreamHTTPError {
        if let error = error as? ChannelError, case .connectTimeout = error { return .connectTimeout }
        let text = String(describing: error).lowercased()
        if text.contains("refused") { return .connectFailed("connection refused") }
        if error is NIOSSLError || text.contains("ssl") || text.contains("certificate") {
            return .connectFailed("TLS failure")
        }
        if error is NIOConnectionError || text.contains("resolve") { return .connectFailed("connection failed") }
        return .connectFailed("connection failed")
    }
}

/// The idle connections of one event loop; touched only on that loop, but for `idleCount`.
final class LoopPool: @unchecked Sendable {
    let eventLoop: any EventLoop
    /// Its place in the pool's `loops` (and the waiter line of its loop).
    let index: Int
    /// Most recently used last: reuse the warmest connection, let the coldest age out.
    private var idle: [UpstreamConnectionHandler] = [] {
        // Sequentially consistent: see `UpstreamConnectionPool.withWaiters`.
        didSet { idleCount.store(idle.count, ordering: .sequentiallyConsistent) }
    }
    /// `idle.count`, for other loops: a waiter there looks for idle connections to have one closed for it.
    let idleCount = Atomic<Int>(0)
    private var sweeper: RepeatedTask?

    init(eventLoop: any EventLoop, index: Int) {
        self.eventLoop = eventLoop
        self.index = index
    }

    func takeIdle(maxAge: TimeAmount) -> UpstreamConnectionHandler? {
        let oldest = NIODeadline.now() - maxAge
        while let handler = idle.popLast() {
            if handler.idleSince > oldest, handler.channel?.isActive == true { return handler }
            handler.channel?.close(promise: nil)
        }
        return nil
    }

    func putIdle(_ handler: UpstreamConnectionHandler) {
        idle.append(handler)
    }

    func remove(_ handler: UpstreamConnectionHandler) {
        if let index = idle.lastIndex(where: { $0 === handler }) { idle.remove(at: index) }
    }

    func startSweeping(every interval: TimeAmount) {
        sweeper = eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
            self.sweep(maxAge: interval)
        }
    }

    /// Closes connections idle longer than `maxAge` (the oldest are at the front).
    private func sweep(maxAge: TimeAmount) {
        let oldest = NIODeadline.now() - maxAge
        let stale = idle.prefix { $0.idleSince <= oldest }
        guard !stale.isEmpty else { return }
        idle.removeFirst(stale.count)
        for handler in stale { handler.channel?.close(promise: nil) }
    }

    func closeAll() {
        sweeper?.cancel()
        let all = idle
        idle.removeAll()
        for handler in all { handler.channel?.close(promise: nil) }
    }
}

extension ClientBootstrap {
    /// Connects to `address` when known, else resolves `host`.
    fileprivate func connect(to address: SocketAddress?, orHost host: String, port: Int) -> EventLoopFuture<Channel> {
        if let address { return connect(to: address) }
        return connect(host: host, port: port)
    }
}
