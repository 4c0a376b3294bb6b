import Crypto
import Foundation
import Testing
import X509

@testable import TDXVerifier

/// The GPU evidence verifier (SPEC §6.2) on NVIDIA's real Hopper sample (Tests/TDX/nvidia, see its ORIGIN.md)
/// with the pinned root, and on synthetic evidence from a throwaway PKI; every check fails with its own reason.
@Suite struct NvidiaEvidenceVerifierTests {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("TDX/nvidia")
    /// 2026-12-06: inside every sample certificate's validity (2022-03-01 to 9999-12-31).
    static let now: Int64 = 1_796_515_200
    static let sampleNonceHex = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb"
    static let sampleNonce = TDXHex.decode(sampleNonceHex)!
    static let otherNonceHex = String(repeating: "42", count: 32)
    /// NVIDIA's sample is not committed (third-party data): `scripts/samples` puts it in place where a snapshot of
    /// nvtrust exists; elsewhere the tests on it skip and the synthetic evidence still covers every check.
    static let sampleIsPresent = FileManager.default.fileExists(
        atPath: folder.appendingPathComponent("hopperAttestationReport.txt").path)

    static func text(_ name: String) throws -> String {
        String(decoding: try Data(contentsOf: folder.appendingPathComponent(name)), as: UTF8.self)
    }

    static func sampleReport() throws -> [UInt8] {
        let hex = try text("hopperAttestationReport.txt").trimmingCharacters(in: .whitespacesAndNewlines)
        return try #require(TDXHex.decode(hex))
    }

    /// The sample chain's PEM blocks, leaf first (the root last).
    static func sampleBlocks() throws -> [String] {
        let end = "-----END CERTIFICATE-----"
        return try text("hopperCertChain.txt").components(separatedBy: end).dropLast()
            .map { $0.trimmingCharacters(in: .whitespacesAndNewlines) + "\n" + end + "\n" }
    }

    static func samplePayload(
        nonce: String = sampleNonceHex, blocks: [String]? = nil, report: [UInt8]? = nil, arch: String = "HOPPER"
    ) throws -> String {
        NvidiaPayloadText.make(
            nonce: nonce, items: [((try blocks ?? sampleBlocks()).joined(), try report ?? sampleReport(), arch)])
    }

    static func reason(
        _ payload: String, nonce: [UInt8] = sampleNonce, now: Int64 = now, root: NvidiaTrustRoot? = nil
    ) throws -> String? {
        let root = try root ?? NvidiaDeviceRootCA.trustRoot()
        do {
            _ = try NvidiaEvidenceVerifier.verify(payload: payload, expectedNonce: nonce, now: now, root: root)
            return nil
        } catch {
            #expect(!error.detail.isEmpty)
            return error.reason
        }
    }

    // MARK: The pinned root

    @Test func pinnedRootIsNVIDIAsDeviceIdentityCA() throws {
        #expect(NvidiaDeviceRootCA.sha256 == "102bf659d5419614c9d8e6aecebc80454eb26b1df6a769ac720b9a690b167b48")
        #expect(TDXHex.encode(SHA256.hash(data: NvidiaDeviceRootCA.der)) == NvidiaDeviceRootCA.sha256)
        let pinned = try NvidiaDeviceRootCA.trustRoot()
        #expect(pinned.name == "nvidia")
        #expect("\(pinned.certificate.subject)".contains("NVIDIA Device Identity CA"))
        // The PEM nvtrust bundles is the same certificate; loaded as an override it is named by its hash.
        if Self.sampleIsPresent {
            let override = try NvidiaTrustRoot(pem: try Self.text("verifier_device_root.pem"))
            #expect(override.der == NvidiaDeviceRootCA.der)
            #expect(override.name == "override:" + NvidiaDeviceRootCA.sha256)
        }
        #expect(throws: GPUEvidenceError.self) { try NvidiaTrustRoot(pem: "not a certificate") }
        #expect(throws: GPUEvidenceError.self) { try NvidiaTrustRoot(der: [0x30, 0x00]) }
    }

    // MARK: NVIDIA's sample

    @Test(.enabled(if: sampleIsPresent, "scripts/samples found no snapshot of NVIDIA/nvtrust"))
    func sampleVerifiesWithThePinnedRoot() throws {
        let verdict = try NvidiaEvidenceVerifier.verify(
            payload: try Self.samplePayload(), expectedNonce: Self.sampleNonce, now: Self.now,
            root: try NvidiaDeviceRootCA.trustRoot())
        #expect(verdict.rootCA == "nvidia")
        #expect(!verdict.noGPUEvidence && !verdict.noGPUModeClaimed)
        #expect(!verdict.measurementsChecked)
        let gpu = try #require(verdict.gpus.first)
        #expect(verdict.gpus.count == 1)
        #expect(gpu.index == 0 && gpu.arch == "HOPPER")
        #expect(gpu.leafSubject.contains("GH100 A01 GSP FMC LF"))
        #expect(gpu.leafSubject.contains("53C22BA15E5D68088282DA074ED9FB37AA585771"))
        #expect(gpu.leafSerialNumber == "53c22ba15e5d68088282da074ed9fb37aa585771")
        #expect(gpu.certificateCount == 5)
        #expect(gpu.spdmVersion == 0x11)
        #expect(gpu.measurementBlockCount == 64)
        #expect(gpu.driverVersion?.isEmpty == false)
        #expect(!gpu.measurementsChecked)
    }

    @Test(.enabled(if: sampleIsPresent, "scripts/samples found no snapshot of NVIDIA/nvtrust"))
    func sampleVerifiesWithoutTheRootAndWithTheOverride() throws {
        // A chain that stops below the root: its last certificate is signed by the root.
        let blocks = Array(try Self.sampleBlocks().dropLast())
        #expect(try Self.reason(try Self.samplePayload(blocks: blocks)) == nil)
        let override = try NvidiaTrustRoot(pem: try Self.text("verifier_device_root.pem"))
        let verdict = try NvidiaEvidenceVerifier.verify(
            payload: try Self.samplePayload(), expectedNonce: Self.sampleNonce, now: Self.now, root: override)
        #expect(verdict.rootCA == "override:" + NvidiaDeviceRootCA.sha256)
    }

    @Test(.enabled(if: sampleIsPresent, "scripts/samples found no snapshot of NVIDIA/nvtrust"))
    func sampleFailures() throws {
        let report = try Self.sampleReport()
        let blocks = try Self.sampleBlocks()
        // The payload's nonce is not the one asked for.
        #expect(try Self.reason(try Self.samplePayload(nonce: Self.otherNonceHex)) == "gpu_payload_nonce_mismatch")
        // The payload is for the nonce asked for, but the report answers another.
        #expect(
            try Self.reason(
                try Self.samplePayload(nonce: Self.otherNonceHex), nonce: TDXHex.decode(Self.otherNonceHex)!)
                == "gpu_report_nonce_mismatch")
        // One bit of a measurement value (offset 60: inside block 1's value), then of the signature.
        var flipped = report
        flipped[60] ^= 0x01
        #expect(try Self.reason(try Self.samplePayload(report: flipped)) == "gpu_report_signature_invalid")
        flipped = report
        flipped[flipped.count - 1] ^= 0x01
        #expect(try Self.reason(try Self.samplePayload(report: flipped)) == "gpu_report_signature_invalid")
        flipped = report
        flipped[flipped.count - 60] ^= 0x80
        #expect(try Self.reason(try Self.samplePayload(report: flipped)) == "gpu_report_signature_invalid")
        // The wrong leaf: the chain without its leaf verifies, but its first certificate did not sign the report.
        #expect(
            try Self.reason(try Self.samplePayload(blocks: Array(blocks.dropFirst()))) == "gpu_report_signature_invalid"
        )
        // Out of order.
        var swapped = blocks
        swapped.swapAt(1, 2)
        #expect(try Self.reason(try Self.samplePayload(blocks: swapped)) == "gpu_certificate_chain_invalid")
        #expect(try Self.reason(try Self.samplePayload(blocks: blocks.reversed())) == "gpu_certificate_chain_invalid")
        // Before the chain's validity (the ICA's notBefore is 2022-03-01).
        #expect(try Self.reason(try Self.samplePayload(), now: 1_609_459_200) == "gpu_certificate_not_valid_at_time")
        // Another root.
        let synthetic = try NvidiaSyntheticEvidence()
        #expect(try Self.reason(try Self.samplePayload(), root: try synthetic.trustRoot()) == "gpu_root_not_trusted")
        #expect(
            try Self.reason(try Self.samplePayload(blocks: Array(blocks.dropLast())), root: try synthetic.trustRoot())
                == "gpu_root_not_trusted")
        // The report cut short, or with a byte more.
        #expect(try Self.reason(try Self.samplePayload(report: Array(report.dropLast()))) == "gpu_evidence_malformed")
        #expect(try Self.reason(try Self.samplePayload(report: report + [0])) == "gpu_evidence_malformed")
        #expect(try Self.reason(try Self.samplePayload(arch: "AMPERE")) == "gpu_architecture_unsupported")
    }

    // MARK: Synthetic evidence

    @Test func syntheticEvidenceVerifies() throws {
        let synthetic = try NvidiaSyntheticEvidence()
        let nonce = TDXHex.decode(Self.otherNonceHex)!
        let report = try NvidiaSyntheticEvidence.report(nonce: nonce, signedBy: synthetic.leafKey)
        let chain = try NvidiaSyntheticEvidence.pem([synthetic.leaf, synthetic.intermediate, synthetic.root])
        let payload = NvidiaPayloadText.make(
            nonce: Self.otherNonceHex, items: [(chain, report, "HOPPER"), (chain, report, "BLACKWELL")])
        let root = try synthetic.trustRoot()
        let verdict = try NvidiaEvidenceVerifier.verify(
            payload: payload, expectedNonce: nonce, now: NvidiaSyntheticEvidence.now, root: root)
        #expect(verdict.gpus.map(\.arch) == ["HOPPER", "BLACKWELL"])
        #expect(verdict.gpus.map(\.index) == [0, 1])
        #expect(verdict.gpus.first?.driverVersion == "570.86.15")
        #expect(verdict.gpus.first?.measurementBlockCount == 1)
        #expect(verdict.gpus.first?.certificateCount == 3)
        #expect(verdict.rootCA == root.name && root.name.hasPrefix("override:"))
        // The same evidence does not chain to NVIDIA's root.
        #expect(
            try Self.reason(payload, nonce: nonce, now: NvidiaSyntheticEvidence.now) == "gpu_root_not_trusted")
    }

    @Test func syntheticFailures() throws {
        let synthetic = try NvidiaSyntheticEvidence()
        let nonce = TDXHex.decode(Self.otherNonceHex)!
        let root = try synthetic.trustRoot()
        let now = NvidiaSyntheticEvidence.now
        let report = try NvidiaSyntheticEvidence.report(nonce: nonce, signedBy: synthetic.leafKey)
        func reason(_ chain: [Certificate], _ report: [UInt8], now: Int64 = now) throws -> String? {
            let payload = NvidiaPayloadText.make(
                nonce: Self.otherNonceHex, items: [(try NvidiaSyntheticEvidence.pem(chain), report, "HOPPER")])
            return try Self.reason(payload, nonce: nonce, now: now, root: root)
        }
        let good = [synthetic.leaf, synthetic.intermediate]
        #expect(try reason(good, report) == nil)
        // Signed by another leaf under the same intermediate: the chain verifies, the signature does not.
        #expect(try reason([synthetic.otherLeaf, synthetic.intermediate], report) == "gpu_report_signature_invalid")
        // A report signed by the right key but over other bytes (the signature of another nonce's report).
        let other = try NvidiaSyntheticEvidence.report(
            nonce: Array(repeating: 7, count: 32), signedBy: synthetic.leafKey)
        #expect(try reason(good, Array(report.dropLast(96)) + other.suffix(96)) == "gpu_report_signature_invalid")
        // Out of order, and a missing intermediate.
        #expect(try reason([synthetic.intermediate, synthetic.leaf], report) == "gpu_certificate_chain_invalid")
        #expect(try reason([synthetic.leaf], report) == "gpu_root_not_trusted")
        // After the chain's validity, and an intermediate that expired before the rest.
        #expect(try reason(good, report, now: 1_800_000_000) == "gpu_certificate_not_valid_at_time")
        let expiredIntermediate = try NvidiaSyntheticEvidence.certificate(
            synthetic.intermediate.subject, key: synthetic.intermediateKey, issuer: synthetic.root.subject,
            by: synthetic.rootKey, ca: true, notValidAfter: Date(timeIntervalSince1970: 1_770_000_000))
        #expect(try reason([synthetic.leaf, expiredIntermediate], report) == "gpu_certificate_not_valid_at_time")
        // A certificate that is not a CA cannot issue: the other leaf "issues" a leaf.
        let underLeafKey = P384.Signing.PrivateKey()
        let underLeaf = try NvidiaSyntheticEvidence.certificate(
            synthetic.intermediate.subject, key: underLeafKey, issuer: synthetic.otherLeaf.subject,
            by: synthetic.otherLeafKey, ca: false)
        let underReport = try NvidiaSyntheticEvidence.report(nonce: nonce, signedBy: underLeafKey)
        #expect(
            try reason([underLeaf, synthetic.otherLeaf, synthetic.intermediate], underReport)
                == "gpu_certificate_chain_invalid")
        // A leaf whose key is P-256.
        let p256 = P256.Signing.PrivateKey()
        let p256Leaf = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: Certificate.PublicKey(p256.publicKey),
            notValidBefore: NvidiaSyntheticEvidence.start, notValidAfter: NvidiaSyntheticEvidence.end,
            issuer: synthetic.intermediate.subject, subject: synthetic.leaf.subject,
            signatureAlgorithm: .ecdsaWithSHA384,
            extensions: Certificate.Extensions {}, issuerPrivateKey: Certificate.PrivateKey(synthetic.intermediateKey))
        #expect(try reason([p256Leaf, synthetic.intermediate], report) == "gpu_report_signature_invalid")
        // The second GPU's failure fails the whole payload and names it.
        let payload = NvidiaPayloadText.make(
            nonce: Self.otherNonceHex,
            items: [
                (try NvidiaSyntheticEvidence.pem(good), report, "HOPPER"),
                (try NvidiaSyntheticEvidence.pem([synthetic.otherLeaf, synthetic.intermediate]), report, "HOPPER"),
            ])
        #expect(throws: GPUEvidenceError.reportSignatureInvalid("GPU 1: the report is not signed by the leaf")) {
            try NvidiaEvidenceVerifier.verify(payload: payload, expectedNonce: nonce, now: now, root: root)
        }
    }

    /// Every prefix of a report, and damage to its codes and length fields, fails cleanly.
    @Test func everyTruncationAndLengthDamageFailsCleanly() throws {
        let synthetic = try NvidiaSyntheticEvidence()
        let nonce = TDXHex.decode(Self.otherNonceHex)!
        let report = try NvidiaSyntheticEvidence.report(nonce: nonce, signedBy: synthetic.leafKey)
        for count in 0..<report.count {
            #expect(throws: GPUEvidenceError.self) { try SPDMAttestationReport(parsing: Array(report.prefix(count))) }
        }
        // The request and response codes, the block count, the record length, a block's size, its value's size.
        for offset in [1, 38, 41, 42, 43, 44, 47, 48, 50, 51] {
            for value: UInt8 in [0x00, 0x7f, 0xff] where report[offset] != value {
                var damaged = report
                damaged[offset] = value
                #expect(throws: GPUEvidenceError.self) { try SPDMAttestationReport(parsing: damaged) }
            }
        }
        #expect(try SPDMAttestationReport(parsing: report).requestNonce == nonce)
    }

    // MARK: Payload shape and bounds

    @Test(.enabled(if: sampleIsPresent, "scripts/samples found no snapshot of NVIDIA/nvtrust"))
    func malformedPayloads() throws {
        let chain = try Self.sampleBlocks().joined()
        let report = try Self.sampleReport()
        let evidence = Data(report).base64EncodedString()
        let certificate = Data(chain.utf8).base64EncodedString()
        func item(_ certificate: String, _ evidence: String) -> String {
            "{\"nonce\":\"\(Self.sampleNonceHex)\",\"evidence_list\":[{\"certificate\":\"\(certificate)\","
                + "\"evidence\":\"\(evidence)\",\"arch\":\"HOPPER\"}]}"
        }
        #expect(try Self.reason(item(certificate, evidence)) == nil)
        #expect(try Self.reason(item("!!not base64!!", evidence)) == "gpu_certificate_chain_malformed")
        #expect(try Self.reason(item(certificate, "!!not base64!!")) == "gpu_evidence_malformed")
        #expect(
            try Self.reason(item(Data("hello".utf8).base64EncodedString(), evidence))
                == "gpu_certificate_chain_malformed")
        #expect(try Self.reason(item("", evidence)) == "gpu_certificate_chain_malformed")
        let damagedPEM = chain.replacingOccurrences(of: "MIID", with: "MIIE")
        #expect(
            try Self.reason(item(Data(damagedPEM.utf8).base64EncodedString(), evidence))
                == "gpu_certificate_chain_malformed")
        let noEnd = String(chain.dropLast(30))
        #expect(
            try Self.reason(item(Data(noEnd.utf8).base64EncodedString(), evidence)) == "gpu_certificate_chain_malformed"
        )
        #expect(try Self.reason(item(certificate, "")) == "gpu_evidence_malformed")
        for json in [
            "", "{", "[]", "null", "{\"nonce\":1,\"evidence_list\":[]}", "{\"evidence_list\":[]}",
            "{\"nonce\":\"\(Self.sampleNonceHex)\"}", "{\"nonce\":\"\(Self.sampleNonceHex)\",\"evidence_list\":[{}]}",
            "{\"nonce\":\"\(Self.sampleNonceHex)\",\"evidence_list\":{}}",
        ] {
            #expect(try Self.reason(json) == "gpu_payload_malformed", "\(json)")
        }
        for nonce in ["", "zz", "0x" + String(Self.sampleNonceHex.dropLast(2)), Self.sampleNonceHex + "00"] {
            #expect(try Self.reason("{\"nonce\":\"\(nonce)\",\"evidence_list\":[]}") == "gpu_payload_nonce_malformed")
        }
    }

    @Test func bounds() throws {
        let synthetic = try NvidiaSyntheticEvidence()
        let nonce = TDXHex.decode(Self.otherNonceHex)!
        let root = try synthetic.trustRoot()
        let report = try NvidiaSyntheticEvidence.report(nonce: nonce, signedBy: synthetic.leafKey)
        let chain = try NvidiaSyntheticEvidence.pem([synthetic.leaf, synthetic.intermediate])
        func reason(_ payload: String) throws -> String? {
            try Self.reason(payload, nonce: nonce, now: NvidiaSyntheticEvidence.now, root: root)
        }
        // 16 GPUs pass, 17 do not.
        let item = (chain, report, "HOPPER")
        #expect(
            try reason(NvidiaPayloadText.make(nonce: Self.otherNonceHex, items: Array(repeating: item, count: 16)))
                == nil)
        #expect(
            try reason(NvidiaPayloadText.make(nonce: Self.otherNonceHex, items: Array(repeating: item, count: 17)))
                == "gpu_too_many")
        // 17 certificates: refused before any is checked.
        let long = chain + String(repeating: try NvidiaSyntheticEvidence.pem([synthetic.intermediate]), count: 15)
        #expect(
            try reason(NvidiaPayloadText.make(nonce: Self.otherNonceHex, items: [(long, report, "HOPPER")]))
                == "gpu_certificate_chain_too_long")
        // 4 MiB, then one byte more.
        let base = NvidiaPayloadText.make(nonce: Self.otherNonceHex, items: [])
        let padded = base.dropLast() + ",\"pad\":\"" + String(repeating: "a", count: 4 << 20)
        let exact = String(padded.prefix((4 << 20) - 2)) + "\"}"
        #expect(exact.utf8.count == NvidiaEvidenceVerifier.maxPayloadBytes)
        #expect(try reason(exact) == nil)
        #expect(try reason(String(exact.dropLast(2)) + "a\"}") == "gpu_payload_too_large")
    }

    @Test func emptyEvidenceListIsNoGPUEvidence() throws {
        let payload =
            "{\"nonce\":\"\(Self.sampleNonceHex)\",\"evidence_list\":[],\"arch\":\"HOPPER\",\"no_gpu_mode\":true}"
        let verdict = try NvidiaEvidenceVerifier.verify(
            payload: payload, expectedNonce: Self.sampleNonce, now: Self.now, root: try NvidiaDeviceRootCA.trustRoot())
        #expect(verdict.noGPUEvidence && verdict.noGPUModeClaimed && verdict.gpus.isEmpty)
        #expect(verdict.arch == "HOPPER" && verdict.rootCA == "nvidia")
        // Still bound to the nonce: an old no-GPU payload is not this one.
        #expect(try Self.reason(payload, nonce: TDXHex.decode(Self.otherNonceHex)!) == "gpu_payload_nonce_mismatch")
    }
}
