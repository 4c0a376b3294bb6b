import Crypto
import Foundation
import JSON

/// The collateral for dev quotes, in the SPEC §6.2 / dcap-qvl QuoteCollateralV3 shape: the dev PKI's chains and
/// CRLs, and a TCB info (`TDX`, version 3) and QE identity (`TD_QE`, version 2) signed by the dev TCB signing key
/// over their exact bytes. Both say `UpToDate` for the values of `DevTDXTCB`.
public struct DevTDXCollateral: Sendable {
    /// The TCB info JSON text, the exact bytes its signature covers.
    public let tcbInfo: String
    /// The QE identity JSON text, the exact bytes its signature covers.
    public let qeIdentity: String
    /// The collateral object, serialised (what `--dev-pki-dir` writes as `collateral.json`).
    public let json: [UInt8]

    init(pki: DevTDXPKI, issueDate: Date, nextUpdate: Date) throws {
        let issued = JSONValue.string(DevTDXDER.rfc3339(issueDate))
        let next = JSONValue.string(DevTDXDER.rfc3339(nextUpdate))
        func hex(_ bytes: [UInt8]) -> JSONValue { .string(DevTDXHex.encode(bytes).uppercased()) }
        func components(_ svns: [Int]) -> JSONValue { .array(svns.map { ["svn": .integer($0)] }) }
        let zeros8 = "0000000000000000"
        let tcbInfo: JSONValue = [
            "id": "TDX", "version": 3, "issueDate": issued, "nextUpdate": next,
            "fmspc": hex(DevTDXTCB.fmspc), "pceId": hex(DevTDXTCB.pceID), "tcbType": 0,
            "tcbEvaluationDataNumber": 17,
            "tdxModule": [
                "mrsigner": hex(DevTDXTCB.moduleMRSigner), "attributes": .string(zeros8),
                "attributesMask": "FFFFFFFFFFFFFFFF",
            ],
            "tdxModuleIdentities": [
                [
                    "id": "TDX_03", "mrsigner": hex(DevTDXTCB.moduleMRSigner), "attributes": .string(zeros8),
                    "attributesMask": "FFFFFFFFFFFFFFFF",
                    "tcbLevels": [
                        [
                            "tcb": ["isvsvn": .integer(Int(DevTDXTCB.teeTCBSVN[0]))],
                            "tcbDate": "2025-01-01T00:00:00Z", "tcbStatus": "UpToDate",
                        ]
                    ],
                ]
            ],
            "tcbLevels": [
                [
                    "tcb": [
                        "sgxtcbcomponents": components(DevTDXTCB.cpuSVN.map(Int.init)),
                        "pcesvn": .integer(DevTDXTCB.pceSVN),
                        "tdxtcbcomponents": components(DevTDXTCB.tdxComponents),
                    ],
                    "tcbDate": "2025-01-01T00:00:00Z", "tcbStatus": "UpToDate",
                ]
            ],
        ]
        let qeIdentity: JSONValue = [
            "id": "TD_QE", "version": 2, "issueDate": issued, "nextUpdate": next, "tcbEvaluationDataNumber": 17,
            "miscselect": "00000000", "miscselectMask": "FFFFFFFF",
            "attributes": hex(DevTDXTCB.qeAttributes), "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
            "mrsigner": hex(DevTDXTCB.qeMRSigner), "isvprodid": .integer(Int(DevTDXTCB.qeISVProdID)),
            "tcbLevels": [
                [
                    "tcb": ["isvsvn": .integer(Int(DevTDXTCB.qeISVSVN))], "tcbDate": "2025-01-01T00:00:00Z",
                    "tcbStatus": "UpToDate",
                ]
            ],
        ]
        // Signed over the exact serialised bytes, which are then served unchanged (as a PCCS does).
        let tcbInfoBytes = tcbInfo.serialized()
        let qeIdentityBytes = qeIdentity.serialized()
        func signature(_ bytes: [UInt8]) throws -> JSONValue {
            .string(DevTDXHex.encode(Array(try pki.tcbSigningKey.signature(for: bytes).rawRepresentation)))
        }
        self.tcbInfo = String(decoding: tcbInfoBytes, as: UTF8.self)
        self.qeIdentity = String(decoding: qeIdentityBytes, as: UTF8.self)
        let collateral: JSONValue = [
            "pck_crl_issuer_chain": .string(pki.pckCAChainPEM),
            "root_ca_crl": .string(DevTDXHex.encode(pki.rootCRL)),
            "pck_crl": .string(DevTDXHex.encode(pki.pckCRL)),
            "tcb_info_issuer_chain": .string(pki.tcbSigningChainPEM),
            "tcb_info": .string(self.tcbInfo),
            "tcb_info_signature": try signature(tcbInfoBytes),
            "qe_identity_issuer_chain": .string(pki.tcbSigningChainPEM),
            "qe_identity": .string(self.qeIdentity),
            "qe_identity_signature": try signature(qeIdentityBytes),
        ]
        json = collateral.serialized()
    }
}

/// Lowercase hex, for the dev agent's answers and files.
enum DevTDXHex {
    static func encode(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
