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
    private let loops: [any EventLoop]
    private let sslContext: NIOSSLContext?
    /// Every decision (which connection, who waits, who is next) is the machine's; this class carries them out.
    private let state: Mutex<PoolStateMachine<UpstreamConnectionHandler, Exchange>>
    private let sweepers = Mutex<[RepeatedTask]>([])
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
        self.loops = Array(group.makeIterator())
        self.state = Mutex(
            PoolStateMachine(
                loops: loops.count, maxConnections: configuration.maxConnections,
                idleTimeout: configuration.idleTimeout))
        let interval = configuration.idleTimeout
        sweepers.withLock { sweepers in
            for (index, loop) in loops.enumerated() {
                sweepers.append(
                    loop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { [weak self] task in
                        // A pool dropped without `shutdown` stops its sweepers here.
                        guard let self else { return task.cancel() }
                        self.sweep(loop: index)
                    })
            }
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
        let (eventLoop, loopIndex) = currentLoop()
        let exchange = Exchange(
            head: head, body: body, streamsBody: streamsBody, mode: mode, readTimeout: readTimeout,
            eventLoop: eventLoop, loopIndex: loopIndex)
        if eventLoop.inEventLoop {
            start(exchange)
        } else {
            eventLoop.execute { self.start(exchange) }
        }
        return exchange
    }

    /// Closes idle connections and refuses new requests (waiters fail); exchanges in flight finish on their own.
    public func shutdown() async {
        for sweeper in sweepers.withLock({ $0 }) { sweeper.cancel() }
        let (idle, waiters) = state.withLock { $0.shutdown() }
        // One hop per loop, not one per connection: thousands may be idle.
        for (loop, handlers) in zip(loops, idle) where !handlers.isEmpty {
            try? await loop.submit { for handler in handlers { handler.retire() } }.get()
        }
        for exchange in waiters {
            exchange.eventLoop.execute {
                exchange.stopWaitTimer()
                exchange.fail(.shutDown)
            }
        }
    }

    /// Whether `shutdown` was called: the pool takes no more requests.
    public var isShutDown: Bool { state.withLock { $0.isShutDown } }
    /// Open connections (for metrics and tests).
    public var openConnections: Int { state.withLock { $0.open } }
    /// The most connections open at once so far.
    public var peakConnections: Int { state.withLock { $0.peak } }
    /// Requests waiting for a connection (for tests).
    var waitingRequests: Int { state.withLock { $0.waiting } }
    /// Idle keep-alive connections over every loop (for tests: an answer is read before its connection is back).
    var idleConnections: Int { state.withLock { $0.idleCount } }

    // MARK: Carrying out the machine's decisions

    /// The caller's event loop when it is one of the pool's (as every request task is when NIO runs Swift
    /// concurrency), so that its bytes never cross threads; else the next one.
    private func currentLoop() -> (any EventLoop, Int) {
        if let current = MultiThreadedEventLoopGroup.currentEventLoop {
            for (index, loop) in loops.enumerated() where loop === current { return (loop, index) }
        }
        let next = group.next()
        return (next, loops.firstIndex { $0 === next } ?? 0)
    }

    /// On the exchange's loop: a first attempt, or a retry on a fresh connection.
    private func start(_ exchange: Exchange) {
        guard !exchange.cancelled else { return exchange.fail(.cancelled) }
        let now = NIODeadline.now()
        let decision = state.withLock { $0.request(exchange, now: now) }
        for handler in decision.stale { handler.retire() }
        switch decision.action {
        case .use(let handler):
            handler.start(exchange)
        case .connect:
            connect(for: exchange)
        case .wait(let retiring):
            // Bounded by the read timeout (`UPSTREAM_TIMEOUT_SECONDS`): a wait that long is an upstream not
            // answering in time too.
            exchange.waitTimer = exchange.eventLoop.scheduleTask(in: exchange.readTimeout) { [self] in
                // False: a slot or connection is on its way to it.
                guard state.withLock({ $0.waitTimedOut(exchange) }) else { return }
                exchange.waitTimer = nil
                exchange.fail(.poolTimeout)
            }
            if let (handler, loop) = retiring { loops[loop].execute { handler.retire() } }
        case .fail(let error):
            exchange.fail(error)
        }
    }

    /// The caller's task was cancelled (on the exchange's loop, so ordered with `start`): a waiting exchange
    /// leaves the line and is never sent; one in flight drops its connection (its state is unknown
    /// mid-exchange, so it is never reused).
    private func cancel(_ exchange: Exchange) {
        // Already answered: the connection may be back in the pool serving someone else by now.
        guard !exchange.completed else { return }
        exchange.cancelled = true
        // Still in line: it leaves it. Handed a slot or connection already: that one sees `cancelled` and
        // passes it on.
        if exchange.waitTimer != nil, state.withLock({ $0.cancelled(exchange) }) { exchange.stopWaitTimer() }
        exchange.fail(.cancelled)
        exchange.connection?.close(promise: nil)
    }

    /// A slot came free without a connection closing: a connect failed, or a waiter handed a slot had left.
    private func freeSlot() {
        carryOut(state.withLock { $0.slotFreed() })
    }

    /// Where a freed slot goes: to the waiter the machine chose, on its loop.
    private func carryOut(_ action: PoolStateMachine<UpstreamConnectionHandler, Exchange>.SlotAction) {
        guard case .connect(let waiter) = action else { return }
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
        guard !waiter.cancelled, !waiter.completed else { return freeSlot() }
        connect(for: waiter)
    }

    private func released(_ handler: UpstreamConnectionHandler, loop: Int) {
        switch state.withLock({ $0.released(handler, loop: loop, now: .now()) }) {
        case .keep:
            break
        case .use(let waiter):
            waiter.stopWaitTimer()
            // A waiter whose client left meanwhile is abandoned there, unsent, and the connection comes back.
            handler.start(waiter)
        case .close:
            handler.retire()
        }
    }

    private func sweep(loop: Int) {
        for handler in state.withLock({ $0.sweep(loop: loop, now: .now()) }) { handler.retire() }
    }

    /// Opens a connection (a slot is already reserved) on the exchange's loop and starts the exchange on it.
    private func connect(for exchange: Exchange) {
        let eventLoop = exchange.eventLoop
        let loop = exchange.loopIndex
        let sslContext = self.sslContext
        let resolved = self.address
        // SNI names a host, never an IP literal.
        let serverHostname = resolved == nil ? endpoint.host : nil
        let callbacks = UpstreamConnectionHandler.Callbacks(
            reusable: { handler in self.released(handler, loop: loop) },
            closed: { handler in self.carryOut(self.state.withLock { $0.closed(handler, loop: loop) }) },
            retry: { exchange in self.start(exchange) })
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
                        self.freeSlot()
                        return exchange.fail(.connectionClosed)
                    }
                    // An exchange cancelled meanwhile is failed there, unsent, and the new connection serves the
                    // next waiter or goes idle.
                    handler.start(exchange)
                case .failure(let error):
                    self.freeSlot()
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

extension ClientBootstrap {
    /// Connects to `address` when known, else resolves `host`.
    fileprivate func connect(to address: SocketAddress?, orHost host: String, port: Int) -> EventLoopFuture<Channel> {
        if let address { return connect(to: address) }
        return connect(host: host, port: port)
    }
}
