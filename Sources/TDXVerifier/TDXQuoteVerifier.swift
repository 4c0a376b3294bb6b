import Crypto
import Foundation
import SwiftASN1
import X509

/// The trust anchor quotes chain to: Intel's SGX Root CA (pinned) or an override (tests, private PKIs),
/// named in every verdict.
public struct TDXTrustRoot: Sendable {
    public let certificate: Certificate
    public let der: [UInt8]
    /// `"intel"` for the pinned root, else `"override:<hex SHA-256 of its DER>"`.
    public let name: String

    public init(der: [UInt8], pinned: Bool = false) throws(TDXVerificationError) {
        guard let certificate = try? Certificate(derEncoded: der) else {
            throw .certificateChainInvalid("the trust root is not a DER certificate")
        }
        self.certificate = certificate
        self.der = der
        self.name = pinned ? "intel" : "override:" + TDXHex.encode(SHA256.hash(data: der))
    }
}

/// What a verified quote says: the combined TCB status with its advisories, the TD report and the FMSPC.
public struct TDXVerifiedReport: Sendable {
    public let status: String
    public let advisoryIDs: [String]
    public let td: TDReport
    public let fmspc: [UInt8]
    public let rootCA: String
}

/// Verifies a TDX quote against collateral at a time (SPEC §6.2): a pure function, no network. The checks
/// follow dcap-qvl 0.7.0's order and are at least as strict; where the SPEC asks more (the trust root's own
/// validity, CRL thisUpdate, the PCE id, the TCB signer, the outer certification type) it does so.
public enum TDXQuoteVerifier {
    /// Intel's QE vendor id.
    static let intelQEVendorID: [UInt8] = TDXHex.decode("939a7233f79c4ca9940a0db3957f0607")!

    public static func verify(
        quote bytes: [UInt8], collateral: TDXCollateral, now: Int64, root: TDXTrustRoot
    ) throws(TDXVerificationError) -> TDXVerifiedReport {
        try verify(collateral: collateral, now: now, root: root) { () throws(TDXVerificationError) in
            try TDXQuote(parsing: bytes)
        }
    }

    /// The same for a quote the caller already parsed (to look up its collateral): checked in the same order,
    /// with the same errors, without parsing it twice.
    public static func verify(
        quote: TDXQuote, collateral: TDXCollateral, now: Int64, root: TDXTrustRoot
    ) throws(TDXVerificationError) -> TDXVerifiedReport {
        try verify(collateral: collateral, now: now, root: root) { () throws(TDXVerificationError) in quote }
    }

    private static func verify(
        collateral: TDXCollateral, now: Int64, root: TDXTrustRoot,
        quote parsedQuote: () throws(TDXVerificationError) -> TDXQuote
    ) throws(TDXVerificationError) -> TDXVerifiedReport {
        // 1. The root and both CRLs.
        try checkValidity(root.certificate, now: now, what: "trust root")
        let rootCRL = try CertificateRevocationList(derEncoded: collateral.rootCACRL)
        let pckCRL = try CertificateRevocationList(derEncoded: collateral.pckCRL)
        guard rootCRL.issuer == root.certificate.subject, rootCRL.isSigned(by: root.certificate) else {
            throw .rootCARevocationInvalid("the root CA CRL is not signed by the trust root")
        }
        try checkCRLTime(rootCRL, now: now, what: "root CA CRL")
        guard !rootCRL.revokedSerials.contains(serial(root.certificate)) else {
            throw .certificateRevoked("the trust root")
        }
        let crls = [rootCRL, pckCRL]

        // 2. The quote's header.
        let quote = try parsedQuote()
        guard quote.qeVendorID == intelQEVendorID else { throw .unknownQEVendor }

        // 3–4. TCB info: dates, signer chain, signature over the exact bytes served.
        let tcbInfo = try TCBInfo(signed: collateral.tcbInfo)
        guard let issued = UnixTime.parse(rfc3339: tcbInfo.issueDate),
            let next = UnixTime.parse(rfc3339: tcbInfo.nextUpdate)
        else { throw .tcbInfoInvalid("dates") }
        guard issued <= now, now <= next else { throw .tcbInfoNotValidAtTime }
        let tcbSigner = try collateralSigner(collateral.tcbInfoIssuerChain, root: root, crls: crls, now: now)
        guard verifyRaw(collateral.tcbInfoSignature, of: collateral.tcbInfo, by: tcbSigner) else {
            throw .tcbInfoSignatureInvalid
        }

        // 5. QE identity, likewise.
        let qeIdentity = try QEIdentity(signed: collateral.qeIdentity)
        guard let qeIssued = UnixTime.parse(rfc3339: qeIdentity.issueDate),
            let qeNext = UnixTime.parse(rfc3339: qeIdentity.nextUpdate)
        else { throw .qeIdentityInvalid("dates") }
        guard qeIssued <= now, now <= qeNext else { throw .qeIdentityNotValidAtTime }
        let qeSigner = try collateralSigner(collateral.qeIdentityIssuerChain, root: root, crls: crls, now: now)
        guard verifyRaw(collateral.qeIdentitySignature, of: collateral.qeIdentity, by: qeSigner) else {
            throw .qeIdentitySignatureInvalid
        }
        guard qeIdentity.id == "TD_QE", qeIdentity.version == 2 || qeIdentity.version == 3 else {
            throw .qeIdentityInvalid("id \(qeIdentity.id) version \(qeIdentity.version)")
        }

        // 6. The PCK chain the quote carries, leaf first, to the root; CRLs for every certificate.
        let pckChain = try certificates(pem: quote.pckChainPEM, root: root)
        guard let pck = pckChain.first else { throw .invalidPCKCertificate("empty chain") }
        try verifyChain(pckChain, root: root, crls: crls, now: now)
        let pckExtension = try PCKExtension(certificate: pck)

        // 7. The QE report: signed by the PCK key, binding the attestation key.
        guard let pckKey = P256.Signing.PublicKey(pck.publicKey),
            verifyRaw(quote.qeReportSignature, of: quote.qeReport, by: pckKey)
        else { throw .qeReportSignatureInvalid }
        guard quote.qeAuthenticationData.count == 32,
            Array(SHA256.hash(data: quote.attestationKey + quote.qeAuthenticationData))
                == Array(quote.qeReport[320..<352])
        else { throw .qeReportDataMismatch }

        // 8. The QE against its identity.
        let qeStatus = try checkQE(quote.qeReport, identity: qeIdentity)

        // 9. The quote signature over header ‖ body by the attestation key.
        guard let attestationKey = try? P256.Signing.PublicKey(rawRepresentation: quote.attestationKey),
            verifyRaw(quote.signature, of: quote.signedBytes, by: attestationKey)
        else { throw .quoteSignatureInvalid }

        // 10. Platform TCB: FMSPC and PCE id, then the first (sorted) level the platform meets.
        guard tcbInfo.id == "TDX", tcbInfo.version >= 3 else {
            throw .tcbInfoInvalid("id \(tcbInfo.id) version \(tcbInfo.version)")
        }
        guard TDXHex.decode(tcbInfo.fmspc) == pckExtension.fmspc else { throw .fmspcMismatch }
        guard TDXHex.decode(tcbInfo.pceId) == pckExtension.pceID else { throw .pceIDMismatch }
        let levels = sortedLevels(tcbInfo.tcbLevels)
        let body = quote.body
        guard let matched = try platformLevel(levels, pck: pckExtension, teeTCBSVN: body.teeTCBSVN) else {
            throw .tcbLevelNotFound
        }
        var platform = TCBVerdict(status: try platformStatus(matched), advisoryIDs: matched.advisoryIDs)
        // TDX 1.5: TEE_TCB_SVN2 on a better level than TEE_TCB_SVN means a relaunch would bring the TD up to date.
        if let svn2 = body.teeTCBSVN2, ["OutOfDate", "OutOfDateConfigurationNeeded"].contains(platform.status),
            let level2 = try platformLevel(levels, pck: pckExtension, teeTCBSVN: svn2),
            !["OutOfDate", "OutOfDateConfigurationNeeded", "Revoked"].contains(try platformStatus(level2))
        {
            platform.status = "TDRelaunchAdvised"
        }

        // 11. The TDX module.
        let module = try checkModule(tcbInfo, body: body)

        // 12. Combined: the worst wins; advisories platform, module, QE.
        var verdict = platform
        if let module { verdict = verdict.merged(with: module) }
        verdict = verdict.merged(with: qeStatus)
        guard verdict.status != "Revoked" else { throw .tcbRevoked }

        // 13. The TD's attributes and MRSERVICETD.
        try checkAttributes(body)
        return TDXVerifiedReport(
            status: verdict.status, advisoryIDs: verdict.advisoryIDs, td: body, fmspc: pckExtension.fmspc,
            rootCA: root.name)
    }

    // MARK: Certificates and CRLs

    /// A collateral issuer chain's leaf, once the chain verified. The signer must be issued by the root itself,
    /// be an end entity (`verifyChain`: never the root or another CA, as webpki refuses a CA as end entity) and
    /// must not be a PCK certificate: the TCB signing certificate, not any certificate under the root.
    private static func collateralSigner(
        _ pem: String, root: TDXTrustRoot, crls: [CertificateRevocationList], now: Int64
    ) throws(TDXVerificationError) -> P256.Signing.PublicKey {
        let chain = try certificates(pem: Array(pem.utf8), root: root)
        guard chain.count == 1, let signer = chain.first else {
            throw .certificateChainInvalid("a collateral signer must be issued by the root directly")
        }
        guard signer.extensions.first(where: { $0.oid == PCKExtension.oid }) == nil else {
            throw .certificateChainInvalid("a PCK certificate cannot sign collateral")
        }
        try verifyChain(chain, root: root, crls: crls, now: now)
        guard let key = P256.Signing.PublicKey(signer.publicKey) else {
            throw .certificateChainInvalid("the collateral signer's key is not P-256")
        }
        return key
    }

    /// The path from the first PEM certificate (the leaf) to the trust root, built as webpki (and so dcap-qvl)
    /// builds it: each next certificate is one of the others whose subject is the current one's issuer, until the
    /// root issues one. Every complete PEM block must decode (dcap-qvl refuses a PEM text it cannot parse, even a
    /// block no path uses); a block whose DER is not a certificate is ignored unless the path needs it (a quote's
    /// chain ends with a copy of the root that nothing relies on).
    static func certificates(pem: [UInt8], root: TDXTrustRoot) throws(TDXVerificationError) -> [Certificate] {
        let text = String(decoding: pem.prefix { $0 != 0 }, as: UTF8.self)
        let begin = "-----BEGIN CERTIFICATE-----"
        let end = "-----END CERTIFICATE-----"
        var ders: [[UInt8]] = []
        var rest = text[...]
        while let start = rest.range(of: begin) {
            // A block with no end marker is not a PEM block (the pem crate does not match it either).
            guard let stop = rest.range(of: end, range: start.upperBound..<rest.endIndex) else { break }
            guard let document = try? PEMDocument(pemString: String(rest[start.lowerBound..<stop.upperBound])),
                document.discriminator == "CERTIFICATE"
            else { throw .certificateChainInvalid("a PEM block does not decode") }
            ders.append(Array(document.derBytes))
            rest = rest[stop.upperBound...]
        }
        guard let first = ders.first, let leaf = try? Certificate(derEncoded: first) else {
            throw .certificateChainInvalid("the first PEM block is not a certificate")
        }
        let others = ders.dropFirst().compactMap { der -> Certificate? in
            der == root.der ? nil : try? Certificate(derEncoded: der)
        }
        var path = [leaf]
        while let current = path.last, current.issuer != root.certificate.subject {
            guard path.count <= others.count,
                let next = others.first(where: { $0.subject == current.issuer && !path.contains($0) })
            else { throw .certificateChainInvalid("no issuer for \(current.subject)") }
            path.append(next)
        }
        return path
    }

    /// Each certificate issued by the next (the last by the root), each within its validity, the leaf an end
    /// entity and intermediates CAs,
    /// and each covered by an authoritative, current CRL that does not list it.
    static func verifyChain(
        _ chain: [Certificate], root: TDXTrustRoot, crls: [CertificateRevocationList], now: Int64
    ) throws(TDXVerificationError) {
        for (index, certificate) in chain.enumerated() {
            let issuer = index + 1 < chain.count ? chain[index + 1] : root.certificate
            let name = "\(certificate.subject)"
            guard certificate.issuer == issuer.subject,
                issuer.publicKey.isValidSignature(certificate.signature, for: certificate)
            else { throw .certificateChainInvalid("\(name) is not signed by the next certificate") }
            try checkValidity(certificate, now: now, what: name)
            if index > 0 {
                guard isCA(certificate) else { throw .certificateChainInvalid("\(name) is not a CA") }
            } else {
                // The signer (PCK leaf, TCB signing certificate) is an end entity: a CA key signs certificates
                // and CRLs, never quotes' QE reports or collateral (webpki: CaUsedAsEndEntity).
                guard !isCA(certificate) else {
                    throw .certificateChainInvalid("\(name) is a CA, not an end-entity certificate")
                }
            }
            guard let crl = crls.first(where: { $0.issuer == certificate.issuer && $0.isSigned(by: issuer) }) else {
                throw .crlMissing(name)
            }
            try checkCRLTime(crl, now: now, what: "CRL of \(certificate.issuer)")
            guard !crl.revokedSerials.contains(serial(certificate)) else { throw .certificateRevoked(name) }
        }
    }

    private static func isCA(_ certificate: Certificate) -> Bool {
        if case .isCertificateAuthority? = try? certificate.extensions.basicConstraints { return true }
        return false
    }

    private static func checkValidity(_ certificate: Certificate, now: Int64, what: String)
        throws(TDXVerificationError)
    {
        let time = Date(timeIntervalSince1970: TimeInterval(now))
        guard certificate.notValidBefore <= time, time <= certificate.notValidAfter else {
            throw .certificateNotValidAtTime(what)
        }
    }

    /// A CRL is current from its thisUpdate until (not including) its nextUpdate.
    private static func checkCRLTime(_ crl: CertificateRevocationList, now: Int64, what: String)
        throws(TDXVerificationError)
    {
        guard crl.thisUpdate <= now, let next = crl.nextUpdate, now < next else { throw .crlNotValidAtTime(what) }
    }

    private static func serial(_ certificate: Certificate) -> [UInt8] {
        Array(certificate.serialNumber.bytes.drop(while: { $0 == 0 }))
    }

    /// An ECDSA P-256 signature given as raw r ‖ s over `data`.
    private static func verifyRaw(_ signature: [UInt8], of data: [UInt8], by key: P256.Signing.PublicKey) -> Bool {
        guard let signature = try? P256.Signing.ECDSASignature(rawRepresentation: signature) else { return false }
        return key.isValidSignature(signature, for: data)
    }

    // MARK: QE, TCB levels, TDX module, attributes

    /// The QE report (an SGX enclave report) against the QE identity; returns the QE's TCB status.
    private static func checkQE(_ report: [UInt8], identity: QEIdentity) throws(TDXVerificationError) -> TCBVerdict {
        func hex(_ text: String, _ count: Int) throws(TDXVerificationError) -> [UInt8] {
            guard let bytes = TDXHex.decode(text), bytes.count == count else {
                throw .qeIdentityInvalid("a field is not \(count) bytes of hex")
            }
            return bytes
        }
        let miscselect = Array(report[16..<20])
        let attributes = Array(report[48..<64])
        let mrsigner = Array(report[128..<160])
        let isvprodid = Int(report[256]) | Int(report[257]) << 8
        let isvsvn = Int(report[258]) | Int(report[259]) << 8
        guard mrsigner == (try hex(identity.mrsigner, 32)) else { throw .qeIdentityMismatch("MRSIGNER") }
        guard attributes[0] & 0x02 == 0 else { throw .qeIdentityMismatch("the QE is in debug mode") }
        guard isvprodid == Int(identity.isvprodid) else { throw .qeIdentityMismatch("ISVPRODID") }
        // MISCSELECT is a little-endian u32 in the report and big-endian hex in the identity.
        let identityMisc = try hex(identity.miscselect, 4)
        let miscMask = try hex(identity.miscselectMask, 4)
        for index in 0..<4 {
            let mine: UInt8 = miscselect[3 - index] & miscMask[index]
            guard mine == identityMisc[index] & miscMask[index] else { throw .qeIdentityMismatch("MISCSELECT") }
        }
        let identityAttributes = try hex(identity.attributes, 16)
        let attributesMask = try hex(identity.attributesMask, 16)
        for index in 0..<16 {
            let mine: UInt8 = attributes[index] & attributesMask[index]
            guard mine == identityAttributes[index] & attributesMask[index] else {
                throw .qeIdentityMismatch("ATTRIBUTES")
            }
        }
        guard let level = identity.tcbLevels.first(where: { Int($0.tcb.isvsvn) <= isvsvn }) else {
            throw .qeTCBBelowMinimum
        }
        // The statuses dcap-qvl 0.7.0 takes from a matched QE level; the platform-only ones (SW hardening,
        // relaunch) are refused there ("Unrecognized TCB status … in QE Identity").
        switch level.tcbStatus {
        case .upToDate, .configurationNeeded, .outOfDate, .outOfDateConfigurationNeeded, .revoked: break
        default: throw .qeIdentityInvalid("TCB status \(level.tcbStatus.rawValue) in a QE identity")
        }
        return TCBVerdict(status: level.tcbStatus.rawValue, advisoryIDs: level.advisoryIDs)
    }

    /// The levels highest first: by the SGX components, then the PCE SVN, then the TDX components, each list
    /// compared lexicographically (a shorter prefix lower), as dcap-qvl's stable sort orders them, whatever order
    /// the JSON has. Component counts are checked only on the levels matching reaches (`platformLevel`).
    private static func sortedLevels(_ levels: [TCBInfo.Level]) -> [TCBInfo.Level] {
        func precedes(_ a: TCBInfo.Level, _ b: TCBInfo.Level) -> Bool? {
            let (sa, sb) = (a.tcb.sgxtcbcomponents.map(\.svn), b.tcb.sgxtcbcomponents.map(\.svn))
            if sa != sb { return sb.lexicographicallyPrecedes(sa) }
            if a.tcb.pcesvn != b.tcb.pcesvn { return a.tcb.pcesvn > b.tcb.pcesvn }
            let (ta, tb) = (a.tcb.tdxtcbcomponents.map(\.svn), b.tcb.tdxtcbcomponents.map(\.svn))
            if ta != tb { return tb.lexicographicallyPrecedes(ta) }
            return nil
        }
        // Equal keys keep their JSON order (the index breaks the tie), as Rust's stable sort_by does.
        return levels.enumerated().sorted { x, y in precedes(x.element, y.element) ?? (x.offset < y.offset) }
            .map(\.element)
    }

    /// The first (sorted) level the platform meets, checked level by level in dcap-qvl's order: PCE SVN (skip),
    /// the SGX component count (error), the SGX components (skip), the TDX component count (error), the TDX
    /// components (skip). A level with a wrong count is an error only when the scan reaches it.
    private static func platformLevel(_ levels: [TCBInfo.Level], pck: PCKExtension, teeTCBSVN: [UInt8])
        throws(TDXVerificationError) -> TCBInfo.Level?
    {
        for level in levels {
            guard pck.pceSVN >= Int(level.tcb.pcesvn) else { continue }
            guard level.tcb.sgxtcbcomponents.count == 16 else {
                throw .tcbInfoInvalid("a TCB level does not have 16 SGX components")
            }
            guard (0..<16).allSatisfy({ pck.cpuSVN[$0] >= level.tcb.sgxtcbcomponents[$0].svn }) else { continue }
            guard level.tcb.tdxtcbcomponents.count == 16 else {
                throw .tcbInfoInvalid("a TCB level does not have 16 TDX components")
            }
            guard (0..<16).allSatisfy({ teeTCBSVN[$0] >= level.tcb.tdxtcbcomponents[$0].svn }) else { continue }
            return level
        }
        return nil
    }

    /// A matched platform level's status: the relaunch statuses are results of matching, never a TCB info's
    /// (dcap-qvl 0.7.0: "Unrecognized TCB status … in TCB Info").
    private static func platformStatus(_ level: TCBInfo.Level) throws(TDXVerificationError) -> String {
        switch level.tcbStatus {
        case .tdRelaunchAdvised, .tdRelaunchAdvisedConfigurationNeeded:
            throw .tcbInfoInvalid("TCB status \(level.tcbStatus.rawValue) in a TCB info")
        default:
            return level.tcbStatus.rawValue
        }
    }

    /// The TDX module's signer and attributes, and (for module versions above 0) its own TCB level.
    private static func checkModule(_ tcbInfo: TCBInfo, body: TDReport) throws(TDXVerificationError) -> TCBVerdict? {
        guard let base = tcbInfo.tdxModule else { throw .tcbInfoInvalid("no tdxModule") }
        let version = body.teeTCBSVN[1]
        // A module version above 0 needs its own identity, even when the list is missing or empty (dcap-qvl 0.7.0:
        // "No TDX module identity with id TDX_03 found"); only version 0 is checked against `tdxModule` alone.
        let identity: TCBInfo.ModuleIdentity?
        if version > 0 {
            let id = "TDX_" + TDXHex.encode([version]).uppercased()
            guard let found = tcbInfo.tdxModuleIdentities.first(where: { $0.id.uppercased() == id }) else {
                throw .tdxModuleMismatch("no identity \(id)")
            }
            identity = found
        } else {
            identity = nil
        }
        let mrsigner = identity?.mrsigner ?? base.mrsigner
        guard TDXHex.decode(mrsigner) == body.mrSignerSeam else { throw .tdxModuleMismatch("MRSIGNER_SEAM") }
        guard let attributes = TDXHex.decode(identity?.attributes ?? base.attributes), attributes.count == 8,
            let mask = TDXHex.decode(identity?.attributesMask ?? base.attributesMask), mask.count == 8
        else { throw .tcbInfoInvalid("TDX module attributes") }
        for index in 0..<8 {
            let seam: UInt8 = body.seamAttributes[index]
            guard seam & mask[index] == attributes[index] & mask[index], seam & ~mask[index] == 0 else {
                throw .tdxModuleMismatch("SEAM attributes")
            }
        }
        guard let identity else { return nil }
        guard let level = identity.tcbLevels.first(where: { $0.tcb.isvsvn <= body.teeTCBSVN[0] }) else {
            throw .tdxModuleBelowMinimum
        }
        // A matched module level is UpToDate, OutOfDate or Revoked; dcap-qvl 0.7.0 refuses any other status there
        // ("Unrecognized TCB status … in TDX module identity").
        switch level.tcbStatus {
        case .upToDate, .outOfDate, .revoked: break
        default: throw .tcbInfoInvalid("TCB status \(level.tcbStatus.rawValue) in a TDX module identity")
        }
        return TCBVerdict(status: level.tcbStatus.rawValue, advisoryIDs: level.advisoryIDs)
    }

    /// TD attributes a production TD may have (dcap-qvl 0.7.0): SEPT_VE_DISABLE (bit 28) set; only bits 16,
    /// 18–22, 27, 28, 30, 31, 62 and 63 set; so never DEBUG, profiling, SERVTD_EXT, MIGRATABLE or reserved bits.
    static let allowedTDAttributes: [UInt8] = [0x00, 0x00, 0x7d, 0xd8, 0x00, 0x00, 0x00, 0xc0]

    private static func checkAttributes(_ body: TDReport) throws(TDXVerificationError) {
        let attributes = body.tdAttributes
        guard attributes[0] & 0x01 == 0 else { throw .tdAttributesNotAllowed("DEBUG") }
        guard attributes[3] & 0x10 != 0 else { throw .tdAttributesNotAllowed("SEPT_VE_DISABLE is not set") }
        for index in 0..<8 where attributes[index] & ~allowedTDAttributes[index] != 0 {
            throw .tdAttributesNotAllowed("a bit outside the allowed set")
        }
        if let service = body.mrServiceTD, service.contains(where: { $0 != 0 }) { throw .mrServiceTDNotZero }
    }
}
