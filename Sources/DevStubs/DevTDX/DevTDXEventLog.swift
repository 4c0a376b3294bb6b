import Crypto
import JSON

/// One dstack runtime event, extended into RTMR3 (dstack's `imr` 3, event type 0x08000001).
public struct DevTDXEvent: Sendable, Equatable {
    /// dstack's event type for runtime events.
    public static let dstackEventType: UInt32 = 0x0800_0001

    /// The event's name (`app-id`, `compose-hash`, …).
    public let name: String
    /// The event's payload bytes.
    public let payload: [UInt8]

    /// An event of dstack's runtime type.
    public init(name: String, payload: [UInt8]) {
        self.name = name
        self.payload = payload
    }

    /// SHA-384(u32 little-endian event type ‖ ":" ‖ name ‖ ":" ‖ payload), as dstack measures it.
    public var digest: [UInt8] {
        let type = Self.dstackEventType
        let typeBytes: [UInt8] = (0..<4).map { UInt8(truncatingIfNeeded: type >> (8 * $0)) }
        let colon = UInt8(ascii: ":")
        return Array(SHA384.hash(data: typeBytes + [colon] + Array(name.utf8) + [colon] + payload))
    }

    /// The event in dstack's event-log JSON shape.
    var json: JSONValue {
        [
            "imr": 3, "event_type": .integer(Self.dstackEventType), "digest": .string(DevTDXHex.encode(digest)),
            "event": .string(name), "event_payload": .string(DevTDXHex.encode(payload)),
        ]
    }
}

/// The dev guest's RTMR3 event log and its replay.
public enum DevTDXEventLog {
    /// RTMR3 after these events: from 48 zero bytes, each step SHA-384(rtmr ‖ digest).
    public static func replay(_ events: [DevTDXEvent]) -> [UInt8] {
        events.reduce([UInt8](repeating: 0, count: 48)) { rtmr, event in
            Array(SHA384.hash(data: rtmr + event.digest))
        }
    }

    /// The events as dstack's `event_log` value: a JSON array of event objects.
    static func json(_ events: [DevTDXEvent]) -> JSONValue {
        .array(events.map(\.json))
    }
}
