"""Shared by test_e2ee_v3.py and test_e2ee_v3_hostile.py: attesting a proxy with the Python client
(clients/python, package `vllm_proxy_client`), an httpx "gateway" transport that records (and may tamper with)
every byte between the client library and the real proxy, envelope surgery, and leak detection.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import time
import uuid
from collections.abc import Callable

import httpx
import requests
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pyhpke import AEADId, CipherSuite, KDFId, KEMId

from helpers import assert_error, sse_events
from vllm_proxy_client import (
    Attestation,
    SealedRequest,
    StreamEnvelopeReader,
    Suite,
    fetch_attestation,
    open_json_envelope,
    request_info,
    seal_request,
)

CHAT = "/v1/chat/completions"
TEXT = "/v1/completions"
CHUTES = "/v1/chutes/chat/completions"
V3 = {"X-E2EE-Version": "3"}
TIMEOUT = httpx.Timeout(60, connect=5)


def spki_der(cert_path) -> bytes:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def attest(proxy, stack, **options) -> Attestation:
    """The client library's own attestation (version 3, fresh nonce) of a proxy the stack started (TLS_CERT_PATH
    is always set there, so the identity binds that certificate's key). The dev agent's quotes are TDX v4 quotes
    from its throwaway dev PKI, which proves nothing here: they are parsed but not verified
    (interop/test_dev_agent_quotes.py verifies them with dcap-qvl against the dev root)."""
    return fetch_attestation(
        proxy.base_url, proxy.token, allow_unverified_quotes=True, tls_spki_der=spki_der(stack.cert_path), **options
    )


def secret_text() -> str:
    return "SECRET" + uuid.uuid4().hex


def chat_request(text: str, model: str = "stub-model", stream: bool = False, **extra) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": text}], **extra}
    if stream:
        body["stream"] = True
    return body


def text_request(text: str, model: str = "stub-model", stream: bool = False, **extra) -> dict:
    body = {"model": model, "prompt": text, "max_tokens": 16, **extra}
    if stream:
        body["stream"] = True
    return body


def body_for(route: str, text: str, model: str = "stub-model", stream: bool = False, **extra) -> dict:
    return (text_request if route == TEXT else chat_request)(text, model, stream, **extra)


# ---------------------------------------------------------------- sealing


def seal(att: Attestation, route: str, body: dict, **options) -> SealedRequest:
    return seal_request(json.dumps(body).encode(), route=route, key_configs=att.key_configs, kc=att.kc, **options)


def seal_mismatched(att: Attestation, route: str, plaintext: bytes, model: str, stream: bool) -> bytes:
    """A correctly sealed envelope whose clear (and key-schedule) model/stream differ from the sealed body's:
    what a client (or a gateway sealing its own request) could produce; the proxy must compare after opening."""
    suite = Suite.X25519_AES256GCM
    config = next(c for c in att.key_configs if c.offers(suite))
    hdr = struct.pack(">BHHH", config.key_id, suite.kem_id, suite.kdf_id, suite.aead_id)
    ts = int(time.time())
    cipher = CipherSuite.new(KEMId(suite.kem_id), KDFId(suite.kdf_id), AEADId(suite.aead_id))
    enc, context = cipher.create_sender_context(
        cipher.kem.deserialize_public_key(config.public_key), request_info(hdr, route, model, stream, ts)
    )
    ct = context.seal(plaintext, b"")
    envelope = {"model": model, "stream": stream, "e2ee": {"v": 3, "kc": att.kc, "ts": ts,
                                                           "req": base64.b64encode(hdr + enc + ct).decode()}}
    return json.dumps(envelope).encode()


def envelope(body: bytes) -> dict:
    return json.loads(body)


def with_envelope(body: bytes, edit: Callable[[dict], None]) -> bytes:
    document = json.loads(body)
    edit(document)
    return json.dumps(document).encode()


def with_req(body: bytes, edit: Callable[[bytes], bytes]) -> bytes:
    def change(document: dict) -> None:
        raw = base64.b64decode(document["e2ee"]["req"])
        document["e2ee"]["req"] = base64.b64encode(edit(raw)).decode()

    return with_envelope(body, change)


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1:]


# ---------------------------------------------------------------- sending as a gateway


def send(proxy, route: str, body: bytes, *, stream: bool, headers: dict | None = None, v3_header: bool = True):
    """POSTs envelope bytes exactly as given (with `X-E2EE-Version: 3` unless told not to); returns (response,
    every body byte)."""
    all_headers = {**(V3 if v3_header else {}), "X-User-Tier": "premium", **(headers or {})}
    if stream:
        r, raw = proxy.post_stream(route, body, headers=all_headers)
    else:
        r = proxy.post(route, body, headers=all_headers)
        raw = r.content
    return r, raw


def refused(r: requests.Response, raw: bytes, status: int, error_type: str) -> dict:
    """SPEC §2's one error shape, in clear JSON (a streamed request's protocol error too)."""
    assert r.headers.get("content-type", "").startswith("application/json"), (r.headers, raw[:300])
    r._content = raw
    return assert_error(r, status, error_type)


def open_answer(sealed: SealedRequest, r: requests.Response, raw: bytes) -> bytes:
    """The opened upstream bytes of a sealed answer (JSON or stream envelope), every check of the library made."""
    assert r.headers.get("X-E2EE-Applied") == "true", (r.status_code, r.headers, raw[:300])
    assert r.headers.get("X-E2EE-Version") == "3"
    assert r.headers.get("X-E2EE-Algo") == sealed.suite.algo_name
    if r.headers.get("content-type", "").startswith("text/event-stream"):
        return open_stream(sealed, raw)
    assert r.headers.get("content-type", "").startswith("application/json")
    return open_json_envelope(sealed, raw).body


def open_stream(sealed: SealedRequest, raw: bytes, piece: int = 97) -> bytes:
    """Feeds the wire bytes in odd-sized pieces, as a network would cut them."""
    reader = StreamEnvelopeReader(sealed)
    out = b"".join(reader.feed(raw[i:i + piece]) for i in range(0, len(raw), piece))
    return out + reader.finish()


def stream_events(raw: bytes) -> list[dict | str]:
    return [e.decode() if e == b"[DONE]" else json.loads(e) for e in sse_events(raw)]


def join_events(events: list[dict | str]) -> bytes:
    return b"".join(
        b"data: " + (e.encode() if isinstance(e, str) else json.dumps(e, separators=(",", ":")).encode()) + b"\n\n"
        for e in events
    )


def sealed_chunks(raw: bytes) -> list[bytes]:
    """Every sealed chunk of an answer, in order (the JSON envelope's single final chunk, or c… then f)."""
    if raw.startswith(b"{"):
        return [base64.b64decode(json.loads(raw)["e2ee"]["f"])]
    chunks = []
    for event in stream_events(raw):
        if isinstance(event, dict) and isinstance(event.get("e2ee"), dict):
            inner = event["e2ee"]
            for key in ("c", "f"):
                if key in inner:
                    chunks.append(base64.b64decode(inner[key]))
    return chunks


# ---------------------------------------------------------------- the gateway as an httpx transport


class Gateway(httpx.BaseTransport):
    """Sits between the client library's transport and the real proxy: records the exact bytes both ways and
    may rewrite either (a hostile gateway). The answer is read whole before it is handed on."""

    def __init__(self, tamper_request: Callable[[bytes], bytes] | None = None,
                 tamper_response: Callable[[bytes], bytes] | None = None):
        self.inner = httpx.HTTPTransport()
        self.tamper_request = tamper_request
        self.tamper_response = tamper_response
        self.sent: list[bytes] = []
        self.received: list[bytes] = []
        self.headers: list[httpx.Headers] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        if self.tamper_request and request.method == "POST":
            body = self.tamper_request(body)
            headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() != "content-length"]
            request = httpx.Request(request.method, request.url, headers=headers, content=body)
        self.sent.append(body)
        response = self.inner.handle_request(request)
        raw = response.read()
        self.received.append(raw)
        self.headers.append(response.headers)
        if self.tamper_response and request.method == "POST":
            raw = self.tamper_response(raw)
        headers = [(k, v) for k, v in response.headers.multi_items()
                   if k.lower() not in ("content-length", "transfer-encoding", "content-encoding")]
        return httpx.Response(response.status_code, headers=headers, content=raw)

    def close(self) -> None:
        self.inner.close()


class AsyncGateway(httpx.AsyncBaseTransport):
    """Gateway, for httpx.AsyncClient (records only)."""

    def __init__(self):
        self.inner = httpx.AsyncHTTPTransport()
        self.sent: list[bytes] = []
        self.received: list[bytes] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(await request.aread())
        response = await self.inner.handle_async_request(request)
        raw = await response.aread()
        self.received.append(raw)
        headers = [(k, v) for k, v in response.headers.multi_items()
                   if k.lower() not in ("content-length", "transfer-encoding", "content-encoding")]
        return httpx.Response(response.status_code, headers=headers, content=raw)

    async def aclose(self) -> None:
        await self.inner.aclose()


# ---------------------------------------------------------------- leak detection


def leak_forms(secret: str) -> list[tuple[str, str]]:
    """(form, text) for every 12-character piece of `secret` as is and as hex, and for 16-character windows of
    its base64 (standard and urlsafe) at each of the three alignments."""
    forms = []
    for i in range(len(secret) - 11):
        piece = secret[i:i + 12]
        forms += [("raw", piece), ("hex", piece.encode().hex())]
    for shift in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(secret[shift:].encode()).decode()
            forms += [("base64", encoded[i:i + 16]) for i in range(0, len(encoded) - 16, 4)]
    return forms


def leaks(secret: str, raw: bytes) -> list[str]:
    text = raw.decode("latin-1")
    lowered = text.lower()
    return [f"{form}:{piece}" for form, piece in leak_forms(secret)
            if piece in text or (form == "hex" and piece in lowered)]


def headers_text(headers) -> bytes:
    return "\n".join(f"{k}: {v}" for k, v in headers.items()).encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def upstream_posts(upstream) -> list[dict]:
    """What an upstream (stub-vllm or the Chutes stand-in) was asked to complete (the metrics poller and model
    lists are GETs)."""
    return [r for r in upstream.requests() if r["method"] == "POST"]
