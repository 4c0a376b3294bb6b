import CompressNIO
import Crypto
import Foundation
import JSON
import NIOCore

/// Chutes' E2EE wire format (PyPI `chutes-e2ee` 0.1.0): ML-KEM-768 to a key, HKDF-SHA256 (salt = the
/// first 16 bytes of the ML-KEM ciphertext), ChaCha20-Poly1305 over gzip'd JSON or one SSE line.
public enum ChutesE2EEWire {
    static let ciphertextSize = 1088
    static let publicKeySize = 1184
    static let nonceSize = 12
    static let tagSize = 16
    /// The largest plaintext a sealed answer may inflate to: a gzip bomb must not exhaust memory.
    public static let maxPlaintextBytes = 64 << 20

    /// The HKDF `info` of each direction.
    public enum Purpose: String, Sendable {
        case request = "e2e-req-v1"
        case response = "e2e-resp-v1"
        case stream = "e2e-stream-v1"
    }

    static func deriveKey(sharedSecret: SymmetricKey, ciphertext: some Collection<UInt8>, _ purpose: Purpose)
        -> SymmetricKey
    {
        HKDF<SHA256>.deriveKey(
            inputKeyMaterial: sharedSecret, salt: Array(ciphertext.prefix(16)), info: Array(purpose.rawValue.utf8),
            outputByteCount: 32)
    }

    /// `ciphertext ‖ nonce ‖ sealed ‖ tag` for a fresh encapsulation to `publicKey`.
    static func seal(_ plaintext: [UInt8], to publicKey: MLKEM768.PublicKey, _ purpose: Purpose) throws(ChutesE2EEError)
        -> [UInt8]
    {
        do {
            let encapsulated = try publicKey.encapsulate()
            let ciphertext = Array(encapsulated.encapsulated)
            let key = deriveKey(sharedSecret: encapsulated.sharedSecret, ciphertext: ciphertext, purpose)
            let box = try ChaChaPoly.seal(plaintext, using: key)
            return ciphertext + Array(box.nonce) + Array(box.ciphertext) + Array(box.tag)
        } catch {
            throw .sealFailed
        }
    }

    /// Opens `ciphertext ‖ nonce ‖ sealed ‖ tag` with the private key the ciphertext was made for.
    static func open(_ blob: some Collection<UInt8>, with privateKey: MLKEM768.PrivateKey, _ purpose: Purpose)
        throws(ChutesE2EEError) -> [UInt8]
    {
        let bytes = Array(blob)
        guard bytes.count >= ciphertextSize + nonceSize + tagSize else { throw .malformed("sealed body too short") }
        let ciphertext = bytes[..<ciphertextSize]
        let sharedSecret: SymmetricKey
        do {
            sharedSecret = try privateKey.decapsulate(ciphertext)
        } catch {
            throw .decryptionFailed
        }
        let key = deriveKey(sharedSecret: sharedSecret, ciphertext: ciphertext, purpose)
        return try openBox(bytes[ciphertextSize...], key: key)
    }

    /// Opens `nonce ‖ sealed ‖ tag` under a symmetric key.
    static func openBox(_ bytes: ArraySlice<UInt8>, key: SymmetricKey) throws(ChutesE2EEError) -> [UInt8] {
        guard bytes.count >= nonceSize + tagSize else { throw .malformed("sealed chunk too short") }
        do {
            let box = try ChaChaPoly.SealedBox(combined: bytes)
            return Array(try ChaChaPoly.open(box, using: key))
        } catch {
            throw .decryptionFailed
        }
    }

    static func sealBox(_ plaintext: [UInt8], key: SymmetricKey) throws(ChutesE2EEError) -> [UInt8] {
        do {
            return Array(try ChaChaPoly.seal(plaintext, using: key).combined)
        } catch {
            throw .sealFailed
        }
    }

    static func gzip(_ bytes: [UInt8]) throws(ChutesE2EEError) -> [UInt8] {
        var input = ByteBuffer(bytes: bytes)
        do {
            return Array(try input.compress(with: .gzip()).readableBytesView)
        } catch {
            throw .sealFailed
        }
    }

    /// Inflates at most `maxPlaintextBytes`; anything larger or not gzip is refused.
    static func gunzip(_ bytes: [UInt8], limit: Int = maxPlaintextBytes) throws(ChutesE2EEError) -> [UInt8] {
        var input = ByteBuffer(bytes: bytes)
        do {
            let output = try input.decompress(with: .gzip(), maxSize: limit)
            return Array(output.readableBytesView)
        } catch {
            throw .malformed("sealed body is not gzip within \(limit) bytes")
        }
    }

    static func base64(_ bytes: some Collection<UInt8>) -> String { Data(bytes).base64EncodedString() }

    static func unbase64(_ text: String) -> [UInt8]? { Data(base64Encoded: text).map(Array.init) }

    /// An instance key as the relay lists it (base64 of 1184 bytes).
    static func publicKey(base64 text: String) throws(ChutesE2EEError) -> MLKEM768.PublicKey {
        guard let raw = unbase64(text), raw.count == publicKeySize,
            let key = try? MLKEM768.PublicKey(rawRepresentation: raw)
        else { throw .malformed("e2e_pubkey is not a base64 ML-KEM-768 public key") }
        return key
    }
}

/// Why a Chutes E2EE exchange failed; the proxy maps each case to one status and error type.
public enum ChutesE2EEError: Error, Sendable, Equatable {
    /// The relay or instance sent something that is not the wire format (reason for the log only).
    case malformed(String)
    /// Authentication failed: a tampered, truncated or foreign ciphertext.
    case decryptionFailed
    /// The platform refused to encapsulate or seal (should not happen with a valid key).
    case sealFailed
    /// The model is not in Chutes' `/v1/models` listing, even after a refresh.
    case unknownModel
    /// `CHUTES_TEE_ONLY` and the model's listing is not `confidential_compute`.
    case notConfidential
    /// The chute has no E2EE-capable instance with an unspent nonce, even after a refetch.
    case noInstances
    /// `/v1/models` or `/e2e/instances` answered this non-2xx status.
    case directoryStatus(Int)
    /// A discovery request could not be made (connection, TLS); the reason names no secret.
    case transport(String)
    /// A discovery request got no answer in time.
    case timeout
    /// No instance of the chute is attested (SPEC §7.2): its evidence could not be had, or no instance's quote
    /// verified and bound the key it is listed with. Nothing was sent. The reason is for logs and metrics.
    case attestationFailed(String)
}
