import Crypto
import Foundation
import SwiftASN1
import X509

/// A throwaway Intel-DCAP-shaped PKI made at start-up: a root CA, a PCK platform CA, a PCK leaf carrying the SGX
/// extension of `DevTDXTCB`, a TCB signing certificate and both CRLs. DEVELOPMENT ONLY, NOT SECURE: whoever trusts
/// its root trusts any quote this process makes.
public struct DevTDXPKI: Sendable {
    /// The root CA, DER: the trust root that replaces Intel's when verifying dev quotes.
    public let rootDER: [UInt8]
    /// The root CA, PEM.
    public let rootPEM: String
    /// The PCK certificate chain as a quote carries it: leaf, PCK CA, root, PEM.
    let pckChainPEM: String
    /// The PCK leaf's key: it signs QE reports.
    let pckKey: P256.Signing.PrivateKey
    /// The TCB signing key: it signs the TCB info and QE identity.
    let tcbSigningKey: P256.Signing.PrivateKey
    /// TCB signing certificate then root, PEM (the TCB info and QE identity issuer chains).
    let tcbSigningChainPEM: String
    /// PCK CA then root, PEM (the PCK CRL issuer chain).
    let pckCAChainPEM: String
    /// The root CA's CRL, DER.
    let rootCRL: [UInt8]
    /// The PCK CA's CRL, DER.
    let pckCRL: [UInt8]

    /// The OID of Intel's SGX extension in PCK certificates.
    static let sgxExtensionOID: ASN1ObjectIdentifier = [1, 2, 840, 113741, 1, 13, 1]

    /// A fresh PKI whose certificates and CRLs are valid from `notBefore` to `notAfter`.
    init(notBefore: Date, notAfter: Date) throws {
        let rootKey = P256.Signing.PrivateKey()
        let pckCAKey = P256.Signing.PrivateKey()
        let pckKey = P256.Signing.PrivateKey()
        let tcbSigningKey = P256.Signing.PrivateKey()
        let rootName = try Self.name("vllm-proxy DEV SGX Root CA (NOT SECURE)")
        let pckCAName = try Self.name("vllm-proxy DEV SGX PCK Platform CA (NOT SECURE)")

        func issue(
            subject: DistinguishedName, key: P256.Signing.PrivateKey, issuer: DistinguishedName,
            issuerKey: P256.Signing.PrivateKey, extensions: [Certificate.Extension]
        ) throws -> Certificate {
            let publicKey = Certificate.PublicKey(key.publicKey)
            let issuerPublicKey = Certificate.PublicKey(issuerKey.publicKey)
            let identifiers = [
                try Certificate.Extension(SubjectKeyIdentifier(hash: publicKey), critical: false),
                try Certificate.Extension(
                    AuthorityKeyIdentifier(keyIdentifier: SubjectKeyIdentifier(hash: issuerPublicKey).keyIdentifier),
                    critical: false),
            ]
            return try Certificate(
                version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: publicKey,
                notValidBefore: notBefore, notValidAfter: notAfter, issuer: issuer, subject: subject,
                signatureAlgorithm: .ecdsaWithSHA256, extensions: Certificate.Extensions(identifiers + extensions),
                issuerPrivateKey: Certificate.PrivateKey(issuerKey))
        }
        func ca(pathLength: Int) throws -> [Certificate.Extension] {
            [
                try Certificate.Extension(KeyUsage(keyCertSign: true, cRLSign: true), critical: true),
                try Certificate.Extension(
                    BasicConstraints.isCertificateAuthority(maxPathLength: pathLength), critical: true),
            ]
        }
        let leaf = [
            try Certificate.Extension(KeyUsage(digitalSignature: true, nonRepudiation: true), critical: true),
            try Certificate.Extension(BasicConstraints.notCertificateAuthority, critical: true),
        ]

        let root = try issue(
            subject: rootName, key: rootKey, issuer: rootName, issuerKey: rootKey, extensions: try ca(pathLength: 1))
        let pckCA = try issue(
            subject: pckCAName, key: pckCAKey, issuer: rootName, issuerKey: rootKey, extensions: try ca(pathLength: 0))
        let pck = try issue(
            subject: try Self.name("vllm-proxy DEV SGX PCK Certificate (NOT SECURE)"), key: pckKey,
            issuer: pckCAName, issuerKey: pckCAKey,
            extensions: leaf + [
                Certificate.Extension(
                    oid: Self.sgxExtensionOID, critical: false, value: ArraySlice(try Self.sgxExtension()))
            ])
        let tcbSigning = try issue(
            subject: try Self.name("vllm-proxy DEV SGX TCB Signing (NOT SECURE)"), key: tcbSigningKey,
            issuer: rootName, issuerKey: rootKey, extensions: leaf)

        func pem(_ certificates: [Certificate]) throws -> String {
            try certificates.map { try $0.serializeAsPEM().pemString + "\n" }.joined()
        }
        var serializer = DER.Serializer()
        try serializer.serialize(root)
        rootDER = serializer.serializedBytes
        rootPEM = try pem([root])
        pckChainPEM = try pem([pck, pckCA, root])
        tcbSigningChainPEM = try pem([tcbSigning, root])
        pckCAChainPEM = try pem([pckCA, root])
        self.pckKey = pckKey
        self.tcbSigningKey = tcbSigningKey
        rootCRL = try DevTDXCRL.make(issuer: rootName, issuerKey: rootKey, thisUpdate: notBefore, nextUpdate: notAfter)
        pckCRL = try DevTDXCRL.make(
            issuer: pckCAName, issuerKey: pckCAKey, thisUpdate: notBefore, nextUpdate: notAfter)
    }

    private static func name(_ commonName: String) throws -> DistinguishedName {
        try DistinguishedName {
            CommonName(commonName)
            OrganizationName("vllm-proxy development PKI")
            CountryName("US")
        }
    }

    /// Intel's SGX extension with the layout of a real platform-CA PCK certificate: PPID, TCB (16 components,
    /// PCESVN, CPUSVN), PCE-ID, FMSPC, SGX type Scalable, platform instance id, configuration.
    static func sgxExtension() throws -> [UInt8] {
        func octets(_ bytes: [UInt8]) -> ASN1OctetString { ASN1OctetString(contentBytes: ArraySlice(bytes)) }
        func pair(_ der: inout DER.Serializer, _ arcs: [UInt], _ value: (inout DER.Serializer) throws -> Void)
            throws
        {
            try DevTDXDER.sequence(&der) { der in
                try der.serialize(try ASN1ObjectIdentifier(elements: sgxExtensionOID.oidComponents + arcs))
                try value(&der)
            }
        }
        return try DevTDXDER.encode { der in
            try DevTDXDER.sequence(&der) { der in
                // A dev PPID: recognisable, not an Intel one.
                try pair(&der, [1]) { try $0.serialize(octets(Array("DEV-PPID-NOT-REAL".utf8.prefix(16)))) }
                try pair(&der, [2]) { der in
                    try DevTDXDER.sequence(&der) { der in
                        for (index, svn) in DevTDXTCB.cpuSVN.enumerated() {
                            try pair(&der, [2, UInt(index + 1)]) { try $0.serialize(Int(svn)) }
                        }
                        try pair(&der, [2, 17]) { try $0.serialize(DevTDXTCB.pceSVN) }
                        try pair(&der, [2, 18]) { try $0.serialize(octets(DevTDXTCB.cpuSVN)) }
                    }
                }
                try pair(&der, [3]) { try $0.serialize(octets(DevTDXTCB.pceID)) }
                try pair(&der, [4]) { try $0.serialize(octets(DevTDXTCB.fmspc)) }
                try pair(&der, [5]) { $0.appendPrimitiveNode(identifier: .enumerated) { $0.append(1) } }  // Scalable
                try pair(&der, [6]) { try $0.serialize(octets([UInt8](repeating: 0xDE, count: 16))) }
                try pair(&der, [7]) { der in  // dynamic platform, cached keys, SMT: as real PCKs say
                    try DevTDXDER.sequence(&der) { der in
                        for arc: UInt in 1...3 {
                            try pair(&der, [7, arc]) { try $0.serialize(true) }
                        }
                    }
                }
            }
        }
    }
}
