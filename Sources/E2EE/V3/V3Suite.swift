import Crypto

/// One HPKE suite E2EE v3 offers (SPEC §4.3): its place in the key list `K` and the wire names it goes by.
public enum V3Suite: Sendable, CaseIterable, Equatable {
    /// key_id 0: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM.
    case x25519AES256GCM
    /// key_id 0: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305.
    case x25519ChaCha20Poly1305
    /// key_id 1: X-Wing (ML-KEM-768 + X25519), HKDF-SHA256, AES-256-GCM.
    case xwingAES256GCM

    static let kdfHKDFSHA256: UInt16 = 0x0001
    static let aeadAES256GCM: UInt16 = 0x0002
    static let aeadChaCha20Poly1305: UInt16 = 0x0003
    static let kemX25519: UInt16 = 0x0020
    static let kemXWing: UInt16 = 0x647a

    public var keyID: UInt8 {
        switch self {
        case .x25519AES256GCM, .x25519ChaCha20Poly1305: 0
        case .xwingAES256GCM: 1
        }
    }

    var kemID: UInt16 { keyID == 0 ? Self.kemX25519 : Self.kemXWing }
    var aeadID: UInt16 { self == .x25519ChaCha20Poly1305 ? Self.aeadChaCha20Poly1305 : Self.aeadAES256GCM }

    /// Length of the KEM's encapsulated key (`enc`).
    public var encLength: Int { keyID == 0 ? 32 : 1120 }

    /// The AEAD's key and nonce lengths (Nk, Nn): 32 and 12 for both AEADs offered.
    static let keyLength = 32
    static let nonceLength = 12
    static let tagLength = 16

    var ciphersuite: HPKE.Ciphersuite {
        switch self {
        case .x25519AES256GCM: HPKE.Ciphersuite(kem: .Curve25519_HKDF_SHA256, kdf: .HKDF_SHA256, aead: .AES_GCM_256)
        case .x25519ChaCha20Poly1305: .Curve25519_SHA256_ChachaPoly
        case .xwingAES256GCM: .XWingMLKEM768X25519_SHA256_AES_GCM_256
        }
    }

    /// The `X-E2EE-Algo` response header value.
    public var algoName: String {
        switch self {
        case .x25519AES256GCM: "hpke-x25519-aes256gcm"
        case .x25519ChaCha20Poly1305: "hpke-x25519-chacha20poly1305"
        case .xwingAES256GCM: "hpke-xwing-aes256gcm"
        }
    }

    /// `hdr` = key_id(1) ‖ kem_id(2) ‖ kdf_id(2) ‖ aead_id(2), the first 7 bytes of `req`.
    public var header: [UInt8] {
        [keyID] + Self.bigEndian(kemID) + Self.bigEndian(Self.kdfHKDFSHA256) + Self.bigEndian(aeadID)
    }

    static let headerLength = 7

    /// The suite a `hdr` names, if `K` offers it.
    public init?(header bytes: some Collection<UInt8>) {
        let header = Array(bytes)
        guard let suite = Self.allCases.first(where: { $0.header == header }) else { return nil }
        self = suite
    }

    static func bigEndian(_ value: UInt16) -> [UInt8] { [UInt8(value >> 8), UInt8(value & 0xff)] }
}
