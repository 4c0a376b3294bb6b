import Attestation
import Foundation
import JSON
import Signing
import Testing

@Suite struct GPUEvidenceTests {
    let nonce: [UInt8] = (0..<32).map { UInt8($0 * 7 + 3) }

    /// Compiles `Fixtures/fake_nvml.c` into a shared library in `directory`.
    func buildFakeNVML(in directory: TemporaryDirectory, defines: [String] = []) throws -> String {
        let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Fixtures/fake_nvml.c").path
        let output = directory.file("libfakenvml.so")
        let compiler = Process()
        compiler.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        compiler.arguments = ["cc", "-shared", "-fPIC", "-o", output, source] + defines.map { "-D" + $0 }
        try compiler.run()
        compiler.waitUntilExit()
        try #require(compiler.terminationStatus == 0, "cc failed to build the fake NVML library")
        return output
    }

    func payload(_ text: String) throws -> JSONValue {
        try JSONValue(parsing: Array(text.utf8))
    }

    @Test func collectsEveryGPUFromNVML() async throws {
        let directory = try TemporaryDirectory()
        let library = try buildFakeNVML(in: directory)
        let payload = try payload(try await NVMLGPUEvidence(libraryPath: library).evidence(nonce: nonce))

        #expect(payload["nonce"] == .string(Hex.encode(nonce)))
        #expect(payload["arch"] == "HOPPER")
        let items = try #require(payload["evidence_list"]?.arrayValue)
        #expect(items.count == 2)
        let chain = Array(
            """
            -----BEGIN CERTIFICATE-----
            RkFLRS1HUFUtREVWSUNFLUNFUlRJRklDQVRFLU5PVC1SRUFM
            -----END CERTIFICATE-----
            -----BEGIN CERTIFICATE-----
            RkFLRS1HUFUtUk9PVC1DRVJUSUZJQ0FURS1OT1QtUkVBTA==
            -----END CERTIFICATE-----

            """.utf8)
        for (index, item) in items.enumerated() {
            #expect(item.objectValue?.keys == ["certificate", "evidence", "arch"])
            #expect(item["arch"] == "HOPPER")
            let evidence = try #require(item["evidence"]?.stringValue.flatMap { Data(base64Encoded: $0) })
            // Exactly attestationReportSize bytes: 37-byte SPDM request + 16 bytes per device index.
            #expect(evidence.count == 37 + 16 * (index + 1))
            #expect(Array(evidence.prefix(4)) == [0x11, 0xE0, 0x01, 0xFF])
            #expect(Array(evidence[4..<36]) == nonce)
            #expect(!evidence.contains(0xAA))
            let certificate = try #require(item["certificate"]?.stringValue.flatMap { Data(base64Encoded: $0) })
            #expect(Array(certificate) == chain)
        }
    }

    @Test func successiveCollectionsShutNVMLDownCleanly() async throws {
        let directory = try TemporaryDirectory()
        let provider = NVMLGPUEvidence(libraryPath: try buildFakeNVML(in: directory))
        async let first = provider.evidence(nonce: nonce)
        async let second = provider.evidence(nonce: Array(nonce.reversed()))
        let payloads = try await [payload(first), payload(second)]
        #expect(payloads.map { $0["nonce"] } == [.string(Hex.encode(nonce)), .string(Hex.encode(nonce.reversed()))])
    }

    @Test func missingLibraryIsUnavailable() async throws {
        do {
            _ = try await NVMLGPUEvidence(libraryPath: "/nonexistent/libnvidia-ml.so.1").evidence(nonce: nonce)
            Issue.record("expected an error")
        } catch {
            #expect(error.status == 503)
            #expect(error.type == "attestation_unavailable")
            #expect(!error.message.contains("nonexistent"))
        }
    }

    @Test func confidentialComputingOffIsUnavailable() async throws {
        let directory = try TemporaryDirectory()
        let library = try buildFakeNVML(in: directory, defines: ["FAKE_NVML_CC_OFF"])
        do {
            _ = try await NVMLGPUEvidence(libraryPath: library).evidence(nonce: nonce)
            Issue.record("expected an error")
        } catch {
            #expect(error.status == 503)
            #expect(error.message.contains("confidential computing"))
        }
    }

    @Test func noHardwareModeSaysSo() async throws {
        let payload = try payload(try await NoGPUEvidence().evidence(nonce: nonce))
        #expect(
            payload
                == [
                    "nonce": .string(Hex.encode(nonce)), "evidence_list": [], "arch": "HOPPER", "no_gpu_mode": true,
                ]
        )
    }

    @Test func factoryPicksTheProvider() {
        #expect(makeGPUEvidenceProvider(noHardwareMode: true, libraryPath: nil) is NoGPUEvidence)
        #expect(makeGPUEvidenceProvider(noHardwareMode: false, libraryPath: "/x.so") is NVMLGPUEvidence)
    }
}
