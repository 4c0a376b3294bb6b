import Foundation
import X509

/// A GPU's attestation certificate chain: PEM text, leaf first, each certificate issued by the next, ending in
/// the trust root itself (NVIDIA's collector puts its bundled root last) or in a certificate the root issued.
/// Signatures and validity are checked directly: NVIDIA device certificates carry critical extensions that
/// swift-certificates' policy verifier would refuse, and no policy beyond this is asked for (SPEC §6.2).
struct NvidiaCertificateChain {
    static let maxCertificates = 16
    private static let begin = Array("-----BEGIN CERTIFICATE-----".utf8)
    private static let end = Array("-----END CERTIFICATE-----".utf8)

    /// The certificates with their DER, leaf first, as sent.
    let certificates: [(certificate: Certificate, der: [UInt8])]

    /// Splits PEM text into certificates. Only whitespace (and NULs, which NVML pads with) may lie between
    /// blocks; each block's body is strict base64 once line breaks are removed. One pass over the text.
    init(pem: [UInt8], gpu: Int) throws(GPUEvidenceError) {
        var found: [(certificate: Certificate, der: [UInt8])] = []
        var index = 0
        while true {
            while index < pem.count, Self.isFiller(pem[index]) { index += 1 }
            guard index < pem.count else { break }
            guard Self.matches(Self.begin, in: pem, at: index) else {
                throw .malformedCertificateChain("GPU \(gpu): text outside the PEM blocks")
            }
            guard found.count < Self.maxCertificates else {
                throw .certificateChainTooLong("GPU \(gpu): more than \(Self.maxCertificates) certificates")
            }
            let bodyStart = index + Self.begin.count
            var bodyEnd = bodyStart
            while bodyEnd < pem.count, pem[bodyEnd] != UInt8(ascii: "-") { bodyEnd += 1 }
            guard Self.matches(Self.end, in: pem, at: bodyEnd) else {
                throw .malformedCertificateChain("GPU \(gpu): a PEM block has no END line")
            }
            let body = pem[bodyStart..<bodyEnd].filter { !Self.isSpace($0) }
            guard let der = Data(base64Encoded: Data(body)).map(Array.init),
                let certificate = try? Certificate(derEncoded: der)
            else {
                throw .malformedCertificateChain("GPU \(gpu): certificate \(found.count) is not a DER certificate")
            }
            found.append((certificate, der))
            index = bodyEnd + Self.end.count
        }
        guard !found.isEmpty else { throw .malformedCertificateChain("GPU \(gpu): no certificate") }
        certificates = found
    }

    var leaf: Certificate { certificates[0].certificate }

    /// Each certificate signed by the next (issuer name and signature), each above the leaf a CA, every one
    /// (the root's too) valid at `now`; the last is the root itself or is signed by it.
    func verify(root: NvidiaTrustRoot, now: Int64, gpu: Int) throws(GPUEvidenceError) {
        let time = Date(timeIntervalSince1970: TimeInterval(now))
        var chain = certificates.map(\.certificate)
        if certificates.last?.der == root.der {
            chain.removeLast()
            guard !chain.isEmpty else {
                throw .certificateChainInvalid("GPU \(gpu): the chain holds only the root")
            }
        }
        for (index, certificate) in chain.enumerated() {
            let name = "GPU \(gpu) certificate \(index) (\(certificate.subject))"
            if index + 1 < chain.count {
                let issuer = chain[index + 1]
                guard certificate.issuer == issuer.subject,
                    issuer.publicKey.isValidSignature(certificate.signature, for: certificate)
                else { throw .certificateChainInvalid("\(name) is not signed by the next certificate") }
            } else {
                guard certificate.issuer == root.certificate.subject,
                    root.certificate.publicKey.isValidSignature(certificate.signature, for: certificate)
                else { throw .rootNotTrusted("\(name) is neither the trust root nor signed by it") }
            }
            guard certificate.notValidBefore <= time, time <= certificate.notValidAfter else {
                throw .certificateNotValidAtTime(name)
            }
            if index > 0 {
                guard case .isCertificateAuthority? = try? certificate.extensions.basicConstraints else {
                    throw .certificateChainInvalid("\(name) is not a CA")
                }
            }
        }
        guard root.certificate.notValidBefore <= time, time <= root.certificate.notValidAfter else {
            throw .certificateNotValidAtTime("the trust root")
        }
    }

    private static func isSpace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x0a || byte == 0x0d || byte == 0x09
    }

    private static func isFiller(_ byte: UInt8) -> Bool { isSpace(byte) || byte == 0 }

    private static func matches(_ marker: [UInt8], in text: [UInt8], at index: Int) -> Bool {
        text.count - index >= marker.count && text[index..<index + marker.count].elementsEqual(marker)
    }
}
