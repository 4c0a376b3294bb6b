import Crypto
import HTTPTypes
import Hummingbird

/// Checks `Authorization: Bearer <TOKEN>` in constant time; the header is never forwarded upstream.
struct BearerAuthMiddleware<Context: RequestContext>: RouterMiddleware {
    private let expectedDigest: SHA256.Digest

    init(token: String) {
        self.expectedDigest = SHA256.hash(data: Array(token.utf8))
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response)
        async throws -> Response
    {
        guard isAuthorized(request.headers[.authorization]) else { throw ProxyError.unauthorized }
        return try await next(request, context)
    }

    /// Comparing SHA-256 digests makes the comparison length-independent; `==` on digests is constant time.
    func isAuthorized(_ header: String?) -> Bool {
        guard let header else { return false }
        let utf8 = Array(header.utf8)
        let scheme = "bearer ".utf8
        guard utf8.count > scheme.count,
            zip(utf8.prefix(scheme.count), scheme).allSatisfy({ $0 | 0x20 == $1 | 0x20 })
        else { return false }
        return SHA256.hash(data: utf8[scheme.count...]) == expectedDigest
    }
}
