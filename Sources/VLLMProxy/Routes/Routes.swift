import Attestation
import HTTPTypes
import Hummingbird
import JSON
import Logging
import NIOCore
import Signing

/// Registers SPEC §2's routes. Handlers stay thin: they pick the pipeline inputs and nothing else.
func addRoutes(to router: Router<BasicRequestContext>, services: ProxyServices) {
    let pipeline = services.pipeline
    let receipts = services.receipts
    // The completion routes capture only what they use: a closure holding all of `services` copied it into
    // every request's async frame (heaptrack: 3.3 KB per open request).
    let vllm = services.vllm
    let trafficControl = services.trafficControl
    let chutesMode = services.chutes

    router.get("/") { _, _ in jsonResponse(.ok, "{}".utf8) }
    router.get("/v1/models") { _, context in
        try await passThrough(services.vllm, path: "/v1/models", logger: context.logger)
    }
    router.get("/v1/metrics") { _, context in
        try await metricsResponse(services, logger: context.logger)
    }

    let authed = router.group().add(middleware: BearerAuthMiddleware(token: services.config.token))
    // Every POST route to vLLM is the one pipeline with its `ProxyRoute`; traffic control applies to all.
    for route in ProxyRoute.vllmRoutes {
        authed.post(RouterPath(route.path)) { request, context in
            try await pipeline.respond(
                to: request, logger: context.logger, route: route, upstream: vllm, admission: trafficControl)
        }
    }
    authed.get("/v1/signature/{chat_id}") { request, context in
        let chatID = try context.parameters.require("chat_id")
        let algoText = request.uri.queryParameters.get("signing_algo") ?? "ecdsa"
        guard let algo = SigningAlgo(caseInsensitive: algoText) else {
            throw ProxyError(
                .badRequest, type: "invalid_signing_algo", message: "signing_algo must be ecdsa or ed25519")
        }
        guard let body = await receipts.signatureAnswer(chatID: chatID, algo: algo) else {
            throw ProxyError.notFound("No signature for this chat id (unknown or expired)")
        }
        return jsonResponse(.ok, JSONValue.object(body).serialized())
    }
    let chutes = router.group()
        .add(middleware: UpstreamHeaderMiddleware(name: Upstream.Name.chutes.rawValue))
        .add(middleware: BearerAuthMiddleware(token: services.config.token))
    chutes.post("/v1/chutes/chat/completions") { request, context in
        // Same pipeline, another upstream; vLLM's traffic control does not apply.
        try await pipeline.respond(
            to: request, logger: context.logger, route: .chutesChat, upstream: try chutesMode.upstream(),
            admission: nil)
    }
    chutes.get("/v1/chutes/models") { _, context in
        try await passThrough(try services.chutes.upstream(), path: "/v1/models", logger: context.logger)
    }
    let chain = AttestationChain(chutes: services.chutes, attestation: services.attestation, keys: services.keys)
    authed.get("/v1/attestation/chain") { request, _ in
        let query = request.uri.queryParameters
        let answer = try await chain.respond(
            .init(
                model: query.get("model"), nonce: query.get("nonce"), signingAlgo: query.get("signing_algo"),
                verifyMode: query.get("verify_mode")))
        return jsonResponse(.ok, answer.serialized())
    }
    authed.get("/v1/attestation/report") { request, _ in
        let query = request.uri.queryParameters
        let attestationQuery = AttestationQuery(
            signingAlgo: query.get("signing_algo"), nonce: query.get("nonce"),
            signingAddress: query.get("signing_address"), version: query.get("version"))
        let report: JSONValue
        do throws(AttestationError) {
            report = try await services.attestation.report(attestationQuery)
        } catch {
            throw ProxyError(error)
        }
        return jsonResponse(.ok, report.serialized())
    }
}

func jsonResponse(_ status: HTTPResponse.Status, _ body: some Sequence<UInt8>) -> Response {
    Response(
        status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: body)))
}

/// GETs an upstream path and returns its status and body unchanged.
private func passThrough(_ upstream: Upstream, path: String, logger: Logger) async throws -> Response {
    let response = try await upstream.send(.GET, path: path, body: nil, logger: logger)
    let body = try await upstream.collect(response, logger: logger)
    let status = response.status
    return Response(
        status: .init(code: status),
        headers: [.contentType: response.contentType ?? "application/json"],
        body: .init(
            byteBuffer: (200..<300).contains(status) ? body : try upstream.relayedError(status: status, body: body)))
}

/// Our own exposition, a separator line, then vLLM's `/metrics` (or a comment saying why it is missing).
private func metricsResponse(_ services: ProxyServices, logger: Logger) async throws -> Response {
    services.metrics.basicInFlight(services.trafficControl.basicInFlight)
    var out = services.metrics.exposition()
    out.append(contentsOf: "# --- vLLM Backend Metrics ---\n".utf8)
    do {
        let response = try await services.vllm.send(
            .GET, path: "/metrics", body: nil, timeout: services.config.metricsTimeout, logger: logger)
        let body = try await response.body.collect(upTo: 16 << 20)
        if response.status == 200 {
            out.append(contentsOf: body.readableBytesView)
        } else {
            out.append(contentsOf: "# vLLM /metrics answered HTTP \(response.status)\n".utf8)
        }
    } catch let error as ProxyError {
        out.append(contentsOf: "# vLLM /metrics could not be fetched: \(error.type)\n".utf8)
    } catch {
        out.append(contentsOf: "# vLLM /metrics could not be fetched: read failed\n".utf8)
    }
    return Response(
        status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
        body: .init(byteBuffer: ByteBuffer(bytes: out)))
}
