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
    private let waiters = Mutex<Waiters>(Waiters())
    private let shutDown = Atomic<Bool>(false)
    /// The endpoint's address when its host is an IP literal: no resolver round trip (a thread hop through
    /// getaddrinfo) for each new connection.
    private let address: SocketAddress?

    private struct Waiters {
        var queue: [Exchange] = []
        var head = 0
        var isEmpty: Bool { head == queue.count }

        mutating func append(_ exchange: Exchange) { queue.append(exchange) }

        /// The longest-waiting exchange of `eventLoop`, if any.
        mutating func popFirst(on eventLoop: any EventLoop) -> Exchange? {
            guard let index = queue[head...].firstIndex(where: { $0.eventLoop === eventLoop }) else { return nil }
            if index == head { return popFirst() }
            return queue.remove(at: index)
        }

        mutating func popFirst() -> Exchange? {
            guard head < queue.count else { return nil }
            let exchange = queue[head]
            head += 1
            if head == queue.count {
                queue.removeAll(keepingCapacity: true)
                head = 0
            }
            return exchange
        }
    }

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
        self.loops = group.makeIterator().map { LoopPool(eventLoop: $0) }
        for pool in loops {
            let idleTimeout = configuration.idleTimeout
            pool.eventLoop.execute { pool.startSweeping(every: idleTimeout) }
        }
    }

    /// Sends `head` (+ `body`) and returns once the head arrived — with the whole body for `.collect`.
    /// Cancelling the calling task fails the exchange with `.cancelled` and closes its connection.
    public func execute(
        _ head: HTTPRequestHead, body: ByteBuffer?, mode: UpstreamResponseMode, readTimeout: TimeAmount
    ) async throws -> UpstreamHTTPResponse {
        var head = head
        if !endpoint.pathPrefix.isEmpty { head.uri = endpoint.pathPrefix + head.uri }
        head.headers.replaceOrAdd(name: "Host", value: endpoint.hostHeader)
        head.headers.replaceOrAdd(name: "Content-Length", value: String(body?.readableBytes ?? 0))
        let pool = currentPool()
        let exchange = Exchange(
            head: head, body: body, mode: mode, readTimeout: readTimeout, eventLoop: pool.eventLoop)
        if pool.eventLoop.inEventLoop {
            start(exchange, on: pool)
        } else {
            pool.eventLoop.execute { self.start(exchange, on: pool) }
        }
        return try await withTaskCancellationHandler {
            try await exchange.promise.futureResult.get()
        } onCancel: {
            exchange.cancel()
        }
    }

    /// Closes idle connections and refuses new requests; exchanges in flight finish on their own.
    public func shutdown() async {
        shutDown.store(true, ordering: .relaxed)
        for pool in loops {
            try? await pool.eventLoop.submit { pool.closeAll() }.get()
        }
        while let exchange = waiters.withLock({ $0.popFirst() }) {
            exchange.eventLoop.execute { exchange.fail(.shutDown) }
        }
    }

    /// Open connections (for metrics and tests).
    public var openConnections: Int { open.load(ordering: .relaxed) }
    /// The most connections open at once so far.
    public var peakConnections: Int { peak.load(ordering: .relaxed) }

    // MARK: Internals (on the pool's event loop)

    private func currentPool() -> LoopPool {
        if let current = MultiThreadedEventLoopGroup.currentEventLoop {
            for pool in loops where pool.eventLoop === current { return pool }
        }
        let next = group.next()
        return loops.first { $0.eventLoop === next } ?? loops[0]
    }

    private func start(_ exchange: Exchange, on pool: LoopPool, fresh: Bool = false) {
        guard !exchange.cancelled else { return exchange.fail(.cancelled) }
        guard !shutDown.load(ordering: .relaxed) else { return exchange.fail(.shutDown) }
        if !fresh, let handler = pool.takeIdle(maxAge: configuration.idleTimeout) {
            handler.start(exchange)
            return
        }
        guard reserveConnection() else {
            waiters.withLock { $0.append(exchange) }
            // A connection may have closed between the check and the append: look again.
            if reserveConnection() {
                if let waiter = waiters.withLock({ $0.popFirst() }) {
                    connect(for: waiter)
                } else {
                    releaseConnection()
                }
            }
            return
        }
        connect(for: exchange)
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

    /// A connection closed: its slot goes to the longest waiter, if any.
    private func releaseConnection() {
        open.subtract(1, ordering: .relaxed)
        guard let waiter = waiters.withLock({ $0.popFirst() }) else { return }
        waiter.eventLoop.execute {
            guard let pool = self.loops.first(where: { $0.eventLoop === waiter.eventLoop }) else { return }
            self.start(waiter, on: pool, fresh: true)
        }
    }

    /// Opens a connection (a slot is already reserved) on the exchange's loop and starts the exchange on it.
    private func connect(for exchange: Exchange) {
        let eventLoop = exchange.eventLoop
        guard let pool = loops.first(where: { $0.eventLoop === eventLoop }) else {
            releaseConnection()
            return exchange.fail(.shutDown)
        }
        let sslContext = self.sslContext
        let resolved = self.address
        // SNI names a host, never an IP literal.
        let serverHostname = resolved == nil ? endpoint.host : nil
        let callbacks = UpstreamConnectionHandler.Callbacks(
            reusable: { handler in
                // At the cap, a freed connection serves a waiter of its own loop; failing that, closing it hands
                // the slot to the longest waiter, which connects on its own loop (an exchange never leaves its
                // loop).
                guard self.waiters.withLock({ !$0.isEmpty }) else { return pool.putIdle(handler) }
                if let waiter = self.waiters.withLock({ $0.popFirst(on: eventLoop) }) {
                    handler.start(waiter)
                } else {
                    handler.retire()
                }
            },
            closed: { handler in
                pool.remove(handler)
                self.releaseConnection()
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
                        channel.close(promise: nil)
                        return exchange.fail(.connectionClosed)
                    }
                    if exchange.cancelled {
                        exchange.fail(.cancelled)
                        channel.close(promise: nil)
                    } else {
                        handler.start(exchange)
                    }
                case .failure(let error):
                    self.releaseConnection()
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

/// The idle connections of one event loop; touched only on that loop.
final class LoopPool: @unchecked Sendable {
    let eventLoop: any EventLoop
    /// Most recently used last: reuse the warmest connection, let the coldest age out.
    private var idle: [UpstreamConnectionHandler] = []
    private var sweeper: RepeatedTask?

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
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
