import Foundation

/// What a quote is verified against (SPEC §6.2; dcap-qvl's QuoteCollateralV3): issuer chains as PEM, CRLs as
/// hex DER, the TCB info and QE identity as the exact JSON text their signatures (hex r ‖ s) cover.
public struct TDXCollateral: Sendable {
    public let pckCRLIssuerChain: String
    public let rootCACRL: [UInt8]
    public let pckCRL: [UInt8]
    public let tcbInfoIssuerChain: String
    public let tcbInfo: [UInt8]
    public let tcbInfoSignature: [UInt8]
    public let qeIdentityIssuerChain: String
    public let qeIdentity: [UInt8]
    public let qeIdentitySignature: [UInt8]

    /// Parses the collateral JSON object; every field is required.
    public init(json: [UInt8]) throws(TDXVerificationError) {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(json))) as? [String: Any] else {
            throw .malformedCollateral("not a JSON object")
        }
        func text(_ key: String) throws(TDXVerificationError) -> String {
            guard let value = object[key] as? String else { throw .malformedCollateral("\(key) missing") }
            return value
        }
        func hex(_ key: String) throws(TDXVerificationError) -> [UInt8] {
            guard let bytes = TDXHex.decode(try text(key)) else { throw .malformedCollateral("\(key) is not hex") }
            return bytes
        }
        pckCRLIssuerChain = try text("pck_crl_issuer_chain")
        rootCACRL = try hex("root_ca_crl")
        pckCRL = try hex("pck_crl")
        tcbInfoIssuerChain = try text("tcb_info_issuer_chain")
        tcbInfo = Array(try text("tcb_info").utf8)
        tcbInfoSignature = try hex("tcb_info_signature")
        qeIdentityIssuerChain = try text("qe_identity_issuer_chain")
        qeIdentity = Array(try text("qe_identity").utf8)
        qeIdentitySignature = try hex("qe_identity_signature")
    }
}

/// Lowercase hex for verdicts; decoding accepts either case and an optional `0x`.
public enum TDXHex {
    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    public static func decode(_ text: String) -> [UInt8]? {
        var digits = Array(text.utf8)
        if digits.starts(with: Array("0x".utf8)) { digits.removeFirst(2) }
        guard digits.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(digits.count / 2)
        var index = 0
        while index < digits.count {
            guard let high = value(digits[index]), let low = value(digits[index + 1]) else { return nil }
            out.append(high << 4 | low)
            index += 2
        }
        return out
    }

    private static func value(_ digit: UInt8) -> UInt8? {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): digit - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
