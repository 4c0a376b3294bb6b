import DevStubs
import Foundation
import Logging
import Signing
import Testing

@testable import VLLMProxy

/// The attestation route through the whole app: auth, the one error shape, and the agent round trip.
@Suite struct AttestationRouteTests {
    static func withAgent<T: Sendable>(_ body: (String, DevAttestationRecorder) async throws -> T) async throws -> T {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("dstack-\(UUID().uuidString).sock")
            .path
        let recorder = DevAttestationRecorder()
        let agent = DevAttestationAgent(
            address: .unixSocket(path: path), recorder: recorder,
            logger: Logger(label: "agent", factory: { _ in SwiftLogNoOpLogHandler() }))
        // `body` runs the proxy, so the agent's only client is gone before the agent stops.
        return try await withGracefullyStoppedServer(drainLimit: abandonedAnswersDrainLimit) { onRunning in
            { try await agent.run(onServerRunning: onRunning) }
        } _: { _ in
            try await body(path, recorder)
        }
    }

    @Test func reportBindsTheSigningAddressAndNonce() async throws {
        try await Self.withAgent { socket, recorder in
            try await ProxyHarness.run(environment: ["DSTACK_SIMULATOR_ENDPOINT": socket, "GPU_NO_HW_MODE": "1"]) {
                proxy in
                let nonce = String(repeating: "ab", count: 32)
                let reply = try await proxy.request(.GET, "/v1/attestation/report?nonce=\(nonce)")
                #expect(reply.status == 200)
                #expect(reply.json["signing_address"] as? String == proxy.keys.ecdsaAddress)
                #expect(reply.json["request_nonce"] as? String == nonce)
                let expected = Hex.encode(proxy.keys.ecdsaAddressBytes + [UInt8](repeating: 0, count: 12)) + nonce
                #expect(await recorder.reportDataHex == [expected])
                let unauthorized = try await proxy.request(.GET, "/v1/attestation/report", auth: false)
                #expect(unauthorized.status == 401)
                let badAlgo = try await proxy.request(.GET, "/v1/attestation/report?signing_algo=rsa")
                #expect(badAlgo.status == 400)
                expectErrorShape(badAlgo, type: "invalid_signing_algo")
                let wrong = try await proxy.request(.GET, "/v1/attestation/report?signing_address=0x00")
                #expect(wrong.status == 404)
            }
        }
    }

    @Test func agentDownIs503() async throws {
        try await ProxyHarness.run(
            environment: ["DSTACK_SIMULATOR_ENDPOINT": "/nonexistent/dstack.sock", "GPU_NO_HW_MODE": "1"]
        ) { proxy in
            let reply = try await proxy.request(.GET, "/v1/attestation/report")
            #expect(reply.status == 503)
            expectErrorShape(reply, type: "attestation_unavailable")
        }
    }
}
