/// One POST route of SPEC §2 as data: every such route runs the same pipeline, and this is all that differs
/// between them (besides the `Upstream` a handler passes).
struct ProxyRoute: Sendable, Hashable {
    /// The proxy's path: metric label, and the route bound into an E2EE v3 request's key schedule.
    let path: String
    /// Where the upstream serves it.
    let upstreamPath: String
    let body: BodyKind
    /// Whether answers get a signature record, and under which id.
    let receipt: ReceiptID
    /// E2EE v1/v2 (message fields) as well as v3: chat only (SPEC §4).
    let fieldE2EE: Bool
    /// The route feeds vLLM's prefix cache: E2EE requests get a `cache_salt` (SPEC §4, §4.3).
    let prefixCache: Bool
    /// Under v3, streams ask for `stream_options.include_usage` (chat and completions, SPEC §4.3).
    let streamUsage: Bool

    /// What a request body is.
    enum BodyKind: Sendable, Hashable {
        /// A JSON object, held whole (up to `MAX_BODY_BYTES`), validated, E2EE v3 possible.
        case json
        /// `multipart/form-data`, streamed to the upstream as it arrives (up to `MAX_UPLOAD_BYTES`), never
        /// held whole or parsed; no E2EE.
        case multipart
    }

    /// Where the signature record's id comes from.
    enum ReceiptID: Sendable, Hashable {
        /// No record (tokenize, detokenize: nothing to name it by, and nothing generated).
        case none
        /// The answer's `id` (for a stream, of the first event that has one), or `response.id` (Responses API).
        case answer
        /// The answers have no id of their own (audio, images): the proxy makes `{prefix}-{32 hex}` before the
        /// head goes out and sends it as `X-Chat-Id`.
        case proxyMade(prefix: String)
    }

    private init(
        _ path: String, upstream: String? = nil, body: BodyKind = .json, receipt: ReceiptID = .answer,
        fieldE2EE: Bool = false, prefixCache: Bool = false, streamUsage: Bool = false
    ) {
        self.path = path
        self.upstreamPath = upstream ?? path
        self.body = body
        self.receipt = receipt
        self.fieldE2EE = fieldE2EE
        self.prefixCache = prefixCache
        self.streamUsage = streamUsage
    }

    static let chat = Self("/v1/chat/completions", fieldE2EE: true, prefixCache: true, streamUsage: true)
    static let completions = Self("/v1/completions", prefixCache: true, streamUsage: true)
    static let chutesChat = Self(
        "/v1/chutes/chat/completions", upstream: "/v1/chat/completions", fieldE2EE: true, prefixCache: true,
        streamUsage: true)
    static let responses = Self("/v1/responses", prefixCache: true)
    static let embeddings = Self("/v1/embeddings")
    static let rerank = Self("/v1/rerank")
    static let score = Self("/v1/score")
    static let tokenize = Self("/v1/tokenize", upstream: "/tokenize", receipt: .none)
    static let detokenize = Self("/v1/detokenize", upstream: "/detokenize", receipt: .none)
    static let transcriptions = Self(
        "/v1/audio/transcriptions", body: .multipart, receipt: .proxyMade(prefix: "trsc"))
    static let translations = Self("/v1/audio/translations", body: .multipart, receipt: .proxyMade(prefix: "trsl"))
    static let imageGenerations = Self("/v1/images/generations", receipt: .proxyMade(prefix: "img"))

    /// The routes to vLLM, in SPEC §2's order (the Chutes route is registered on its own).
    static let vllmRoutes: [Self] = [
        .chat, .completions, .responses, .embeddings, .rerank, .score, .tokenize, .detokenize, .transcriptions,
        .translations, .imageGenerations,
    ]
}
