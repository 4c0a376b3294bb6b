import Prometheus
import Synchronization

/// What a ticket gives back to when it is released.
protocol TicketIssuer: Sendable {
    func ticketReleased()
}

/// One unit held by a request — a basic-tier slot, or its unit of the in-flight gauge — given back exactly
/// once: explicitly when its last byte is sent, or by `deinit` when the response is dropped on any other path
/// (an error, a cancelled client), so neither can leak or drift.
final class ReleaseTicket<Issuer: TicketIssuer>: Sendable {
    private let issuer: Issuer
    private let released = Atomic<Bool>(false)

    init(_ issuer: Issuer) { self.issuer = issuer }

    func release() {
        if !released.exchange(true, ordering: .acquiringAndReleasing) { issuer.ticketReleased() }
    }

    deinit { release() }
}

extension Prometheus.Gauge: TicketIssuer {
    func ticketReleased() { decrement() }
}

/// A request's unit of `vllm_proxy_completions_inflight`.
typealias InFlightTicket = ReleaseTicket<Prometheus.Gauge>
/// A basic-tier request's slot (SPEC §3).
typealias SlotTicket = ReleaseTicket<TrafficControl>
