"""The transports under the official openai SDK, against the reference server behind httpx.MockTransport."""

from __future__ import annotations

import asyncio
import hashlib
import json

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from reference_server import ReferenceServer

from vllm_proxy_client import (
    EXTENSION,
    AsyncE2EETransport,
    E2EEError,
    E2EEServerError,
    E2EETransport,
    E2EEVerificationError,
    NoDowngradePolicy,
    ReceiptError,
    fetch_receipt,
    verify_report,
)

openai = pytest.importorskip("openai")

BASE = "http://proxy.test"
TOKEN = "secret-token"
USAGE = {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6, "prompt_tokens_details": None}


class FakeProxy:
    """The proxy's v3 behaviour on top of the reference server; `hostile` edits what goes back on the wire."""

    def __init__(self, hostile=None, is_async: bool = False) -> None:
        self.server = ReferenceServer()
        self.is_async = is_async
        self.hostile = hostile
        self.received: list[bytes] = []
        self.sent: list[bytes] = []
        self.upstream_status = 200

    def attestation(self):
        nonce = b"\x05" * 32
        return verify_report(self.server.report(nonce), nonce=nonce, origin=BASE, allow_unverified_quotes=True)

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": [{"id": "m", "object": "model"}]})
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        assert request.headers["x-e2ee-version"] == "3"
        body = request.read()
        self.received.append(body)
        route = request.url.path
        opened = self.server.open_request(route, body)
        prompt = opened.body.get("messages", [{}])[-1].get("content") or opened.body.get("prompt") or ""
        if opened.body.get("stream"):
            reads = [
                json.dumps({"id": "chat-s", "object": "chat.completion.chunk", "created": 1, "model": "m",
                            "choices": [{"index": 0, "delta": {"role": "assistant", "content": word}}]})
                for word in ("echo:", " ", prompt)
            ]
            reads.append(json.dumps({"id": "chat-s", "object": "chat.completion.chunk", "created": 1, "model": "m",
                                     "choices": [], "usage": USAGE}))
            events = self.server.stream_events(opened, [f"data: {r}\n\n".encode() for r in reads], USAGE,
                                               final=b"data: [DONE]\n\n")
            if self.hostile:
                events = self.hostile(events)
            wire = self.server.wire(events)
            self.sent.append(wire)
            pieces = [wire[i : i + 50] for i in range(0, len(wire), 50)]
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=_aiter(pieces) if self.is_async else iter(pieces))
        if self.upstream_status != 200:
            answer = json.dumps({"error": {"message": "bad thing in " + prompt, "type": "BadRequestError",
                                           "param": None, "code": 400}}).encode()
        else:
            answer = json.dumps({"id": "chat-1", "object": "chat.completion", "created": 1, "model": "m",
                                 "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": "echo: " + prompt}}],
                                 "usage": USAGE}).encode()
        envelope = self.server.json_answer(opened, answer)
        if self.hostile:
            envelope = self.hostile(envelope)
        self.sent.append(envelope)
        return httpx.Response(self.upstream_status, headers={"content-type": "application/json"}, content=envelope)


async def _aiter(pieces):
    for piece in pieces:
        yield piece


def sync_client(proxy: FakeProxy, **options):
    transport = E2EETransport(proxy.attestation(), inner=httpx.MockTransport(proxy.handler),
                              policy=NoDowngradePolicy(), **options)
    client = openai.OpenAI(base_url=f"{BASE}/v1", api_key=TOKEN, max_retries=0,
                           http_client=httpx.Client(transport=transport))
    return client, transport


def ask(client, **options):
    return client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hello"}], **options)


def test_sdk_chat_json_and_receipt_hashes():
    proxy = FakeProxy()
    client, transport = sync_client(proxy)
    completion = ask(client)
    assert completion.choices[0].message.content == "echo: hello"
    assert completion.usage.total_tokens == 6
    exchange = transport.last_exchange
    assert exchange.request_hash == hashlib.sha256(proxy.received[0]).hexdigest()
    assert exchange.response_hash == hashlib.sha256(proxy.sent[0]).hexdigest()
    assert exchange.chat_id == "chat-1" and exchange.status_code == 200
    assert b"hello" not in proxy.received[0]


def test_sdk_chat_stream_opens_incrementally():
    proxy = FakeProxy()
    client, transport = sync_client(proxy)
    chunks = list(ask(client, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content for c in chunks if c.choices)
    assert text == "echo: hello" and chunks[-1].usage.total_tokens == 6
    exchange = transport.last_exchange
    assert exchange.response_hash == hashlib.sha256(proxy.sent[0]).hexdigest() and exchange.chat_id == "chat-s"


def test_sdk_raw_response_carries_the_exchange():
    proxy = FakeProxy()
    client, _ = sync_client(proxy)
    raw = client.chat.completions.with_raw_response.create(model="m", messages=[{"role": "user", "content": "x"}])
    raw.parse()
    assert raw.http_response.extensions[EXTENSION].chat_id == "chat-1"
    assert raw.http_response.headers["content-type"] == "application/json"


def test_sdk_completions_and_embeddings_routes_are_sealed():
    proxy = FakeProxy()
    client, transport = sync_client(proxy)
    completion = client.completions.create(model="m", prompt="p")
    assert completion.id == "chat-1" and transport.last_exchange.route == "/v1/completions"
    client.embeddings.with_raw_response.create(model="m", input="e")
    assert transport.last_exchange.route == "/v1/embeddings"


def test_sealed_upstream_error_reaches_the_sdk_as_its_status():
    proxy = FakeProxy()
    proxy.upstream_status = 400
    client, _ = sync_client(proxy)
    with pytest.raises(openai.BadRequestError, match="bad thing in hello"):
        ask(client)


def test_get_passes_through_but_unsealable_post_is_refused():
    proxy = FakeProxy()
    client, _ = sync_client(proxy)
    assert client.models.list().data[0].id == "m"
    transport = E2EETransport(proxy.attestation(), inner=httpx.MockTransport(proxy.handler), policy=NoDowngradePolicy())
    with httpx.Client(transport=transport) as http, pytest.raises(E2EEError, match="in clear"):
        http.post(f"{BASE}/v1/audio/transcriptions", content=b"x")


def test_clear_error_raises_typed_error_and_never_falls_back():
    def key_unknown(request):
        return httpx.Response(400, json={"error": {"message": "unknown key", "type": "e2ee_key_unknown",
                                                   "param": None, "code": None}})

    proxy = FakeProxy()
    transport = E2EETransport(proxy.attestation(), inner=httpx.MockTransport(key_unknown), policy=NoDowngradePolicy())
    with httpx.Client(transport=transport) as http, pytest.raises(E2EEServerError) as error:
        http.post(f"{BASE}/v1/chat/completions", json={"model": "m", "messages": []})
    assert error.value.error_type == "e2ee_key_unknown" and error.value.status_code == 400
    client = openai.OpenAI(base_url=f"{BASE}/v1", api_key=TOKEN, max_retries=0,
                           http_client=httpx.Client(transport=transport))
    with pytest.raises(openai.APIConnectionError) as wrapped:
        ask(client)
    assert isinstance(wrapped.value.__cause__, E2EEServerError)


@pytest.mark.parametrize("status,content_type,body", [
    (200, "application/json", b'{"id":"chat-1","choices":[]}'),
    (200, "text/event-stream", b'data: {"id":"x","choices":[]}\n\ndata: [DONE]\n\n'),
    (502, "text/plain", b"Bad Gateway"),
])
def test_plaintext_answers_to_v3_requests_are_refused(status, content_type, body):
    proxy = FakeProxy()
    inner = httpx.MockTransport(lambda r: httpx.Response(status, headers={"content-type": content_type}, content=body))
    transport = E2EETransport(proxy.attestation(), inner=inner, policy=NoDowngradePolicy())
    with httpx.Client(transport=transport) as http, pytest.raises((E2EEServerError, E2EEVerificationError)):
        http.post(f"{BASE}/v1/chat/completions", json={"model": "m", "stream": True, "messages": []}).read()


def test_tampered_json_usage_fails_the_sdk_call():
    def lie(envelope: bytes) -> bytes:
        document = json.loads(envelope)
        document["usage"]["completion_tokens"] = 1
        return json.dumps(document).encode()

    client, transport = sync_client(FakeProxy(hostile=lie))
    with pytest.raises(openai.APIConnectionError) as error:
        ask(client)
    assert isinstance(error.value.__cause__, E2EEVerificationError)
    assert not transport.last_exchange.complete


@pytest.mark.parametrize("hostile", [
    pytest.param(lambda e: e[:-3], id="truncated"),
    pytest.param(lambda e: [e[0], e[2], e[1], *e[3:]], id="reordered"),
    pytest.param(lambda e: e[:-2] + [{"object": "e2ee.v3.usage", "choices": [], "usage": {"total_tokens": 1}}, e[-1]],
                 id="usage-edited"),
])
def test_tampered_stream_raises_while_iterating(hostile):
    client, transport = sync_client(FakeProxy(hostile=hostile))
    stream = ask(client, stream=True)
    with pytest.raises(E2EEVerificationError):
        for _ in stream:
            pass
    assert not transport.last_exchange.complete


def test_async_sdk_json_and_stream():
    async def main():
        proxy = FakeProxy(is_async=True)
        transport = AsyncE2EETransport(proxy.attestation(), inner=httpx.MockTransport(proxy.handler),
                                       policy=NoDowngradePolicy())
        client = openai.AsyncOpenAI(base_url=f"{BASE}/v1", api_key=TOKEN, max_retries=0,
                                    http_client=httpx.AsyncClient(transport=transport))
        completion = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "a"}])
        assert completion.choices[0].message.content == "echo: a"
        stream = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "b"}],
                                                      stream=True)
        text = "".join([c.choices[0].delta.content async for c in stream if c.choices])
        assert text == "echo: b"
        assert transport.last_exchange.response_hash == hashlib.sha256(proxy.sent[-1]).hexdigest()

    asyncio.run(main())


def test_async_tampered_stream_raises():
    async def main():
        proxy = FakeProxy(hostile=lambda e: e[:-3], is_async=True)
        transport = AsyncE2EETransport(proxy.attestation(), inner=httpx.MockTransport(proxy.handler),
                                       policy=NoDowngradePolicy())
        client = openai.AsyncOpenAI(base_url=f"{BASE}/v1", api_key=TOKEN, max_retries=0,
                                    http_client=httpx.AsyncClient(transport=transport))
        stream = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "b"}],
                                                      stream=True)
        with pytest.raises(E2EEVerificationError, match="truncated"):
            async for _ in stream:
                pass

    asyncio.run(main())


def test_receipt_is_checked_against_the_exchange():
    proxy = FakeProxy()
    client, transport = sync_client(proxy)
    ask(client)
    exchange = transport.last_exchange
    key = Ed25519PrivateKey.generate()
    address = key.public_key().public_bytes_raw().hex()

    def signature_route(text: str):
        def handler(request: httpx.Request) -> httpx.Response:
            assert request.url.path == f"/v1/signature/{exchange.chat_id}"
            assert request.url.params["signing_algo"] == "ed25519"
            return httpx.Response(200, json={"text": text, "signature": key.sign(text.encode()).hex(),
                                             "signing_address": address, "signing_algo": "ed25519"})
        return httpx.Client(transport=httpx.MockTransport(handler))

    good = f"{exchange.request_hash}:{exchange.response_hash}"
    receipt = fetch_receipt(BASE + "/v1", TOKEN, exchange, client=signature_route(good), signing_algo="ed25519",
                            signing_address=address)
    assert receipt.signature_verified is True
    with pytest.raises(ReceiptError, match="covers"):
        # Another last hex digit (one in 16 hashes already ends in "0": replacing it by "0" changed nothing).
        tampered = good[:-1] + ("1" if good[-1] == "0" else "0")
        fetch_receipt(BASE, TOKEN, exchange, client=signature_route(tampered), signing_algo="ed25519")
    with pytest.raises(ReceiptError, match="signer"):
        fetch_receipt(BASE, TOKEN, exchange, client=signature_route(good), signing_algo="ed25519",
                      signing_address="00" * 32)
