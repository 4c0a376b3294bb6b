#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Raises this process's soft open-file limit to its hard limit, so every client connection and upstream
/// connection can have its socket: the usual soft default (1024) is far below what a proxy holds open, and
/// connections past it fail at `accept`. Returns (before, after), or nil when the limit cannot be read.
public func raiseOpenFileLimit() -> (before: UInt64, after: UInt64)? {
    var limit = rlimit()
    #if canImport(Glibc)
        let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
    #else
        let resource = RLIMIT_NOFILE
    #endif
    guard getrlimit(resource, &limit) == 0 else { return nil }
    let before = UInt64(limit.rlim_cur)
    guard limit.rlim_cur < limit.rlim_max else { return (before, before) }
    limit.rlim_cur = limit.rlim_max
    guard setrlimit(resource, &limit) == 0 else { return (before, before) }
    return (before, UInt64(limit.rlim_cur))
}
