import Foundation
import SwiftASN1

/// Small DER pieces the dev PKI writes by hand: swift-certificates has no builder for CRLs or for Intel's SGX
/// extension, so these are assembled node by node with swift-asn1's serializer.
enum DevTDXDER {
    /// ecdsa-with-SHA256, the only signature algorithm Intel's DCAP PKI uses.
    static let ecdsaWithSHA256: ASN1ObjectIdentifier = [1, 2, 840, 10045, 4, 3, 2]

    /// The bytes of one DER value written by `body`.
    static func encode(_ body: (inout DER.Serializer) throws -> Void) throws -> [UInt8] {
        var serializer = DER.Serializer()
        try body(&serializer)
        return serializer.serializedBytes
    }

    /// SEQUENCE { items }.
    static func sequence(_ serializer: inout DER.Serializer, _ items: (inout DER.Serializer) throws -> Void) throws {
        try serializer.appendConstructedNode(identifier: .sequence, items)
    }

    /// An X.509 time as UTCTime (every dev date is well before 2050, where UTCTime stops).
    static func utcTime(_ date: Date) throws -> UTCTime {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = .gmt
        let parts = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        return try UTCTime(
            year: parts.year ?? 0, month: parts.month ?? 0, day: parts.day ?? 0, hours: parts.hour ?? 0,
            minutes: parts.minute ?? 0, seconds: parts.second ?? 0)
    }

    /// An RFC 3339 UTC time as Intel writes `issueDate`/`nextUpdate` (`2026-12-06T10:00:00Z`).
    static func rfc3339(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.timeZone = .gmt
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: date)
    }
}
