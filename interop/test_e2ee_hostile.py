"""SPEC §4 "Confidentiality under a hostile gateway", on the wire.

The independent client (e2ee_client.py) plays a gateway that forwards a client's sealed request but adds,
drops or replays whatever it likes. The rule under test, for both chat routes, v1 and v2, streamed or not:
what leaves the proxy is a sealed field, allow-listed metadata, or nothing. Every response byte (headers,
body, stream) is searched for the client's secret and for the stub's generated text, raw and as hex, base64
and byte lists, which is how logprobs and token ids would carry them.

The stub (stub-vllm, also as the Chutes stand-in) answers like vLLM: its 400 for a message without `role`
quotes the message, `logprobs`/`echo`/`tools`/… add what vLLM adds, a `leaky` model adds every field an
upstream could send, a `stream-error` model sends vLLM's mid-stream error event.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid

import pytest
import requests

from e2ee_client import E2EEClient
from helpers import assert_error, sha256_hex, sse_events
from test_chutes import CHUTES_KEY, ChutesStubClient, start_chutes_stub, write_ca_and_leaf

VLLM = "/v1/chat/completions"
CHUTES = "/v1/chutes/chat/completions"
ROUTES = {"vllm": VLLM, "chutes": CHUTES}
TINY_CAPACITY = 4


# ---------------------------------------------------------------- the processes


@pytest.fixture(scope="module")
def hostile(stack):
    """A Chutes stand-in, a proxy with both chat routes, and one whose replay store holds 4 claims."""
    ca_path, leaf, leaf_key = write_ca_and_leaf(stack.tmp)
    chutes_url = start_chutes_stub(stack, "hostile-chutes-stub", CHUTES_KEY, leaf, leaf_key, ca_path, stack.processes)
    chutes_env = {
        "CHUTES_ENABLED": "1", "CHUTES_BASE_URL": chutes_url, "CHUTES_API_KEY": CHUTES_KEY,
        "CHUTES_CA_FILE": str(ca_path),
    }
    proxy = stack.start_proxy("hostile-proxy", **chutes_env)
    tiny = stack.start_proxy("tiny-claims-proxy", E2EE_REPLAY_STORE_CAPACITY=str(TINY_CAPACITY), **chutes_env)
    return {"proxy": proxy, "tiny": tiny, "chutes": ChutesStubClient(chutes_url, ca_path, CHUTES_KEY)}


def model_keys(proxy) -> dict[str, bytes]:
    keys = {}
    for algo in ("ecdsa", "ed25519"):
        r = proxy.get("/v1/attestation/report", params={"signing_algo": algo})
        assert r.status_code == 200, r.text
        keys[algo] = bytes.fromhex(r.json()["signing_public_key"])
    return keys


@pytest.fixture(scope="module")
def keys(hostile):
    return {name: model_keys(hostile[name]) for name in ("proxy", "tiny")}


def client_for(keys, version: int, which: str = "proxy") -> E2EEClient:
    # v1 with ed25519 and v2 with ecdsa: both algorithms and both versions, without multiplying the cases.
    algo = "ecdsa" if version == 2 else "ed25519"
    return E2EEClient(algo=algo, version=version, model_public=keys[which][algo])


@pytest.fixture
def upstreams(hostile, stub):
    """Both upstreams, emptied, by route name."""
    hostile["chutes"].reset()
    return {"vllm": stub, "chutes": hostile["chutes"]}


# ---------------------------------------------------------------- leak detection


def secret_text() -> str:
    return "SECRET" + uuid.uuid4().hex


def leaked(secret: str, raw: bytes) -> list[str]:
    """Every form of any 12-character piece of `secret` found in `raw`: as is, hex (either case), base64 at
    each alignment, and as a list of byte values (logprobs' `bytes`, token ids)."""
    text = raw.decode("latin-1")
    lowered = text.lower()
    found = []
    for i in range(len(secret) - 11):
        piece = secret[i:i + 12]
        if piece in text:
            found.append(f"raw:{piece}")
        if piece.encode().hex() in lowered:
            found.append(f"hex:{piece}")
        for separator in (",", ", "):
            if separator.join(str(b) for b in piece.encode()) in text:
                found.append(f"bytes:{piece}")
    for shift in range(3):
        encoded = base64.b64encode(secret[shift:].encode()).decode()
        for i in range(0, len(encoded) - 16, 4):
            if encoded[i:i + 16] in text:
                found.append(f"base64:{encoded[i:i + 16]}")
    return found


def test_leak_detector_sees_every_form():
    secret = secret_text()
    assert leaked(secret, b'{"x":"' + secret[3:20].encode() + b'"}')
    assert leaked(secret, secret[5:30].encode().hex().upper().encode())
    assert leaked(secret, base64.b64encode(b"Echo: " + secret.encode()))
    assert leaked(secret, json.dumps({"bytes": list(secret.encode())}).encode())
    assert leaked(secret, json.dumps({"bytes": list(secret.encode())}, separators=(",", ":")).encode())
    assert not leaked(secret, secret_text().encode())


def response_bytes(r: requests.Response, body: bytes) -> bytes:
    head = f"HTTP {r.status_code} {r.reason}\n" + "\n".join(f"{k}: {v}" for k, v in r.headers.items())
    return head.encode() + b"\n\n" + body


def assert_no_leak(r: requests.Response, body: bytes, secret: str) -> None:
    raw = response_bytes(r, body)
    assert not leaked(secret, raw), (leaked(secret, raw), raw[:3000])
    for generated in (b"Echo", b"Thinking"):
        assert generated not in raw, raw[:3000]


# ---------------------------------------------------------------- requests


def send(proxy, route: str, client: E2EEClient, plain: dict, *, stream: bool, headers: dict | None = None):
    """Seals `plain` as the client would, lets the 'gateway' send it, returns (response, raw body bytes)."""
    body = dict(plain)
    if stream:
        body["stream"] = True
    sealed = json.dumps(client.encrypt_body(body)).encode()
    all_headers = {**client.headers(), "X-User-Tier": "premium", **(headers or {})}
    if stream:
        r, raw = proxy.post_stream(ROUTES[route], sealed, headers=all_headers)
    else:
        r = proxy.post(ROUTES[route], sealed, headers=all_headers)
        raw = r.content
    return r, raw, sealed


def chat(secret: str, model: str = "stub-model", **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": f"tell me {secret}"}], **extra}


def error_of(r: requests.Response, raw: bytes, status: int, error_type: str) -> dict:
    r._content = raw  # a streamed request's error answer is JSON too
    return assert_error(r, status, error_type)


MATRIX = [
    pytest.param(route, version, stream, id=f"{route}-v{version}-{'stream' if stream else 'json'}")
    for route in ROUTES
    for version in (1, 2)
    for stream in (False, True)
]


# ---------------------------------------------------------------- 1. parameters that return text outside the sealed fields


TOOLS = [{"type": "function", "function": {"name": "echo", "parameters": {"type": "object"}}}]
REFUSED = {
    "logprobs": {"logprobs": True},
    "top_logprobs": {"top_logprobs": 5},
    "prompt_logprobs": {"prompt_logprobs": 0},
    "echo": {"echo": True},
    "return_token_ids": {"return_token_ids": True},
    "return_tokens_as_token_ids": {"return_tokens_as_token_ids": True},
    "tools": {"tools": TOOLS},
    "tool_choice": {"tool_choice": "auto"},
    "functions": {"functions": [{"name": "echo", "parameters": {"type": "object"}}]},
}


@pytest.mark.parametrize("parameter", [p for p in REFUSED if p not in ("echo", "tool_choice")])
def test_without_e2ee_the_stub_really_leaks_through_each_parameter(proxy, stub, parameter):
    """The attack is real: in plain mode these parameters bring the prompt or the answer back outside `content`.
    (`echo` puts the prompt into `content` itself; `tool_choice` matters once a gateway also adds `tools`.)"""
    secret = secret_text()
    body = chat(secret, **REFUSED[parameter])
    r = proxy.post(VLLM, json.dumps(body).encode())
    assert r.status_code == 200, r.text
    response = r.json()
    outside = dict(response)
    outside["choices"] = [
        {k: v for k, v in c.items() if k != "message"} | {"message": {k: v for k, v in c["message"].items() if k != "content"}}
        for c in response["choices"]
    ]
    assert leaked(secret, json.dumps(outside).encode()), outside


@pytest.mark.parametrize("route,version,stream", MATRIX)
@pytest.mark.parametrize("parameter", REFUSED)
def test_parameters_that_leak_are_refused_before_anything_goes_upstream(
    hostile, keys, upstreams, route, version, stream, parameter
):
    secret = secret_text()
    client = client_for(keys, version)
    r, raw, _ = send(hostile["proxy"], route, client, chat(secret, **REFUSED[parameter]), stream=stream)
    error = error_of(r, raw, 400, "e2ee_unsupported_parameter")
    assert parameter in error["message"]
    assert upstreams[route].requests() == [], "nothing may reach the upstream"
    assert_no_leak(r, raw, secret)
    if version == 2:  # the refusal did not spend the nonce: the honest request still goes through
        r, raw, _ = send(hostile["proxy"], route, client, chat(secret), stream=stream)
        assert r.status_code == 200, raw[:500]


@pytest.mark.parametrize("harmless", [{"logprobs": False}, {"top_logprobs": 0}, {"echo": False}, {"tool_choice": "none"},
                                      {"tools": TOOLS, "tool_choice": "none"}, {"logprobs": None, "n": 1}],
                         ids=["logprobs-false", "top-logprobs-0", "echo-false", "tool-choice-none",
                              "tools-with-choice-none", "null-and-n"])
def test_values_that_ask_for_nothing_pass(hostile, keys, upstreams, harmless):
    secret = secret_text()
    client = client_for(keys, 2)
    r, raw, _ = send(hostile["proxy"], "vllm", client, chat(secret, **harmless), stream=False)
    assert r.status_code == 200, raw[:500]
    ((_, _, _, plaintext),) = client.open_choices(r.json(), "message")
    assert plaintext == f"Echo: tell me {secret}"
    assert_no_leak(r, raw, secret)


# ---------------------------------------------------------------- 2. fields outside the sealed three


ALLOWED_TOP = {"id", "object", "created", "model", "system_fingerprint", "usage", "choices"}
ALLOWED_CHOICE = {"index", "finish_reason", "message", "delta"}
ALLOWED_MESSAGE = {"role", "content", "reasoning_content", "reasoning"}


def assert_allow_listed(document: dict, container: str) -> None:
    assert set(document) <= ALLOWED_TOP, document
    for value in document.get("usage", {}).values():
        assert isinstance(value, int) or (isinstance(value, dict) and all(isinstance(v, int) for v in value.values()))
    for choice in document.get("choices", []):
        assert set(choice) <= ALLOWED_CHOICE - ({"message", "delta"} - {container}), choice
        part = choice.get(container, {})
        assert set(part) <= ALLOWED_MESSAGE, part
        for name in ("content", "reasoning_content", "reasoning"):
            assert part.get(name) is None or isinstance(part[name], str)


@pytest.mark.parametrize("route,version,stream", MATRIX)
def test_everything_an_upstream_adds_outside_the_sealed_fields_is_dropped(
    hostile, keys, upstreams, route, version, stream
):
    """`stub-leaky-reasoning` sends logprobs, tool_calls, refusal, stop_reason, array content (2nd choice), unknown
    fields at every level, and the reasoning fields: only the sealed ones and the metadata arrive."""
    secret = secret_text()
    client = client_for(keys, version)
    r, raw, sealed = send(hostile["proxy"], route, client, chat(secret, model="stub-leaky-reasoning"), stream=stream)
    assert r.status_code == 200, raw[:500]
    assert r.headers.get("X-E2EE-Applied") == "true"
    assert_no_leak(r, raw, secret)
    expected = f"Echo: tell me {secret}"
    if stream:
        events = sse_events(raw)
        assert events[-1] == b"[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        text = ""
        for chunk in chunks:
            assert_allow_listed(chunk, "delta")
            for choice, name, _, plaintext in client.open_choices(chunk, "delta"):
                if choice == 0 and name == "content":
                    text += plaintext
        assert text == expected
        chat_id = chunks[0]["id"]
        # The second choice's array content was dropped, leaving an empty delta.
        assert any(c["choices"] and c["choices"][0].get("index") == 1 and c["choices"][0]["delta"] == {} for c in chunks)
    else:
        response = r.json()
        assert_allow_listed(response, "message")
        opened = {(c, name): p for c, name, _, p in client.open_choices(response, "message")}
        assert opened[(0, "content")] == expected
        assert opened[(0, "reasoning")] == f"Thinking about: tell me {secret}"
        assert response["choices"][1] == {"index": 1, "finish_reason": "stop", "message": {"role": "assistant"}}
        # Token counts only: `cached_tokens` would be a prefix-cache oracle for the gateway (SPEC §4).
        assert response["usage"] == {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
        chat_id = response["id"]
    # The receipt covers exactly these bytes.
    record = hostile["proxy"].signature(chat_id, "ecdsa")
    assert record.status_code == 200 and record.json()["text"] == f"{sha256_hex(sealed)}:{sha256_hex(raw)}"


# ---------------------------------------------------------------- 3. upstream errors that echo the request


@pytest.mark.parametrize("route,version,stream", MATRIX)
def test_an_upstream_error_echoing_the_decrypted_request_is_not_relayed(
    hostile, keys, upstreams, route, version, stream
):
    """The gateway deletes `role` from the (unauthenticated) message; vLLM's 400 quotes the decrypted content."""
    secret = secret_text()
    client = client_for(keys, version)
    plain = chat(secret)
    del plain["messages"][0]["role"]
    r, raw, _ = send(hostile["proxy"], route, client, plain, stream=stream)
    error = error_of(r, raw, 400, "upstream_error")
    assert error["message"] == "Upstream answered 400"
    assert r.headers.get("X-E2EE-Applied") == "true"
    assert_no_leak(r, raw, secret)
    # The stub did receive the plaintext, and its own answer quotes it: that is what was kept back.
    (entry,) = upstreams[route].requests()
    assert secret in upstreams[route].post(VLLM, entry["body"].encode()).decode()


@pytest.mark.parametrize("route", ROUTES)
def test_an_upstream_error_status_is_kept(hostile, keys, upstreams, route):
    client = client_for(keys, 2)
    r, raw, _ = send(hostile["proxy"], route, client, chat(secret_text(), model="stub-error-422"), stream=False)
    assert assert_error(r, 422, "upstream_error")["message"] == "Upstream answered 422"


@pytest.mark.parametrize("model", ["stub-stream-error", "stub-stream-error-flat"])
@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("route", ROUTES)
def test_a_mid_stream_error_event_becomes_our_own(hostile, keys, upstreams, route, version, model):
    secret = secret_text()
    client = client_for(keys, version)
    r, raw, _ = send(hostile["proxy"], route, client, chat(secret, model=model), stream=True)
    assert r.status_code == 200, raw[:500]
    assert_no_leak(r, raw, secret)
    events = sse_events(raw)
    assert json.loads(events[-1]) == {"error": {"message": "Upstream reported an error mid-stream",
                                                "type": "upstream_error", "param": None, "code": None}}
    assert b"[DONE]" not in events
    first = json.loads(events[0])
    # The stream failed, so, as for any mid-stream failure, no receipt.
    assert hostile["proxy"].signature(first["id"], "ecdsa").status_code == 404


# ---------------------------------------------------------------- 4. replay by eviction


def test_a_full_claim_store_refuses_new_requests_and_never_forgets_a_captured_one(hostile, keys, upstreams):
    """Claims are never evicted: filling the store (4 claims here) gets fresh requests a 503, while the
    captured request stays refused on both routes (one namespace)."""
    tiny = hostile["tiny"]
    client = client_for(keys, 2, "tiny")
    captured = None
    for index in range(TINY_CAPACITY):
        client.fresh_nonce()
        route = "vllm" if index % 2 else "chutes"
        r, raw, sealed = send(tiny, route, client, chat(secret_text()), stream=False)
        assert r.status_code == 200, raw[:500]
        if captured is None:
            captured = (sealed, client.headers() | {"X-User-Tier": "premium"})
    for route in ROUTES:
        for _ in range(3):
            client.fresh_nonce()
            r, raw, _ = send(tiny, route, client, chat(secret_text()), stream=False)
            assert_error(r, 503, "replay_store_full")
        assert_error(tiny.post(ROUTES[route], captured[0], headers=captured[1]), 400, "e2ee_replay_detected")
    # v1 has no replay protection and needs no claim: it is still served.
    v1 = client_for(keys, 1, "tiny")
    r, raw, _ = send(tiny, "vllm", v1, chat(secret_text()), stream=False)
    assert r.status_code == 200, raw[:500]


def test_a_request_with_nothing_encrypted_claims_nothing(hostile, keys, upstreams):
    """Before, `{}` with fresh nonces was a free claim: the cheapest way to fill the store."""
    client = client_for(keys, 2)
    for body in (b"{}", json.dumps({"model": "stub-model", "messages": [{"role": "user", "content": None}]}).encode()):
        r = hostile["proxy"].post(VLLM, body, headers=client.headers())
        assert_error(r, 400, "invalid_e2ee_request")
    assert upstreams["vllm"].requests() == []
    r, raw, _ = send(hostile["proxy"], "vllm", client, chat(secret_text()), stream=False)
    assert r.status_code == 200, "the nonce was not spent"


def test_more_than_1024_encrypted_fields_are_refused(hostile, keys, upstreams):
    client = client_for(keys, 2)
    items = [{"type": "text", "text": f"part {i}"} for i in range(1025)]
    body = {"model": "stub-model", "messages": [{"role": "user", "content": items}]}
    r = hostile["proxy"].post(VLLM, json.dumps(client.encrypt_body(body)).encode(), headers=client.headers())
    assert_error(r, 400, "invalid_e2ee_request")
    body["messages"][0]["content"] = items[:1024]
    r = hostile["proxy"].post(VLLM, json.dumps(client.encrypt_body(body)).encode(), headers=client.headers())
    assert r.status_code == 200, r.text[:300]


# ---------------------------------------------------------------- 5. nonces


BAD_NONCES = {
    "15-chars": "0123456789abcde",
    "129-chars": "n" * 129,
    "8-KiB": "n" * 8192,
    "bar": "0123456789abcdef|ts=0",
    "space": "0123456789 abcdef",
    "latin-1": "0123456789abcdef\xe9",
}
GOOD_NONCES = {  # made fresh per use: a nonce is single-use
    "128-chars": lambda: secrets.token_hex(64),
    "uuid": lambda: str(uuid.uuid4()),
    "base64": lambda: base64.b64encode(secrets.token_bytes(24)).decode(),
    "hex": lambda: secrets.token_hex(16),
}


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("label", BAD_NONCES)
def test_nonces_outside_16_to_128_printable_ascii_without_bar_are_refused(hostile, keys, upstreams, route, label):
    client = client_for(keys, 2)
    client.nonce = BAD_NONCES[label]
    r, raw, _ = send(hostile["proxy"], route, client, chat(secret_text()), stream=False)
    assert_error(r, 400, "e2ee_invalid_nonce")
    assert upstreams[route].requests() == []


@pytest.mark.parametrize("label", GOOD_NONCES)
def test_nonces_of_existing_clients_stay_valid(hostile, keys, upstreams, label):
    client = client_for(keys, 2)
    client.nonce = GOOD_NONCES[label]()
    client.timestamp = str(int(time.time()))
    secret = secret_text()
    r, raw, _ = send(hostile["proxy"], "vllm", client, chat(secret), stream=False)
    assert r.status_code == 200, raw[:300]
    ((_, _, _, plaintext),) = client.open_choices(r.json(), "message")
    assert plaintext == f"Echo: tell me {secret}"


# ---------------------------------------------------------------- 6. the capacity setting


@pytest.mark.parametrize("value", ["0", "-1", "50000001", "1e10", "abc", "nan"])
def test_replay_store_capacity_out_of_range_stops_startup_with_one_line(stack, value):
    from conftest import make_token
    from test_lifecycle import BASE_ENV, run_proxy_expecting_exit

    done = run_proxy_expecting_exit(stack, {**BASE_ENV, "TOKEN": make_token(), "E2EE_REPLAY_STORE_CAPACITY": value})
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "E2EE_REPLAY_STORE_CAPACITY" in lines[0], done.stderr
