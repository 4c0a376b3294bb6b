import Foundation
import X509

/// What a collateral source needs from a quote's PCK certificate (the leaf, first in the quote's PEM chain):
/// the FMSPC (for the TCB info) and whether the Platform CA issued it (for the PCK CRL's `ca=`). Reading only:
/// nothing here is verified; `TDXQuoteVerifier` checks the chain.
public enum TDXPCKFacts {
    public static func pckFacts(of quote: TDXQuote) throws(TDXVerificationError) -> (fmspc: [UInt8], platformCA: Bool) {
        let text = String(decoding: quote.pckChainPEM.prefix { $0 != 0 }, as: UTF8.self)
        let begin = "-----BEGIN CERTIFICATE-----"
        let end = "-----END CERTIFICATE-----"
        guard let start = text.range(of: begin),
            let stop = text.range(of: end, range: start.upperBound..<text.endIndex),
            let leaf = try? Certificate(pemEncoded: String(text[start.lowerBound..<stop.upperBound]))
        else { throw .invalidPCKCertificate("the first PEM block is not a certificate") }
        let fmspc = try PCKExtension(certificate: leaf).fmspc
        // As dcap-qvl: the issuer's common name naming the Platform CA means `platform`, anything else `processor`.
        var platform = false
        for rdn in leaf.issuer {
            for attribute in rdn where attribute.type == .RDNAttributeType.commonName {
                if "\(attribute.value)".contains("Platform") { platform = true }
            }
        }
        return (fmspc, platform)
    }
}

/// When fetched collateral stops being current, for a cache: a CRL's nextUpdate, or the `nextUpdate` of a TCB
/// info / QE identity JSON object. Nil when it cannot be read (the caller then does not cache it).
public enum TDXCollateralDates {
    public static func crlNextUpdate(der: [UInt8]) -> Int64? {
        (try? CertificateRevocationList(derEncoded: der))?.nextUpdate ?? nil
    }

    public static func nextUpdate(ofJSON json: [UInt8]) -> Int64? {
        struct Dated: Decodable { let nextUpdate: String }
        guard let dated = try? JSONDecoder().decode(Dated.self, from: Data(json)) else { return nil }
        return UnixTime.parse(rfc3339: dated.nextUpdate)
    }
}
