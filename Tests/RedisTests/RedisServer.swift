import Foundation
import Logging
import Redis

#if canImport(Glibc)
    import Glibc
#endif

/// A real `redis-server` (Debian's) on a free loopback port with a password, no persistence; stopped
/// by `stop()` (tests also call `pause`/`resume` and restart it on the same port).
final class RedisServer: @unchecked Sendable {
    private(set) var port: Int
    let password: String
    /// More `redis-server` options, e.g. `["--maxmemory-policy", "allkeys-lru"]`.
    let arguments: [String]
    private var pid: pid_t?

    init(password: String = "test-pass-\(UInt32.random(in: 0...UInt32.max))", arguments: [String] = []) async throws {
        self.password = password
        self.arguments = arguments
        self.port = 0
        // A port outside the kernel's ephemeral range, so no server binding port 0 (the HTTP tests running in
        // parallel) can be handed it between our check and redis-server's bind; retried if taken anyway.
        for _ in 0..<10 {
            port = Int.random(in: 20_000..<30_000)
            guard Self.canBind(port: port) else { continue }
            do {
                try await start()
                return
            } catch ServerError.exited {
                continue
            }
        }
        throw ServerError.noPort
    }

    /// Waits without blocking a thread: tests share two cores and the cooperative pool with the HTTP tests.
    func start() async throws {
        pid = try Self.spawn(
            [
                Self.binary, "--port", String(port), "--bind", "127.0.0.1", "--requirepass", password, "--save", "",
                "--appendonly", "no", "--logfile", "/dev/null",
            ] + arguments)
        // Ready once it answers; bounded. If the port was taken, redis-server exits and we say so.
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if Self.answersPing(port: port) { return }
            var status: Int32 = 0
            if let pid, waitpid(pid, &status, WNOHANG) == pid {
                self.pid = nil
                throw ServerError.exited
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw ServerError.notReady
    }

    func stop() {
        guard let pid else { return }
        kill(pid, SIGCONT)
        kill(pid, SIGTERM)
        var status: Int32 = 0
        for _ in 0..<1000 {
            if waitpid(pid, &status, WNOHANG) == pid { break }
            usleep(5_000)
        }
        if waitpid(pid, &status, WNOHANG) == 0 {
            kill(pid, SIGKILL)
            waitpid(pid, &status, 0)
        }
        self.pid = nil
    }

    /// Freezes the server: connections stay open but nothing is answered (commands time out).
    func pause() { if let pid { kill(pid, SIGSTOP) } }
    func resume() { if let pid { kill(pid, SIGCONT) } }

    /// posix_spawn with default signal handling and an empty signal mask: the test runner's threads block
    /// most signals, and a child that inherited that mask would ignore SIGTERM.
    private static func spawn(_ argv: [String]) throws -> pid_t {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGTERM, SIGINT, SIGPIPE, SIGCHLD] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var files = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&files)
        defer { posix_spawn_file_actions_destroy(&files) }
        posix_spawn_file_actions_addopen(&files, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&files, 2, "/dev/null", O_WRONLY, 0)
        var cArguments = argv.map { strdup($0) } + [nil]
        defer { for argument in cArguments { free(argument) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, argv[0], &files, &attributes, &cArguments, environ)
        guard result == 0 else { throw ServerError.exited }
        return pid
    }

    deinit { stop() }

    func configuration(password: String? = nil, database: Int = 0, timeout: Duration = .seconds(2))
        -> RedisConfiguration
    {
        RedisConfiguration(
            host: "127.0.0.1", port: port, password: password ?? self.password, database: database,
            commandTimeout: timeout)
    }

    enum ServerError: Error { case exited, notReady, noPort }

    static let binary: String = {
        for path in ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
        where FileManager.default.isExecutableFile(atPath: path) {
            return path
        }
        return "/usr/bin/redis-server"
    }()

    private static func canBind(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = loopback(port: port)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }

    private static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return address
    }

    /// True once our redis-server answers: `-NOAUTH` before AUTH, so nothing else on the port counts.
    private static func answersPing(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = loopback(port: port)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else { return false }
        let ping = "PING\r\n"
        _ = ping.withCString { send(fd, $0, strlen($0), 0) }
        var timeout = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var buffer = [UInt8](repeating: 0, count: 64)
        let count = recv(fd, &buffer, 64, 0)
        return count > 0 && buffer.starts(with: Array("-NOAUTH".utf8))
    }
}

let quietLogger = Logger(label: "redis-test", factory: { _ in SwiftLogNoOpLogHandler() })
