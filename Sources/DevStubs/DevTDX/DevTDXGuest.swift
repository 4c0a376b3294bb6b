import Crypto

/// What the dev "TD" is: fixed, recognisably fake boot measurements (MRTD, RTMR0–2), a dev app compose, and the
/// dstack runtime events that put its app id, compose hash and instance id into RTMR3.
public struct DevTDXGuest: Sendable {
    /// The app compose text; its SHA-256 is the compose hash a verifier pins with `--expect-compose-hash`.
    public let appCompose: String
    /// SHA-256 of `appCompose`.
    public let composeHash: [UInt8]
    /// The app id (20 bytes): dstack's default for an app without KMS, the compose hash's first 20 bytes.
    public let appID: [UInt8]
    /// The instance id (20 bytes), fresh for each agent.
    public let instanceID: [UInt8]
    /// MRTD: ASCII `DEV-ONLY MRTD, NOT SECURE` zero-padded to 48 bytes, so no one mistakes it for a real TD.
    public let mrTD: [UInt8]
    /// RTMR0, RTMR1, RTMR2: likewise ASCII `DEV-ONLY RTMRn, NOT SECURE`, zero-padded.
    public let rtmr0to2: [[UInt8]]
    /// The RTMR3 events, in dstack's order.
    public let events: [DevTDXEvent]
    /// RTMR3: the replay of `events`.
    public let rtmr3: [UInt8]

    /// The dev guest, with a random instance id.
    public init() {
        appCompose =
            ##"{"manifest_version":2,"name":"vllm-proxy-dev","runner":"docker-compose","##
            + ##""docker_compose_file":"# vllm-proxy development stand-in: NOT SECURE\n","dev_only":true}"##
        composeHash = Array(SHA256.hash(data: Array(appCompose.utf8)))
        appID = Array(composeHash.prefix(20))
        instanceID = (0..<20).map { _ in UInt8.random(in: 0...255) }
        mrTD = Self.label("DEV-ONLY MRTD, NOT SECURE")
        rtmr0to2 = (0..<3).map { Self.label("DEV-ONLY RTMR\($0), NOT SECURE") }
        events = [
            DevTDXEvent(name: "system-preparing", payload: []),
            DevTDXEvent(name: "app-id", payload: appID),
            DevTDXEvent(name: "compose-hash", payload: composeHash),
            DevTDXEvent(name: "instance-id", payload: instanceID),
            DevTDXEvent(name: "boot-mr-done", payload: []),
        ]
        rtmr3 = DevTDXEventLog.replay(events)
    }

    private static func label(_ text: String) -> [UInt8] {
        let bytes = Array(text.utf8.prefix(48))
        return bytes + [UInt8](repeating: 0, count: 48 - bytes.count)
    }
}
