import Foundation

/// Entry points the fuzz targets (`Fuzz/tdx`, `Fuzz/tdx-parse`) need into internal parsers; not for other callers.
public enum TDXFuzzing {
    /// Parses DER as a CRL; true when it parsed.
    public static func parseCRL(_ der: [UInt8]) -> Bool {
        (try? CertificateRevocationList(derEncoded: der)) != nil
    }

    /// Every parser a quote meets before any signature is checked: the quote's layout, then its PCK chain and the
    /// leaf's SGX extensions. True when all of them accepted it.
    public static func parseQuote(_ bytes: [UInt8]) -> Bool {
        guard let quote = try? TDXQuote(parsing: bytes) else { return false }
        return (try? TDXPCKFacts.pckFacts(of: quote)) != nil
    }

    /// Every parser collateral meets: the JSON object, the signed TCB info and QE identity (strict scan, then
    /// decoding), both CRLs.
    public static func parseCollateral(_ json: [UInt8]) -> Bool {
        guard let collateral = try? TDXCollateral(json: json) else { return false }
        let tcbInfo = try? TCBInfo(signed: collateral.tcbInfo)
        let qeIdentity = try? QEIdentity(signed: collateral.qeIdentity)
        return tcbInfo != nil && qeIdentity != nil && parseCRL(collateral.rootCACRL) && parseCRL(collateral.pckCRL)
    }

    /// The NVIDIA payload's parsers: the JSON, each chain's PEM, each SPDM report.
    public static func parseGPUPayload(_ text: String) -> Bool {
        guard let payload = try? NvidiaPayload(json: text) else { return false }
        var parsed = true
        for (index, item) in payload.evidenceList.enumerated() {
            let chain = Data(base64Encoded: item.certificate).flatMap {
                try? NvidiaCertificateChain(pem: Array($0), gpu: index)
            }
            let report = Data(base64Encoded: item.evidence).flatMap { try? SPDMAttestationReport(parsing: Array($0)) }
            parsed = parsed && chain != nil && report != nil
        }
        return parsed
    }
}
