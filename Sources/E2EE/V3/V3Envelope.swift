import Foundation
import JSON

/// A v3 request body as received, checked against SPEC §4.3's exact shape:
/// `{"model": M, "stream": S, "e2ee": {"v": 3, "kc": kc, "ts": T, "req": base64(hdr ‖ enc ‖ ct)}}`.
/// Parsing only reads; nothing here is authenticated until `V3Codec.open` succeeds.
public struct V3Envelope: Sendable {
    /// `M` (absent = `""`).
    public let model: String
    /// `S` (absent = false).
    public let stream: Bool
    public let keyConfigID: String
    /// `T`, Unix seconds.
    public let timestamp: Int64
    public let suite: V3Suite
    /// The KEM's encapsulated key; its SHA-256 names the replay claim.
    public let enc: [UInt8]
    /// The HPKE ciphertext of the request object.
    public let ciphertext: [UInt8]

    /// Step 1 of SPEC §4.3's protocol errors: anything not of the exact shape is `invalid_e2ee_request`.
    public init(parsing body: some Collection<UInt8>) throws(E2EEError) {
        guard case .object(let root)? = try? JSONValue(parsing: body, rejectingDuplicateKeys: true),
            root.keys.allSatisfy({ ["model", "stream", "e2ee"].contains($0) }),
            case .object(let e2ee)? = root["e2ee"], e2ee.count == 4,
            e2ee["v"] == .number("3"),
            case .string(let kc)? = e2ee["kc"],
            case .number(let ts)? = e2ee["ts"], let timestamp = Self.integer(ts),
            case .string(let req)? = e2ee["req"],
            let sealed = Data(base64Encoded: req).map(Array.init),
            sealed.count >= V3Suite.headerLength,
            let suite = V3Suite(header: sealed.prefix(V3Suite.headerLength)),
            sealed.count >= V3Suite.headerLength + suite.encLength
        else { throw .v3Malformed }
        switch root["model"] {
        case nil: self.model = ""
        case .string(let model)? where model.utf8.count <= Int(UInt16.max): self.model = model
        default: throw .v3Malformed
        }
        switch root["stream"] {
        case nil: self.stream = false
        case .bool(let stream)?: self.stream = stream
        default: throw .v3Malformed
        }
        self.keyConfigID = kc
        self.timestamp = timestamp
        self.suite = suite
        let encEnd = V3Suite.headerLength + suite.encLength
        self.enc = Array(sealed[V3Suite.headerLength..<encEnd])
        self.ciphertext = Array(sealed[encEnd...])
    }

    /// A JSON integer literal (no fraction, no exponent) that fits 64 bits.
    private static func integer(_ literal: String) -> Int64? {
        guard !literal.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }) else { return nil }
        return Int64(literal)
    }

    /// HPKE `info` for this request on `route` (SPEC §4.3): the label, a zero byte, `hdr`, then route, model,
    /// stream flag and time, so a gateway that edits any of them makes the request fail to open.
    public static func info(suite: V3Suite, route: String, model: String, stream: Bool, timestamp: Int64) -> [UInt8] {
        var info = Array("vllm-proxy e2ee v3 request".utf8) + [0] + suite.header
        info += lengthPrefixed(Array(route.utf8)) + lengthPrefixed(Array(model.utf8))
        info.append(stream ? 1 : 0)
        let time = UInt64(bitPattern: timestamp)
        for shift in stride(from: 56, through: 0, by: -8) {
            info.append(UInt8(truncatingIfNeeded: time >> UInt64(shift)))
        }
        return info
    }

    /// LV: a u16 big-endian length, then the bytes (a longer model is refused when parsing).
    static func lengthPrefixed(_ bytes: [UInt8]) -> [UInt8] {
        precondition(bytes.count <= Int(UInt16.max), "an LV value is at most 65 535 bytes")
        return V3Suite.bigEndian(UInt16(bytes.count)) + bytes
    }
}
