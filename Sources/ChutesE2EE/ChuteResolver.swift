/// Model name → chute, from Chutes' `/v1/models`, cached for `ttl` and shared by every request. A name not in
/// the listing forces one refresh (at most one per `missRefreshInterval`, so unknown names cannot turn
/// into a flood of listing requests); concurrent callers share one fetch.
public actor ChuteResolver {
    private let directory: any ChutesE2EEDirectory
    private let ttl: Duration
    private let missRefreshInterval: Duration
    private let now: @Sendable () -> ContinuousClock.Instant
    private var byName: [String: ChuteModel] = [:]
    private var byChute: [String: ChuteModel] = [:]
    private var loadedAt: ContinuousClock.Instant?
    private var inFlight: Task<[ChuteModel], any Error>?

    public init(
        directory: any ChutesE2EEDirectory, ttl: Duration = .seconds(300), missRefreshInterval: Duration = .seconds(10),
        now: @escaping @Sendable () -> ContinuousClock.Instant = { .now }
    ) {
        self.directory = directory
        self.ttl = ttl
        self.missRefreshInterval = missRefreshInterval
        self.now = now
    }

    /// The listing entry for `model`. A chute id (a UUID) is accepted as the library accepts it; if the
    /// listing does not know it, it counts as not confidential.
    public func resolve(_ model: String) async throws(ChutesE2EEError) -> ChuteModel {
        if loadedAt.map({ now() - $0 >= ttl }) ?? true { try await refresh() }
        if let found = lookup(model) { return found }
        if let loadedAt, now() - loadedAt >= missRefreshInterval {
            try await refresh()
            if let found = lookup(model) { return found }
        }
        if Self.looksLikeUUID(model) { return ChuteModel(id: model, chuteID: model, confidentialCompute: false) }
        throw .unknownModel
    }

    private func lookup(_ model: String) -> ChuteModel? { byName[model] ?? byChute[model] }

    private func refresh() async throws(ChutesE2EEError) {
        let task: Task<[ChuteModel], any Error>
        if let inFlight {
            task = inFlight
        } else {
            let directory = self.directory
            task = Task { () async throws -> [ChuteModel] in try await directory.fetchModels() }
            inFlight = task
        }
        let models: [ChuteModel]
        do {
            models = try await task.value
        } catch {
            if inFlight == task { inFlight = nil }
            throw (error as? ChutesE2EEError) ?? .transport("model listing failed")
        }
        if inFlight == task {
            inFlight = nil
            byName = Dictionary(models.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
            byChute = Dictionary(models.map { ($0.chuteID, $0) }, uniquingKeysWith: { first, _ in first })
            loadedAt = now()
        }
    }

    static func looksLikeUUID(_ text: String) -> Bool {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        return text.utf8.count == 36 && parts.map(\.count) == [8, 4, 4, 4, 12]
            && parts.allSatisfy { $0.allSatisfy(\.isHexDigit) }
    }
}
