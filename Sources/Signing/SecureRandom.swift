#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Cryptographically secure random bytes from the operating system, in one call per request for bytes.
///
/// `UInt8.random(using: &SystemRandomNumberGenerator())` costs a `getrandom` system call per byte: 32 of them
/// for each ephemeral E2EE key, which showed in an E2EE request's profile.
public enum SecureRandom {
    public static func bytes(_ count: Int) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            if let base = buffer.baseAddress, count > 0 { arc4random_buf(base, count) }
            initialized = count
        }
    }
}
