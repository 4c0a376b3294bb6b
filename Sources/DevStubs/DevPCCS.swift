import Foundation
import HTTPTypes
import Hummingbird
import JSON
import NIOCore
import Synchronization
import X509

/// DEVELOPMENT ONLY: a PCCS stand-in serving one collateral object (SPEC §6.2's QuoteCollateralV3 JSON, e.g. a
/// `DevTDXPlatform`'s) in the PCCS v4 wire format that `PCCSCollateralSource` and dcap-qvl's `get_collateral`
/// read, as `interop/pccs_standin.py` does in Python:
///
///     GET /sgx/certification/v4/pckcrl?ca=processor|platform&encoding=der  DER body, SGX-PCK-CRL-Issuer-Chain
///     GET /tdx/certification/v4/tcb?fmspc=<FMSPC, upper case hex>          {"tcbInfo": …, "signature": hex},
///                                                                           TCB-Info-Issuer-Chain
///     GET /tdx/certification/v4/qe/identity                                {"enclaveIdentity": …, "signature": hex},
///                                                                           SGX-Enclave-Identity-Issuer-Chain
///     GET /sgx/certification/v4/rootcacrl                                  hex of the DER
///
/// `update=standard` in a query is accepted and ignored (it is the PCCS default). Issuer chains are URL-encoded
/// PEM; the signed JSON bodies are assembled around the collateral's `tcb_info` / `qe_identity` text verbatim, so
/// the inner object is byte for byte what was signed. Only the collateral's own CA and FMSPC are served; any other
/// query gets 404. Serve it over plain HTTP on loopback only: that is all a PCCS client accepts besides HTTPS.
public final class DevPCCS: Sendable {
    private struct Item: Sendable {
        let headers: HTTPFields
        let body: [UInt8]
    }

    private let pckCRL: Item
    private let tcbInfo: Item
    private let qeIdentity: Item
    private let rootCACRL: Item
    /// The PCK CRL's `ca=` value: `platform` when its issuer is a Platform CA (as dcap-qvl decides it).
    private let ca: String
    /// The TCB info's FMSPC, upper case hex as PCCS clients send it.
    private let fmspc: String
    private let recorded = Mutex<[String]>([])

    /// Why a collateral object cannot be served.
    public struct CollateralUnusable: Error, CustomStringConvertible {
        public let description: String
    }

    /// Serves `collateralJSON`, the QuoteCollateralV3 JSON object (as `DevTDXCollateral.json` holds it).
    public init(collateralJSON: [UInt8]) throws {
        let collateral = try JSONValue(parsing: collateralJSON)
        func text(_ key: String) throws -> String {
            guard let value = collateral[key]?.stringValue else {
                throw CollateralUnusable(description: "the collateral has no string \(key)")
            }
            return value
        }
        func der(_ key: String) throws -> [UInt8] {
            guard let bytes = Self.hexDecode(try text(key)) else {
                throw CollateralUnusable(description: "\(key) is not hex")
            }
            return bytes
        }
        let tcbInfoText = try text("tcb_info")
        guard let fmspc = (try? JSONValue(parsing: Array(tcbInfoText.utf8)))?["fmspc"]?.stringValue else {
            throw CollateralUnusable(description: "the TCB info has no fmspc")
        }
        self.fmspc = fmspc.uppercased()
        // The PCK CRL issuer chain starts with the CA that issued the CRL, the same CA that issued the PCK leaf.
        let crlIssuer = try Certificate(pemEncoded: Self.firstPEMBlock(try text("pck_crl_issuer_chain")))
        let platform = crlIssuer.subject.contains { rdn in
            rdn.contains { $0.type == .RDNAttributeType.commonName && "\($0.value)".contains("Platform") }
        }
        ca = platform ? "platform" : "processor"

        let json: HTTPFields = [.contentType: "application/json"]
        pckCRL = Item(
            headers: [
                .contentType: "application/pkix-crl",
                HTTPField.Name("SGX-PCK-CRL-Issuer-Chain")!: Self.urlEncoded(try text("pck_crl_issuer_chain")),
            ],
            body: try der("pck_crl"))
        var tcbHeaders = json
        tcbHeaders[HTTPField.Name("TCB-Info-Issuer-Chain")!] = Self.urlEncoded(try text("tcb_info_issuer_chain"))
        tcbInfo = Item(
            headers: tcbHeaders,
            body: Array(#"{"tcbInfo":\#(tcbInfoText),"signature":"\#(try text("tcb_info_signature"))"}"#.utf8))
        var qeHeaders = json
        qeHeaders[HTTPField.Name("SGX-Enclave-Identity-Issuer-Chain")!] = Self.urlEncoded(
            try text("qe_identity_issuer_chain"))
        qeIdentity = Item(
            headers: qeHeaders,
            body: Array(
                #"{"enclaveIdentity":\#(try text("qe_identity")),"signature":"\#(try text("qe_identity_signature"))"}"#
                    .utf8))
        _ = try der("root_ca_crl")  // checked here, served as the hex text it is (as a PCCS serves it)
        rootCACRL = Item(headers: [.contentType: "text/plain"], body: Array(try text("root_ca_crl").utf8))
    }

    /// Every request received, oldest first, as its path and query (`/tdx/certification/v4/tcb?fmspc=…`).
    public var requests: [String] { recorded.withLock { $0 } }

    /// The four PCCS routes; anything else is 404.
    public func router() -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.get("/sgx/certification/v4/pckcrl") { request, _ in
            self.serve(request, self.pckCRL, query: ["ca": self.ca, "encoding": "der"])
        }
        router.get("/tdx/certification/v4/tcb") { request, _ in
            self.serve(request, self.tcbInfo, query: ["fmspc": self.fmspc])
        }
        router.get("/tdx/certification/v4/qe/identity") { request, _ in self.serve(request, self.qeIdentity, query: [:])
        }
        router.get("/sgx/certification/v4/rootcacrl") { request, _ in self.serve(request, self.rootCACRL, query: [:]) }
        return router
    }

    /// `item` when the query is exactly `query` (each parameter once) once `update=standard` is set aside.
    private func serve(_ request: Request, _ item: Item, query: [String: String]) -> Response {
        recorded.withLock { $0.append(request.uri.path + (request.uri.query.map { "?" + $0 } ?? "")) }
        let given = request.uri.queryParameters.filter { !($0.key == "update" && $0.value == "standard") }
        let asked = Dictionary(given.map { (String($0.key), String($0.value)) }, uniquingKeysWith: { _, _ in "" })
        guard given.count == asked.count, asked == query else {
            return Response(
                status: .notFound, headers: [.contentType: "text/plain"],
                body: .init(byteBuffer: ByteBuffer(string: "not found\n")))
        }
        return Response(status: .ok, headers: item.headers, body: .init(byteBuffer: ByteBuffer(bytes: item.body)))
    }

    /// PEM URL-encoded as PCCS issuer-chain headers carry it: everything but unreserved characters escaped.
    private static func urlEncoded(_ text: String) -> String {
        var allowed = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        allowed.insert(charactersIn: "-_.~")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }

    /// The first `CERTIFICATE` block of a PEM chain.
    private static func firstPEMBlock(_ chain: String) throws -> String {
        let end = "-----END CERTIFICATE-----"
        guard let stop = chain.range(of: end) else {
            throw CollateralUnusable(description: "the PCK CRL issuer chain holds no certificate")
        }
        return String(chain[..<stop.upperBound])
    }

    private static func hexDecode(_ text: String) -> [UInt8]? {
        let digits = Array(text.utf8)
        guard digits.count % 2 == 0 else { return nil }
        func value(_ digit: UInt8) -> UInt8? {
            switch digit {
            case 0x30...0x39: digit - 0x30
            case 0x41...0x46: digit - 0x41 + 10
            case 0x61...0x66: digit - 0x61 + 10
            default: nil
            }
        }
        var bytes = [UInt8]()
        bytes.reserveCapacity(digits.count / 2)
        for index in stride(from: 0, to: digits.count, by: 2) {
            guard let high = value(digits[index]), let low = value(digits[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
        }
        return bytes
    }
}
