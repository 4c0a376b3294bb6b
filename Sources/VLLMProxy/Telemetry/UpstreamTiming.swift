import NIOCore

/// Splits one completion's wall time into time spent waiting on the upstream and the rest, the proxy's own
/// overhead (README "Metrics"). A value on the request's own task: no lock, one monotonic clock read per edge.
struct UpstreamTiming: Sendable {
    /// The route template the overhead is recorded under.
    let route: String
    private let start: UInt64
    private var waited: UInt64 = 0
    private var waitingSince: UInt64 = 0

    /// `start`: when the request arrived, as near as the caller knows it (the pipeline: when it is entered).
    init(route: String, start: NIODeadline = .now()) {
        self.route = route
        self.start = start.uptimeNanoseconds
        self.waitingSince = self.start
    }

    /// The proxy starts waiting on the upstream: it sends the request, or asks for the next part of the answer.
    mutating func upstreamWaitBegins() {
        waitingSince = NIODeadline.now().uptimeNanoseconds
    }

    /// The upstream delivered (a response head, a body, a chunk, or its end); returns how long this wait took,
    /// which for the first wait is the time to the response head.
    @discardableResult
    mutating func upstreamWaitEnds() -> Duration {
        let now = NIODeadline.now().uptimeNanoseconds
        let wait = now &- waitingSince
        waited &+= wait
        return .nanoseconds(Int64(truncatingIfNeeded: wait))
    }

    /// Time since `start` not spent waiting on the upstream (never negative).
    func overhead(until end: NIODeadline = .now()) -> Duration {
        let total = end.uptimeNanoseconds &- start
        return .nanoseconds(Int64(truncatingIfNeeded: total > waited ? total - waited : 0))
    }
}

extension Duration {
    /// Monotonic time elapsed since `start`.
    static func since(_ start: NIODeadline) -> Duration {
        .nanoseconds(Int64(truncatingIfNeeded: NIODeadline.now().uptimeNanoseconds &- start.uptimeNanoseconds))
    }
}
