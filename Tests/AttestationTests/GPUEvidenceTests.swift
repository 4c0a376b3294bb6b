import Attestation
import Foundation
import JSON
import Signing
import Testing

#if canImport(Glibc)
    import Glibc
#endif

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

    /// Reads one of the fake library's counters through the test's own `dlopen` reference to it.
    func fakeCounter(_ handle: UnsafeMutableRawPointer, _ name: String) throws -> Int {
        typealias Counter = @convention(c) () -> CInt
        let symbol = try #require(dlsym(handle, name))
        return Int(unsafeBitCast(symbol, to: Counter.self)())
    }

    @Test func nvmlIsInitialisedOnceAndShutDownOnce() async throws {
        let directory = try TemporaryDirectory()
        let library = try buildFakeNVML(in: directory)
        // Our own reference keeps the library (and its counters) loaded across the provider's dlclose.
        let handle = try #require(dlopen(library, RTLD_NOW | RTLD_LOCAL))
        defer { dlclose(handle) }
        let provider = NVMLGPUEvidence(libraryPath: library)
        async let first = provider.evidence(nonce: nonce)
        async let second = provider.evidence(nonce: Array(nonce.reversed()))
        let payloads = try await [payload(first), payload(second)]
        #expect(payloads.map { $0["nonce"] } == [.string(Hex.encode(nonce)), .string(Hex.encode(nonce.reversed()))])
        _ = try await provider.evidence(nonce: nonce)
        #expect(try fakeCounter(handle, "fake_nvml_init_calls") == 1)
        #expect(try fakeCounter(handle, "fake_nvml_shutdown_calls") == 0)
        await provider.shutdown()
        #expect(try fakeCounter(handle, "fake_nvml_shutdown_calls") == 1)
    }

    /// A wedged driver call costs each caller at most the timeout; callers past the queue bound are refused at
    /// once; and once the driver answers again, so does the provider.
    @Test func hungNVMLTimesOutAndAFullQueueRefusesAtOnce() async throws {
        let directory = try TemporaryDirectory()
        let hang = directory.file("hang")
        #expect(FileManager.default.createFile(atPath: hang, contents: nil))
        let library = try buildFakeNVML(in: directory, defines: ["FAKE_NVML_HANG_FILE=\"\(hang)\""])
        let provider = NVMLGPUEvidence(libraryPath: library, limits: .init(maxWaiting: 2, timeout: .seconds(1)))
        defer { try? FileManager.default.removeItem(atPath: hang) }

        // One collection hangs inside NVML and two wait behind it: all three give up after the timeout.
        let started = ContinuousClock.now
        let waits = await withTaskGroup(of: AttestationError?.self) { group in
            for _ in 0..<3 {
                group.addTask {
                    do throws(AttestationError) {
                        _ = try await provider.evidence(nonce: nonce)
                        return nil
                    } catch { return error }
                }
            }
            var results: [AttestationError?] = []
            for await result in group { results.append(result) }
            return results
        }
        #expect(ContinuousClock.now - started < .seconds(10))  // generous: the timeout is 1 s
        for error in waits {
            let error = try #require(error)
            #expect(error.status == 503 && error.type == "attestation_unavailable")
            #expect(error.message.contains("did not answer in time"))
        }

        // Their jobs still fill the queue (the first is stuck in the driver): the next caller is refused
        // without waiting.
        do {
            _ = try await provider.evidence(nonce: nonce)
            Issue.record("expected a refusal")
        } catch {
            #expect(error.status == 503 && error.type == "attestation_unavailable")
            #expect(error.message.contains("busy"))
        }

        // The driver recovers: abandoned jobs are skipped, and evidence flows again.
        try FileManager.default.removeItem(atPath: hang)
        let deadline = ContinuousClock.now + .seconds(10)
        var recovered: String?
        while recovered == nil, ContinuousClock.now < deadline {
            recovered = try? await provider.evidence(nonce: nonce)
            if recovered == nil { try await Task.sleep(for: .milliseconds(50)) }
        }
        let payload = try payload(try #require(recovered))
        #expect(payload["nonce"] == .string(Hex.encode(nonce)))
        await provider.shutdown()
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
