extension TDXCollateral {
    /// Collateral assembled from its parts (a collateral source fetched them; nothing is checked here).
    public init(
        pckCRLIssuerChain: String, rootCACRL: [UInt8], pckCRL: [UInt8], tcbInfoIssuerChain: String,
        tcbInfo: [UInt8], tcbInfoSignature: [UInt8], qeIdentityIssuerChain: String, qeIdentity: [UInt8],
        qeIdentitySignature: [UInt8]
    ) {
        self.pckCRLIssuerChain = pckCRLIssuerChain
        self.rootCACRL = rootCACRL
        self.pckCRL = pckCRL
        self.tcbInfoIssuerChain = tcbInfoIssuerChain
        self.tcbInfo = tcbInfo
        self.tcbInfoSignature = tcbInfoSignature
        self.qeIdentityIssuerChain = qeIdentityIssuerChain
        self.qeIdentity = qeIdentity
        self.qeIdentitySignature = qeIdentitySignature
    }
}
