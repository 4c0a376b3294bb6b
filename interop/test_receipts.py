"""SPEC §2 and §5 on the wire: byte-for-byte relay, receipts verified with eth-account and cryptography, errors."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from eth_account import Account
from eth_account.messages import encode_defunct

from helpers import (
    HEX64,
    SECP256K1_N,
    assert_error,
    chat_body,
    sha256_hex,
    sse_events,
    text_body,
    verify_ecdsa_receipt,
    verify_ed25519_receipt,
)

CHAT = "/v1/chat/completions"
TEXT = "/v1/completions"


def unique(label: str) -> str:
    return f"{label} {uuid.uuid4()}"


def canonical_json(value) -> str:
    """SPEC §7.2's canonical JSON, computed by Python's own json module (what the proxy must match)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def check_receipt(proxy, chat_id: str, expected_text: str) -> dict:
    """Fetches the record with both algorithms and verifies each signature independently."""
    records = {}
    for algo, query in (("ecdsa", None), ("ecdsa", "ecdsa"), ("ed25519", "ed25519")):
        r = proxy.signature(chat_id, query)
        assert r.status_code == 200, r.text
        record = r.json()
        assert set(record) == {
            "text", "signature", "signing_address", "signing_algo", "upstream", "record", "record_signature",
        }, record
        assert record["signing_algo"] == algo
        assert record["upstream"] == "vllm"
        assert record["text"] == expected_text
        verify = verify_ecdsa_receipt if algo == "ecdsa" else verify_ed25519_receipt
        verify(record["text"], record["signature"], record["signing_address"])
        verify(canonical_json(record["record"]), record["record_signature"], record["signing_address"])
        records[algo] = record
    return records


def forwarded_bodies(stub, path: str) -> list[bytes]:
    return [entry["body"].encode() for entry in stub.requests() if entry["path"] == path]


# ---------------------------------------------------------------- completions and receipts


def test_chat_json_is_relayed_byte_for_byte_and_receipt_verifies(proxy, stub):
    body = chat_body(unique("hello"))
    r = proxy.post(CHAT, body)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.headers.get("X-E2EE-Applied") == "false"  # SPEC §4: on every chat-completion response

    assert forwarded_bodies(stub, CHAT) == [body], "an unchanged request must be forwarded as the same bytes"
    assert r.content == stub.post(CHAT, body), "the proxy must relay vLLM's JSON bytes untouched"

    chat_id = r.json()["id"]
    assert chat_id == "chatcmpl-stub-" + sha256_hex(body)[:24]
    check_receipt(proxy, chat_id, f"{sha256_hex(body)}:{sha256_hex(r.content)}")


def test_chat_stream_is_relayed_byte_for_byte_and_receipt_covers_every_byte(proxy, stub):
    body = chat_body(unique("stream me"), stream=True)
    r, raw = proxy.post_stream(CHAT, body)
    assert r.status_code == 200, raw[:500]
    assert r.headers["Content-Type"].split(";")[0].strip() == "text/event-stream"
    assert r.headers.get("Cache-Control") == "no-cache"
    assert r.headers.get("X-Accel-Buffering") == "no"
    assert r.headers.get("X-E2EE-Applied") == "false"

    events = sse_events(raw)
    assert raw.endswith(b"data: [DONE]\n\n") and events[-1] == b"[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    chat_id = chunks[0]["id"]
    assert {chunk["id"] for chunk in chunks} == {chat_id}
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks).startswith("Echo: stream me")

    assert forwarded_bodies(stub, CHAT) == [body]
    assert raw == stub.post(CHAT, body), "the proxy must relay the event stream untouched"
    check_receipt(proxy, chat_id, f"{sha256_hex(body)}:{sha256_hex(raw)}")


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_text_completion_receipt(proxy, stub, stream):
    body = text_body(unique("complete this"), stream=stream)
    if stream:
        r, raw = proxy.post_stream(TEXT, body)
        assert r.headers.get("Cache-Control") == "no-cache" and r.headers.get("X-Accel-Buffering") == "no"
        events = sse_events(raw)
        assert events[-1] == b"[DONE]"
        chat_id = json.loads(events[0])["id"]
    else:
        r = proxy.post(TEXT, body)
        raw = r.content
        chat_id = r.json()["id"]
    assert r.status_code == 200, raw[:500]
    assert chat_id == "cmpl-stub-" + sha256_hex(body)[:24]
    assert raw == stub.post(TEXT, body)
    check_receipt(proxy, chat_id, f"{sha256_hex(body)}:{sha256_hex(raw)}")


@pytest.mark.parametrize("path,stream", [(CHAT, False), (CHAT, True), (TEXT, False)])
def test_x_request_hash_from_gateway_is_the_request_half_of_the_receipt(proxy, stub, path, stream):
    gateway_hash = sha256_hex(unique("what the gateway's client sent").encode())
    body = chat_body(unique("hashed"), stream=stream) if path == CHAT else text_body(unique("hashed"))
    headers = {"X-Request-Hash": gateway_hash}
    if stream:
        r, raw = proxy.post_stream(path, body, headers=headers)
        chat_id = json.loads(sse_events(raw)[0])["id"]
    else:
        r = proxy.post(path, body, headers=headers)
        raw, chat_id = r.content, r.json()["id"]
    assert r.status_code == 200
    assert HEX64.fullmatch(gateway_hash)
    records = check_receipt(proxy, chat_id, f"{gateway_hash}:{sha256_hex(raw)}")
    assert records["ecdsa"]["text"].startswith(gateway_hash + ":")


def test_receipts_of_different_requests_are_distinct_and_signed_by_one_key(proxy, stub):
    addresses = {"ecdsa": set(), "ed25519": set()}
    texts = set()
    for i in range(3):
        body = chat_body(unique(f"request {i}"))
        r = proxy.post(CHAT, body)
        records = check_receipt(proxy, r.json()["id"], f"{sha256_hex(body)}:{sha256_hex(r.content)}")
        texts.add(records["ecdsa"]["text"])
        for algo, record in records.items():
            addresses[algo].add(record["signing_address"])
    assert len(texts) == 3
    assert all(len(found) == 1 for found in addresses.values()), addresses


def test_record_signature_covers_the_whole_record(proxy, stub):
    """SPEC §5: `record` is the stored record minus `record_signature_*`; `record_signature` signs its canonical
    JSON (json.dumps sort_keys, compact, ASCII), so `upstream` is authenticated too, unlike under `text`."""
    body = chat_body(unique("record"))
    r = proxy.post(CHAT, body)
    assert r.status_code == 200, r.text
    text = f"{sha256_hex(body)}:{sha256_hex(r.content)}"
    answers = {algo: proxy.signature(r.json()["id"], algo).json() for algo in ("ecdsa", "ed25519")}
    ecdsa, ed = answers["ecdsa"], answers["ed25519"]
    assert ecdsa["record"] == ed["record"], "one stored record, whichever algorithm is asked for"
    record = ecdsa["record"]
    assert record == {
        "text": text, "upstream": "vllm",
        "signature_ecdsa": ecdsa["signature"], "signing_address_ecdsa": ecdsa["signing_address"],
        "signature_ed25519": ed["signature"], "signing_address_ed25519": ed["signing_address"],
    }
    canonical = canonical_json(record)
    assert canonical.isascii() and " " not in canonical
    assert Account.recover_message(encode_defunct(text=canonical), signature=ecdsa["record_signature"]) == (
        ecdsa["signing_address"])
    Ed25519PublicKey.from_public_bytes(bytes.fromhex(ed["signing_address"])).verify(
        bytes.fromhex(ed["record_signature"]), canonical.encode())

    # What `text` does not cover, `record_signature` does: claiming another upstream breaks it.
    forged = canonical_json({**record, "upstream": "chutes"})
    assert Account.recover_message(encode_defunct(text=forged), signature=ecdsa["record_signature"]) != (
        ecdsa["signing_address"])
    with pytest.raises(InvalidSignature):
        verify_ed25519_receipt(forged, ed["record_signature"], ed["signing_address"])


# ---------------------------------------------------------------- what reaches vLLM


@pytest.mark.parametrize("path", [CHAT, TEXT])
def test_client_credential_never_reaches_vllm(proxy, stub, path):
    body = chat_body(unique("secret?")) if path == CHAT else text_body(unique("secret?"))
    assert proxy.post(path, body).status_code == 200
    (entry,) = stub.requests()
    assert "authorization" not in {name.lower() for name in entry["headers"]}, entry["headers"]
    assert proxy.token not in json.dumps(entry)


def test_empty_tool_calls_are_stripped_before_forwarding(proxy, stub):
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "no tools", "tool_calls": []},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "42"},
        {"role": "user", "content": unique("last")},
    ]
    body = json.dumps({"model": "stub-model", "messages": messages}).encode()
    r = proxy.post(CHAT, body)
    assert r.status_code == 200, r.text

    (forwarded,) = forwarded_bodies(stub, CHAT)
    sent = json.loads(forwarded)["messages"]
    assert "tool_calls" not in sent[1], sent[1]
    assert sent[2]["tool_calls"] == [call]
    expected = [dict(m) for m in messages]
    del expected[1]["tool_calls"]
    assert sent == expected
    # The request half of the receipt is still the hash of the bytes the client sent, not of what was forwarded.
    check_receipt(proxy, r.json()["id"], f"{sha256_hex(body)}:{sha256_hex(r.content)}")


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("status", [400, 422, 500, 503])
def test_upstream_error_passes_through_with_status_and_body(proxy, stub, status, stream):
    body = chat_body(unique("fail"), model=f"stub-error-{status}", stream=stream)
    r = proxy.post(CHAT, body)
    assert r.status_code == status
    assert r.content == stub.post(CHAT, body)


@pytest.mark.parametrize("flag", ["false", "null"])
def test_false_or_null_stream_is_a_signed_json_answer(proxy, stub, flag):
    body = ('{"model": "stub-model", "messages": [{"role": "user", "content": "%s"}], "stream": %s}'
            % (unique("flag"), flag)).encode()
    r = proxy.post(CHAT, body)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    check_receipt(proxy, r.json()["id"], f"{sha256_hex(body)}:{sha256_hex(r.content)}")


@pytest.mark.parametrize("flag", ['"true"', "1", '"false"', "0", "[]", "{}"])
def test_a_stream_flag_that_is_not_a_boolean_is_refused(proxy, stub, flag):
    """SPEC §2: vLLM would coerce "true" or 1 and stream; the proxy must not guess."""
    body = ('{"model": "stub-model", "messages": [{"role": "user", "content": "%s"}], "stream": %s}'
            % (unique("flag"), flag)).encode()
    assert_error(proxy.post(CHAT, body), 400, "invalid_request_error")


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", "Basic dXNlcjpwYXNz", "Bearer", "bearer "],
    ids=["missing", "wrong", "basic", "bearer-alone", "bearer-empty"],
)
@pytest.mark.parametrize("path", [CHAT, TEXT])
def test_unauthorized(proxy, stub, path, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    r = proxy.post(path, chat_body("hi"), auth=False, headers=headers)
    assert_error(r, 401)
    assert stub.requests() == []


@pytest.mark.parametrize("token_variant", ["prefix", "suffix", "case"])
def test_near_miss_tokens_are_refused(proxy, stub, token_variant):
    token = {
        "prefix": proxy.token[:-1],
        "suffix": proxy.token + "x",
        "case": proxy.token.swapcase(),
    }[token_variant]
    assert_error(proxy.post(CHAT, chat_body("hi"), auth=False, headers=proxy.auth(token)), 401)
    assert_error(proxy.get("/v1/signature/chatcmpl-x", auth=False, headers=proxy.auth(token)), 401)
    assert stub.requests() == []


def test_signature_route_needs_auth(proxy):
    assert_error(proxy.get("/v1/signature/chatcmpl-anything", auth=False), 401)


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"", b'{"model": "m",}', b"[1, 2]", b'"a string"', b"42", b"null", b"true"],
    ids=["garbage", "empty", "trailing-comma", "array", "string", "number", "null", "bool"],
)
@pytest.mark.parametrize("path", [CHAT, TEXT])
def test_body_that_is_not_a_json_object_is_400(proxy, stub, path, body):
    assert_error(proxy.post(path, body), 400, "invalid_request_error")
    assert stub.requests() == []


@pytest.mark.parametrize("path", [CHAT, TEXT])
def test_body_over_max_body_bytes_is_413(small_proxy, stub, path):
    small = chat_body("fits")
    assert len(small) < 1024
    assert small_proxy.post(path, small).status_code == 200
    stub.reset()
    big = chat_body("x" * 2048)
    assert_error(small_proxy.post(path, big), 413, "request_too_large")
    assert stub.requests() == []


def test_unknown_chat_id_is_404(proxy):
    for query in (None, "ecdsa", "ed25519"):
        assert_error(proxy.signature("chatcmpl-" + uuid.uuid4().hex, query), 404, "not_found")


@pytest.mark.parametrize("algo", ["rsa", "secp256k1", "ed448", "ecdsa,ed25519"])
def test_unknown_signing_algo_is_400(proxy, stub, algo):
    r = proxy.post(CHAT, chat_body(unique("algo")))
    assert_error(proxy.signature(r.json()["id"], algo), 400, "invalid_signing_algo")


# ---------------------------------------------------------------- the verifiers themselves reject forgeries


def test_verifiers_reject_tampered_receipts(proxy, stub):
    body = chat_body(unique("tamper"))
    r = proxy.post(CHAT, body)
    records = check_receipt(proxy, r.json()["id"], f"{sha256_hex(body)}:{sha256_hex(r.content)}")
    ecdsa, ed = records["ecdsa"], records["ed25519"]
    forged = ecdsa["text"][:-1] + ("0" if ecdsa["text"][-1] != "0" else "1")
    with pytest.raises(AssertionError):
        verify_ecdsa_receipt(forged, ecdsa["signature"], ecdsa["signing_address"])
    with pytest.raises(InvalidSignature):
        verify_ed25519_receipt(forged, ed["signature"], ed["signing_address"])
    # High-s twin of a valid signature (s' = n - s, v flipped) recovers the same key but must be refused.
    raw = bytes.fromhex(ecdsa["signature"][2:])
    s = int.from_bytes(raw[32:64], "big")
    twin = raw[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - raw[64]])
    with pytest.raises(AssertionError, match="low-s"):
        verify_ecdsa_receipt(ecdsa["text"], "0x" + twin.hex(), ecdsa["signing_address"])


# ---------------------------------------------------------------- hashing the exact bytes, however they arrive


def test_receipt_hashes_raw_utf8_and_odd_whitespace_not_a_reserialisation(proxy, stub):
    text = unique("héllo wörld ✓ 🚀 — \"quoted\" \\ backslash")
    body = ('{ "model" :"stub-model",\n\t"messages":[ {"role":"user", "content": %s} ] }\n'
            % json.dumps(text, ensure_ascii=False)).encode()
    r = proxy.post(CHAT, body)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "Echo: " + text
    assert forwarded_bodies(stub, CHAT) == [body]
    assert r.content == stub.post(CHAT, body)
    check_receipt(proxy, r.json()["id"], f"{sha256_hex(body)}:{sha256_hex(r.content)}")


def test_chunked_request_body_is_hashed_as_received(proxy, stub):
    body = chat_body(unique("sent in pieces") + " " + "x" * 5000)
    pieces = [body[i:i + 777] for i in range(0, len(body), 777)]
    r = proxy.post(CHAT, iter(pieces))  # a generator makes requests send Transfer-Encoding: chunked
    assert r.status_code == 200, r.text
    assert forwarded_bodies(stub, CHAT) == [body]
    check_receipt(proxy, r.json()["id"], f"{sha256_hex(body)}:{sha256_hex(r.content)}")


def test_uppercase_x_request_hash_is_refused(proxy, stub):
    """SPEC §5: exactly 64 lowercase hex characters, else 400 invalid_request_error (nothing sent)."""
    gateway_hash = sha256_hex(unique("gateway").encode())
    r = proxy.post(CHAT, chat_body(unique("upper")), headers={"X-Request-Hash": gateway_hash.upper()})
    assert_error(r, 400, "invalid_request_error")
    assert stub.requests() == []


def test_concurrent_completions_each_get_their_own_receipt(proxy, stub):
    def one(i: int):
        body = chat_body(unique(f"parallel {i}"), stream=i % 2 == 1)
        if i % 2:
            r, raw = proxy.post_stream(CHAT, body)
            return body, raw, json.loads(sse_events(raw)[0])["id"]
        r = proxy.post(CHAT, body)
        return body, r.content, r.json()["id"]

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(one, range(12)))
    assert len({chat_id for _, _, chat_id in results}) == 12
    for body, raw, chat_id in results:
        check_receipt(proxy, chat_id, f"{sha256_hex(body)}:{sha256_hex(raw)}")


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_limit_is_exact(small_proxy, stub, chunked):
    def sized(n: int) -> bytes:
        body = chat_body("")
        return chat_body("y" * (n - len(body)))

    at_limit, over_limit = sized(1024), sized(1025)
    assert (len(at_limit), len(over_limit)) == (1024, 1025)
    send = (lambda b: iter([b[:500], b[500:]])) if chunked else (lambda b: b)
    assert small_proxy.post(CHAT, send(at_limit)).status_code == 200
    assert_error(small_proxy.post(CHAT, send(over_limit)), 413, "request_too_large")


@pytest.fixture(scope="session")
def forgetful_proxy(stack):
    return stack.proxies.get("forgetful-proxy") or stack.start_proxy("forgetful-proxy", CHAT_CACHE_EXPIRATION="1")


def test_signature_record_expires_after_chat_cache_expiration(forgetful_proxy, stub):
    body = chat_body(unique("short-lived"))
    r = forgetful_proxy.post(CHAT, body)
    chat_id = r.json()["id"]
    assert forgetful_proxy.signature(chat_id).status_code == 200
    deadline = time.monotonic() + 10
    while forgetful_proxy.signature(chat_id).status_code == 200:
        assert time.monotonic() < deadline, "record still served 10 s after a 1 s CHAT_CACHE_EXPIRATION"
        time.sleep(0.25)
    assert_error(forgetful_proxy.signature(chat_id, "ed25519"), 404, "not_found")


# ---------------------------------------------------------------- a record is never overwritten (SPEC §2)


def proxy_metric(proxy, name: str, labels: str = "") -> float:
    """Sum of the samples of `name` whose labels contain `labels` in the proxy's own exposition (0 if none)."""
    text = proxy.get("/v1/metrics", auth=False).text.split("# --- vLLM Backend Metrics ---")[0]
    total = 0.0
    for line in text.splitlines():
        series, _, value = line.rpartition(" ")
        if (series == name or series.startswith(name + "{")) and labels in series:
            total += float(value)
    return total


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_reused_request_id_gets_no_second_record_and_the_first_survives(proxy, stub, stream):
    """vLLM names its answer `chatcmpl-{request_id}` and any token holder sets `request_id` (the stub does the
    same): a second answer under an id already used is served, gets no record, and a warning is logged."""
    request_id = f"dup-{uuid.uuid4().hex}"
    chat_id = f"chatcmpl-{request_id}"
    duplicates = proxy_metric(proxy, "vllm_proxy_receipts_duplicate_id_total", 'upstream="vllm"')
    first = chat_body(unique("the first answer"), request_id=request_id)
    r = proxy.post(CHAT, first)
    assert r.status_code == 200, r.text
    assert r.json()["id"] == chat_id
    expected = f"{sha256_hex(first)}:{sha256_hex(r.content)}"
    before = check_receipt(proxy, chat_id, expected)

    second = chat_body(unique("a second answer to take its place"), stream=stream, request_id=request_id)
    if stream:
        again, raw = proxy.post_stream(CHAT, second)
        assert json.loads(sse_events(raw)[0])["id"] == chat_id
    else:
        again = proxy.post(CHAT, second)
        assert again.json()["id"] == chat_id
    assert again.status_code == 200
    assert check_receipt(proxy, chat_id, expected) == before, "the first record must stay as it was"
    assert proxy_metric(proxy, "vllm_proxy_receipts_duplicate_id_total", 'upstream="vllm"') == duplicates + 1
    log = proxy.log_path.read_text(errors="replace")
    warnings = [line for line in log.splitlines() if f'"{chat_id}" already has a signature record' in line]
    assert len(warnings) == 1 and "warning" in warnings[0], warnings
