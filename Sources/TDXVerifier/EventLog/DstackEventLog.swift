import Crypto
import Foundation

/// A dstack event log (the `event_log` text of `GetQuote`) replayed to RTMR3 (SPEC §6.2): which runtime
/// events — among them `compose-hash` and `app-id` — a quote's RTMR3 commits to. A pure function, no network.
///
/// RTMR3 starts at 48 zero bytes and each of its events extends it: `rtmr = SHA-384(rtmr ‖ digest)`. A dstack
/// runtime event's digest is `SHA-384(u32le(event_type) ‖ ":" ‖ event ‖ ":" ‖ payload)`; the replay recomputes it
/// rather than trusting the `digest` field, so a payload edited after the fact fails rather than being reported.
public struct DstackEventLog: Sendable, Equatable {
    /// dstack's event type for runtime events (not a TCG type).
    public static let runtimeEventType: UInt32 = 0x0800_0001
    /// Bounds on what a log may hold (real ones are tens of KB, a few hundred events).
    public static let maxBytes = 4 << 20
    public static let maxEvents = 8192

    /// One RTMR3 event, its payload as logged.
    public struct Event: Sendable, Equatable {
        public let name: String
        public let payload: [UInt8]
    }

    /// The RTMR3 events in order.
    public let rtmr3Events: [Event]
    /// RTMR3 as the replay computes it.
    public let replayedRTMR3: [UInt8]

    /// The payload of the last event with this name (dstack logs each of these once).
    public func payload(of name: String) -> [UInt8]? {
        rtmr3Events.last { $0.name == name }?.payload
    }

    /// The `compose-hash` event's payload: SHA-256 of the app's compose file.
    public var composeHash: [UInt8]? { payload(of: "compose-hash") }
    /// The `app-id` event's payload.
    public var appID: [UInt8]? { payload(of: "app-id") }

    /// Why a log does not replay.
    public enum Failure: Error, Sendable, Equatable {
        case malformed(String)
        case digestMismatch(index: Int, name: String)
        case rtmr3Mismatch(replayed: [UInt8], quoted: [UInt8])

        /// A stable reason string, as `TDXVerificationError.reason`.
        public var reason: String {
            switch self {
            case .malformed: "event_log_malformed"
            case .digestMismatch: "event_log_digest_mismatch"
            case .rtmr3Mismatch: "event_log_rtmr3_mismatch"
            }
        }

        /// For people.
        public var detail: String {
            switch self {
            case .malformed(let why): "the event log is malformed: \(why)"
            case .digestMismatch(let index, let name):
                "event \(index) (\(name)) has a digest that is not the hash of its payload"
            case .rtmr3Mismatch(let replayed, let quoted):
                "replaying RTMR3 gives \(TDXHex.encode(replayed)), the quote has \(TDXHex.encode(quoted))"
            }
        }
    }

    private struct Entry: Decodable {
        let imr: Int
        let event_type: UInt32
        let digest: String
        let event: String?
        let event_payload: String?
    }

    /// Parses `text` (a JSON array of events) and replays RTMR3; events of RTMR0–2 (the firmware's, from CCEL)
    /// are skipped: they are not needed for what runs in the container.
    public init(parsing text: [UInt8]) throws(Failure) {
        guard text.count <= Self.maxBytes else { throw .malformed("larger than \(Self.maxBytes) bytes") }
        let entries: [Entry]
        do {
            entries = try JSONDecoder().decode([Entry].self, from: Data(text))
        } catch {
            throw .malformed("not a JSON array of dstack events")
        }
        guard entries.count <= Self.maxEvents else { throw .malformed("more than \(Self.maxEvents) events") }
        var rtmr = [UInt8](repeating: 0, count: 48)
        var events: [Event] = []
        for (index, entry) in entries.enumerated() where entry.imr == 3 {
            guard let digest = TDXHex.decode(entry.digest), digest.count == 48 else {
                throw .malformed("event \(index): the digest is not 48 bytes of hex")
            }
            let name = entry.event ?? ""
            guard let payload = TDXHex.decode(entry.event_payload ?? "") else {
                throw .malformed("event \(index): the payload is not hex")
            }
            // A runtime event is checked against its payload; any other type in RTMR3 is extended as logged, but
            // then its name and payload are unbound and so are not reported.
            if entry.event_type == Self.runtimeEventType {
                guard Self.runtimeDigest(name: name, payload: payload) == digest else {
                    throw .digestMismatch(index: index, name: name)
                }
                events.append(Event(name: name, payload: payload))
            }
            var hash = SHA384()
            hash.update(data: rtmr)
            hash.update(data: digest)
            rtmr = Array(hash.finalize())
        }
        rtmr3Events = events
        replayedRTMR3 = rtmr
    }

    /// Parses and replays `text`, then requires the replay to equal the quote's RTMR3.
    public init(parsing text: [UInt8], quotedRTMR3: [UInt8]) throws(Failure) {
        try self.init(parsing: text)
        guard replayedRTMR3 == quotedRTMR3 else {
            throw .rtmr3Mismatch(replayed: replayedRTMR3, quoted: quotedRTMR3)
        }
    }

    /// dstack's digest of a runtime event.
    public static func runtimeDigest(name: String, payload: [UInt8]) -> [UInt8] {
        var hash = SHA384()
        withUnsafeBytes(of: runtimeEventType.littleEndian) { hash.update(bufferPointer: $0) }
        hash.update(data: Array(":".utf8))
        hash.update(data: Array(name.utf8))
        hash.update(data: Array(":".utf8))
        hash.update(data: payload)
        return Array(hash.finalize())
    }
}
