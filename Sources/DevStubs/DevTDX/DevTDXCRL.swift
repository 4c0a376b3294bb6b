import Crypto
import Foundation
import SwiftASN1
import X509

/// An X.509 v2 CRL (RFC 5280 §5.1) signed by a dev CA, as Intel's PCS serves them: CRL number and authority key
/// identifier, one unrelated revoked serial. swift-certificates cannot build CRLs, so the DER is written here.
enum DevTDXCRL {
    /// The DER of a CRL issued by `issuer` (name and key), current from `thisUpdate` until `nextUpdate`.
    static func make(
        issuer: DistinguishedName, issuerKey: P256.Signing.PrivateKey, thisUpdate: Date, nextUpdate: Date
    ) throws -> [UInt8] {
        // A serial that names no certificate of this PKI, so the list is not empty (as real CRLs are not).
        let unrelatedSerial = Certificate.SerialNumber()
        let authorityKeyID = SubjectKeyIdentifier(hash: Certificate.PublicKey(issuerKey.publicKey)).keyIdentifier
        let tbs = try DevTDXDER.encode { der in
            try DevTDXDER.sequence(&der) { der in
                try der.serialize(1)  // v2
                try DevTDXDER.sequence(&der) { der in try der.serialize(DevTDXDER.ecdsaWithSHA256) }
                try der.serialize(issuer)
                try der.serialize(DevTDXDER.utcTime(thisUpdate))
                try der.serialize(DevTDXDER.utcTime(nextUpdate))
                try DevTDXDER.sequence(&der) { der in
                    try DevTDXDER.sequence(&der) { der in
                        try der.serialize(ArraySlice(unrelatedSerial.bytes))
                        try der.serialize(DevTDXDER.utcTime(thisUpdate))
                    }
                }
                try der.serialize(explicitlyTaggedWithTagNumber: 0, tagClass: .contextSpecific) { der in
                    try DevTDXDER.sequence(&der) { der in
                        try DevTDXDER.sequence(&der) { der in  // cRLNumber
                            try der.serialize([2, 5, 29, 20] as ASN1ObjectIdentifier)
                            try der.serialize(
                                ASN1OctetString(contentBytes: ArraySlice(DevTDXDER.encode { try $0.serialize(1) })))
                        }
                        try DevTDXDER.sequence(&der) { der in  // authorityKeyIdentifier { [0] keyIdentifier }
                            try der.serialize([2, 5, 29, 35] as ASN1ObjectIdentifier)
                            let value = try DevTDXDER.encode { der in
                                try DevTDXDER.sequence(&der) { der in
                                    der.appendPrimitiveNode(
                                        identifier: ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific)
                                    ) { $0.append(contentsOf: authorityKeyID) }
                                }
                            }
                            try der.serialize(ASN1OctetString(contentBytes: ArraySlice(value)))
                        }
                    }
                }
            }
        }
        let signature = try issuerKey.signature(for: tbs).derRepresentation
        // CertificateList ::= SEQUENCE { tbsCertList, signatureAlgorithm, signatureValue BIT STRING }.
        return try DevTDXDER.encode { der in
            try DevTDXDER.sequence(&der) { der in
                der.serializeRawBytes(tbs)
                try DevTDXDER.sequence(&der) { der in try der.serialize(DevTDXDER.ecdsaWithSHA256) }
                try der.serialize(ASN1BitString(bytes: ArraySlice(signature)))
            }
        }
    }
}
