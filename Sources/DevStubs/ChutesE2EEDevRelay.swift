import ChutesE2EE
import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import JSON
import NIOCore
import SwiftASN1
import Synchronization
import X509

/// DEVELOPMENT ONLY, NOT SECURE: plays Chutes' E2EE relay and one GPU instance for `scripts/dev` (the
/// instance key lives in this process, so nothing it "protects" is protected). Adds to the Chutes-like stub
/// `/e2e/instances/{chute_id}` (one instance, single-use nonces), `/e2e/invoke` (opens the request,
/// answers the echo sealed to the request's response key, JSON or stream) and `/chutes/{chute_id}/evidence`
/// (SPEC §7.2: a TDX quote binding the instance's key and certificate to the caller's nonce). The quotes come
/// from a throwaway dev TDX platform (`platform`), whose collateral `pccs` serves and whose root and
/// measurements `writeDevPKI(to:)` writes: they verify against that platform's root and nothing else.
public final class ChutesE2EEDevRelay: Sendable {
    /// The chute the stub's one model runs on.
    public static let chuteID = "00000000-0000-4000-8000-00000000c0de"
    static let instanceID = "dev-instance-1"
    static let noncesPerFetch = 16
    static let nonceLifetime = 55.0

    /// What `writeDevPKI(to:)` names the platform's root CA (PEM): `TDX_ROOT_CA_FILE` for the proxy.
    public static let rootPEMFileName = "chutes-tdx-root.pem"
    /// What `writeDevPKI(to:)` names the allowed measurements: `CHUTES_TDX_MEASUREMENTS_FILE` for the proxy.
    public static let measurementsFileName = "chutes-measurements.json"

    private let instance: ChutesE2EEInstance
    private let nonces = Mutex<[String: ContinuousClock.Instant]>([:])

    /// The dev TDX machine the instance "runs" on: its quotes verify against `platform.pki.rootPEM` only.
    public let platform: DevTDXPlatform
    /// A PCCS stand-in serving `platform`'s collateral (run it on a plain-HTTP loopback listener).
    public let pccs: DevPCCS
    /// The instance's certificate, DER: throwaway and self-signed; its key's digest is in every quote.
    public let certificateDER: [UInt8]
    /// SHA-256 of the certificate's DER SubjectPublicKeyInfo: report_data[32:64] of every quote.
    private let certificateKeyDigest: [UInt8]

    public init() throws {
        instance = try ChutesE2EEInstance()
        platform = try DevTDXPlatform()
        pccs = try DevPCCS(collateralJSON: platform.collateral.json)
        (certificateDER, certificateKeyDigest) = try Self.makeCertificate()
    }

    /// The instance key as `/e2e/instances` lists it (`e2e_pubkey`): base64 text, which the quotes bind as text.
    public var e2ePublicKeyBase64: String { instance.publicKeyBase64 }

    /// A self-signed P-256 certificate that stands for the instance's own (Chutes instances present one whose key
    /// the quote binds); its private key is dropped at once, since nothing here serves TLS with it.
    private static func makeCertificate() throws -> (der: [UInt8], keyDigest: [UInt8]) {
        let key = P256.Signing.PrivateKey()
        let name = try DistinguishedName { CommonName("dev chutes instance (NOT SECURE)") }
        let now = Date()
        let certificate = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey),
            notValidBefore: now - 3600, notValidAfter: now + 30 * 86_400, issuer: name, subject: name,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                KeyUsage(digitalSignature: true)
            },
            issuerPrivateKey: .init(key))
        var der = DER.Serializer()
        try der.serialize(certificate)
        var spki = DER.Serializer()
        try spki.serialize(certificate.publicKey)
        return (der.serializedBytes, Array(SHA256.hash(data: spki.serializedBytes)))
    }

    /// What `/v1/models` adds to the stub's model entry in E2EE mode.
    static let modelFields: JSONObject = ["chute_id": .string(chuteID), "confidential_compute": true]

    func instances(chuteID: String) -> Response {
        guard chuteID == Self.chuteID else { return StubUpstream.json(.notFound, ["detail": "no such chute"]) }
        let expiry = ContinuousClock.now + .seconds(Self.nonceLifetime)
        let fresh = (0..<Self.noncesPerFetch).map { _ in
            (0..<16).map { _ in String(UInt8.random(in: 0...255), radix: 16) }.joined()
        }
        nonces.withLock { pool in
            let now = ContinuousClock.now
            pool = pool.filter { $0.value > now }
            for nonce in fresh { pool[nonce] = expiry }
        }
        return StubUpstream.json(
            .ok,
            [
                "instances": [
                    [
                        "instance_id": .string(Self.instanceID), "e2e_pubkey": .string(instance.publicKeyBase64),
                        "nonces": .array(fresh.map { .string($0) }),
                    ]
                ],
                "nonce_expires_in": .number(String(Int(Self.nonceLifetime))),
            ])
    }

    /// `/chutes/{chute_id}/evidence?nonce=`: 404 for another chute, 400 unless the nonce is 64 lowercase hex
    /// digits (given once), else the evidence for it.
    func evidence(chuteID: String, nonces: [String]) throws -> Response {
        guard chuteID == Self.chuteID else { return StubUpstream.json(.notFound, ["detail": "no such chute"]) }
        guard nonces.count == 1, let nonce = nonces.first, Self.isNonce(nonce) else {
            return StubUpstream.json(.badRequest, ["detail": "nonce must be 64 lowercase hex digits"])
        }
        return StubUpstream.json(.ok, try evidence(nonceHex: nonce))
    }

    static func isNonce(_ text: String) -> Bool {
        text.utf8.count == 64 && text.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    /// The evidence answer for `nonceHex` (SPEC §7.2 shape): the one instance, its quote over
    /// SHA-256(`nonceHex` ‖ `e2ePublicKeyBase64`, as UTF-8 text) ‖ SHA-256(certificate SPKI), its certificate,
    /// and no GPU evidence (there is no GPU).
    public func evidence(nonceHex: String) throws -> JSONValue {
        let keyBinding = Array(SHA256.hash(data: Array((nonceHex + instance.publicKeyBase64).utf8)))
        let quote = try platform.quote(reportData: keyBinding + certificateKeyDigest)
        return [
            "evidence": [
                [
                    "instance_id": .string(Self.instanceID), "quote": .string(Data(quote).base64EncodedString()),
                    "gpu_evidence": [], "certificate": .string(Data(certificateDER).base64EncodedString()),
                ]
            ],
            "failed_instance_ids": [],
        ]
    }

    /// Writes `rootPEMFileName` (the platform's root CA) and `measurementsFileName` (a JSON list holding the dev
    /// guest's MRTD and RTMR0–2 as lowercase hex, SPEC §7.2's format) into `directory`, each atomically so a
    /// script waiting for them never reads half a file.
    public func writeDevPKI(to directory: String) throws {
        let url = URL(fileURLWithPath: directory, isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        let guest = platform.guest
        let measurements: JSONValue = [
            [
                "mr_td": .string(DevTDXHex.encode(guest.mrTD)),
                "rtmr0": .string(DevTDXHex.encode(guest.rtmr0to2[0])),
                "rtmr1": .string(DevTDXHex.encode(guest.rtmr0to2[1])),
                "rtmr2": .string(DevTDXHex.encode(guest.rtmr0to2[2])),
            ]
        ]
        try Data(platform.pki.rootPEM.utf8).write(
            to: url.appendingPathComponent(Self.rootPEMFileName), options: .atomic)
        try Data(measurements.serialized()).write(
            to: url.appendingPathComponent(Self.measurementsFileName), options: .atomic)
    }

    /// Checks the invoke headers, spends the nonce, opens the request and seals the echo answer.
    func invoke(_ request: Request, blob: [UInt8]) throws -> Response {
        guard request.headers[HTTPField.Name("X-Instance-Id")!] == Self.instanceID else {
            return StubUpstream.json(.gone, ["detail": "instance gone"])
        }
        let nonce = request.headers[HTTPField.Name("X-E2E-Nonce")!] ?? ""
        let valid = nonces.withLock { pool in pool.removeValue(forKey: nonce).map { $0 > .now } ?? false }
        guard valid else { return StubUpstream.json(.forbidden, ["detail": "nonce invalid or spent"]) }
        guard let (payload, responseKey) = try? instance.openRequest(blob) else {
            return StubUpstream.json(.badRequest, ["detail": "could not decrypt"])
        }
        let body = JSONValue.object(payload)
        let model = body["model"]?.stringValue ?? "stub-model"
        let reply = "Echo: " + StubUpstream.lastText(body, chat: true)
        let id = "chatcmpl-dev-e2e-" + UUID().uuidString.lowercased()
        let octets: HTTPFields = [.contentType: "application/octet-stream"]
        guard request.headers[HTTPField.Name("X-E2E-Stream")!] == "true" else {
            let answer: JSONValue = [
                "id": .string(id), "object": "chat.completion", "created": .integer(StubUpstream.created),
                "model": .string(model),
                "choices": [
                    ["index": 0, "message": ["role": "assistant", "content": .string(reply)], "finish_reason": "stop"]
                ],
                "usage": ["prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7],
            ]
            let sealed = try responseKey.sealResponse(answer.serialized())
            return Response(status: .ok, headers: octets, body: .init(byteBuffer: ByteBuffer(bytes: sealed)))
        }
        let (initEvent, streamKey) = try responseKey.streamInit()
        func line(_ delta: JSONObject, finish: String?) -> [UInt8] {
            let chunk: JSONValue = [
                "id": .string(id), "object": "chat.completion.chunk", "created": .integer(StubUpstream.created),
                "model": .string(model),
                "choices": [["index": 0, "delta": .object(delta), "finish_reason": finish.map { .string($0) } ?? nil]],
            ]
            return Array("data: ".utf8) + chunk.serialized()
        }
        var events: [JSONValue] = [["e2e_init": .string(initEvent)]]
        var lines = [line(["role": "assistant", "content": ""], finish: nil)]
        for (index, word) in reply.split(separator: " ").enumerated() {
            lines.append(line(["content": .string(index == 0 ? String(word) : " " + word)], finish: nil))
        }
        lines.append(line([:], finish: "stop"))
        for plain in lines { events.append(["e2e": .string(try streamKey.seal(plain))]) }
        events.append(["usage": ["prompt_tokens": 5, "completion_tokens": .integer(lines.count), "total_tokens": 7]])
        var out = ByteBuffer()
        for event in events { out.writeBytes(Array("data: ".utf8) + event.serialized() + Array("\n\n".utf8)) }
        out.writeString("data: [DONE]\n\n")
        return Response(
            status: .ok, headers: [.contentType: "text/event-stream"], body: .init(byteBuffer: out))
    }
}
