// swift-tools-version:6.1
import PackageDescription

// Micro-benchmarks of the proxy's hot pieces (JSON, SSE, signing, E2EE), run by `scripts/microbench`.
// A package of its own so that ordo-one/benchmark and its release build never slow the main build or CI.
// The benchmark plugin looks for each target's sources under Benchmarks/<target>/ of this package.
// SwiftPM names a path dependency after its folder, so a clone in any folder works.
let proxy = String(Context.packageDirectory.split(separator: "/").dropLast().last ?? "vllm-proxy")

let package = Package(
    name: "vllm-proxy-benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: ".."),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.0"),
        // MallocInterposer alone (not the default traits, whose ARC interposer this mirror lacks) counts
        // mallocs without jemalloc.
        .package(url: "https://github.com/ordo-one/benchmark", exact: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "HotPaths",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "JSON", package: proxy),
                .product(name: "SSE", package: proxy),
                .product(name: "Signing", package: proxy),
                .product(name: "E2EE", package: proxy),
                .product(name: "TDXVerifier", package: proxy),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "Benchmarks/HotPaths",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        )
    ]
)
