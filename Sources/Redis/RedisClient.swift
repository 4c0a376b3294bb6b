import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

/// A Redis client on SwiftNIO: a fixed set of pipelined connections (by default one per event loop),
/// each opened on first use and reopened by itself after it breaks; every command is bounded by the
/// configuration's timeout, connection set-up included.
public final class RedisClient: Sendable {
    public let configuration: RedisConfiguration
    private let slots: [ConnectionSlot]
    private let nextSlot = Atomic<Int>(0)

    /// - Parameters:
    ///   - connections: how many pipelined connections; nil is one per event loop of `group`.
    public init(
        configuration: RedisConfiguration, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        connections: Int? = nil, logger: Logger
    ) {
        self.configuration = configuration
        let count = max(1, connections ?? group.makeIterator().reduce(0) { count, _ in count + 1 })
        let tls = configuration.tls.map { Self.makeTLSContext($0) }
        var loops = group.makeIterator()
        self.slots = (0..<count).map { _ in
            let loop = loops.next() ?? group.next()
            return ConnectionSlot(configuration: configuration, eventLoop: loop, tls: tls, logger: logger)
        }
    }

    private static func makeTLSContext(_ tls: RedisConfiguration.TLS) -> Result<NIOSSLContext, RedisError> {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = .fullVerification
        if let caFile = tls.caFile {
            do {
                configuration.additionalTrustRoots = [.certificates(try NIOSSLCertificate.fromPEMFile(caFile))]
            } catch {
                return .failure(.tls("REDIS_CA_FILE is not a readable PEM certificate file"))
            }
        }
        do {
            return .success(try NIOSSLContext(configuration: configuration))
        } catch {
            return .failure(RedisError.from(error))
        }
    }

    /// Sends one command and waits for its reply; an error reply is thrown as `.server`.
    public func send(_ command: RESPCommand) async throws(RedisError) -> RESPValue {
        let index = UInt(bitPattern: nextSlot.wrappingAdd(1, ordering: .relaxed).oldValue)
        let slot = slots[Int(index % UInt(slots.count))]
        let deadline = NIODeadline.now() + TimeAmount(configuration.commandTimeout)
        let reply: RESPValue
        do {
            reply = try await slot.send(command, deadline: deadline).get()
        } catch {
            throw RedisError.from(error)
        }
        if let code = reply.errorCode { throw .server(code) }
        return reply
    }

    /// Closes every connection; later commands fail with `.shutDown`.
    public func shutdown() async {
        for slot in slots { await slot.shutdown() }
    }

    // MARK: commands

    /// `PING` → `PONG`.
    public func ping() async throws(RedisError) {
        let reply = try await send(RESPCommand("PING"))
        guard reply == .simpleString("PONG") else { throw .protocolViolation("unexpected PING reply") }
    }

    /// `GET key` → the value, or nil when the key is absent.
    public func get(_ key: String) async throws(RedisError) -> [UInt8]? {
        switch try await send(RESPCommand("GET", key)) {
        case .bulkString(let value): return value
        default: throw .protocolViolation("unexpected GET reply")
        }
    }

    /// `SET key value EX seconds`.
    public func set(_ key: String, _ value: [UInt8], expireSeconds: Int) async throws(RedisError) {
        let reply = try await send(
            RESPCommand([
                Array("SET".utf8), Array(key.utf8), value, Array("EX".utf8), Array(String(expireSeconds).utf8),
            ]))
        guard reply == .simpleString("OK") else { throw .protocolViolation("unexpected SET reply") }
    }

    /// `SET key value NX EX seconds` → true when this call created the key, false when it already existed.
    public func setIfAbsent(_ key: String, _ value: [UInt8], expireSeconds: Int) async throws(RedisError) -> Bool {
        let reply = try await send(
            RESPCommand([
                Array("SET".utf8), Array(key.utf8), value, Array("NX".utf8), Array("EX".utf8),
                Array(String(expireSeconds).utf8),
            ]))
        switch reply {
        case .simpleString("OK"): return true
        case .bulkString(nil): return false
        default: throw .protocolViolation("unexpected SET NX reply")
        }
    }

    /// `CONFIG GET parameter` → its value, or nil when the server has no such parameter. Managed services
    /// often refuse `CONFIG` (`.server("ERR")`, or `NOPERM` for an ACL user without it).
    public func configGet(_ parameter: String) async throws(RedisError) -> String? {
        guard case .array(let pairs?) = try await send(RESPCommand("CONFIG", "GET", parameter)) else {
            throw .protocolViolation("unexpected CONFIG GET reply")
        }
        // RESP2 answers a flat list of name, value pairs; a parameter without glob characters matches once.
        guard pairs.count >= 2 else { return nil }
        guard case .bulkString(let value?) = pairs[1] else { throw .protocolViolation("unexpected CONFIG GET reply") }
        return String(decoding: value, as: UTF8.self)
    }
}

/// One pipelined connection: opened on demand (connect, TLS, `AUTH`, `SELECT`), shared by every caller,
/// forgotten when it closes so the next command opens a fresh one.
private final class ConnectionSlot: Sendable {
    private enum State {
        case idle
        case connecting(EventLoopFuture<any Channel>)
        case ready(any Channel)
        case shutDown
    }

    private let configuration: RedisConfiguration
    private let eventLoop: any EventLoop
    private let tls: Result<NIOSSLContext, RedisError>?
    private let logger: Logger
    private let state = Mutex(State.idle)

    init(
        configuration: RedisConfiguration, eventLoop: any EventLoop, tls: Result<NIOSSLContext, RedisError>?,
        logger: Logger
    ) {
        self.configuration = configuration
        self.eventLoop = eventLoop
        self.tls = tls
        self.logger = logger
    }

    func send(_ command: RESPCommand, deadline: NIODeadline) -> EventLoopFuture<RESPValue> {
        bounded(channel(), deadline: deadline).flatMap { channel in
            Self.write(command, to: channel, deadline: deadline)
        }
    }

    /// Writes without waiting for earlier replies; at the deadline the connection is failed and closed,
    /// so the late reply can never be read as the answer to a later command.
    private static func write(_ command: RESPCommand, to channel: any Channel, deadline: NIODeadline)
        -> EventLoopFuture<RESPValue>
    {
        let promise = channel.eventLoop.makePromise(of: RESPValue.self)
        let timer = channel.eventLoop.scheduleTask(deadline: deadline) {
            promise.fail(RedisError.timeout)
            channel.pipeline.fireErrorCaught(RedisError.timeout)
        }
        promise.futureResult.whenComplete { _ in timer.cancel() }
        channel.writeAndFlush(RedisRequest(command: command, promise: promise), promise: nil)
        return promise.futureResult
    }

    /// Fails the caller at its deadline even if a shared connection attempt is still under way.
    private func bounded<T: Sendable>(_ future: EventLoopFuture<T>, deadline: NIODeadline) -> EventLoopFuture<T> {
        let promise = future.eventLoop.makePromise(of: T.self)
        let timer = future.eventLoop.scheduleTask(deadline: deadline) { promise.fail(RedisError.timeout) }
        future.whenComplete { result in
            timer.cancel()
            promise.completeWith(result)
        }
        return promise.futureResult
    }

    private func channel() -> EventLoopFuture<any Channel> {
        enum Next {
            case use(EventLoopFuture<any Channel>)
            case open(EventLoopPromise<any Channel>)
        }
        let next: Next = state.withLock { state in
            switch state {
            case .ready(let channel) where channel.isActive:
                return .use(eventLoop.makeSucceededFuture(channel))
            case .connecting(let future):
                return .use(future)
            case .shutDown:
                return .use(eventLoop.makeFailedFuture(RedisError.shutDown))
            case .idle, .ready:
                let promise = eventLoop.makePromise(of: (any Channel).self)
                state = .connecting(promise.futureResult)
                return .open(promise)
            }
        }
        switch next {
        case .use(let future):
            return future
        case .open(let promise):
            // Registered outside the lock: a callback may run at once and take the lock itself.
            promise.futureResult.whenComplete { [self] result in
                let orphan: (any Channel)? = state.withLock { state in
                    guard case .connecting(let future) = state, future == promise.futureResult else {
                        // Shut down while connecting: nobody will ever use this connection.
                        return try? result.get()
                    }
                    switch result {
                    case .success(let channel): state = .ready(channel)
                    case .failure: state = .idle
                    }
                    return nil
                }
                orphan?.close(promise: nil)
            }
            promise.completeWith(open())
            return promise.futureResult
        }
    }

    /// Connects, then authenticates and selects the database in one pipelined round trip.
    private func open() -> EventLoopFuture<any Channel> {
        let configuration = self.configuration
        let deadline = NIODeadline.now() + TimeAmount(configuration.commandTimeout)
        var sslContext: NIOSSLContext?
        switch tls {
        case .none: break
        case .success(let context): sslContext = context
        case .failure(let error): return eventLoop.makeFailedFuture(error)
        }
        // SNI and hostname verification need a name; for an IP address NIOSSL checks the peer's address.
        let serverHostname: String? = Self.isIPAddress(configuration.host) ? nil : configuration.host
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(TimeAmount(configuration.commandTimeout))
            .channelOption(ChannelOptions.socketOption(.so_keepalive), value: 1)
            .channelInitializer { [sslContext] channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    if let sslContext {
                        try pipeline.addHandler(
                            NIOSSLClientHandler(context: sslContext, serverHostname: serverHostname))
                    }
                    try pipeline.addHandler(ByteToMessageHandler(RESPDecoder()))
                    try pipeline.addHandler(MessageToByteHandler(RESPEncoder()))
                    try pipeline.addHandler(RedisCommandHandler())
                }
            }
        return bootstrap.connect(host: configuration.host, port: configuration.port).flatMap { channel in
            var handshake: [EventLoopFuture<RESPValue>] = []
            if let password = configuration.password {
                var auth = [Array("AUTH".utf8)]
                if let user = configuration.username { auth.append(Array(user.utf8)) }
                auth.append(Array(password.utf8))
                handshake.append(Self.write(RESPCommand(auth), to: channel, deadline: deadline))
            }
            if configuration.database != 0 {
                handshake.append(
                    Self.write(RESPCommand("SELECT", String(configuration.database)), to: channel, deadline: deadline))
            }
            let hasAuth = configuration.password != nil
            return EventLoopFuture.whenAllComplete(handshake, on: channel.eventLoop).flatMapThrowing { results in
                for (index, result) in results.enumerated() {
                    let reply = try result.get()
                    if let code = reply.errorCode {
                        throw index == 0 && hasAuth ? RedisError.authentication(code) : RedisError.server(code)
                    }
                }
                return channel
            }.flatMapErrorThrowing { error in
                channel.close(promise: nil)
                throw error
            }
        }
    }

    func shutdown() async {
        let channel: (any Channel)? = state.withLock { state in
            defer { state = .shutDown }
            if case .ready(let channel) = state { return channel }
            return nil
        }
        try? await channel?.close()
    }

    private static func isIPAddress(_ host: String) -> Bool {
        (try? SocketAddress(ipAddress: host, port: 0)) != nil
    }
}
