"""httpx transports that make any httpx-based client (the openai SDK included) speak E2EE v3 unchanged.

    transport = E2EETransport(fetch_attestation(BASE, TOKEN, quote_verifier=...))
    client = OpenAI(base_url=f"{BASE}/v1", api_key=TOKEN, http_client=httpx.Client(transport=transport))

A POST to a sealed route (SPEC §4.3) goes out as the v3 envelope with `X-E2EE-Version: 3`; the answer comes back
to the caller as the opened plaintext (JSON, or the event stream opened chunk by chunk), after every check of
v3.py. Anything that is not a sealed envelope raises; nothing is ever sent or accepted in clear on those routes.
Other requests (GET /v1/models, the signature and attestation routes) pass through untouched.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import httpx

from .attestation import DEFAULT_POLICY, Attestation, NoDowngradePolicy
from .errors import E2EEError, E2EEServerError
from .v3 import (
    SealedRequest,
    StreamEnvelopeReader,
    Suite,
    open_json_envelope,
    route_for_path,
    seal_request,
    strict_json_loads,
)

# v1/v2 headers: a v3 request must carry none of them (the server refuses the mix).
_V1V2_HEADERS = ("x-signing-algo", "x-client-pub-key", "x-model-pub-key", "x-e2ee-nonce", "x-e2ee-timestamp")
# Framing headers of the sealed answer that do not describe the opened body handed to the caller.
_WIRE_ONLY_HEADERS = ("content-length", "content-encoding", "transfer-encoding", "content-type")
EXTENSION = "vllm_proxy_e2ee"


@dataclass
class Exchange:
    """One sealed request/answer pair, for checking its receipt (SPEC §5) once the answer was read in full.

    `response_hash` and `chat_id` are filled only when the whole answer has been read and verified.
    """

    route: str
    request_hash: str
    status_code: int | None = None
    response_hash: str | None = None
    chat_id: str | None = None

    @property
    def complete(self) -> bool:
        return self.response_hash is not None


class _Sealer:
    """What both transports share: sealing requests, classifying answers, recording exchanges."""

    def __init__(
        self,
        attestation: Attestation,
        suite: Suite,
        policy: NoDowngradePolicy,
        allow_plain_posts: bool,
        on_exchange: Callable[[Exchange], None] | None,
    ) -> None:
        suite.cipher_suite()  # refuses an unsupported suite (X-Wing) now, not at the first request
        self.suite = suite
        self.policy = policy
        self.allow_plain_posts = allow_plain_posts
        self.on_exchange = on_exchange
        self.attestation = self._checked(attestation)
        self.last_exchange: Exchange | None = None

    def _checked(self, attestation: Attestation) -> Attestation:
        self.policy.record(attestation)
        self.policy.choose_suite(attestation.origin, self.suite, attestation)
        return attestation

    def update_attestation(self, attestation: Attestation) -> None:
        if attestation.origin != self.attestation.origin:
            raise E2EEError(f"attestation of {attestation.origin}, transport is for {self.attestation.origin}")
        self.attestation = self._checked(attestation)

    def seal(self, request: httpx.Request, body: bytes) -> tuple[httpx.Request, SealedRequest, Exchange] | None:
        route = route_for_path(request.url.path) if request.method == "POST" else None
        if route is None:
            if request.method == "POST" and not self.allow_plain_posts:
                raise E2EEError(f"POST {request.url.path} cannot be sealed with E2EE v3; refusing to send it in clear")
            return None
        sealed = seal_request(
            body,
            route=route,
            key_configs=self.attestation.key_configs,
            kc=self.attestation.kc,
            suite=self.suite,
        )
        headers = httpx.Headers(request.headers)
        for name in _V1V2_HEADERS + ("content-length", "transfer-encoding"):
            headers.pop(name, None)
        headers["Content-Type"] = "application/json"
        headers["X-E2EE-Version"] = "3"
        outgoing = httpx.Request(
            request.method, request.url, headers=headers, content=sealed.body, extensions=request.extensions
        )
        exchange = Exchange(route=route, request_hash=sealed.request_hash)
        self.last_exchange = exchange
        return outgoing, sealed, exchange

    def finished(self, exchange: Exchange, response_hash: str, chat_id: str | None) -> None:
        exchange.response_hash = response_hash
        exchange.chat_id = chat_id
        if self.on_exchange is not None:
            self.on_exchange(exchange)

    @staticmethod
    def is_stream(response: httpx.Response) -> bool:
        return response.headers.get("content-type", "").split(";")[0].strip().lower() == "text/event-stream"

    def open_json(self, sealed: SealedRequest, exchange: Exchange, response: httpx.Response, body: bytes) -> httpx.Response:
        try:
            document = strict_json_loads(body)
        except ValueError:
            document = None
        if not isinstance(document, dict) or document.get("object") != "e2ee.v3":
            raise _server_error(response.status_code, document, body)
        opened = open_json_envelope(sealed, body)
        self.finished(exchange, hashlib.sha256(body).hexdigest(), opened.chat_id or proxy_chat_id(response))
        return _opened_response(response, exchange, "application/json", content=opened.body)


def proxy_chat_id(response: httpx.Response) -> str | None:
    """The id the proxy named the receipt by when the answer has none of its own (images, audio): `X-Chat-Id`.

    A clear header a gateway could change; the worst it can do is point at another record, whose text then does
    not match this exchange's hashes, so `check_receipt` fails rather than passes.
    """
    return response.headers.get("x-chat-id")


def _server_error(status_code: int, document: object, body: bytes) -> E2EEServerError:
    error = document.get("error") if isinstance(document, dict) else None
    if isinstance(error, dict):
        kind = error.get("type") if isinstance(error.get("type"), str) else None
        return E2EEServerError(status_code, kind, str(error.get("message", "")), body)
    return E2EEServerError(status_code, None, "the answer to a v3 request is not a sealed envelope", body)


def _opened_response(
    wire: httpx.Response,
    exchange: Exchange,
    content_type: str,
    *,
    content: bytes | None = None,
    stream: httpx.SyncByteStream | httpx.AsyncByteStream | None = None,
) -> httpx.Response:
    headers = [(k, v) for k, v in wire.headers.multi_items() if k.lower() not in _WIRE_ONLY_HEADERS]
    headers.append(("Content-Type", content_type))
    extensions = {**wire.extensions, EXTENSION: exchange}
    return httpx.Response(wire.status_code, headers=headers, content=content, stream=stream, extensions=extensions)


class _OpenedStream(httpx.SyncByteStream):
    def __init__(self, sealer: _Sealer, exchange: Exchange, reader: StreamEnvelopeReader, wire: httpx.Response,
                 chunks: Iterator[bytes], pending: bytes, digest) -> None:
        self._sealer, self._exchange, self._reader, self._wire = sealer, exchange, reader, wire
        self._chunks, self._pending, self._digest = chunks, pending, digest

    def __iter__(self) -> Iterator[bytes]:
        if self._pending:
            yield self._pending
        for data in self._chunks:
            self._digest.update(data)
            opened = self._reader.feed(data)
            if opened:
                yield opened
        rest = self._reader.finish()
        self._sealer.finished(
            self._exchange, self._digest.hexdigest(), self._reader.chat_id or proxy_chat_id(self._wire)
        )
        if rest:
            yield rest

    def close(self) -> None:
        self._wire.close()


class _AsyncOpenedStream(httpx.AsyncByteStream):
    def __init__(self, sealer: _Sealer, exchange: Exchange, reader: StreamEnvelopeReader, wire: httpx.Response,
                 chunks: AsyncIterator[bytes], pending: bytes, digest) -> None:
        self._sealer, self._exchange, self._reader, self._wire = sealer, exchange, reader, wire
        self._chunks, self._pending, self._digest = chunks, pending, digest

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._pending:
            yield self._pending
        async for data in self._chunks:
            self._digest.update(data)
            opened = self._reader.feed(data)
            if opened:
                yield opened
        rest = self._reader.finish()
        self._sealer.finished(
            self._exchange, self._digest.hexdigest(), self._reader.chat_id or proxy_chat_id(self._wire)
        )
        if rest:
            yield rest

    async def aclose(self) -> None:
        await self._wire.aclose()


class E2EETransport(httpx.BaseTransport):
    """Sync transport: seals requests to the attested proxy, opens and verifies its answers.

    `attestation` comes from `fetch_attestation` for the same proxy. `last_exchange` (and the response extension
    "vllm_proxy_e2ee") give the receipt hashes and chat id of an answer once it has been read in full;
    `on_exchange` is called with each completed one. On `E2EEServerError` with type `e2ee_key_unknown`, attest
    again and call `update_attestation`; nothing weaker than v3 is ever tried.
    """

    def __init__(
        self,
        attestation: Attestation,
        *,
        inner: httpx.BaseTransport | None = None,
        suite: Suite = Suite.X25519_AES256GCM,
        policy: NoDowngradePolicy = DEFAULT_POLICY,
        allow_plain_posts: bool = False,
        on_exchange: Callable[[Exchange], None] | None = None,
    ) -> None:
        self._sealer = _Sealer(attestation, suite, policy, allow_plain_posts, on_exchange)
        self._inner = inner or httpx.HTTPTransport()

    @property
    def last_exchange(self) -> Exchange | None:
        return self._sealer.last_exchange

    def update_attestation(self, attestation: Attestation) -> None:
        self._sealer.update_attestation(attestation)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        plan = self._sealer.seal(request, request.read())
        if plan is None:
            return self._inner.handle_request(request)
        outgoing, sealed, exchange = plan
        wire = self._inner.handle_request(outgoing)
        wire.request = outgoing
        exchange.status_code = wire.status_code
        try:
            if not self._sealer.is_stream(wire):
                return self._sealer.open_json(sealed, exchange, wire, wire.read())
            reader = StreamEnvelopeReader(sealed)
            digest = hashlib.sha256()
            chunks = wire.iter_bytes()
            pending = b""
            # The stream header is read before answering, so a clear error or a plaintext stream raises here,
            # from the caller's request, and not halfway through its iteration.
            while not reader.started:
                data = next(chunks, None)
                if data is None:
                    reader.finish()  # raises: nothing sealed came
                digest.update(data)
                pending += reader.feed(data)
        except BaseException:
            wire.close()
            raise
        stream = _OpenedStream(self._sealer, exchange, reader, wire, chunks, pending, digest)
        return _opened_response(wire, exchange, "text/event-stream", stream=stream)

    def close(self) -> None:
        self._inner.close()


class AsyncE2EETransport(httpx.AsyncBaseTransport):
    """`E2EETransport` for `httpx.AsyncClient` / `AsyncOpenAI`."""

    def __init__(
        self,
        attestation: Attestation,
        *,
        inner: httpx.AsyncBaseTransport | None = None,
        suite: Suite = Suite.X25519_AES256GCM,
        policy: NoDowngradePolicy = DEFAULT_POLICY,
        allow_plain_posts: bool = False,
        on_exchange: Callable[[Exchange], None] | None = None,
    ) -> None:
        self._sealer = _Sealer(attestation, suite, policy, allow_plain_posts, on_exchange)
        self._inner = inner or httpx.AsyncHTTPTransport()

    @property
    def last_exchange(self) -> Exchange | None:
        return self._sealer.last_exchange

    def update_attestation(self, attestation: Attestation) -> None:
        self._sealer.update_attestation(attestation)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        plan = self._sealer.seal(request, await request.aread())
        if plan is None:
            return await self._inner.handle_async_request(request)
        outgoing, sealed, exchange = plan
        wire = await self._inner.handle_async_request(outgoing)
        wire.request = outgoing
        exchange.status_code = wire.status_code
        try:
            if not self._sealer.is_stream(wire):
                return self._sealer.open_json(sealed, exchange, wire, await wire.aread())
            reader = StreamEnvelopeReader(sealed)
            digest = hashlib.sha256()
            chunks = wire.aiter_bytes()
            pending = b""
            while not reader.started:
                data = await anext(chunks, None)
                if data is None:
                    reader.finish()
                digest.update(data)
                pending += reader.feed(data)
        except BaseException:
            await wire.aclose()
            raise
        stream = _AsyncOpenedStream(self._sealer, exchange, reader, wire, chunks, pending, digest)
        return _opened_response(wire, exchange, "text/event-stream", stream=stream)

    async def aclose(self) -> None:
        await self._inner.aclose()

