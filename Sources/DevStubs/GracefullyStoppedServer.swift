import Logging
import ServiceLifecycle

/// Runs a server for the duration of `body`, then stops it the way SIGTERM stops the real binaries: gracefully.
///
/// Cancelling a Hummingbird server instead is not safe: a connection accepted but not yet taken off the server
/// channel's stream is dropped unserved, and swift-nio traps on its never-finished writer ("Deinited
/// NIOAsyncWriter without calling finish()", apple/swift-nio#3481). Graceful shutdown closes the listening
/// socket first, so every accepted connection is served (idle ones are closed) before the server returns.
/// Only after `drainLimit` (a handler that never ends, like the stub's stalled stream) is the server cancelled,
/// by then with nothing left unaccepted.
/// - Parameters:
///   - makeServer: given the callback to call once listening (with the bound TCP port, nil for a unix
///     socket), returns what runs the server until graceful shutdown.
///   - body: the test, given that port; the server stops when it returns or throws.
public func withGracefullyStoppedServer<T: Sendable>(
    drainLimit: Duration = .seconds(10),
    _ makeServer: (_ onRunning: @escaping @Sendable (Int?) async -> Void) -> @Sendable () async throws -> Void,
    _ body: (Int?) async throws -> T
) async throws -> T {
    let (started, continuation) = AsyncStream<Int?>.makeStream()
    let serve = makeServer { port in continuation.yield(port) }
    let server = ClosureService {
        // Ending the stream also when the server fails to start keeps the wait below from hanging.
        defer { continuation.finish() }
        try await serve()
    }
    var configuration = ServiceGroupConfiguration(
        services: [server], logger: Logger(label: "test-server", factory: { _ in SwiftLogNoOpLogHandler() }))
    configuration.maximumGracefulShutdownDuration = drainLimit
    let group = ServiceGroup(configuration: configuration)
    return try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        var iterator = started.makeAsyncIterator()
        guard let port = await iterator.next() else {
            try await tasks.waitForAll()
            throw ServerDidNotStart()
        }
        let result: Result<T, any Error>
        do {
            result = .success(try await body(port))
        } catch {
            result = .failure(error)
        }
        await group.triggerGracefulShutdown()
        try await tasks.waitForAll()
        return try result.get()
    }
}

/// The server passed to `withGracefullyStoppedServer` returned before it was listening.
public struct ServerDidNotStart: Error {}

/// A service made of a closure: lets a server that is not a `Service` itself run under a `ServiceGroup`.
private struct ClosureService: Service {
    let body: @Sendable () async throws -> Void
    func run() async throws { try await body() }
}
