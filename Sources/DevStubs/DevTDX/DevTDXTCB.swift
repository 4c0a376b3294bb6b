/// The dev platform's TCB: the SVNs its PCK certificate states, the TD's TEE_TCB_SVN and the QE's identity.
/// The collateral's single TCB level is exactly these values, so the platform is `UpToDate` (the values are
/// `make_synthetic.py`'s default platform, which dcap-qvl accepts).
enum DevTDXTCB {
    /// The 16 SGX TCB components (CPUSVN) of the PCK certificate.
    static let cpuSVN: [UInt8] = [3, 3, 2, 2, 4, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0]
    /// The PCE SVN of the PCK certificate.
    static let pceSVN = 11
    /// The PCE id of the PCK certificate and the TCB info.
    static let pceID: [UInt8] = [0, 0]
    /// The FMSPC of the PCK certificate and the TCB info.
    static let fmspc: [UInt8] = [0xB0, 0xC0, 0x6F, 0x00, 0x00, 0x00]
    /// The TD report's TEE_TCB_SVN: [0] TDX module ISVSVN, [1] module version (so identity `TDX_03`).
    static let teeTCBSVN: [UInt8] = [5, 3, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    /// The TCB level's TDX components: met by `teeTCBSVN`.
    static let tdxComponents: [Int] = [2, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    /// The TDX module's signer (MRSIGNER_SEAM) in the report and in the TCB info: zero, as Intel's module is.
    static let moduleMRSigner = [UInt8](repeating: 0, count: 48)

    /// The QE's MRSIGNER (Intel's, as in real TD_QE identities).
    static let qeMRSigner: [UInt8] = [
        0xDC, 0x9E, 0x2A, 0x7C, 0x6F, 0x94, 0x8F, 0x17, 0x47, 0x4E, 0x34, 0xA7, 0xFC, 0x43, 0xED, 0x03,
        0x0F, 0x7C, 0x15, 0x63, 0xF1, 0xBA, 0xBD, 0xDF, 0x63, 0x40, 0xC8, 0x2E, 0x0E, 0x54, 0xA8, 0xC5,
    ]
    /// The QE's ISVPRODID (2 for the TD QE).
    static let qeISVProdID: UInt16 = 2
    /// The QE's ISVSVN, the QE identity's UpToDate level.
    static let qeISVSVN: UInt16 = 4
    /// The QE's ATTRIBUTES: INIT and MODE64BIT, DEBUG clear.
    static let qeAttributes: [UInt8] = [0x11] + [UInt8](repeating: 0, count: 15)
}
