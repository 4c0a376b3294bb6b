import Synchronization

/// Basic-tier admission for the vLLM routes (SPEC §3): refuses when vLLM reports waiting requests or when
/// basic requests in flight reach the limit. Premium requests bypass it.
public final class TrafficControl: Sendable, TicketIssuer {
    private struct Reading {
        var waiting: Double
        var at: ContinuousClock.Instant
    }

    private let maxBasicInFlight: Int
    private let maxAge: Duration
    private let inFlight = Atomic<Int>(0)
    private let reading = Mutex<Reading?>(nil)

    public init(maxBasicInFlight: Int, maxAge: Duration) {
        self.maxBasicInFlight = maxBasicInFlight
        self.maxAge = maxAge
    }

    public var basicInFlight: Int { inFlight.load(ordering: .relaxed) }

    /// Records a fresh `vllm:num_requests_waiting` reading; nil (a failed poll) leaves the last one to age out.
    public func record(waiting: Double, at instant: ContinuousClock.Instant = .now) {
        reading.withLock { $0 = Reading(waiting: waiting, at: instant) }
    }

    /// True when a reading younger than the max age says requests are waiting.
    public func isCongested(now: ContinuousClock.Instant = .now) -> Bool {
        reading.withLock { reading in
            guard let reading, now - reading.at < maxAge else { return false }
            return reading.waiting > 0
        }
    }

    /// Admits a request or throws `429 rate_limit`; a basic request holds its slot until the ticket is released.
    func admit(premium: Bool) throws(ProxyError) -> SlotTicket? {
        if premium { return nil }
        if isCongested() { throw .rateLimited("Upstream vLLM is congested") }
        while true {
            let current = inFlight.load(ordering: .relaxed)
            guard current < maxBasicInFlight else { throw .rateLimited("Too many concurrent requests") }
            if inFlight.compareExchange(expected: current, desired: current + 1, ordering: .acquiringAndReleasing)
                .exchanged
            {
                return ReleaseTicket(self)
            }
        }
    }

    func ticketReleased() {
        inFlight.subtract(1, ordering: .releasing)
    }
}

/// The largest `vllm:num_requests_waiting` sample in a Prometheus text exposition, ignoring other families
/// such as `vllm:num_requests_waiting_by_reason`; nil when there is none.
func maxRequestsWaiting(inPrometheusText text: Substring) -> Double? {
    let family = "vllm:num_requests_waiting"
    var result: Double?
    for line in text.split(separator: "\n") where line.hasPrefix(family) {
        let rest = line.dropFirst(family.count)
        guard let first = rest.first, first == "{" || first == " " else { continue }
        let afterLabels: Substring
        if first == "{" {
            guard let close = rest.lastIndex(of: "}") else { continue }
            afterLabels = rest[rest.index(after: close)...]
        } else {
            afterLabels = rest
        }
        guard let valueText = afterLabels.split(separator: " ").first, let value = Double(valueText) else { continue }
        result = max(result ?? value, value)
    }
    return result
}
