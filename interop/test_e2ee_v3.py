"""SPEC §4.3 (E2EE v3), §5, §6 version 3, against the real binary, with the Python client package
(clients/python, `vllm_proxy_client`) and the official `openai` SDK on top of its httpx transports.

Here: attestation version 3 recomputed independently; SDK round trips (sync and async, streamed or not, chat with
`tools` and `logprobs` — refused under v1/v2 — and text completions) with receipts checked by eth-account over the
bytes a recording gateway saw; every byte the gateway sees and every proxy log line searched for the secret;
the two attacks v1/v2 cannot stop (key swap, injection) shown to work on v2 and fail on v3; upstream errors
sealed; padding and coalescing. Tampering by a hostile gateway, both directions: test_e2ee_v3_hostile.py.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import struct

import httpx
import openai
import pytest

from e2ee_client import E2EEClient, encrypt_field
from helpers import agent_call, assert_error, chat_body, verify_ecdsa_receipt
from v3_support import (
    CHAT, TEXT, TIMEOUT, AsyncGateway, Gateway, attest, body_for, chat_request, headers_text, leaks, open_answer,
    open_json_envelope, refused, seal, secret_text, sealed_chunks, send, sha256_hex, spki_der, stream_events,
    upstream_posts,
)
from vllm_proxy_client import (
    AsyncE2EETransport, E2EETransport, E2EEVerificationError, Suite, fetch_receipt, key_config_id,
    parse_key_configs,
)

REPORT_LABEL = b"vllm-proxy/report-data/v3"
# The dev agent's TDX v4 quotes: header (48) and TD report (584, report data in its last 64 bytes) are signed.
REPORT_DATA_OFFSET, SIGNED_LENGTH = 48 + 520, 48 + 584
TOOLS = [{"type": "function", "function": {"name": "echo", "parameters": {"type": "object"}}}]
PAD = 256


# ---------------------------------------------------------------- processes


@pytest.fixture(scope="module")
def att(proxy, stack):
    return attest(proxy, stack)


@pytest.fixture(scope="module")
def min3(stack):
    proxy = stack.start_proxy("v3-min-version-3-proxy", E2EE_MIN_VERSION="3")
    return proxy, attest(proxy, stack)


@pytest.fixture(scope="module")
def padded(stack):
    """PAD_BYTES only, COALESCE_MS only, and both."""
    envs = {
        "pad": {"E2EE_V3_PAD_BYTES": str(PAD)},
        "coalesce": {"E2EE_V3_COALESCE_MS": "50"},
        "both": {"E2EE_V3_PAD_BYTES": str(PAD), "E2EE_V3_COALESCE_MS": "50"},
    }
    out = {}
    for name, env in envs.items():
        proxy = stack.start_proxy(f"v3-{name}-proxy", **env)
        out[name] = (proxy, attest(proxy, stack))
    return out


def sdk(proxy, att, gateway=None, **transport_options) -> tuple[openai.OpenAI, E2EETransport, Gateway]:
    gateway = gateway or Gateway()
    transport = E2EETransport(att, inner=gateway, **transport_options)
    client = openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=proxy.token, max_retries=0,
                           http_client=httpx.Client(transport=transport, timeout=TIMEOUT))
    return client, transport, gateway


# ---------------------------------------------------------------- 1. attestation version 3


def identity_v3(address: bytes, spki: bytes, key_list: bytes, nvidia_payload) -> bytes:
    """SPEC §6, written here from the text (not the client's function)."""
    gpu = hashlib.sha256(nvidia_payload.encode()).digest() if nvidia_payload is not None else b""
    tls = hashlib.sha256(spki).digest()
    return hashlib.sha256(
        REPORT_LABEL + b"\x00" + bytes([len(address)]) + address + bytes([len(tls)]) + tls
        + struct.pack(">H", len(key_list)) + key_list + bytes([len(gpu)]) + gpu
    ).digest()


@pytest.mark.parametrize("algo", ["ecdsa", "ed25519"])
def test_attestation_v3_binds_signing_key_tls_key_k_and_gpu_payload(proxy, stack, algo):
    att = attest(proxy, stack, signing_algo=algo)  # the client library's checks passed
    report = att.report
    assert report["version"] == 3 and report["signing_algo"] == algo
    assert att.quote_kind == "tdx"  # the dev agent's real-format quote, parsed (not verified: no dev root here)
    key_list = base64.b64decode(report["e2ee_v3_key_config"], validate=True)
    assert report["e2ee_v3_key_config_id"] == hashlib.sha256(key_list).digest()[:16].hex() == key_config_id(key_list)
    assert report["e2ee_versions"] == [1, 2, 3]
    assert report["tls_cert_fingerprint"] == hashlib.sha256(spki_der(stack.cert_path)).hexdigest()

    # K, parsed by hand (RFC 9458 §3): key_id 0 X25519 with AES-256-GCM and ChaCha20, key_id 1 X-Wing with AES.
    configs, offset = [], 0
    while offset < len(key_list):
        (length,) = struct.unpack_from(">H", key_list, offset)
        config = key_list[offset + 2:offset + 2 + length]
        offset += 2 + length
        key_id, kem = config[0], struct.unpack_from(">H", config, 1)[0]
        pk_len = {0x0020: 32, 0x647A: 1216}[kem]
        (algs_len,) = struct.unpack_from(">H", config, 3 + pk_len)
        algs = [struct.unpack_from(">HH", config, 5 + pk_len + i) for i in range(0, algs_len, 4)]
        assert 5 + pk_len + algs_len == len(config)
        configs.append((key_id, kem, algs))
    assert configs == [(0, 0x0020, [(1, 2), (1, 3)]), (1, 0x647A, [(1, 2)])]
    assert [(c.key_id, c.kem_id) for c in parse_key_configs(key_list)] == [(0, 0x0020), (1, 0x647A)]

    # The report data the dev agent was asked to quote, recomputed here from the report's own fields.
    address = bytes.fromhex(report["signing_address"][2:] if algo == "ecdsa" else report["signing_address"])
    expected = identity_v3(address, spki_der(stack.cert_path), key_list, report.get("nvidia_payload"))
    expected += bytes.fromhex(report["request_nonce"])
    quote = bytes.fromhex(report["quote"])
    assert quote[:8] == bytes.fromhex("0400020081000000")  # v4, ECDSA-P256, TDX
    assert quote[REPORT_DATA_OFFSET:REPORT_DATA_OFFSET + 64] == expected
    direct = agent_call(stack.agent_socket, "/GetQuote", {"report_data": expected.hex()})
    assert direct["quote"][:2 * SIGNED_LENGTH] == report["quote"][:2 * SIGNED_LENGTH]
    # The nvidia_payload hash covers the exact text (its nonce is this report's).
    if report.get("nvidia_payload") is not None:
        assert json.loads(report["nvidia_payload"])["nonce"] == report["request_nonce"]


def test_k_is_the_same_for_both_algorithms_and_every_report(proxy, stack, att):
    again = attest(proxy, stack, signing_algo="ed25519")
    assert again.key_list == att.key_list and again.kc == att.kc


def test_min_version_3_lists_only_3_and_refuses_v1_v2_but_not_plain(min3, stub):
    proxy, att = min3
    assert att.e2ee_versions == (3,) and att.report["e2ee_versions"] == [3]
    public = bytes.fromhex(att.report["signing_public_key"])
    ed = proxy.get("/v1/attestation/report", params={"signing_algo": "ed25519"}).json()["signing_public_key"]
    for client in (E2EEClient("ecdsa", 2, public), E2EEClient("ed25519", 1, bytes.fromhex(ed))):
        sealed = json.dumps(client.encrypt_body(chat_request("hello there"))).encode()
        r = proxy.post(CHAT, sealed, headers=client.headers())
        assert_error(r, 400, "e2ee_version_not_allowed")
    assert upstream_posts(stub) == []
    r = proxy.post(CHAT, chat_body("plain is unaffected"))
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "Echo: plain is unaffected"
    client, _, _ = sdk(proxy, att)
    reply = client.chat.completions.create(model="stub-model", messages=[{"role": "user", "content": "v3 works"}])
    assert reply.choices[0].message.content == "Echo: v3 works"


# ---------------------------------------------------------------- 2. the openai SDK, receipts


def check_receipt(proxy, att, transport, gateway) -> None:
    """The receipt covers SHA-256 of the envelope bytes and of the answer bytes as the gateway saw them, and
    eth-account recovers the attested signing address; the client library agrees."""
    exchange = transport.last_exchange
    assert exchange.complete and exchange.chat_id
    assert exchange.request_hash == sha256_hex(gateway.sent[-1])
    assert exchange.response_hash == sha256_hex(gateway.received[-1])
    r = proxy.signature(exchange.chat_id)
    assert r.status_code == 200, r.text
    record = r.json()
    assert record["text"] == f"{sha256_hex(gateway.sent[-1])}:{sha256_hex(gateway.received[-1])}"
    assert record["signing_address"] == att.signing_address
    verify_ecdsa_receipt(record["text"], record["signature"], att.signing_address)
    receipt = fetch_receipt(proxy.base_url, proxy.token, exchange, signing_address=att.signing_address)
    assert receipt.signature_verified is True
    assert receipt.record_verified is True and receipt.signed_record["upstream"] == "vllm"


@pytest.mark.parametrize("suite", [Suite.X25519_AES256GCM, Suite.X25519_CHACHA20POLY1305], ids=["aes", "chacha"])
def test_sdk_chat_json_with_tools_and_logprobs(proxy, att, stub, suite):
    secret = secret_text()
    client, transport, gateway = sdk(proxy, att, suite=suite)
    reply = client.chat.completions.create(
        model="stub-model", messages=[{"role": "user", "content": f"say {secret}"}],
        tools=TOOLS, logprobs=True, top_logprobs=2,
    )
    message = reply.choices[0].message
    assert message.content == f"Echo: say {secret}"
    assert json.loads(message.tool_calls[0].function.arguments) == {"text": f"Echo: say {secret}"}
    tokens = [t.token for t in reply.choices[0].logprobs.content]
    assert tokens == ["Echo:", "say", secret]
    assert reply.choices[0].logprobs.content[2].top_logprobs[0].token == secret
    assert gateway.headers[-1]["X-E2EE-Algo"] == suite.algo_name
    (forwarded,) = upstream_posts(stub)
    upstream = json.loads(forwarded["body"])
    assert upstream["tools"] == TOOLS and upstream["logprobs"] is True and upstream["top_logprobs"] == 2
    assert isinstance(upstream.get("cache_salt"), str) and upstream["cache_salt"]
    check_receipt(proxy, att, transport, gateway)


def test_sdk_chat_stream_with_tools_and_logprobs(proxy, att, stub):
    secret = secret_text()
    client, transport, gateway = sdk(proxy, att)
    chunks = list(client.chat.completions.create(
        model="stub-model", messages=[{"role": "user", "content": f"say {secret}"}], stream=True,
        tools=TOOLS, logprobs=True, top_logprobs=2,
    ))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"Echo: say {secret}"
    arguments = [tc.function.arguments for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert json.dumps({"text": f" {secret}"}, separators=(",", ":")) in arguments
    tokens = [t.token for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert secret in tokens
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0  # include_usage set by the proxy
    (forwarded,) = upstream_posts(stub)
    assert json.loads(forwarded["body"])["stream_options"] == {"include_usage": True}
    check_receipt(proxy, att, transport, gateway)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_sdk_text_completions(proxy, att, stream):
    client, transport, gateway = sdk(proxy, att)
    if stream:
        chunks = list(client.completions.create(model="stub-model", prompt="once upon a time", stream=True))
        text = "".join(c.choices[0].text for c in chunks if c.choices)
    else:
        text = client.completions.create(model="stub-model", prompt="once upon a time", logprobs=2).choices[0].text
    assert text == "Echo: once upon a time"
    check_receipt(proxy, att, transport, gateway)


def test_sdk_client_cache_salt_is_kept(proxy, att, stub):
    client, _, _ = sdk(proxy, att)
    client.chat.completions.create(model="stub-model", messages=[{"role": "user", "content": "hi"}],
                                   extra_body={"cache_salt": "my-own-salt"})
    (forwarded,) = upstream_posts(stub)
    assert json.loads(forwarded["body"])["cache_salt"] == "my-own-salt"


def test_async_sdk_chat_and_completions(proxy, att, stack):
    async def run():
        gateway = AsyncGateway()
        transport = AsyncE2EETransport(att, inner=gateway)
        client = openai.AsyncOpenAI(base_url=proxy.base_url + "/v1", api_key=proxy.token, max_retries=0,
                                    http_client=httpx.AsyncClient(transport=transport, timeout=TIMEOUT))
        reply = await client.chat.completions.create(
            model="stub-model", messages=[{"role": "user", "content": "async json"}], tools=TOOLS, logprobs=True)
        assert reply.choices[0].message.content == "Echo: async json"
        assert reply.choices[0].message.tool_calls[0].function.name == "echo"
        hashes = [(transport.last_exchange, gateway.sent[-1], gateway.received[-1])]
        stream = await client.chat.completions.create(
            model="stub-model", messages=[{"role": "user", "content": "async stream"}], stream=True,
            logprobs=True, top_logprobs=2)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == "Echo: async stream"
        hashes.append((transport.last_exchange, gateway.sent[-1], gateway.received[-1]))
        completion = await client.completions.create(model="stub-model", prompt="async text")
        assert completion.choices[0].text == "Echo: async text"
        stream = await client.completions.create(model="stub-model", prompt="async text stream", stream=True)
        assert "".join([c.choices[0].text async for c in stream if c.choices]) == "Echo: async text stream"
        hashes.append((transport.last_exchange, gateway.sent[-1], gateway.received[-1]))
        await client.close()
        return hashes

    for exchange, sent, received in asyncio.run(run()):
        assert (exchange.request_hash, exchange.response_hash) == (sha256_hex(sent), sha256_hex(received))
        record = proxy.signature(exchange.chat_id).json()
        assert record["text"] == f"{exchange.request_hash}:{exchange.response_hash}"
        verify_ecdsa_receipt(record["text"], record["signature"], att.signing_address)


def test_tools_and_logprobs_are_refused_under_v2_but_not_v3(proxy, att, stub):
    client = E2EEClient("ecdsa", 2, bytes.fromhex(att.report["signing_public_key"]))
    for extra in ({"tools": TOOLS}, {"logprobs": True, "top_logprobs": 2}):
        sealed = json.dumps(client.encrypt_body(chat_request("x", **extra))).encode()
        assert_error(proxy.post(CHAT, sealed, headers=client.headers()), 400, "e2ee_unsupported_parameter")
        client.fresh_nonce()
    assert upstream_posts(stub) == []


# ---------------------------------------------------------------- 5. confidentiality: what the gateway and the log see


@pytest.mark.parametrize("route", [CHAT, TEXT])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_nothing_of_prompt_tools_or_logprobs_is_visible_outside_the_seal(proxy, att, stub, route, stream):
    secret = secret_text()
    extra = {"logprobs": True, "top_logprobs": 2, "tools": TOOLS} if route == CHAT else {"logprobs": 2, "echo": True}
    sealed = seal(att, route, body_for(route, f"tell {secret} now", stream=stream, **extra))
    r, raw = send(proxy, route, sealed.body, stream=stream)
    assert r.status_code == 200, raw[:300]
    opened = open_answer(sealed, r, raw)
    assert secret in opened.decode() and b"Echo" in opened  # it was there to be leaked
    assert secret in upstream_posts(stub)[0]["body"]
    wire = headers_text(r.headers) + b"\n\n" + raw + b"\n" + sealed.body
    assert leaks(secret, wire) == [], leaks(secret, wire)[:5]
    for generated in (b"Echo:", b"tool_calls", b"logprobs", b"arguments", b"cache_salt"):
        assert generated not in wire, generated
    log = proxy.log_path.read_bytes()  # the whole trace log, this request's lines included
    assert leaks(secret, log) == [], leaks(secret, log)[:5]
    assert b"Echo: tell" not in log


# ---------------------------------------------------------------- 6. the two attacks v1/v2 cannot stop


def test_key_swap_reads_v2_but_not_v3(proxy, att, stub):
    secret = secret_text()
    model_key = bytes.fromhex(att.report["signing_public_key"])
    victim, gateway = E2EEClient("ecdsa", 2, model_key), E2EEClient("ecdsa", 2, model_key)
    gateway.nonce, gateway.timestamp = victim.nonce, victim.timestamp
    sealed = json.dumps(victim.encrypt_body(chat_request(f"my {secret}"))).encode()
    swapped = {**victim.headers(), "X-Client-Pub-Key": gateway.public.hex()}
    r = proxy.post(CHAT, sealed, headers=swapped)
    assert r.status_code == 200, r.text  # v2: accepted, and sealed to the gateway's key
    ((_, _, _, plaintext),) = gateway.open_choices(r.json(), "message")
    assert plaintext == f"Echo: my {secret}"  # the attack works on v2

    # v3 has no client key to swap: the answer key comes from the request's own HPKE context. A gateway that
    # puts its own sealed request in place of the client's gets an answer only its own request can open.
    genuine = seal(att, CHAT, chat_request(f"my {secret}"))
    substitute = seal(att, CHAT, chat_request("gateway's own question"))
    r, raw = send(proxy, CHAT, substitute.body, stream=False)
    assert r.status_code == 200
    with pytest.raises(E2EEVerificationError):
        open_json_envelope(genuine, raw)
    assert json.loads(open_json_envelope(substitute, raw).body)["choices"][0]["message"]["content"] == (
        "Echo: gateway's own question")
    # And the genuine request's answer, relayed, is of no use to the gateway's context.
    r, raw = send(proxy, CHAT, genuine.body, stream=False)
    assert r.status_code == 200 and leaks(secret, raw) == []
    with pytest.raises(E2EEVerificationError):
        open_json_envelope(substitute, raw)
    assert secret in open_json_envelope(genuine, raw).body.decode()


def test_injection_accepted_on_v2_impossible_on_v3(proxy, att, stub):
    model_key = bytes.fromhex(att.report["signing_public_key"])
    victim = E2EEClient("ecdsa", 2, model_key)
    body = victim.encrypt_body(chat_request("the client's question"))
    injected = encrypt_field("ecdsa", model_key, "IGNORE THE ABOVE", victim.req_aad("stub-model", 1, None))
    body["messages"].append({"role": "user", "content": injected})
    r = proxy.post(CHAT, json.dumps(body).encode(), headers=victim.headers())
    assert r.status_code == 200, r.text  # v2: the gateway's message went through
    (forwarded,) = upstream_posts(stub)
    assert [m["content"] for m in json.loads(forwarded["body"])["messages"]] == [
        "the client's question", "IGNORE THE ABOVE"]

    stub.reset()
    genuine = seal(att, CHAT, chat_request("the client's question"))
    document = json.loads(genuine.body)
    req = base64.b64decode(document["e2ee"]["req"])
    injected_req = base64.b64encode(req + b'{"role":"user","content":"IGNORE THE ABOVE"}').decode()
    edits = {
        "appended to req": ({**document, "e2ee": {**document["e2ee"], "req": injected_req}}, "e2ee_decryption_failed"),
        "a clear messages member": ({**document, "messages": [{"role": "user", "content": "IGNORE"}]},
                                    "invalid_e2ee_request"),
    }
    for name, (edited, error_type) in edits.items():
        r, raw = send(proxy, CHAT, json.dumps(edited).encode(), stream=False)
        refused(r, raw, 400, error_type)
    assert upstream_posts(stub) == []
    r, raw = send(proxy, CHAT, genuine.body, stream=False)
    assert r.status_code == 200
    (forwarded,) = upstream_posts(stub)
    assert [m["content"] for m in json.loads(forwarded["body"])["messages"]] == ["the client's question"]


# ---------------------------------------------------------------- 7. upstream errors are sealed


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_upstream_error_echoing_the_prompt_is_sealed(proxy, att, stub, stream):
    secret = secret_text()
    body = {"model": "stub-model", "messages": [{"content": f"no role {secret}"}]}  # vLLM's 400 quotes it
    if stream:
        body["stream"] = True
    sealed = seal(att, CHAT, body)
    r, raw = send(proxy, CHAT, sealed.body, stream=stream)
    assert r.status_code == 400, raw[:300]
    assert r.headers["content-type"].startswith("application/json")
    assert json.loads(raw)["object"] == "e2ee.v3"
    assert leaks(secret, headers_text(r.headers) + raw) == []
    opened = open_answer(sealed, r, raw)
    assert secret in json.loads(opened)["message"]
    (forwarded,) = upstream_posts(stub)
    assert opened == stub.post(CHAT, forwarded["body"].encode())  # the stub's own error, byte for byte


def test_sdk_sees_a_sealed_upstream_error_with_its_status(proxy, att):
    client, _, _ = sdk(proxy, att)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="stub-error-400", messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == 400 and "stub error 400" in str(caught.value)


# ---------------------------------------------------------------- 8. padding and coalescing


@pytest.mark.parametrize("config", ["pad", "coalesce", "both"])
@pytest.mark.parametrize("route", [CHAT, TEXT])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_padding_and_coalescing(padded, stub, config, route, stream):
    proxy, att = padded[config]
    words = " ".join(secrets.token_hex(3) for _ in range(12))
    # Streamed: stub-pause-N sends its first event, waits, then the rest — two upstream reads, so two sealed
    # chunks even under coalescing (the first chunk is never held).
    model = "stub-pause-120" if stream else "stub-model"
    sealed = seal(att, route, body_for(route, words, model=model, stream=stream))
    r, raw = send(proxy, route, sealed.body, stream=stream)
    assert r.status_code == 200, raw[:300]
    chunks = sealed_chunks(raw)
    if config != "coalesce":
        assert [(len(c) - 16) % PAD for c in chunks] == [0] * len(chunks), [len(c) for c in chunks]
        assert all(len(c) - 16 >= PAD for c in chunks[:-1])
    opened = open_answer(sealed, r, raw)  # the library strips the padding
    (forwarded,) = upstream_posts(stub)
    own = stub.post(route, forwarded["body"].encode())
    if stream:
        assert opened == own
        assert 3 <= len(chunks) <= len(stream_events(own)) + 1, len(chunks)  # ≥ 2 non-final chunks and the final
    else:
        assert json.loads(opened) == json.loads(own) and opened == own.rstrip(b" ")


@pytest.mark.parametrize("config", ["pad", "both"])
def test_padded_answers_open_in_the_sdk(padded, config):
    proxy, att = padded[config]
    client, _, _ = sdk(proxy, att)
    reply = client.chat.completions.create(model="stub-model", messages=[{"role": "user", "content": "pad me"}])
    assert reply.choices[0].message.content == "Echo: pad me"
    chunks = client.chat.completions.create(model="stub-model", messages=[{"role": "user", "content": "pad me"}],
                                            stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: pad me"


# ---------------------------------------------------------------- the Swift client on the command line


@pytest.mark.parametrize("suite,stream", [("x25519-aes256gcm", False), ("xwing-aes256gcm", True),
                                          ("x25519-chacha20poly1305", True)])
def test_vllm_proxy_e2ee_chat_command(proxy, suite, stream):
    """`vllm-proxy e2ee-chat` (the Swift V3Client, the only client here that speaks X-Wing) against the real proxy:
    report-data binding checked, the answer opened, the receipt covering the bytes exchanged; a wrong token exits 1."""
    import subprocess

    from conftest import bin_dir

    argv = [str(bin_dir() / "vllm-proxy"), "e2ee-chat", proxy.base_url, "--token", proxy.token, "--suite", suite,
            "--message", "sealed from swift"] + (["--stream"] if stream else [])
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"hpke-{suite}" in done.stdout
    # A stream's text comes one word per event.
    assert ("Echo: sealed from swift" in done.stdout) if not stream else ('"content":" swift"' in done.stdout)
    assert "covers the bytes exchanged" in done.stdout
    refused_run = subprocess.run(argv[:4] + ["wrong-token"], capture_output=True, text=True, timeout=60)
    assert refused_run.returncode == 1 and "HTTP 401" in refused_run.stderr
