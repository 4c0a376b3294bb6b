/// Entry points the fuzz target (`Fuzz/tdx`) needs into internal parsers; not for other callers.
public enum TDXFuzzing {
    /// Parses DER as a CRL; true when it parsed.
    public static func parseCRL(_ der: [UInt8]) -> Bool {
        (try? CertificateRevocationList(derEncoded: der)) != nil
    }
}
