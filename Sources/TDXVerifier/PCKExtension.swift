import SwiftASN1
import X509

/// The Intel SGX extension of a PCK certificate (OID 1.2.840.113741.1.13.1): the platform's TCB (16 CPU SVN
/// components and the PCE SVN), its PCE id and FMSPC.
struct PCKExtension: Sendable, Equatable {
    let cpuSVN: [UInt8]
    let pceSVN: Int
    let pceID: [UInt8]
    let fmspc: [UInt8]

    static let oid: ASN1ObjectIdentifier = [1, 2, 840, 113741, 1, 13, 1]
    static let tcbOID: ASN1ObjectIdentifier = [1, 2, 840, 113741, 1, 13, 1, 2]
    static let pceIDOID: ASN1ObjectIdentifier = [1, 2, 840, 113741, 1, 13, 1, 3]
    static let fmspcOID: ASN1ObjectIdentifier = [1, 2, 840, 113741, 1, 13, 1, 4]

    init(certificate: Certificate) throws(TDXVerificationError) {
        guard let ext = certificate.extensions.first(where: { $0.oid == Self.oid }) else {
            throw .invalidPCKCertificate("no SGX extension")
        }
        do {
            var cpuSVN = [UInt8](repeating: 0, count: 16)
            var pceSVN: Int?
            var pceID: [UInt8]?
            var fmspc: [UInt8]?
            let root = try DER.parse(ext.value)
            try DER.sequence(root, identifier: .sequence) { items in
                while let item = items.next() {
                    try DER.sequence(item, identifier: .sequence) { pair in
                        guard let oidNode = pair.next(), let value = pair.next() else { return }
                        let oid = try ASN1ObjectIdentifier(derEncoded: oidNode)
                        switch oid {
                        case Self.tcbOID:
                            try DER.sequence(value, identifier: .sequence) { components in
                                while let component = components.next() {
                                    try DER.sequence(component, identifier: .sequence) { inner in
                                        guard let cOID = inner.next(), let cValue = inner.next() else { return }
                                        let arcs = Array(try ASN1ObjectIdentifier(derEncoded: cOID).oidComponents)
                                        guard let last = arcs.last, arcs.count == Self.oid.oidComponents.count + 2
                                        else { return }
                                        switch last {
                                        case 1...16:
                                            cpuSVN[Int(last) - 1] = UInt8(clamping: try Int(derEncoded: cValue))
                                        case 17: pceSVN = try Int(derEncoded: cValue)
                                        default: break  // 18: CPUSVN as one octet string, the same bytes
                                        }
                                    }
                                }
                            }
                        case Self.pceIDOID: pceID = Array(try ASN1OctetString(derEncoded: value).bytes)
                        case Self.fmspcOID: fmspc = Array(try ASN1OctetString(derEncoded: value).bytes)
                        default: break
                        }
                    }
                }
            }
            guard let pceSVN, let pceID, let fmspc, fmspc.count == 6 else {
                throw TDXVerificationError.invalidPCKCertificate("SGX extension incomplete")
            }
            self.cpuSVN = cpuSVN
            self.pceSVN = pceSVN
            self.pceID = pceID
            self.fmspc = fmspc
        } catch let error as TDXVerificationError {
            throw error
        } catch {
            throw .invalidPCKCertificate("SGX extension malformed")
        }
    }
}
