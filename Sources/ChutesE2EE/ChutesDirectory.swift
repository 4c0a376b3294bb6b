import JSON

/// The two read-only relay endpoints E2EE needs, behind a narrow interface so the caches and the nonce
/// pool are testable without HTTP. The proxy's implementation is HTTPS with the Chutes key.
public protocol ChutesE2EEDirectory: Sendable {
    /// `GET {CHUTES_BASE_URL}/v1/models`.
    func fetchModels() async throws(ChutesE2EEError) -> [ChuteModel]
    /// `GET {CHUTES_E2E_BASE_URL}/e2e/instances/{chute_id}`.
    func fetchInstances(chuteID: String) async throws(ChutesE2EEError) -> InstanceListing
}

/// One entry of Chutes' `/v1/models`: the model name clients use, the chute serving it, and whether the
/// chute runs in confidential compute.
public struct ChuteModel: Sendable, Equatable {
    public let id: String
    public let chuteID: String
    public let confidentialCompute: Bool

    public init(id: String, chuteID: String, confidentialCompute: Bool) {
        self.id = id
        self.chuteID = chuteID
        self.confidentialCompute = confidentialCompute
    }

    /// Most entries a listing may hold: bounds the resolver's memory whatever the relay sends.
    public static let maxListed = 10_000

    /// `{"data": [{"id", "chute_id", "confidential_compute"}, …]}`; entries without both names are skipped,
    /// as the library does. A chute id is sent as a header, so it must be a plain token.
    public static func parseListing(_ bytes: some Collection<UInt8>) throws(ChutesE2EEError) -> [ChuteModel] {
        guard let data = (try? JSONValue(parsing: bytes))?["data"]?.arrayValue else {
            throw .malformed("/v1/models is not {\"data\": [...]}")
        }
        var models: [ChuteModel] = []
        for entry in data.prefix(maxListed) {
            guard let id = entry["id"]?.stringValue, let chuteID = entry["chute_id"]?.stringValue,
                !id.isEmpty, isHeaderToken(chuteID)
            else { continue }
            models.append(
                ChuteModel(
                    id: id, chuteID: chuteID, confidentialCompute: entry["confidential_compute"]?.boolValue == true))
        }
        return models
    }
}

/// What `/e2e/instances/{chute_id}` answered: instances with their keys and single-use nonces, valid for
/// `nonceLifetime` from when they were fetched.
public struct InstanceListing: Sendable {
    /// One E2EE-capable GPU instance.
    public struct Instance: Sendable {
        public let instanceID: String
        public let publicKey: InstancePublicKey
        public let nonces: [String]

        public init(instanceID: String, publicKey: InstancePublicKey, nonces: [String]) {
            self.instanceID = instanceID
            self.publicKey = publicKey
            self.nonces = nonces
        }
    }

    public let instances: [Instance]
    public let nonceLifetime: Duration

    public init(instances: [Instance], nonceLifetime: Duration) {
        self.instances = instances
        self.nonceLifetime = nonceLifetime
    }

    /// Bounds on what one listing may put in memory.
    public static let maxInstances = 64
    public static let maxNoncesPerInstance = 256
    /// `nonce_expires_in` is clamped to this range (the library's default when absent: 55 s).
    public static let lifetimeRange = 1.0...3600.0

    public static func parse(_ bytes: some Collection<UInt8>) throws(ChutesE2EEError) -> InstanceListing {
        guard let document = (try? JSONValue(parsing: bytes))?.objectValue,
            let listed = document["instances"]?.arrayValue
        else { throw .malformed("/e2e/instances is not {\"instances\": [...]}") }
        var instances: [Instance] = []
        for entry in listed.prefix(maxInstances) {
            // Ids and nonces go into request headers: anything but a plain token is refused, not sent.
            guard let id = entry["instance_id"]?.stringValue, isHeaderToken(id),
                let encoded = entry["e2e_pubkey"]?.stringValue, let key = try? InstancePublicKey(base64: encoded),
                let nonces = entry["nonces"]?.arrayValue
            else { continue }
            let usable = nonces.prefix(maxNoncesPerInstance).compactMap(\.stringValue).filter(isHeaderToken)
            instances.append(Instance(instanceID: id, publicKey: key, nonces: usable))
        }
        var lifetime = 55.0
        if case .number(let literal) = document["nonce_expires_in"], let seconds = Double(literal), seconds.isFinite {
            lifetime = min(max(seconds, lifetimeRange.lowerBound), lifetimeRange.upperBound)
        }
        return InstanceListing(instances: instances, nonceLifetime: .milliseconds(Int64(lifetime * 1000)))
    }
}

/// 1–128 characters from `[A-Za-z0-9._~-]`: safe as an HTTP header value and a URL path segment.
func isHeaderToken(_ text: String) -> Bool {
    let bytes = text.utf8
    guard (1...128).contains(bytes.count) else { return false }
    return bytes.allSatisfy { byte in
        (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte)
            || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".")
            || byte == UInt8(ascii: "~")
    }
}
