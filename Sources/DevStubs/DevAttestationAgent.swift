import Hummingbird
import JSON
import Logging
import NIOCore

/// Development stand-in for the dstack guest agent: quotes from a throwaway dev PKI, NOT SECURE, never for production.
///
/// It answers the calls the proxy makes (`/GetQuote`, `/Info`, `/GetKey`) with the shapes dstack uses, so the proxy
/// can run and be tested on a machine without TDX. Its quotes are real-format TDX v4 quotes that verify only against
/// its own dev root CA (`DevTDXPlatform`), never against Intel's; its measurements say they are dev values. Its keys
/// come from `DevKMS`, whose root secret is public: the same for every dev agent, forgeable by anyone.
public struct DevAttestationAgent: Sendable {
    /// Where the agent listens.
    public enum Address: Sendable {
        /// HTTP over a unix socket at this path (dstack's own transport).
        case unixSocket(path: String)
        /// HTTP over TCP; port 0 picks a free port, reported through `onServerRunning`.
        case tcp(host: String, port: Int)
    }

    /// How the agent answers; the failure modes let tests and operators see the proxy's 503 path.
    public enum Behaviour: Sendable {
        /// Well-formed answers.
        case normal
        /// 200 with a body that is not JSON.
        case garbage
        /// This HTTP status with a short error body.
        case failing(status: Int)
        /// Well-formed answers, each after this delay.
        case slow(Duration)
    }

    private let address: Address
    private let behaviour: Behaviour
    private let recorder: DevAttestationRecorder?
    private let platform: DevTDXPlatform?
    private let logger: Logger

    /// - Parameters:
    ///   - recorder: receives every report data the agent was asked to quote (tests check the binding).
    ///   - platform: the dev PKI and guest that make the quotes; nil makes a fresh one when the agent starts.
    public init(
        address: Address, behaviour: Behaviour = .normal, recorder: DevAttestationRecorder? = nil,
        platform: DevTDXPlatform? = nil, logger: Logger
    ) {
        self.address = address
        self.behaviour = behaviour
        self.recorder = recorder
        self.platform = platform
        self.logger = logger
    }

    /// Serves until the surrounding task is cancelled (or, with `gracefulShutdownSignals`, until SIGTERM/SIGINT).
    /// - Parameter onServerRunning: called once listening, with the bound TCP port (nil for a unix socket).
    public func run(
        gracefulShutdownSignals: Bool = false,
        onServerRunning: @escaping @Sendable (Int?) async -> Void = { _ in }
    ) async throws {
        let bind: BindAddress =
            switch address {
            case .unixSocket(let path): .unixDomainSocket(path: path)
            case .tcp(let host, let port): .hostname(host, port: port)
            }
        let platform = try platform ?? DevTDXPlatform()
        logger.warning(
            "GetKey derives from the dev KMS, whose root secret is public: development only, NOT SECURE",
            metadata: ["kms_root": "\(DevTDXHex.encode(DevKMS.rootPublicKey))"])
        let app = Application(
            router: makeRouter(platform: platform),
            configuration: .init(address: bind, serverName: "dev-attestation-agent"),
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port) },
            logger: logger
        )
        if gracefulShutdownSignals {
            try await app.runService()
        } else {
            try await app.run()
        }
    }

    private func makeRouter(platform: DevTDXPlatform) -> Router<BasicRequestContext> {
        let router = Router()
        let behaviour = self.behaviour
        let recorder = self.recorder
        router.post("/GetQuote") { request, _ -> Response in
            if let response = try await Self.misbehave(behaviour) { return response }
            let body = try await request.body.collect(upTo: 1 << 20)
            guard let hex = (try? JSONValue(parsing: body.readableBytesView))?["report_data"]?.stringValue,
                hex.utf8.count <= 128, hex.utf8.count % 2 == 0, hex.allSatisfy(\.isHexDigit)
            else {
                return Self.json(status: .badRequest, ["error": "report_data must be at most 64 bytes of hex"])
            }
            // dstack zero-pads short report data to the 64 bytes of the TDX field.
            let reportHex = hex.lowercased() + String(repeating: "0", count: 128 - hex.utf8.count)
            await recorder?.record(reportHex)
            let reportData = stride(from: 0, to: 128, by: 2).map { offset -> UInt8 in
                let start = reportHex.utf8.index(reportHex.utf8.startIndex, offsetBy: offset)
                return UInt8(reportHex[start..<reportHex.utf8.index(start, offsetBy: 2)], radix: 16) ?? 0
            }
            return Self.json(
                status: .ok,
                [
                    "quote": .string(DevTDXHex.encode(try platform.quote(reportData: reportData))),
                    // dstack sends the event log as a JSON-encoded string too.
                    "event_log": .string(platform.eventLogJSON),
                    "report_data": .string(reportHex),
                    "vm_config": #"{"dev_only":"NOT A REAL VM CONFIG","cpu_count":0,"memory_size":0}"#,
                ]
            )
        }
        router.post("/Info") { _, _ -> Response in
            if let response = try await Self.misbehave(behaviour) { return response }
            return Self.json(
                status: .ok,
                [
                    "app_id": .string(DevTDXHex.encode(platform.guest.appID)),
                    "instance_id": .string(DevTDXHex.encode(platform.guest.instanceID)),
                    "app_name": "vllm-proxy-dev (NOT SECURE)",
                    "device_id": "dev-only",
                    // dstack sends tcb_info as a JSON-encoded string; so does this stand-in.
                    "tcb_info": .string(String(decoding: platform.tcbInfo.serialized(), as: UTF8.self)),
                ]
            )
        }
        let kms = DevKMS(appID: platform.guest.appID)
        router.post("/GetKey") { request, _ -> Response in
            if let response = try await Self.misbehave(behaviour) { return response }
            let body = try await request.body.collect(upTo: 1 << 20)
            // dstack's fields are all optional strings ("" when absent); anything else is a bad request.
            guard let object = (try? JSONValue(parsing: body.readableBytesView))?.objectValue,
                let fields = Self.strings(object, ["path", "purpose", "algorithm"])
            else {
                return Self.json(status: .badRequest, ["error": "path, purpose and algorithm must be strings"])
            }
            do {
                let derived = try kms.getKey(path: fields[0], purpose: fields[1], algorithm: fields[2])
                return Self.json(
                    status: .ok,
                    [
                        "key": .string(DevTDXHex.encode(derived.key)),
                        "signature_chain": .array(derived.signatureChain.map { .string(DevTDXHex.encode($0)) }),
                    ])
            } catch DevKMS.Refusal.unsupportedAlgorithm {
                return Self.json(status: .badRequest, ["error": "Unsupported algorithm"])
            } catch {
                return Self.json(status: .internalServerError, ["error": "Failed to derive k256 key"])
            }
        }
        return router
    }

    /// The string values of `names` ("" for an absent one), or nil when one is present and not a string.
    private static func strings(_ object: JSONObject, _ names: [String]) -> [String]? {
        var values: [String] = []
        for name in names {
            guard let value = object[name] else {
                values.append("")
                continue
            }
            guard let text = value.stringValue else { return nil }
            values.append(text)
        }
        return values
    }

    private static func misbehave(_ behaviour: Behaviour) async throws -> Response? {
        switch behaviour {
        case .normal:
            return nil
        case .garbage:
            return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "<html>this is not JSON")))
        case .failing(let status):
            return json(status: HTTPResponse.Status(code: status), ["error": "dev agent configured to fail"])
        case .slow(let delay):
            try await Task.sleep(for: delay)
            return nil
        }
    }

    private static func json(status: HTTPResponse.Status, _ object: JSONValue) -> Response {
        Response(
            status: status,
            headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: object.serialized()))
        )
    }
}

/// Remembers the report data a `DevAttestationAgent` was asked to quote, in order.
public actor DevAttestationRecorder {
    /// Every report data received, as lowercase hex zero-padded to 64 bytes as dstack does.
    public private(set) var reportDataHex: [String] = []

    /// An empty record.
    public init() {}

    func record(_ hex: String) {
        reportDataHex.append(hex)
    }
}
