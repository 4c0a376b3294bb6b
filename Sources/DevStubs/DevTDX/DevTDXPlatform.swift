import Crypto
import Foundation
import JSON

/// The dev agent's stand-in for a TDX machine: a throwaway PKI, its collateral, a dev guest and an attestation
/// key, made once at start-up. Its quotes verify against `pki.rootDER` and against nothing else: DEVELOPMENT
/// ONLY, NOT SECURE.
public struct DevTDXPlatform: Sendable {
    /// The dev PKI (its root is the trust root for this platform's quotes).
    public let pki: DevTDXPKI
    /// Collateral for this platform's quotes.
    public let collateral: DevTDXCollateral
    /// The dev guest: measurements, app compose, RTMR3 events.
    public let guest: DevTDXGuest
    private let attestationKey: P256.Signing.PrivateKey
    private let qeAuthData: [UInt8]

    /// A fresh platform whose certificates, CRLs and collateral are valid from an hour before `now` for 30 days.
    public init(now: Date = Date()) throws {
        let start = Date(timeIntervalSince1970: (now.timeIntervalSince1970 - 3600).rounded(.down))
        let end = Date(timeIntervalSince1970: (now.timeIntervalSince1970 + 30 * 86_400).rounded(.down))
        pki = try DevTDXPKI(notBefore: start, notAfter: end)
        collateral = try DevTDXCollateral(pki: pki, issueDate: start, nextUpdate: end)
        guest = DevTDXGuest()
        attestationKey = P256.Signing.PrivateKey()
        qeAuthData = Array(0..<32)
    }

    /// A v4 quote over this 64-byte report data.
    public func quote(reportData: [UInt8]) throws -> [UInt8] {
        try DevTDXQuote.make(
            reportData: reportData, guest: guest, pki: pki, attestationKey: attestationKey, qeAuthData: qeAuthData)
    }

    /// The RTMR3 event log as dstack's `GetQuote` gives it: the JSON text of the event array.
    public var eventLogJSON: String {
        String(decoding: DevTDXEventLog.json(guest.events).serialized(), as: UTF8.self)
    }

    /// dstack's `tcb_info` (before it is encoded as a string): the measurements, the compose and the event log.
    var tcbInfo: JSONValue {
        [
            "mrtd": .string(DevTDXHex.encode(guest.mrTD)),
            "rtmr0": .string(DevTDXHex.encode(guest.rtmr0to2[0])),
            "rtmr1": .string(DevTDXHex.encode(guest.rtmr0to2[1])),
            "rtmr2": .string(DevTDXHex.encode(guest.rtmr0to2[2])),
            "rtmr3": .string(DevTDXHex.encode(guest.rtmr3)),
            "compose_hash": .string(DevTDXHex.encode(guest.composeHash)),
            "app_compose": .string(guest.appCompose),
            "event_log": DevTDXEventLog.json(guest.events),
        ]
    }

    /// Writes `tdx-root.pem`, `collateral.json` and `compose-hash` (hex, one line) into `directory`, so that a
    /// verifier can check this platform's quotes.
    public func write(to directory: String) throws {
        let url = URL(fileURLWithPath: directory, isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        try Data(pki.rootPEM.utf8).write(to: url.appendingPathComponent("tdx-root.pem"))
        try Data(collateral.json).write(to: url.appendingPathComponent("collateral.json"))
        try Data((DevTDXHex.encode(guest.composeHash) + "\n").utf8).write(
            to: url.appendingPathComponent("compose-hash"))
    }
}
