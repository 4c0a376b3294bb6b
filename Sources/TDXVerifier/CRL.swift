import Crypto
import SwiftASN1
import X509

/// An X.509 certificate revocation list (RFC 5280 §5), parsed with swift-asn1: swift-certificates has no
/// CRL type. Only what verification needs: the issuer, the dates, the revoked serials and the signature. The
/// structure is checked as strictly as dcap-qvl's webpki parses it (SPEC §6.2, "at least every check dcap-qvl
/// makes"): version 2, the signature algorithm inside the TBS equal to the one outside it, no critical extension
/// it does not understand (RFC 5280 §5.2: such a CRL must not be used), no delta or indirect CRL.
struct CertificateRevocationList: Sendable {
    let issuer: DistinguishedName
    let thisUpdate: Int64
    let nextUpdate: Int64?
    /// Serial numbers without leading zero bytes.
    let revokedSerials: Set<[UInt8]>
    let signedBytes: [UInt8]
    let signature: [UInt8]

    /// ecdsa-with-SHA256 without parameters: the only algorithm `isSigned(by:)` verifies, so a CRL naming another
    /// one is refused rather than checked under an algorithm it does not claim.
    static let ecdsaWithSHA256: [UInt8] = [0x30, 0x0A, 0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x02]

    init(derEncoded bytes: [UInt8]) throws(TDXVerificationError) {
        do {
            let root = try DER.parse(bytes)
            var parsed: (DistinguishedName, Int64, Int64?, Set<[UInt8]>, [UInt8], [UInt8])?
            try DER.sequence(root, identifier: .sequence) { nodes in
                guard let tbs = nodes.next(), let outerAlgorithm = nodes.next(), let signatureNode = nodes.next(),
                    nodes.next() == nil, outerAlgorithm.identifier == .sequence
                else {
                    throw ASN1Error.invalidASN1Object(reason: "CertificateList")
                }
                let signature = try ASN1BitString(derEncoded: signatureNode)
                let fields = try DER.sequence(tbs, identifier: .sequence) { tbsNodes in
                    // version v2 (1) is required: a CRL with extensions must say so (RFC 5280 §5.1.2.1), as webpki
                    // requires.
                    guard let versionNode = tbsNodes.next(), versionNode.identifier == .integer else {
                        throw TDXVerificationError.crlInvalid("not a version 2 CRL")
                    }
                    guard try Int(derEncoded: versionNode) == 1 else {
                        throw TDXVerificationError.crlInvalid("not a version 2 CRL")
                    }
                    guard let algorithm = tbsNodes.next(), algorithm.identifier == .sequence else {
                        throw ASN1Error.invalidASN1Object(reason: "signature")
                    }
                    // RFC 5280 §5.1.2.2: the same algorithm as the unsigned outer field, else an attacker could
                    // change the outer one freely.
                    guard Array(algorithm.encodedBytes) == Array(outerAlgorithm.encodedBytes) else {
                        throw TDXVerificationError.crlInvalid("signature algorithm differs inside and outside the TBS")
                    }
                    guard Array(algorithm.encodedBytes) == Self.ecdsaWithSHA256 else {
                        throw TDXVerificationError.crlInvalid("signature algorithm is not ecdsa-with-SHA256")
                    }
                    guard let issuerNode = tbsNodes.next() else {
                        throw ASN1Error.invalidASN1Object(reason: "issuer")
                    }
                    let issuer = try DistinguishedName(derEncoded: issuerNode)
                    guard let thisNode = tbsNodes.next(), let nextNode = tbsNodes.next() else {
                        throw ASN1Error.invalidASN1Object(reason: "thisUpdate, nextUpdate")
                    }
                    let thisUpdate = try Self.time(thisNode)
                    let nextUpdate = try Self.time(nextNode)
                    var revoked = Set<[UInt8]>()
                    var node = tbsNodes.next()
                    if let list = node, list.identifier == .sequence {
                        try DER.sequence(list, identifier: .sequence) { entries in
                            while let entry = entries.next() {
                                revoked.insert(try Self.revokedSerial(entry))
                            }
                        }
                        node = tbsNodes.next()
                    }
                    // crlExtensions [0]: required, as webpki requires it (RFC 5280 §5.2 makes the CRL number and
                    // authority key identifier mandatory).
                    guard let extensions = node else { throw TDXVerificationError.crlInvalid("no CRL extensions") }
                    try DER.explicitlyTagged(extensions, tagNumber: 0, tagClass: .contextSpecific) { inner in
                        try Self.forEachExtension(inner) { id, critical, value in
                            try Self.checkCRLExtension(id, critical: critical, value: value)
                        }
                    }
                    guard tbsNodes.next() == nil else { throw ASN1Error.invalidASN1Object(reason: "TBSCertList") }
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

    /// One revokedCertificates entry: the serial, the date, and entry extensions checked as webpki checks them.
    private static func revokedSerial(_ entry: ASN1Node) throws -> [UInt8] {
        try DER.sequence(entry, identifier: .sequence) { entryNodes in
            guard let serialNode = entryNodes.next(), let dateNode = entryNodes.next() else {
                throw ASN1Error.invalidASN1Object(reason: "revoked entry")
            }
            let serial = try ArraySlice<UInt8>(derEncoded: serialNode)
            _ = try time(dateNode)
            if let extensions = entryNodes.next() {
                try forEachExtension(extensions) { id, critical, value in
                    try checkEntryExtension(id, critical: critical, value: value)
                }
            }
            guard entryNodes.next() == nil else { throw ASN1Error.invalidASN1Object(reason: "revoked entry") }
            return Array(serial.drop(while: { $0 == 0 }))
        }
    }

    /// Extensions ::= SEQUENCE SIZE (1..MAX) OF Extension; each (extnID, critical DEFAULT FALSE, extnValue).
    private static func forEachExtension(
        _ node: ASN1Node, _ body: (ASN1ObjectIdentifier, Bool, ASN1OctetString) throws -> Void
    ) throws {
        try DER.sequence(node, identifier: .sequence) { extensions in
            var count = 0
            while let item = extensions.next() {
                count += 1
                try DER.sequence(item, identifier: .sequence) { fields in
                    guard let idNode = fields.next(), var valueNode = fields.next() else {
                        throw ASN1Error.invalidASN1Object(reason: "Extension")
                    }
                    let id = try ASN1ObjectIdentifier(derEncoded: idNode)
                    var critical = false
                    if valueNode.identifier == .boolean {
                        critical = try Bool(derEncoded: valueNode)
                        guard let next = fields.next() else { throw ASN1Error.invalidASN1Object(reason: "Extension") }
                        valueNode = next
                    }
                    let value = try ASN1OctetString(derEncoded: valueNode)
                    guard fields.next() == nil else { throw ASN1Error.invalidASN1Object(reason: "Extension") }
                    try body(id, critical, value)
                }
            }
            guard count > 0 else { throw ASN1Error.invalidASN1Object(reason: "Extensions") }
        }
    }

    static let cRLNumber: ASN1ObjectIdentifier = [2, 5, 29, 20]
    static let deltaCRLIndicator: ASN1ObjectIdentifier = [2, 5, 29, 27]
    static let issuingDistributionPoint: ASN1ObjectIdentifier = [2, 5, 29, 28]
    static let authorityKeyIdentifier: ASN1ObjectIdentifier = [2, 5, 29, 35]
    static let reasonCode: ASN1ObjectIdentifier = [2, 5, 29, 21]
    static let invalidityDate: ASN1ObjectIdentifier = [2, 5, 29, 24]
    static let certificateIssuer: ASN1ObjectIdentifier = [2, 5, 29, 29]

    /// webpki's rules for crlExtensions: a CRL number of at most 20 octets, never a delta CRL, any critical
    /// extension it does not know refused.
    private static func checkCRLExtension(_ id: ASN1ObjectIdentifier, critical: Bool, value: ASN1OctetString) throws {
        switch id {
        case cRLNumber:
            let number = try ArraySlice<UInt8>(derEncoded: try DER.parse(value.bytes))
            guard number.first.map({ $0 & 0x80 == 0 }) ?? false, number.count <= 21,
                number.count <= 20 || number.first == 0
            else { throw TDXVerificationError.crlInvalid("CRL number") }
        case deltaCRLIndicator:
            throw TDXVerificationError.crlInvalid("a delta CRL")
        case issuingDistributionPoint, authorityKeyIdentifier:
            break
        default:
            if critical { throw TDXVerificationError.crlInvalid("unsupported critical extension \(id)") }
        }
    }

    /// webpki's rules for entry extensions: a known reason code, an invalidity date that parses, no certificate
    /// issuer (an indirect CRL), any critical extension it does not know refused.
    private static func checkEntryExtension(_ id: ASN1ObjectIdentifier, critical: Bool, value: ASN1OctetString) throws {
        switch id {
        case reasonCode:
            let node = try DER.parse(value.bytes)
            guard node.identifier == .enumerated, case .primitive(let content) = node.content, content.count == 1,
                content.first! <= 10, content.first! != 7
            else { throw TDXVerificationError.crlInvalid("revocation reason") }
        case invalidityDate:
            _ = try GeneralizedTime(derEncoded: try DER.parse(value.bytes))
        case certificateIssuer:
            throw TDXVerificationError.crlInvalid("an indirect CRL")
        default:
            if critical { throw TDXVerificationError.crlInvalid("unsupported critical entry extension \(id)") }
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

    /// An RFC 3339 date-time as dcap-qvl (chrono's `parse_from_rfc3339`) reads it: `YYYY-MM-DD`, `T`, `t` or a
    /// space, `hh:mm:ss`, optional fractional seconds (dropped), then `Z`, `z` or an offset `±hh:mm`. Intel writes
    /// `2025-06-19T10:32:27Z`; an offset names the same instant, so reading it is not weaker. A leap second `:60`
    /// counts as `:59`, as chrono's timestamp does; impossible dates (February 30) are refused.
    static func parse(rfc3339 text: String) -> Int64? {
        let bytes = Array(text.utf8)
        func number(_ range: Range<Int>) -> Int? {
            guard range.upperBound <= bytes.count else { return nil }
            var value = 0
            for byte in bytes[range] {
                guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { return nil }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
            }
            return value
        }
        func byte(_ index: Int, _ allowed: String) -> Bool {
            index < bytes.count && allowed.utf8.contains(bytes[index])
        }
        guard let year = number(0..<4), byte(4, "-"), let month = number(5..<7), byte(7, "-"),
            let day = number(8..<10), byte(10, "Tt "), let hours = number(11..<13), byte(13, ":"),
            let minutes = number(14..<16), byte(16, ":"), let secs = number(17..<19),
            (1...12).contains(month), hours < 24, minutes < 60, secs <= 60
        else { return nil }
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        let monthDays = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        guard (1...monthDays[month - 1]).contains(day) else { return nil }
        var index = 19
        if byte(index, ".") {
            index += 1
            let digits = index
            while byte(index, "0123456789") { index += 1 }
            guard index > digits else { return nil }
        }
        var offset = 0
        if byte(index, "Zz") {
            index += 1
        } else if byte(index, "+-"), let offsetHours = number(index + 1..<index + 3), byte(index + 3, ":"),
            let offsetMinutes = number(index + 4..<index + 6), offsetHours < 24, offsetMinutes < 60
        {
            offset = (offsetHours * 60 + offsetMinutes) * 60 * (bytes[index] == UInt8(ascii: "-") ? -1 : 1)
            index += 6
        } else {
            return nil
        }
        guard index == bytes.count else { return nil }
        return seconds(year: year, month: month, day: day, hours: hours, minutes: minutes, seconds: min(secs, 59))
            - Int64(offset)
    }
}
