"""SPEC §2's other vLLM routes (issue #21) against the real binary and the stub: the Responses API (streamed with
`event:` lines, or not), embeddings, rerank, score, tokenize/detokenize, audio transcriptions/translations
(multipart, streamed upstream) and image generations.

Each route through the official `openai` SDK where it has a method (raw HTTP for the rest), each JSON route also
under E2EE v3 through the client package; receipts checked over the exact bytes with eth-account and
cryptography; v1/v2 headers refused; vLLM's own 404 passed through; upload limits (413 without reading, the body
timeout for a never-ending part), disconnects cancelling the upstream request, traffic control and metric labels.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import time
import uuid
import wave

import httpx
import openai
import pytest
import requests

from conftest import TIMEOUT

from helpers import assert_error, sha256_hex, verify_ecdsa_receipt, verify_ed25519_receipt
from v3_support import TIMEOUT as HTTPX_TIMEOUT, Gateway, attest, headers_text, leaks, secret_text, upstream_posts
from vllm_proxy_client import E2EETransport, fetch_receipt

RESPONSES, EMBEDDINGS, RERANK, SCORE = "/v1/responses", "/v1/embeddings", "/v1/rerank", "/v1/score"
TOKENIZE, DETOKENIZE, IMAGES = "/v1/tokenize", "/v1/detokenize", "/v1/images/generations"
TRANSCRIPTIONS, TRANSLATIONS = "/v1/audio/transcriptions", "/v1/audio/translations"
PNG_1X1 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def unique(label: str) -> str:
    return f"{label} {uuid.uuid4().hex[:12]}"


def posts(stub, path: str | None = None) -> list[dict]:
    """The POSTs the stub received (on `path` when given)."""
    return [r for r in upstream_posts(stub) if path is None or r["path"] == path]


def wav(seconds: float = 1.0, rate: int = 16000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\0\0" * int(seconds * rate))
    return out.getvalue()


class Recorder(httpx.BaseTransport):
    """The bytes the SDK sent and received, whole, so receipts can be recomputed independently."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.sent: list[bytes] = []
        self.received: list[bytes] = []
        self.headers: list[httpx.Headers] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request.read())
        response = self.inner.handle_request(request)
        raw = response.read()
        self.received.append(raw)
        self.headers.append(response.headers)
        headers = [(k, v) for k, v in response.headers.multi_items()
                   if k.lower() not in ("content-length", "transfer-encoding", "content-encoding")]
        return httpx.Response(response.status_code, headers=headers, content=raw)


def sdk(proxy) -> tuple[openai.OpenAI, Recorder]:
    recorder = Recorder()
    client = openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=proxy.token, max_retries=0,
                           http_client=httpx.Client(transport=recorder, timeout=HTTPX_TIMEOUT))
    return client, recorder


def check_receipt(proxy, chat_id: str, request: bytes, response: bytes) -> dict:
    """Both algorithms' records cover SHA-256(request bytes):SHA-256(response bytes), verified independently."""
    expected = f"{sha256_hex(request)}:{sha256_hex(response)}"
    records = {}
    for algo, verify in (("ecdsa", verify_ecdsa_receipt), ("ed25519", verify_ed25519_receipt)):
        r = proxy.signature(chat_id, algo)
        assert r.status_code == 200, (chat_id, r.text)
        record = r.json()
        assert record["text"] == expected, (record["text"], expected)
        assert record["upstream"] == "vllm"
        verify(record["text"], record["signature"], record["signing_address"])
        records[algo] = record
    return records


# ---------------------------------------------------------------- 1. plain, through the openai SDK


def test_responses_json_through_the_sdk(proxy, stub):
    text = unique("tell me about receipts")
    client, recorder = sdk(proxy)
    answer = client.responses.create(model="stub-model", input=text)
    assert answer.output_text == f"Echo: {text}"
    assert answer.id.startswith("resp_")
    (forwarded,) = posts(stub, RESPONSES)
    assert forwarded["body"].encode() == recorder.sent[-1], "a plain body is forwarded byte for byte"
    # Byte for byte what vLLM answered: a plain answer passes untouched.
    assert recorder.received[-1] == stub.post(RESPONSES, recorder.sent[-1])
    check_receipt(proxy, answer.id, recorder.sent[-1], recorder.received[-1])


def test_responses_stream_through_the_sdk_is_signed_under_response_id(proxy, stub):
    text = unique("stream a response")
    client, recorder = sdk(proxy)
    events = list(client.responses.create(model="stub-model", input=text, stream=True))
    types = [event.type for event in events]
    assert types[0] == "response.created" and types[-1] == "response.completed"
    deltas = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert deltas == f"Echo: {text}"
    raw = recorder.received[-1]
    assert b"event: response.created\n" in raw, "event: lines pass through"
    response_id = events[0].response.id
    assert recorder.headers[-1]["content-type"] == "text/event-stream"
    assert recorder.headers[-1]["x-accel-buffering"] == "no"
    check_receipt(proxy, response_id, recorder.sent[-1], raw)


def test_embeddings_through_the_sdk_float_and_base64(proxy, stub):
    client, recorder = sdk(proxy)
    inputs = [unique("first"), unique("second")]
    # The SDK asks for base64 by default and decodes it itself.
    reply = client.embeddings.create(model="stub-model", input=inputs)
    assert [len(item.embedding) for item in reply.data] == [8, 8]
    check_receipt(proxy, reply.id if hasattr(reply, "id") else json.loads(recorder.received[-1])["id"],
                  recorder.sent[-1], recorder.received[-1])
    floats = client.embeddings.create(model="stub-model", input=inputs, encoding_format="float")
    assert [round(x, 5) for x in floats.data[0].embedding] == [round(x, 5) for x in reply.data[0].embedding]
    answer = json.loads(recorder.received[-1])
    assert answer["id"].startswith("embd-")
    check_receipt(proxy, answer["id"], recorder.sent[-1], recorder.received[-1])


@pytest.mark.parametrize("route", [TRANSCRIPTIONS, TRANSLATIONS])
def test_audio_through_the_sdk_is_signed_under_the_proxy_made_id(proxy, stub, route):
    client, recorder = sdk(proxy)
    audio = client.audio.transcriptions if route == TRANSCRIPTIONS else client.audio.translations
    raw = audio.with_raw_response.create(model="stub-model", file=("clip.wav", wav(1.0), "audio/wav"))
    result = raw.parse()
    task = "Transcript" if route == TRANSCRIPTIONS else "Translation"
    assert result.text == f"{task} of a 1.00 s WAV (16000 Hz, 1 channel) named clip.wav"
    chat_id = raw.headers["x-chat-id"]
    assert chat_id.startswith("trsc-" if route == TRANSCRIPTIONS else "trsl-") and len(chat_id) == 5 + 32
    (forwarded,) = posts(stub, route)
    assert forwarded["headers"]["content-type"].startswith("multipart/form-data; boundary=")
    check_receipt(proxy, chat_id, recorder.sent[-1], recorder.received[-1])


def test_audio_text_format_and_stream_when_the_form_asks(proxy, stub):
    files = {"file": ("clip.wav", wav(0.5), "audio/wav")}
    r = requests.post(proxy.base_url + TRANSCRIPTIONS, headers=proxy.auth(), files=files,
                      data={"model": "stub-model", "response_format": "text"}, timeout=TIMEOUT)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert r.text == "Transcript of a 0.50 s WAV (16000 Hz, 1 channel) named clip.wav"
    prepared = requests.Request("POST", proxy.base_url + TRANSCRIPTIONS, headers=proxy.auth(), files=files,
                                data={"model": "stub-model", "stream": "true"}).prepare()
    with requests.Session().send(prepared, stream=True, timeout=TIMEOUT) as streamed:
        body = b"".join(streamed.iter_content(None))
    assert streamed.status_code == 200 and streamed.headers["content-type"] == "text/event-stream"
    assert body.endswith(b"data: [DONE]\n\n")
    words = [json.loads(e[6:])["choices"][0]["delta"]["content"] for e in body[:-2].split(b"\n\n") if e != b"data: [DONE]"]
    assert "".join(words) == "Transcript of a 0.50 s WAV (16000 Hz, 1 channel) named clip.wav"
    check_receipt(proxy, streamed.headers["x-chat-id"], prepared.body, body)


def test_image_generation_through_the_sdk(proxy, stub):
    client, recorder = sdk(proxy)
    raw = client.images.with_raw_response.generate(model="stub-model", prompt=unique("a lighthouse"), n=2)
    images = raw.parse()
    assert [image.b64_json for image in images.data] == [PNG_1X1, PNG_1X1]
    assert base64.b64decode(images.data[0].b64_json).startswith(b"\x89PNG\r\n\x1a\n")
    chat_id = raw.headers["x-chat-id"]
    assert chat_id.startswith("img-")
    assert recorder.received[-1] == stub.post("/v1/images/generations", recorder.sent[-1])
    check_receipt(proxy, chat_id, recorder.sent[-1], recorder.received[-1])


@pytest.mark.parametrize("route,body,prefix", [
    (RERANK, {"model": "stub-model", "query": "which one", "documents": ["a", "b", "c"], "top_n": 2}, "rerank-"),
    (SCORE, {"model": "stub-model", "text_1": "query", "text_2": ["x", "y"]}, "score-"),
])
def test_rerank_and_score_raw(proxy, stub, route, body, prefix):
    data = json.dumps(body).encode()
    r = proxy.post(route, data)
    assert r.status_code == 200, r.text
    assert r.content == stub.post(route, data)
    answer = r.json()
    assert answer["id"].startswith(prefix)
    if route == RERANK:
        assert len(answer["results"]) == 2
    check_receipt(proxy, answer["id"], data, r.content)


def test_tokenize_and_detokenize_reach_vllms_paths_unsigned(proxy, stub):
    r = proxy.post(TOKENIZE, json.dumps({"model": "stub-model", "prompt": "héllo"}).encode())
    assert r.status_code == 200, r.text
    tokens = r.json()["tokens"]
    assert tokens == list("héllo".encode())
    back = proxy.post(DETOKENIZE, json.dumps({"model": "stub-model", "tokens": tokens}).encode())
    assert back.status_code == 200 and back.json() == {"prompt": "héllo"}
    assert [p["path"] for p in posts(stub)] == ["/tokenize", "/detokenize"]
    assert "x-chat-id" not in {k.lower() for k in back.headers}


# ---------------------------------------------------------------- 2. E2EE v3 on every JSON route


@pytest.fixture(scope="module")
def att(proxy, stack):
    return attest(proxy, stack)


def sealed_sdk(proxy, att) -> tuple[openai.OpenAI, E2EETransport, Gateway]:
    gateway = Gateway()
    transport = E2EETransport(att, inner=gateway)
    client = openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=proxy.token, max_retries=0,
                           http_client=httpx.Client(transport=transport, timeout=HTTPX_TIMEOUT))
    return client, transport, gateway


def check_sealed(proxy, att, transport, gateway, secret: str) -> None:
    """Nothing of the secret crossed the gateway in either direction; the receipt covers the envelope bytes."""
    for raw in gateway.sent + gateway.received:
        assert not leaks(secret, raw), leaks(secret, raw)
    assert not leaks(secret, headers_text(gateway.headers[-1]))
    exchange = transport.last_exchange
    assert exchange.complete and exchange.chat_id
    assert exchange.request_hash == sha256_hex(gateway.sent[-1])
    assert exchange.response_hash == sha256_hex(gateway.received[-1])
    receipt = fetch_receipt(proxy.base_url, proxy.token, exchange, signing_address=att.signing_address)
    assert receipt.signature_verified is True
    # The record signature too: `upstream` is authenticated, not just the two hashes.
    assert receipt.record_verified is True and receipt.signed_record["upstream"] == "vllm"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_v3_responses(proxy, att, stub, stream):
    secret = secret_text()
    client, transport, gateway = sealed_sdk(proxy, att)
    if stream:
        events = list(client.responses.create(model="stub-model", input=f"say {secret}", stream=True))
        text = "".join(event.delta for event in events if event.type == "response.output_text.delta")
        assert events[-1].response.usage.total_tokens > 0
        assert transport.last_exchange.chat_id == events[0].response.id
    else:
        answer = client.responses.create(model="stub-model", input=f"say {secret}")
        text = answer.output_text
        assert transport.last_exchange.chat_id == answer.id
        # The clear usage is the Responses API's `response.usage`'s numbers.
        assert json.loads(gateway.received[-1])["usage"] == {"input_tokens": 5, "output_tokens": 3, "total_tokens": 8}
    assert text == f"Echo: say {secret}"
    (forwarded,) = posts(stub, RESPONSES)
    upstream = json.loads(forwarded["body"])
    assert upstream["input"] == f"say {secret}" and upstream["cache_salt"]
    assert "stream_options" not in upstream, "include_usage is for chat and completions streams only"
    check_sealed(proxy, att, transport, gateway, secret)


def test_v3_embeddings_images_and_raw_routes(proxy, att, stub):
    secret = secret_text()
    client, transport, gateway = sealed_sdk(proxy, att)
    reply = client.embeddings.create(model="stub-model", input=[f"embed {secret}"])
    assert len(reply.data[0].embedding) == 8
    (forwarded,) = posts(stub, EMBEDDINGS)
    assert "cache_salt" not in json.loads(forwarded["body"]), "no salt where vLLM has no prefix cache to salt"
    check_sealed(proxy, att, transport, gateway, secret)

    images = client.images.generate(model="stub-model", prompt=f"draw {secret}")
    assert images.data[0].revised_prompt == f"Echo: draw {secret}"
    assert transport.last_exchange.chat_id.startswith("img-"), "the proxy-made id, from X-Chat-Id"
    check_sealed(proxy, att, transport, gateway, secret)

    for route, body in [
        (RERANK, {"model": "stub-model", "query": f"q {secret}", "documents": [f"d {secret}", "e"]}),
        (SCORE, {"model": "stub-model", "text_1": f"q {secret}", "text_2": "x"}),
    ]:
        answer = client.post(route.removeprefix("/v1"), body=body, cast_to=httpx.Response)
        assert answer.status_code == 200 and answer.json()["id"]
        check_sealed(proxy, att, transport, gateway, secret)


def test_v3_tokenize_round_trip_is_sealed_and_unsigned(proxy, att, stub):
    secret = secret_text()
    client, transport, gateway = sealed_sdk(proxy, att)
    tokens = client.post("/tokenize", body={"model": "stub-model", "prompt": secret}, cast_to=httpx.Response).json()
    assert tokens["tokens"] == list(secret.encode())
    back = client.post("/detokenize", body={"model": "stub-model", "tokens": tokens["tokens"]}, cast_to=httpx.Response)
    assert back.json() == {"prompt": secret}
    for raw in gateway.sent + gateway.received:
        assert not leaks(secret, raw)
    assert [p["path"] for p in posts(stub)] == ["/tokenize", "/detokenize"]


# ---------------------------------------------------------------- 3. refusals, errors, limits


@pytest.mark.parametrize("route", [RESPONSES, EMBEDDINGS, RERANK, SCORE, TOKENIZE, DETOKENIZE, IMAGES])
def test_v1_v2_headers_are_refused_on_every_other_route(proxy, stub, route):
    body = json.dumps({"model": "stub-model", "input": "x"}).encode()
    r = proxy.post(route, body, headers={"X-Signing-Algo": "ecdsa", "X-Client-Pub-Key": "04" + "11" * 64,
                                         "X-Model-Pub-Key": "04" + "22" * 64})
    error = assert_error(r, 400, "invalid_e2ee_request")
    assert error["message"] == "E2EE v1/v2 is only supported on /v1/chat/completions"
    assert posts(stub) == []


@pytest.mark.parametrize("header", [{"X-E2EE-Version": "3"}, {"X-E2EE-Version": "2"}, {"X-Signing-Algo": "ecdsa"}])
def test_any_e2ee_header_is_refused_on_audio(proxy, stub, header):
    r = requests.post(proxy.base_url + TRANSCRIPTIONS, headers={**proxy.auth(), **header},
                      files={"file": ("a.wav", wav(0.1), "audio/wav")}, data={"model": "stub-model"}, timeout=TIMEOUT)
    assert_error(r, 400, "invalid_e2ee_request")
    assert posts(stub) == []


def test_audio_body_must_be_a_multipart_form(proxy, stub):
    for content_type in ("application/json", "multipart/form-data", 'multipart/form-data; boundary=""'):
        r = proxy.post(TRANSCRIPTIONS, b"{}", headers={"Content-Type": content_type})
        assert_error(r, 400, "invalid_request_error")
    assert posts(stub) == []


@pytest.mark.parametrize("route", [RESPONSES, EMBEDDINGS, RERANK, TOKENIZE, IMAGES])
def test_vllms_own_404_passes_through(proxy, route):
    r = proxy.post(route, json.dumps({"model": "stub-unserved"}).encode())
    assert r.status_code == 404 and r.json() == {"detail": "Not Found"}


def test_upstream_error_status_and_body_pass_through(proxy):
    r = proxy.post(EMBEDDINGS, json.dumps({"model": "stub-error-422", "input": "x"}).encode())
    assert r.status_code == 422 and r.json()["message"] == "stub error 422"


def test_json_rules_apply_to_every_route(proxy, stub):
    assert_error(proxy.post(EMBEDDINGS, b'{"model": "a", "model": "b"}'), 400, "invalid_request_error")
    assert_error(proxy.post(RERANK, b"[1, 2]"), 400, "invalid_request_error")
    assert_error(proxy.post(RESPONSES, b'{"stream": "true"}'), 400, "invalid_request_error")
    assert posts(stub) == []


@pytest.fixture(scope="module")
def upload_proxy(stack):
    """Small upload limit and a short body timeout."""
    return stack.proxies.get("upload-proxy") or stack.start_proxy(
        "upload-proxy", MAX_UPLOAD_BYTES="65536", BODY_TIMEOUT_SECONDS="2")


def raw_request(proxy, head: bytes, body: bytes = b"", wait: float = 10.0) -> bytes:
    port = int(proxy.base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        s.sendall(head + body)
        answer = b""
        deadline = time.monotonic() + wait
        while b"\r\n\r\n" not in answer and time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


def upload_head(proxy, length: int | None, boundary: str = "xyz") -> bytes:
    framing = f"Content-Length: {length}\r\n" if length is not None else "Transfer-Encoding: chunked\r\n"
    return (f"POST {TRANSCRIPTIONS} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {proxy.token}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n{framing}\r\n").encode()


def test_upload_over_the_limit_by_content_length_is_413_before_any_byte(upload_proxy, stub):
    started = time.monotonic()
    answer = raw_request(upload_proxy, upload_head(upload_proxy, 10 << 20))
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert time.monotonic() - started < 5, "refused on the head, not after reading"
    assert posts(stub) == []


def test_chunked_upload_over_the_limit_is_413_and_the_upstream_never_gets_a_whole_request(upload_proxy, stub):
    part = b"--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n" + b"\0" * 70000
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(part), part)
    answer = raw_request(upload_proxy, upload_head(upload_proxy, None), chunked)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    time.sleep(0.5)
    assert posts(stub, TRANSCRIPTIONS) == [], "the stub never read a complete request"


@pytest.mark.parametrize("boundary", ["xyz", "x" * 70, "a'b(c)d+e_f,g-h.i/j:k=l?m"])
def test_a_never_ending_part_is_bounded_by_the_body_timeout(upload_proxy, stub, boundary):
    started = time.monotonic()
    opening = f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n".encode()
    answer = raw_request(upload_proxy, upload_head(upload_proxy, 60000, f'"{boundary}"'), opening + b"\0" * 100, wait=15)
    elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert elapsed < 12, elapsed
    time.sleep(0.5)
    assert posts(stub, TRANSCRIPTIONS) == []


def test_a_large_upload_streams_through_whole(upload_proxy, stub):
    # 60 000 bytes: under the 64 KiB limit, several reads on the way.
    audio = wav(1.8)
    assert 50000 < len(audio) < 60000
    r = requests.post(upload_proxy.base_url + TRANSCRIPTIONS, headers=upload_proxy.auth(),
                      files={"file": ("long.wav", audio, "audio/wav")}, data={"model": "stub-model"}, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    assert r.json()["text"].startswith("Transcript of a 1.80 s WAV")
    (forwarded,) = posts(stub, TRANSCRIPTIONS)
    assert int(forwarded["headers"]["content-length"]) == len(r.request.body)


def test_a_disconnect_cancels_the_upstream_request(proxy, stub):
    port = int(proxy.base_url.rsplit(":", 1)[1])
    body = json.dumps({"model": "stub-slow-5000", "input": "x"}).encode()
    head = (f"POST {EMBEDDINGS} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {proxy.token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(head + body)
        deadline = time.monotonic() + 5
        while requests.get(stub.base_url + "/stub/counts", timeout=TIMEOUT).json()["started"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    deadline = time.monotonic() + 3
    while (counts := requests.get(stub.base_url + "/stub/counts", timeout=TIMEOUT).json())["cancelled"] < 1:
        assert time.monotonic() < deadline, counts
        time.sleep(0.05)
    assert counts["completed"] == 0


def test_traffic_control_and_route_labels(proxy, stack, stub):
    requests.post(f"{stack.stub_url}/stub/waiting/3", timeout=TIMEOUT).raise_for_status()
    try:
        deadline = time.monotonic() + 10
        while True:
            r = proxy.post(EMBEDDINGS, json.dumps({"model": "stub-model", "input": "x"}).encode())
            if r.status_code == 429:
                break
            assert time.monotonic() < deadline, "never congested"
            time.sleep(0.2)
        premium = proxy.post(EMBEDDINGS, json.dumps({"model": "stub-model", "input": "x"}).encode(),
                             headers={"X-User-Tier": "premium"})
        assert premium.status_code == 200
    finally:
        requests.post(f"{stack.stub_url}/stub/waiting/0", timeout=TIMEOUT).raise_for_status()
        # The proxy sees the queue empty only at its next poll: the tests after this one must not meet a
        # congestion that is over (test_receipts did, run right after this file).
        deadline = time.monotonic() + 15
        while proxy.post(EMBEDDINGS, json.dumps({"model": "stub-model", "input": "x"}).encode()).status_code == 429:
            assert time.monotonic() < deadline, "still congested after the stub's queue emptied"
            time.sleep(0.2)
    metrics = proxy.get("/v1/metrics", auth=False).text
    assert 'route="/v1/embeddings"' in metrics
