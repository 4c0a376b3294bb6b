import Crypto
import Foundation
import Logging
import SwiftASN1
import X509

/// SHA-256 of the DER SubjectPublicKeyInfo of the leaf certificate at `TLS_CERT_PATH`, re-read when the file changes.
///
/// Certificates are renewed in place (certbot, dstack's gateway) while the proxy keeps running, so the digest
/// cannot be computed once at start-up; stat-ing the file on each request is cheap, parsing it is not.
actor LeafCertificateKeyDigest {
    /// Identity of one version of the file: a rename-over changes the inode, an in-place write the mtime/size.
    private struct FileStamp: Equatable {
        var inode: Int
        var size: Int
        var modified: Date
    }

    private let path: String
    private let logger: Logger
    private var cached: (stamp: FileStamp, digest: [UInt8])?

    init(path: String, logger: Logger) {
        self.path = path
        self.logger = logger
    }

    /// The 32-byte SPKI digest of the current certificate.
    func digest() throws(AttestationError) -> [UInt8] {
        guard let stamp = currentStamp() else {
            logger.error("TLS certificate cannot be stat-ed", metadata: ["path": "\(path)"])
            throw .tlsCertificateUnreadable
        }
        if let cached, cached.stamp == stamp {
            return cached.digest
        }
        let digest = try readDigest()
        cached = (stamp, digest)
        return digest
    }

    private func currentStamp() -> FileStamp? {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
            let size = (attributes[.size] as? NSNumber)?.intValue,
            let modified = attributes[.modificationDate] as? Date
        else { return nil }
        let inode = (attributes[.systemFileNumber] as? NSNumber)?.intValue ?? 0
        return FileStamp(inode: inode, size: size, modified: modified)
    }

    private func readDigest() throws(AttestationError) -> [UInt8] {
        do {
            let pem = try String(contentsOfFile: path, encoding: .utf8)
            // The file may be a full chain (leaf first) or a key+cert bundle; the leaf is the first certificate.
            guard
                let leaf = try PEMDocument.parseMultiple(pemString: pem).first(where: {
                    $0.discriminator == "CERTIFICATE"
                })
            else {
                logger.error("TLS certificate file holds no CERTIFICATE block", metadata: ["path": "\(path)"])
                throw AttestationError.tlsCertificateUnreadable
            }
            let certificate = try Certificate(derEncoded: leaf.derBytes)
            return try SubjectPublicKeyInfoDigest.sha256(certificate.publicKey)
        } catch let error as AttestationError {
            throw error
        } catch {
            logger.error("TLS certificate cannot be read", metadata: ["path": "\(path)", "error": "\(error)"])
            throw .tlsCertificateUnreadable
        }
    }

}

/// The key digest attestation v2/v3 binds, one definition for the proxy (its own certificate) and for `vllm-proxy
/// verify` (the certificate it was served).
public enum SubjectPublicKeyInfoDigest {
    /// DER of the SubjectPublicKeyInfo, exactly as a TLS peer sees it in the certificate.
    public static func der(_ key: Certificate.PublicKey) throws -> [UInt8] {
        var serializer = DER.Serializer()
        try serializer.serialize(key)
        return serializer.serializedBytes
    }

    /// SHA-256 of that DER.
    public static func sha256(_ key: Certificate.PublicKey) throws -> [UInt8] {
        Array(SHA256.hash(data: try der(key)))
    }
}
