import AsyncHTTPClient
import Foundation
import NIOCore
import TDXVerifier

/// Why collateral could not be had. `reason` is the stable verdict string: `collateral_unavailable` for any
/// fetch failure (network, HTTP status, a missing header, an unreadable body, a disallowed `PCCS_URL`), or the
/// quote's own reason when its PCK certificate cannot be read.
public enum TDXCollateralError: Error, Sendable, Equatable {
    case unavailable(String)
    case quote(TDXVerificationError)

    public var reason: String {
        switch self {
        case .unavailable: "collateral_unavailable"
        case .quote(let error): error.reason
        }
    }
}

/// One HTTP response as the collateral source needs it; header names lowercased.
public struct PCCSResponse: Sendable {
    public let status: Int
    public let headers: [String: String]
    public let body: [UInt8]

    public init(status: Int, headers: [String: String], body: [UInt8]) {
        self.status = status
        self.headers = Dictionary(headers.map { ($0.key.lowercased(), $0.value) }, uniquingKeysWith: { a, _ in a })
        self.body = body
    }
}

/// Collateral for TDX quotes from a PCCS (SPEC §6.2), fetched with the PCCS/PCS v4 API as dcap-qvl 0.7.0's
/// `get_collateral` does (the same four requests in the same order, `update=standard` included), and cached
/// until each item's `nextUpdate`: the PCK CRL per CA, the TCB info per FMSPC, the QE identity and the root CA
/// CRL. The PCK chain always comes from the quote itself, never from the cache.
public actor PCCSCollateralSource {
    public typealias Fetch = @Sendable (String) async throws -> PCCSResponse

    /// Bodies larger than this are refused (a PCK CRL is tens of kilobytes).
    public static let maxBodyBytes = 4 << 20

    private let baseURL: String
    private let clock: @Sendable () -> Int64
    private let fetch: Fetch

    private struct Cached<Value> {
        let value: Value
        let nextUpdate: Int64
    }
    struct Signed: Sendable {
        let issuerChain: String
        let body: [UInt8]
        let signature: [UInt8]
    }
    private var rootCACRL: Cached<[UInt8]>?
    private var pckCRLs: [String: Cached<(issuerChain: String, crl: [UInt8])>] = [:]
    private var tcbInfos: [String: Cached<Signed>] = [:]
    private var qeIdentity: Cached<Signed>?

    /// `baseURL` as dcap-qvl takes it (a trailing `/sgx|tdx/certification/v4` is dropped); `clock` is Unix seconds.
    public init(baseURL: String, httpClient: HTTPClient, clock: @escaping @Sendable () -> Int64) {
        self.init(baseURL: baseURL, clock: clock) { url in
            var request = HTTPClientRequest(url: url)
            request.method = .GET
            let response = try await httpClient.execute(request, timeout: .seconds(30))
            let body = try await response.body.collect(upTo: Self.maxBodyBytes)
            var headers: [String: String] = [:]
            for (name, value) in response.headers where headers[name.lowercased()] == nil {
                headers[name.lowercased()] = value
            }
            return PCCSResponse(status: Int(response.status.code), headers: headers, body: Array(buffer: body))
        }
    }

    /// With an injected transport (tests count its calls).
    public init(baseURL: String, clock: @escaping @Sendable () -> Int64, fetch: @escaping Fetch) {
        var base = baseURL
        while base.hasSuffix("/") { base.removeLast() }
        for suffix in ["/sgx/certification/v4", "/tdx/certification/v4"] where base.hasSuffix(suffix) {
            base.removeLast(suffix.count)
        }
        self.baseURL = base
        self.clock = clock
        self.fetch = fetch
    }

    /// `https://` anywhere; `http://` only to a loopback host (tests).
    public static func isAllowed(baseURL: String) -> Bool {
        guard let components = URLComponents(string: baseURL), let scheme = components.scheme?.lowercased(),
            let host = components.host?.lowercased(), !host.isEmpty
        else { return false }
        if scheme == "https" { return true }
        guard scheme == "http" else { return false }
        let bare = host.trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        if bare == "localhost" || bare == "::1" { return true }
        let octets = bare.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets[0] == "127" && octets.allSatisfy { UInt8($0) != nil }
    }

    public func collateral(for quote: TDXQuote) async throws(TDXCollateralError) -> TDXCollateral {
        guard Self.isAllowed(baseURL: baseURL) else {
            throw .unavailable("PCCS_URL must be https (http only on loopback)")
        }
        let facts: (fmspc: [UInt8], platformCA: Bool)
        do {
            facts = try TDXPCKFacts.pckFacts(of: quote)
        } catch {
            throw .quote(error)
        }
        let ca = facts.platformCA ? "platform" : "processor"
        let fmspc = TDXHex.encode(facts.fmspc).uppercased()

        let pck = try await pckCRL(ca: ca)
        let tcb = try await tcbInfo(fmspc: fmspc)
        let qe = try await enclaveIdentity()
        let root = try await rootCRL()
        return TDXCollateral(
            pckCRLIssuerChain: pck.issuerChain, rootCACRL: root, pckCRL: pck.crl,
            tcbInfoIssuerChain: tcb.issuerChain, tcbInfo: tcb.body, tcbInfoSignature: tcb.signature,
            qeIdentityIssuerChain: qe.issuerChain, qeIdentity: qe.body, qeIdentitySignature: qe.signature)
    }

    // MARK: The four items

    private func pckCRL(ca: String) async throws(TDXCollateralError) -> (issuerChain: String, crl: [UInt8]) {
        let now = clock()
        if let cached = pckCRLs[ca], now < cached.nextUpdate { return cached.value }
        let response = try await get("/sgx/certification/v4/pckcrl?ca=\(ca)&encoding=der")
        let chain = try header(response, "SGX-PCK-CRL-Issuer-Chain")
        let value = (issuerChain: chain, crl: response.body)
        if let next = TDXCollateralDates.crlNextUpdate(der: response.body) {
            pckCRLs[ca] = Cached(value: value, nextUpdate: next)
        }
        return value
    }

    private func tcbInfo(fmspc: String) async throws(TDXCollateralError) -> Signed {
        let now = clock()
        if let cached = tcbInfos[fmspc], now < cached.nextUpdate { return cached.value }
        let response = try await get("/tdx/certification/v4/tcb?fmspc=\(fmspc)&update=standard")
        let chain: String
        if response.headers["sgx-tcb-info-issuer-chain"] != nil {
            chain = try header(response, "SGX-TCB-Info-Issuer-Chain")
        } else {
            chain = try header(response, "TCB-Info-Issuer-Chain")
        }
        let signed = try Self.signed(response.body, key: "tcbInfo", chain: chain, what: "TCB info")
        if let next = TDXCollateralDates.nextUpdate(ofJSON: signed.body) {
            tcbInfos[fmspc] = Cached(value: signed, nextUpdate: next)
        }
        return signed
    }

    private func enclaveIdentity() async throws(TDXCollateralError) -> Signed {
        let now = clock()
        if let cached = qeIdentity, now < cached.nextUpdate { return cached.value }
        let response = try await get("/tdx/certification/v4/qe/identity?update=standard")
        let chain = try header(response, "SGX-Enclave-Identity-Issuer-Chain")
        let signed = try Self.signed(response.body, key: "enclaveIdentity", chain: chain, what: "QE identity")
        if let next = TDXCollateralDates.nextUpdate(ofJSON: signed.body) {
            qeIdentity = Cached(value: signed, nextUpdate: next)
        }
        return signed
    }

    private func rootCRL() async throws(TDXCollateralError) -> [UInt8] {
        let now = clock()
        if let cached = rootCACRL, now < cached.nextUpdate { return cached.value }
        let response = try await get("/sgx/certification/v4/rootcacrl")
        // A PCCS serves the root CA CRL as hex of the DER.
        let text = String(decoding: response.body, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let der = TDXHex.decode(text), !der.isEmpty else {
            throw .unavailable("the root CA CRL is not hex")
        }
        if let next = TDXCollateralDates.crlNextUpdate(der: der) {
            rootCACRL = Cached(value: der, nextUpdate: next)
        }
        return der
    }

    // MARK: HTTP

    private func get(_ path: String) async throws(TDXCollateralError) -> PCCSResponse {
        let url = baseURL + path
        let response: PCCSResponse
        do {
            response = try await fetch(url)
        } catch {
            throw .unavailable("\(url): \(error)")
        }
        guard (200..<300).contains(response.status) else {
            throw .unavailable("\(url): HTTP \(response.status)")
        }
        guard response.body.count <= Self.maxBodyBytes else { throw .unavailable("\(url): body too large") }
        return response
    }

    /// A header's value, URL-decoded (PCCS issuer chains are URL-encoded PEM).
    private func header(_ response: PCCSResponse, _ name: String) throws(TDXCollateralError) -> String {
        guard let raw = response.headers[name.lowercased()] else { throw .unavailable("no \(name) header") }
        guard let decoded = raw.removingPercentEncoding else { throw .unavailable("\(name) is not URL-encoded") }
        return decoded
    }

    // MARK: Signed JSON

    /// `{"<key>": {...}, "signature": "<hex>"}`: the inner object's exact bytes as served (its signature covers
    /// them) and the signature.
    static func signed(_ body: [UInt8], key: String, chain: String, what: String) throws(TDXCollateralError) -> Signed {
        guard let members = TopLevelMembers(body), let span = members.spans[key],
            body[span.lowerBound] == UInt8(ascii: "{"), let signatureSpan = members.spans["signature"],
            let signatureValue = try? JSONSerialization.jsonObject(
                with: Data(body[signatureSpan]), options: [.fragmentsAllowed]) as? String,
            let signature = TDXHex.decode(signatureValue)
        else { throw .unavailable("the \(what) response is not {\"\(key)\": {…}, \"signature\": hex}") }
        return Signed(issuerChain: chain, body: Array(body[span]), signature: signature)
    }
}

/// The byte spans of a JSON object's top-level member values, found without re-serialising anything. The body
/// must also be valid JSON as a whole (checked with JSONSerialization); a duplicate key fails.
struct TopLevelMembers {
    var spans: [String: Range<Int>] = [:]

    init?(_ bytes: [UInt8]) {
        guard (try? JSONSerialization.jsonObject(with: Data(bytes))) is [String: Any] else { return nil }
        var index = 0
        func skipSpace() {
            while index < bytes.count, [0x20, 0x09, 0x0a, 0x0d].contains(bytes[index]) { index += 1 }
        }
        /// Past a string starting at `index` (its opening quote); returns its raw span.
        func skipString() -> Range<Int>? {
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { return nil }
            let start = index
            index += 1
            while index < bytes.count {
                switch bytes[index] {
                case UInt8(ascii: "\\"): index += 2
                case UInt8(ascii: "\""):
                    index += 1
                    return start..<index
                default: index += 1
                }
            }
            return nil
        }
        /// Past one value (the document already parsed, so only nesting and strings matter).
        func skipValue() -> Bool {
            var depth = 0
            while index < bytes.count {
                let byte = bytes[index]
                switch byte {
                case UInt8(ascii: "\""):
                    guard skipString() != nil else { return false }
                    if depth == 0 { return true }
                case UInt8(ascii: "{"), UInt8(ascii: "["):
                    depth += 1
                    index += 1
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    if depth == 0 { return true }  // a scalar ended at its object's end
                    depth -= 1
                    index += 1
                    if depth == 0 { return true }
                case UInt8(ascii: ","), 0x20, 0x09, 0x0a, 0x0d:
                    if depth == 0 { return true }
                    index += 1
                default: index += 1
                }
            }
            return false
        }
        skipSpace()
        guard index < bytes.count, bytes[index] == UInt8(ascii: "{") else { return nil }
        index += 1
        skipSpace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "}") { return }
        while true {
            skipSpace()
            guard let keySpan = skipString(),
                let key = try? JSONSerialization.jsonObject(with: Data(bytes[keySpan]), options: [.fragmentsAllowed])
                    as? String
            else { return nil }
            skipSpace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { return nil }
            index += 1
            skipSpace()
            let start = index
            guard skipValue() else { return nil }
            guard spans[key] == nil else { return nil }
            spans[key] = start..<index
            skipSpace()
            guard index < bytes.count else { return nil }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
                continue
            }
            guard bytes[index] == UInt8(ascii: "}") else { return nil }
            return
        }
    }
}
