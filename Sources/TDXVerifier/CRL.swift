import Crypto
import SwiftASN1
import X509

/// An X.509 certificate revocation list (RFC 5280 §5), parsed with swift-asn1: swift-certificates has no
/// CRL type. Only what verification needs: the issuer, the dates, the revoked serials and the signature.
struct CertificateRevocationList: Sendable {
    let issuer: DistinguishedName
    let thisUpdate: Int64
    let nextUpdate: Int64?
    /// Serial numbers without leading zero bytes.
    let revokedSerials: Set<[UInt8]>
    let signedBytes: [UInt8]
    let signature: [UInt8]

    init(derEncoded bytes: [UInt8]) throws(TDXVerificationError) {
        do {
            let root = try DER.parse(bytes)
            var parsed: (DistinguishedName, Int64, Int64?, Set<[UInt8]>, [UInt8], [UInt8])?
            try DER.sequence(root, identifier: .sequence) { nodes in
                guard let tbs = nodes.next(), nodes.next() != nil, let signatureNode = nodes.next() else {
                    throw ASN1Error.invalidASN1Object(reason: "CertificateList")
                }
                let signature = try ASN1BitString(derEncoded: signatureNode)
                let fields = try DER.sequence(tbs, identifier: .sequence) { tbsNodes in
                    // version INTEGER OPTIONAL, then the signature algorithm (skipped), then the issuer.
                    var node = tbsNodes.next()
                    if node?.identifier == .integer { node = tbsNodes.next() }
                    guard node != nil, let issuerNode = tbsNodes.next() else {
                        throw ASN1Error.invalidASN1Object(reason: "issuer")
                    }
                    let issuer = try DistinguishedName(derEncoded: issuerNode)
                    guard let thisNode = tbsNodes.next() else {
                        throw ASN1Error.invalidASN1Object(reason: "thisUpdate")
                    }
                    let thisUpdate = try Self.time(thisNode)
                    var nextUpdate: Int64?
                    var revoked = Set<[UInt8]>()
                    while let item = tbsNodes.next() {
                        if item.identifier == .utcTime || item.identifier == .generalizedTime {
                            nextUpdate = try Self.time(item)
                        } else if item.identifier == .sequence {
                            try DER.sequence(item, identifier: .sequence) { entries in
                                while let entry = entries.next() {
                                    try DER.sequence(entry, identifier: .sequence) { entryNodes in
                                        guard let serialNode = entryNodes.next() else {
                                            throw ASN1Error.invalidASN1Object(reason: "serial")
                                        }
                                        let serial = try ArraySlice<UInt8>(derEncoded: serialNode)
                                        revoked.insert(Array(serial.drop(while: { $0 == 0 })))
                                        while entryNodes.next() != nil {}
                                    }
                                }
                            }
                        }
                        // [0] crlExtensions: not needed.
                    }
                    return (issuer, thisUpdate, nextUpdate, revoked)
                }
                parsed = (fields.0, fields.1, fields.2, fields.3, Array(tbs.encodedBytes), Array(signature.bytes))
            }
            guard let parsed else { throw TDXVerificationError.malformedCollateral("CRL") }
            (issuer, thisUpdate, nextUpdate, revokedSerials, signedBytes, signature) = parsed
        } catch let error as TDXVerificationError {
            throw error
        } catch {
            throw .malformedCollateral("CRL")
        }
    }

    /// Whether `issuer`'s key signed this CRL (ECDSA P-256 with SHA-256: Intel's CRLs).
    func isSigned(by issuer: Certificate) -> Bool {
        guard let key = P256.Signing.PublicKey(issuer.publicKey),
            let signature = try? P256.Signing.ECDSASignature(derRepresentation: signature)
        else { return false }
        return key.isValidSignature(signature, for: signedBytes)
    }

    private static func time(_ node: ASN1Node) throws -> Int64 {
        if node.identifier == .utcTime {
            let time = try UTCTime(derEncoded: node)
            return UnixTime.seconds(
                year: time.year, month: time.month, day: time.day, hours: time.hours, minutes: time.minutes,
                seconds: time.seconds)
        }
        let time = try GeneralizedTime(derEncoded: node)
        return UnixTime.seconds(
            year: time.year, month: time.month, day: time.day, hours: time.hours, minutes: time.minutes,
            seconds: time.seconds)
    }
}

/// Calendar arithmetic for UTC dates, without Foundation's calendars.
enum UnixTime {
    /// Seconds since 1970 of a proleptic-Gregorian UTC date (Howard Hinnant's days-from-civil).
    static func seconds(year: Int, month: Int, day: Int, hours: Int, minutes: Int, seconds: Int) -> Int64 {
        let y = Int64(month <= 2 ? year - 1 : year)
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let m = Int64(month)
        let dayOfYear = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + Int64(day) - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        let days = era * 146_097 + dayOfEra - 719_468
        return days * 86_400 + Int64(hours) * 3600 + Int64(minutes) * 60 + Int64(seconds)
    }

    /// An RFC 3339 UTC time as Intel writes it (`2025-06-19T10:32:27Z`, optionally with fractional seconds).
    static func parse(rfc3339 text: String) -> Int64? {
        let bytes = Array(text.utf8)
        guard bytes.count >= 20, bytes.last == UInt8(ascii: "Z") else { return nil }
        func number(_ range: Range<Int>) -> Int? { Int(String(decoding: bytes[range], as: UTF8.self)) }
        guard let year = number(0..<4), bytes[4] == UInt8(ascii: "-"), let month = number(5..<7),
            bytes[7] == UInt8(ascii: "-"), let day = number(8..<10), bytes[10] == UInt8(ascii: "T"),
            let hours = number(11..<13), let minutes = number(14..<16), let secs = number(17..<19),
            (1...12).contains(month), (1...31).contains(day), hours < 24, minutes < 60, secs < 61
        else { return nil }
        return seconds(year: year, month: month, day: day, hours: hours, minutes: minutes, seconds: secs)
    }
}
