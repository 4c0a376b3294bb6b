#if canImport(Glibc)
    import Glibc
#endif

/// Has glibc's malloc map every block of 1 MiB or more on its own, so that it goes back to the system when
/// freed. By default glibc raises that threshold to the size of each mapped block freed (up to 32 MiB), and
/// blocks under it come from heaps that mostly keep what is freed in them: sealing a large answer frees
/// several copies of its size (some inside swift-crypto) while it makes the next, and with the raised
/// threshold those copies stayed resident beside the new ones — 6× an 8 MiB answer in peak RSS instead of
/// the 4× its live copies take (issue #20). Blocks this large are few (answers and bodies), so mapping each
/// costs little. A no-op off glibc.
public func pinMallocMmapThreshold() {
    #if canImport(Glibc)
        // `mallopt` and `M_MMAP_THRESHOLD` are in <malloc.h>, which Swift's Glibc module leaves out.
        typealias Mallopt = @convention(c) (_ parameter: Int32, _ value: Int32) -> Int32
        guard let symbol = dlsym(nil, "mallopt") else { return }
        let mmapThreshold: Int32 = -3  // M_MMAP_THRESHOLD
        _ = unsafeBitCast(symbol, to: Mallopt.self)(mmapThreshold, 1 << 20)
    #endif
}
