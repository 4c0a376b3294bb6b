import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// One HTTP GET to the proxy being verified that also reports the TLS leaf certificate of the very connection the
/// answer came over: `vllm-proxy verify` checks that the quote binds that certificate's key, so the certificate
/// must not come from another connection (a man in the middle could relay the report over its own).
///
/// Any certificate is accepted during the handshake — trust comes from the quote's binding of its SPKI, checked
/// afterwards, not from a CA; a connection whose key the quote does not bind fails that check.
enum AttestedFetch {
    /// What came back: status, body, and the leaf certificate (DER) for `https`.
    struct Response {
        let status: Int
        let body: [UInt8]
        let tlsLeafDER: [UInt8]?
    }

    /// Why a fetch failed, for one line of output.
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    static func get(
        _ urlText: String, bearer token: String?, timeout: TimeAmount = .seconds(60), maxBody: Int = 32 << 20
    ) async throws(Failure) -> Response {
        guard let url = URL(string: urlText), let scheme = url.scheme?.lowercased(),
            scheme == "http" || scheme == "https",
            let host = url.host, !host.isEmpty
        else { throw Failure(description: "not an http(s) URL: \(urlText)") }
        let tls = scheme == "https"
        let port = url.port ?? (tls ? 443 : 80)
        var target = url.path.isEmpty ? "/" : url.path
        if let query = url.query { target += "?" + query }

        let leaf = NIOLockedValueBox<[UInt8]?>(nil)
        let group = MultiThreadedEventLoopGroup.singleton
        let promise = group.next().makePromise(of: Response.self)
        let sslContext: NIOSSLContext?
        if tls {
            var configuration = TLSConfiguration.makeClientConfiguration()
            // The custom callback below replaces chain validation; the host name is not what is trusted either.
            configuration.certificateVerification = .noHostnameVerification
            configuration.applicationProtocols = ["http/1.1"]
            do {
                sslContext = try NIOSSLContext(configuration: configuration)
            } catch {
                throw Failure(description: "TLS set-up failed: \(error)")
            }
        } else {
            sslContext = nil
        }
        let isIPLiteral = (try? SocketAddress(ipAddress: host, port: 0)) != nil
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let sslContext {
                        let handler = try NIOSSLClientHandler(
                            context: sslContext, serverHostname: isIPLiteral ? nil : host,
                            customVerificationCallback: { certificates, verdict in
                                leaf.withLockedValue { $0 = try? certificates.first?.toDERBytes() }
                                verdict.succeed(.certificateVerified)
                            })
                        try channel.pipeline.syncOperations.addHandler(handler)
                    }
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(
                        Collector(promise: promise, limit: maxBody, leaf: leaf))
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: host, port: port).get()
        } catch {
            let failure = Failure(description: "cannot connect to \(host):\(port): \(error)")
            promise.fail(failure)  // never left pending: NIO traps on a promise dropped uncompleted
            throw failure
        }
        var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: target)
        head.headers.add(name: "Host", value: url.port.map { "\(host):\($0)" } ?? host)
        head.headers.add(name: "Accept", value: "application/json")
        head.headers.add(name: "Connection", value: "close")
        if let token { head.headers.add(name: "Authorization", value: "Bearer \(token)") }
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        let deadline = channel.eventLoop.scheduleTask(in: timeout) {
            promise.fail(Failure(description: "no complete answer within \(timeout.nanoseconds / 1_000_000_000) s"))
        }
        defer {
            deadline.cancel()
            channel.close(promise: nil)
        }
        do {
            return try await promise.futureResult.get()
        } catch let failure as Failure {
            throw failure
        } catch {
            throw Failure(description: "the exchange failed: \(error)")
        }
    }

    /// Gathers one response; the promise is completed once (later events are ignored by NIO's promise).
    private final class Collector: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTPClientResponsePart

        private let promise: EventLoopPromise<Response>
        private let limit: Int
        private let leaf: NIOLockedValueBox<[UInt8]?>
        private var status = 0
        private var body: [UInt8] = []
        private var done = false

        init(promise: EventLoopPromise<Response>, limit: Int, leaf: NIOLockedValueBox<[UInt8]?>) {
            self.promise = promise
            self.limit = limit
            self.leaf = leaf
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard !done else { return }
            switch unwrapInboundIn(data) {
            case .head(let head):
                status = Int(head.status.code)
            case .body(var buffer):
                guard body.count + buffer.readableBytes <= limit else {
                    finish(.failure(Failure(description: "the answer is larger than \(limit) bytes")), context)
                    return
                }
                body += buffer.readBytes(length: buffer.readableBytes) ?? []
            case .end:
                let response = Response(status: status, body: body, tlsLeafDER: leaf.withLockedValue { $0 })
                finish(.success(response), context)
            }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            finish(.failure(Failure(description: "\(error)")), context)
        }

        func channelInactive(context: ChannelHandlerContext) {
            finish(.failure(Failure(description: "the connection closed before the answer was complete")), context)
            context.fireChannelInactive()
        }

        private func finish(_ result: Result<Response, Failure>, _ context: ChannelHandlerContext) {
            guard !done else { return }
            done = true
            promise.completeWith(result.mapError { $0 as any Error })
            context.close(promise: nil)
        }
    }
}
