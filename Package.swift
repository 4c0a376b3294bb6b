// swift-tools-version:6.0
import PackageDescription

// Module graph (data flows one way, left to right):
//   JSON, SSE, Redis → SharedState, Signing(CSecp256k1)  →  E2EE, Attestation, ChutesE2EE  →  VLLMProxy  →  vllm-proxy
// GuardedHTTP (connection time limits, cancellation on disconnect) serves VLLMProxy and DevStubs.
// DevStubs holds the development-only upstream and attestation agent used by dev mode and tests.
// `scripts/fuzz` adds libFuzzer targets (Fuzz/) to this graph; see the end of this file.
let package = Package(
    name: "vllm-proxy",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "vllm-proxy", targets: ["vllm-proxy"]),
        .executable(name: "stub-vllm", targets: ["stub-vllm"]),
        .executable(name: "dev-attestation-agent", targets: ["dev-attestation-agent"]),
        // The hot pieces, exported so the separate micro-benchmark package (Benchmarks/) can depend on them.
        .library(name: "JSON", targets: ["JSON"]),
        .library(name: "SSE", targets: ["SSE"]),
        .library(name: "Signing", targets: ["Signing"]),
        .library(name: "E2EE", targets: ["E2EE"]),
        .library(name: "TDXVerifier", targets: ["TDXVerifier"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.0"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.0"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.0"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.7.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.0"),
        .package(url: "https://github.com/adam-fowler/compress-nio", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
    ],
    targets: [
        .systemLibrary(name: "CSecp256k1", pkgConfig: "libsecp256k1", providers: [.apt(["libsecp256k1-dev"])]),
        .target(name: "JSON"),
        .target(name: "SSE", dependencies: [.product(name: "NIOCore", package: "swift-nio")]),
        .target(
            name: "Signing",
            dependencies: [
                "CSecp256k1",
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .target(
            name: "E2EE",
            dependencies: [
                "Signing", "JSON",
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // A small RESP2 client on SwiftNIO; it knows nothing of receipts or replay claims.
        .target(
            name: "Redis",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Chutes' own E2EE transport (ML-KEM-768 to the GPU instance); gzip through compress-nio's bounded
        // inflate over the system zlib.
        .target(
            name: "ChutesE2EE",
            dependencies: [
                "JSON",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CompressNIO", package: "compress-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        // TDX quote verification (SPEC §6.2): a pure function of quote, collateral, time and trust root; no network.
        .target(
            name: "TDXVerifier",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ]
        ),
        // Collateral for TDXVerifier fetched from a PCCS (SPEC §6.2), cached until each item's nextUpdate.
        .target(
            name: "TDXCollateral",
            dependencies: [
                "TDXVerifier",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        // The attested chain to Chutes instances (SPEC §7.2): evidence decoding, per-instance verification with
        // TDXVerifier and a measurement policy, and the cache that gates which instance keys may be used.
        .target(
            name: "ChutesAttestation",
            dependencies: [
                "ChutesE2EE", "JSON", "Signing", "TDXVerifier", "TDXCollateral", "Attestation",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
            ]
        ),
        .target(
            name: "SharedState",
            dependencies: [
                "Redis",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "HeapModule", package: "swift-collections"),
            ]
        ),
        .target(
            name: "Attestation",
            dependencies: [
                "Signing", "JSON",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "GuardedHTTP",
            dependencies: [
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // A lean HTTP/1.1 client for upstreams: keep-alive connections per event loop, no cross-thread hops.
        .target(
            name: "UpstreamHTTP",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "VLLMProxy",
            dependencies: [
                "JSON", "SSE", "Signing", "E2EE", "SharedState", "Attestation", "ChutesE2EE", "Redis", "GuardedHTTP",
                "UpstreamHTTP", "TDXVerifier", "TDXCollateral", "ChutesAttestation",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "DevStubs",
            dependencies: [
                "JSON", "ChutesE2EE", "GuardedHTTP", "Signing",
                .product(name: "Crypto", package: "swift-crypto"),
                // The dev agent's throwaway TDX PKI: certificates, CRLs and the SGX extension.
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                // Tests stop stub servers gracefully, through a ServiceGroup.
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "vllm-proxy",
            dependencies: [
                "VLLMProxy", "E2EE", "Attestation", "JSON", "Signing", "TDXVerifier", "TDXCollateral",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        .executableTarget(
            name: "stub-vllm",
            dependencies: [
                "DevStubs",
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "dev-attestation-agent",
            dependencies: [
                "DevStubs",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "JSONTests", dependencies: ["JSON"]),
        .testTarget(name: "SSETests", dependencies: ["SSE", .product(name: "NIOCore", package: "swift-nio")]),
        .testTarget(name: "SigningTests", dependencies: ["Signing"]),
        .testTarget(name: "E2EETests", dependencies: ["E2EE", "Signing", "JSON"]),
        .testTarget(name: "TDXVerifierTests", dependencies: ["TDXVerifier"]),
        // The dev agent's quotes against the real verifier.
        .testTarget(name: "DevStubsTests", dependencies: ["DevStubs", "TDXVerifier"]),
        .testTarget(name: "TDXCollateralTests", dependencies: ["TDXCollateral", "TDXVerifier"]),
        .testTarget(name: "SharedStateTests", dependencies: ["SharedState"]),
        .testTarget(
            name: "UpstreamHTTPTests",
            dependencies: [
                "UpstreamHTTP",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "RedisTests",
            dependencies: [
                "Redis", "SharedState",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "ChutesE2EETests",
            dependencies: ["ChutesE2EE", "JSON", .product(name: "Crypto", package: "swift-crypto")]
        ),
        .testTarget(
            name: "ChutesAttestationTests",
            dependencies: [
                "ChutesAttestation", "ChutesE2EE", "DevStubs", "TDXVerifier", "TDXCollateral", "JSON",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ]
        ),
        .testTarget(
            name: "AttestationTests",
            dependencies: [
                "Attestation", "DevStubs", "Signing", "JSON",
                // The service takes the process-wide HTTPClient, and v2 tests mint certificates at run time.
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            exclude: ["Fixtures"]
        ),
        .testTarget(
            name: "ProxyTests",
            dependencies: [
                "VLLMProxy", "DevStubs", "Signing", "JSON", "SSE", "E2EE", "TDXVerifier", "TDXCollateral",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
            ]
        ),
    ]
)

// Fuzzing (`scripts/fuzz`): only when it sets VLLM_PROXY_FUZZ_RUNTIME (the path of libFuzzer without its
// `main`) and builds in its own scratch path, so ordinary builds never see these targets or flags. The modules
// under test are compiled with libFuzzer's coverage and AddressSanitizer; each fuzz target is an executable
// whose own entry point hands control to libFuzzer (`LLVMFuzzerRunDriver`). Linking libFuzzer's `main` instead
// (`-sanitize=fuzzer` at link time) would clash with the `main` SwiftPM aliases to every executable's entry.
if let fuzzRuntime = Context.environment["VLLM_PROXY_FUZZ_RUNTIME"] {
    let instrumented: Set = ["JSON", "SSE", "Signing", "E2EE", "TDXVerifier"]
    let coverage: [SwiftSetting] = [.unsafeFlags(["-sanitize=fuzzer,address"])]
    for target in package.targets where instrumented.contains(target.name) {
        target.swiftSettings = (target.swiftSettings ?? []) + coverage
    }
    let link: [LinkerSetting] = [.unsafeFlags(["-sanitize=address", fuzzRuntime, "-lstdc++"])]
    package.targets += [
        .target(name: "FuzzSupport", path: "Fuzz/Support"),
        .executableTarget(
            name: "fuzz-json", dependencies: ["JSON", "FuzzSupport"], path: "Fuzz/json", swiftSettings: coverage,
            linkerSettings: link),
        .executableTarget(
            name: "fuzz-sse", dependencies: ["SSE", "FuzzSupport"], path: "Fuzz/sse", swiftSettings: coverage,
            linkerSettings: link),
        .executableTarget(
            name: "fuzz-e2ee", dependencies: ["E2EE", "Signing", "JSON", "FuzzSupport"], path: "Fuzz/e2ee",
            swiftSettings: coverage,
            linkerSettings: link),
        .executableTarget(
            name: "fuzz-e2ee-v3",
            dependencies: ["E2EE", "Signing", "JSON", "FuzzSupport", .product(name: "Crypto", package: "swift-crypto")],
            path: "Fuzz/e2ee-v3", swiftSettings: coverage, linkerSettings: link),
        .executableTarget(
            name: "fuzz-tdx", dependencies: ["TDXVerifier", "FuzzSupport"], path: "Fuzz/tdx", swiftSettings: coverage,
            linkerSettings: link),
        .executableTarget(
            name: "fuzz-tdx-parse", dependencies: ["TDXVerifier", "FuzzSupport"], path: "Fuzz/tdx-parse",
            swiftSettings: coverage, linkerSettings: link),
    ]
}
