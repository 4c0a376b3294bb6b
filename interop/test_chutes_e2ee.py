"""SPEC §7, CHUTES_E2EE: the real proxy binary against the Chutes E2EE stand-in (chutes_e2ee_stub.py, itself proven
against PyPI chutes-e2ee 0.1.0 in test_chutes_e2ee_stub.py).

The stand-in enforces what the relay would (key, single-use expiring nonces, retired instances) and records every
byte that crossed the relay; the tests check that none of it is plaintext of a prompt or an answer, whatever
the client's own E2EE, and that nonce exhaustion, expiry, 403, 410 and garbage are handled as the SPEC says.
"""

from __future__ import annotations

import json
import re
import secrets
import time
import uuid

import pytest

from chutes_e2ee_stub import ChutesE2EEStub
from conftest import ProxyClient
from e2ee_client import E2EEClient
from helpers import assert_error, chat_body, sha256_hex, sse_events, verify_ecdsa_receipt
from test_chutes import leaked_fragments

CHAT = "/v1/chutes/chat/completions"
MODEL = "stub-e2e-model"
PLAIN_MODEL = "stub-plain-model"  # listed without confidential_compute
KEY = "cpk-E2EECANARY-" + "".join(secrets.choice("ghijklmnopqrstuvwxyz") for _ in range(32))


def unique(label: str) -> str:
    return f"{label} {uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def relay(stack):
    stub = ChutesE2EEStub.started(KEY, stack.tmp)
    yield stub
    stub.stop()


def e2ee_env(relay, **extra: str) -> dict[str, str]:
    """The proxy's environment for this stand-in, verifying its instances' evidence (SPEC §7.2: on by default): its
    PCCS stand-in, its synthetic root and its allowed measurements. `extra` wins."""
    return relay.proxy_env(**extra)


@pytest.fixture(scope="module")
def proxy_e2ee(stack, relay) -> ProxyClient:
    return stack.start_proxy("chutes-e2ee-proxy", **e2ee_env(relay))


@pytest.fixture(scope="module")
def proxy_tee_only(stack, relay) -> ProxyClient:
    return stack.start_proxy("chutes-e2ee-tee-only-proxy", **e2ee_env(relay, CHUTES_TEE_ONLY="1"))


@pytest.fixture
def fresh(relay):
    """Each test starts with new instance keys (so the proxy's pool holds only dead nonces), no faults, no logs."""
    relay.reset()
    relay.nonces_per_instance, relay.nonce_expires_in, relay.done_encrypted = 4, 55.0, False
    return relay


def assert_no_plaintext(relay, *texts: str) -> None:
    log = relay.relay_bytes()
    assert log, "the relay saw nothing"
    for text in texts:
        for piece in {text, text.split()[-1]}:
            assert piece.encode() not in log, f"{piece!r} crossed the relay in clear"
    assert b'"messages"' not in log and b'"content"' not in log and b'"choices"' not in log


def served(relay) -> list[int]:
    return [i.status for i in relay.invocations]


def receipt(proxy: ProxyClient, chat_id: str) -> dict:
    r = proxy.signature(chat_id)
    assert r.status_code == 200, r.text
    return r.json()


# ---------------------------------------------------------------- the happy paths


def test_json_answer_travels_sealed_and_the_receipt_names_the_instance(fresh, proxy_e2ee):
    text = unique("json secret")
    body = chat_body(text, model=MODEL)
    r = proxy_e2ee.post(CHAT, body)
    assert r.status_code == 200, r.text
    assert r.headers["X-Proxy-Upstream"] == "chutes" and r.headers["X-Proxy-Upstream-Transport"] == "e2ee"
    answer = r.json()
    assert answer["choices"][0]["message"]["content"] == f"Echo: {text}"
    (invocation,) = fresh.invocations
    assert invocation.status == 200 and invocation.payload["messages"][0]["content"] == text
    assert invocation.headers["x-e2e-stream"] == "false"
    assert invocation.headers["x-chute-id"] == fresh.model(MODEL).chute_id
    assert invocation.headers["authorization"] == f"Bearer {KEY}"
    assert "e2e_response_pk" in invocation.payload
    record = receipt(proxy_e2ee, answer["id"])
    assert record["upstream"] == "chutes" and record["chutes_transport"] == "e2ee"
    assert record["chutes_instance_id"] == invocation.headers["x-instance-id"]
    assert record["text"] == f"{sha256_hex(body)}:{sha256_hex(r.content)}"
    verify_ecdsa_receipt(record["text"], record["signature"], record["signing_address"])
    assert_no_plaintext(fresh, text, f"Echo: {text}")


@pytest.mark.parametrize("done_encrypted", [False, True])
def test_stream_travels_sealed_and_is_relayed_as_plain_events(fresh, proxy_e2ee, done_encrypted):
    fresh.done_encrypted = done_encrypted
    text = unique("stream secret")
    body = chat_body(text, stream=True, model=MODEL)
    r, raw = proxy_e2ee.post_stream(CHAT, body)
    assert r.status_code == 200, raw[:500]
    assert r.headers["X-Proxy-Upstream-Transport"] == "e2ee"
    events = sse_events(raw)
    assert events[-1] == b"[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
    assert content == f"Echo: {text}"
    assert {"usage"} in [set(c) for c in chunks], "the plaintext usage event passes"
    assert fresh.invocations[0].headers["x-e2e-stream"] == "true"
    record = receipt(proxy_e2ee, chunks[0]["id"])
    assert record["text"] == f"{sha256_hex(body)}:{sha256_hex(raw)}"
    assert record["chutes_transport"] == "e2ee" and record["chutes_instance_id"]
    assert_no_plaintext(fresh, text, "Echo:")


@pytest.mark.parametrize("stream", [False, True])
def test_client_e2ee_on_top(fresh, proxy_e2ee, stream):
    """Client ↔ proxy sealed by SPEC §4, proxy ↔ instance sealed by Chutes' E2EE: plaintext only in the proxy."""
    r = proxy_e2ee.get("/v1/attestation/report", params={"signing_algo": "ecdsa"})
    client = E2EEClient(algo="ecdsa", version=2, model_public=bytes.fromhex(r.json()["signing_public_key"]))
    text = unique("doubly sealed")
    plain = {"model": MODEL, "messages": [{"role": "user", "content": text}], **({"stream": True} if stream else {})}
    body = json.dumps(client.encrypt_body(plain)).encode()
    if stream:
        r, raw = proxy_e2ee.post_stream(CHAT, body, headers=client.headers())
        assert r.status_code == 200, raw[:500]
        pieces = []
        for event in sse_events(raw)[:-1]:
            chunk = json.loads(event)
            if chunk.get("choices"):
                pieces += [p for _, _, _, p in client.open_choices(chunk, "delta")]
        assert "".join(pieces) == f"Echo: {text}"
        assert text.encode() not in raw
    else:
        r = proxy_e2ee.post(CHAT, body, headers=client.headers())
        assert r.status_code == 200, r.text
        assert [p for _, name, _, p in client.open_choices(r.json(), "message") if name == "content"] == [f"Echo: {text}"]
        assert text not in r.text
    assert r.headers["X-E2EE-Applied"] == "true" and r.headers["X-Proxy-Upstream-Transport"] == "e2ee"
    assert fresh.invocations[-1].payload["messages"][0]["content"] == text
    assert_no_plaintext(fresh, text, "Echo:")


# ---------------------------------------------------------------- nonces and instances


def test_nonce_exhaustion_refills_and_never_reuses(fresh, proxy_e2ee):
    """On a chute of its own (the proxy holds no nonces for it yet): two instances, one nonce each per listing."""
    fresh.nonces_per_instance = 1
    for _ in range(7):
        r = proxy_e2ee.post(CHAT, chat_body(unique("many"), model="stub-e2e-exhaust"))
        assert r.status_code == 200, r.text
    assert served(fresh) == [200] * 7, "a spent nonce was presented"
    nonces = [i.headers["x-e2e-nonce"] for i in fresh.invocations]
    assert len(set(nonces)) == 7
    assert fresh.instance_fetches[fresh.model("stub-e2e-exhaust").chute_id] >= 4


def test_expired_nonces_are_not_used(fresh, proxy_e2ee):
    fresh.nonce_expires_in = 1.5  # a chute of its own, so the proxy's first listing for it has this lifetime
    assert proxy_e2ee.post(CHAT, chat_body("before", model="stub-e2e-expiry")).status_code == 200
    time.sleep(1.6)  # the pool's nonces are now expired at the relay
    r = proxy_e2ee.post(CHAT, chat_body("after", model="stub-e2e-expiry"))
    assert r.status_code == 200, r.text
    assert served(fresh) == [200, 200], "the proxy presented an expired nonce"


def test_403_refetches_and_retries_once(fresh, proxy_e2ee):
    fresh.faults.append("spend")
    fetches_before = fresh.instance_fetches.get(fresh.model(MODEL).chute_id, 0)
    r = proxy_e2ee.post(CHAT, chat_body("spent", model=MODEL))
    assert r.status_code == 200, r.text
    assert served(fresh) == [403, 200]
    # At least the refetch after the 403. Whether a first fill precedes it depends on what the pool kept from
    # earlier tests (a leftover dead nonce is refused the same way), so that one is not counted on.
    assert fresh.instance_fetches[fresh.model(MODEL).chute_id] >= fetches_before + 1
    metrics = proxy_e2ee.get("/v1/metrics", auth=False).text
    assert re.search(r'^vllm_proxy_chutes_e2ee_retries_total\{status="403"\} [1-9]', metrics, re.M), metrics[:3000]


def test_410_moves_to_another_instance(fresh, proxy_e2ee):
    fresh.faults.append("gone")
    r = proxy_e2ee.post(CHAT, chat_body("gone", model=MODEL))
    assert r.status_code == 200, r.text
    assert served(fresh) == [410, 200]
    first, second = (i.headers["x-instance-id"] for i in fresh.invocations)
    assert first != second
    assert receipt(proxy_e2ee, r.json()["id"])["chutes_instance_id"] == second


def test_a_second_refusal_is_a_502(fresh, proxy_e2ee):
    fresh.faults += ["spend", "spend"]
    r = proxy_e2ee.post(CHAT, chat_body("twice", model=MODEL))
    assert_error(r, 502, "upstream_unavailable")
    assert served(fresh) == [403, 403]


# ---------------------------------------------------------------- failures


def test_garbage_answer_is_a_502_and_no_receipt(fresh, proxy_e2ee):
    fresh.faults.append("garbage")
    r = proxy_e2ee.post(CHAT, chat_body("garbage", model=MODEL))
    error = assert_error(r, 502, "upstream_unavailable")
    assert "garbage" not in error["message"]
    assert proxy_e2ee.get("/", auth=False).status_code == 200  # still serving


def test_garbage_stream_chunk_ends_the_stream_in_band_without_receipt(fresh, proxy_e2ee):
    fresh.faults.append("garbage_stream")
    r, raw = proxy_e2ee.post_stream(CHAT, chat_body("garbage stream", stream=True, model=MODEL))
    assert r.status_code == 200
    events = sse_events(raw)
    error = json.loads(events[-1])["error"]
    assert error["type"] == "upstream_unavailable", error
    assert b"[DONE]" not in raw
    assert proxy_e2ee.post(CHAT, chat_body("afterwards", model=MODEL)).status_code == 200


def test_e2e_error_event_becomes_an_error_event(fresh, proxy_e2ee):
    fresh.faults.append("e2e_error")
    r, raw = proxy_e2ee.post_stream(CHAT, chat_body("failing", stream=True, model=MODEL))
    assert r.status_code == 200
    errors = [json.loads(e)["error"] for e in sse_events(raw) if e.startswith(b'{"error"')]
    assert errors, raw


def test_e2e_error_text_from_the_relay_never_reaches_the_client(fresh, proxy_e2ee):
    fresh.faults.append("e2e_error")
    r, raw = proxy_e2ee.post_stream(CHAT, chat_body("failing", stream=True, model=MODEL))
    assert b"instance failed" not in raw and b"internal_error" not in raw, raw


def test_a_relay_injected_usage_event_is_rebuilt_from_its_counts(fresh, proxy_e2ee):
    """Measured before the fix: a clear event with a `usage` key passed verbatim, so a relay's id and text reached
    the client and the receipt. Now only the token counts pass (SPEC §7.2)."""
    fresh.faults.append("inject_usage")
    body = chat_body("inject", stream=True, model=MODEL)
    r, raw = proxy_e2ee.post_stream(CHAT, body)
    assert r.status_code == 200, raw[:500]
    assert b"RELAYINJECTED" not in raw and b"RELAYCHOSEN" not in raw, raw
    chunks = [json.loads(e) for e in sse_events(raw) if e != b"[DONE]"]
    assert {"usage": {"prompt_tokens": 1}} in chunks
    record = receipt(proxy_e2ee, chunks[0]["id"])
    assert record["text"] == f"{sha256_hex(body)}:{sha256_hex(raw)}"
    assert proxy_e2ee.signature("chatcmpl-RELAYCHOSEN").status_code == 404


def test_a_repeated_sealed_chunk_ends_the_stream(fresh, proxy_e2ee):
    fresh.faults.append("repeat_chunk")
    r, raw = proxy_e2ee.post_stream(CHAT, chat_body("twice", stream=True, model=MODEL))
    events = sse_events(raw)
    assert events[-1] != b"[DONE]", raw
    assert any(e.startswith(b'{"error"') for e in events), raw


@pytest.mark.parametrize("fault", ["truncated_stream", "early_done"])
def test_a_stream_cut_before_its_end_gets_an_error_and_no_receipt(fresh, proxy_e2ee, fault):
    """SPEC §7.2: the client's [DONE] is the proxy's, written only after the relay's stream ended normally after
    [DONE]; a stream that stops short of it, or goes on after a clear [DONE], ends with the proxy's error event."""
    fresh.faults.append(fault)
    r, raw = proxy_e2ee.post_stream(CHAT, chat_body("cut short please", stream=True, model=MODEL))
    events = sse_events(raw)
    assert b"[DONE]" not in events, raw
    assert events and events[-1].startswith(b'{"error"'), raw
    ids = {json.loads(e).get("id") for e in events[:-1]}
    for chat_id in ids - {None}:
        assert proxy_e2ee.signature(chat_id).status_code == 404


@pytest.mark.parametrize("fault,status", [("status_429", 429), ("status_502", 502)])
def test_relay_errors_pass_through_with_their_status(fresh, proxy_e2ee, fault, status):
    fresh.faults.append(fault)
    r = proxy_e2ee.post(CHAT, chat_body("busy", model=MODEL))
    assert r.status_code == status, r.text
    assert KEY not in r.text


def test_unknown_model_is_404_and_nothing_is_invoked(fresh, proxy_e2ee):
    r = proxy_e2ee.post(CHAT, chat_body("who", model="no-such-model"))
    assert_error(r, 404, "model_not_found")
    assert fresh.invocations == []


# ---------------------------------------------------------------- TEE-only


def test_tee_only_refuses_models_not_in_confidential_compute(fresh, proxy_tee_only):
    r = proxy_tee_only.post(CHAT, chat_body("not in a TEE", model=PLAIN_MODEL))
    assert_error(r, 403, "chutes_model_not_confidential")
    assert fresh.invocations == [] and fresh.instance_fetches == {}, "nothing may be sent for a refused model"
    r = proxy_tee_only.post(CHAT, chat_body("in a TEE", model=MODEL))
    assert r.status_code == 200, r.text


def test_tee_only_without_e2ee_refuses_too(stack, fresh):
    proxy = stack.proxies.get("chutes-tee-only-tls-proxy") or stack.start_proxy(
        "chutes-tee-only-tls-proxy", **e2ee_env(fresh, CHUTES_E2EE="0", CHUTES_TEE_ONLY="1")
    )
    r = proxy.post(CHAT, chat_body("tls tee-only", model=PLAIN_MODEL))
    assert_error(r, 403, "chutes_model_not_confidential")


# ---------------------------------------------------------------- logs


def test_zz_no_key_or_plaintext_in_the_proxy_logs(fresh, proxy_e2ee, proxy_tee_only):
    """LOG_LEVEL=trace: the Chutes key and the prompts/answers of this module never reach a log."""
    text = unique("log canary")
    assert proxy_e2ee.post(CHAT, chat_body(text, model=MODEL)).status_code == 200
    for proxy in (proxy_e2ee, proxy_tee_only):
        log = proxy.log_path.read_text(errors="replace")
        assert not leaked_fragments(KEY, log)
        assert text.split()[-1] not in log
