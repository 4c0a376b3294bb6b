import Foundation
import JSON
import TDXVerifier

/// The code a Chutes instance may run (`CHUTES_TDX_MEASUREMENTS_FILE`, SPEC §7.2): allowed sets of MRTD and
/// RTMR0–2. A genuine quote proves genuine hardware, not which code runs, so an instance passes only when its
/// four registers equal one set of this list.
public struct MeasurementPolicy: Sendable, Equatable {
    /// One allowed set: MRTD (the TD's initial image) and RTMR0–2 (firmware, kernel, command line).
    public struct Measurements: Sendable, Hashable {
        public let mrTD: [UInt8]
        public let rtmr0: [UInt8]
        public let rtmr1: [UInt8]
        public let rtmr2: [UInt8]

        public init(mrTD: [UInt8], rtmr0: [UInt8], rtmr1: [UInt8], rtmr2: [UInt8]) {
            self.mrTD = mrTD
            self.rtmr0 = rtmr0
            self.rtmr1 = rtmr1
            self.rtmr2 = rtmr2
        }
    }

    public let allowed: Set<Measurements>

    /// Bounds what a policy file may hold (it is read once at start-up).
    public static let maxFileBytes = 1 << 20
    public static let maxEntries = 4096

    public init(allowed: Set<Measurements>) { self.allowed = allowed }

    /// `[{"mr_td", "rtmr0", "rtmr1", "rtmr2"}, …]`, each 48 bytes of hex (either case). The error says what
    /// is wrong in one line, for the `chutes_misconfigured` message.
    public init(json bytes: some Collection<UInt8>) throws(PolicyError) {
        guard bytes.count <= Self.maxFileBytes else { throw PolicyError("is larger than 1 MiB") }
        guard let list = (try? JSONValue(parsing: bytes))?.arrayValue else {
            throw PolicyError("is not a JSON list of {\"mr_td\", \"rtmr0\", \"rtmr1\", \"rtmr2\"}")
        }
        guard !list.isEmpty else { throw PolicyError("allows no measurements (an empty list)") }
        guard list.count <= Self.maxEntries else { throw PolicyError("has more than \(Self.maxEntries) entries") }
        var allowed = Set<Measurements>()
        for (index, entry) in list.enumerated() {
            func register(_ name: String) throws(PolicyError) -> [UInt8] {
                guard let text = entry[name]?.stringValue, text.utf8.count == 96, let bytes = TDXHex.decode(text),
                    bytes.count == 48
                else { throw PolicyError("entry \(index): \(name) is not 96 hex digits") }
                return bytes
            }
            allowed.insert(
                Measurements(
                    mrTD: try register("mr_td"), rtmr0: try register("rtmr0"), rtmr1: try register("rtmr1"),
                    rtmr2: try register("rtmr2")))
        }
        self.allowed = allowed
    }

    /// Reads the file at `path`.
    public init(path: String) throws(PolicyError) {
        guard let data = FileManager.default.contents(atPath: path) else { throw PolicyError("cannot be read") }
        try self.init(json: Array(data))
    }

    /// Whether the TD report's MRTD and RTMR0–2 are one allowed set.
    public func allows(_ td: TDReport) -> Bool {
        guard td.rtmr.count >= 3 else { return false }
        return allowed.contains(Measurements(mrTD: td.mrTD, rtmr0: td.rtmr[0], rtmr1: td.rtmr[1], rtmr2: td.rtmr[2]))
    }

    /// Why a policy file was refused: completes "CHUTES_TDX_MEASUREMENTS_FILE …".
    public struct PolicyError: Error, Sendable, Equatable {
        public let message: String
        init(_ message: String) { self.message = message }
    }
}
