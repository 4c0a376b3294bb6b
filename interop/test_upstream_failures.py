"""SPEC §2/§5/§6 failure paths that need their own instance: dead upstream and agent, short timeout, abandon."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from conftest import refusing_port
from helpers import assert_error, basic_in_flight, chat_body, sse_events, text_body

CHAT = "/v1/chat/completions"


@pytest.fixture(scope="session")
def dead_proxy(stack):
    """vLLM and the dstack agent both unreachable, no TLS certificate configured."""
    return stack.proxies.get("dead-upstream-proxy") or stack.start_proxy(
        "dead-upstream-proxy",
        VLLM_BASE_URL=f"http://127.0.0.1:{refusing_port()}",
        DSTACK_SIMULATOR_ENDPOINT=str(stack.tmp / "no-agent-here.sock"),
        TLS_CERT_PATH="",
    )


@pytest.fixture(scope="session")
def impatient_proxy(stack):
    return stack.proxies.get("impatient-proxy") or stack.start_proxy("impatient-proxy", UPSTREAM_TIMEOUT_SECONDS="1")


@pytest.mark.parametrize("path,body", [
    (CHAT, chat_body("hi")), (CHAT, chat_body("hi", stream=True)), ("/v1/completions", text_body("hi")),
], ids=["chat", "chat-stream", "text"])
def test_unreachable_vllm_is_502(dead_proxy, path, body):
    assert_error(dead_proxy.post(path, body), 502, "upstream_unavailable")


def test_models_when_vllm_is_unreachable_is_502(dead_proxy):
    assert_error(dead_proxy.get("/v1/models", auth=False), 502, "upstream_unavailable")


def test_metrics_survive_an_unreachable_vllm(dead_proxy):
    r = dead_proxy.get("/v1/metrics", auth=False)
    assert r.status_code == 200
    _, separator, theirs = r.text.partition("# --- vLLM Backend Metrics ---\n")
    assert separator and theirs.startswith("#") and theirs.strip().count("\n") == 0, theirs


def test_unreachable_agent_is_503(dead_proxy):
    assert_error(dead_proxy.get("/v1/attestation/report"), 503, "attestation_unavailable")


def test_version_2_without_tls_cert_path_is_400(dead_proxy):
    assert_error(dead_proxy.get("/v1/attestation/report", params={"version": "2"}), 400)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_slow_vllm_is_504(impatient_proxy, stub, stream):
    started = time.monotonic()
    body = chat_body(f"slow {uuid.uuid4()}", model="stub-slow-4000", stream=stream)
    assert_error(impatient_proxy.post(CHAT, body), 504, "upstream_timeout")
    assert time.monotonic() - started < 3.5


def test_stalled_stream_ends_in_band_and_stores_no_receipt(impatient_proxy, stub):
    started = time.monotonic()
    r, raw = impatient_proxy.post_stream(CHAT, chat_body(f"stall {uuid.uuid4()}", model="stub-stall", stream=True))
    assert r.status_code == 200
    assert time.monotonic() - started < 10
    events = sse_events(raw)
    chat_id = json.loads(events[0])["id"]
    assert b"[DONE]" not in events
    assert json.loads(events[-1])["error"]["type"] == "upstream_timeout"
    assert_error(impatient_proxy.signature(chat_id), 404, "not_found")


def test_abandoned_stream_is_cancelled_and_stores_no_receipt(proxy, stub):
    """stub-long streams for 20+ s; a client leaving after the first event must end it at once (SPEC §2, §5)."""
    body = chat_body(f"abandon {uuid.uuid4()}", model="stub-long", stream=True)
    with proxy.session.post(
        proxy.base_url + CHAT, data=body, headers={**proxy.auth(), "Content-Type": "application/json"},
        stream=True, timeout=(5, 30),
    ) as r:
        assert r.status_code == 200
        # Keep the iterator referenced: a generator left by `break` is closed, and urllib3 then closes the
        # connection, which the proxy notices at once.
        chunks = r.iter_content(None)
        first = b""
        while b"\n\n" not in first:
            first += next(chunks)
        chat_id = json.loads(first.split(b"\n\n")[0][len(b"data: "):])["id"]
        in_flight = basic_in_flight(proxy)
        if in_flight < 1:  # diagnose: how did the stream end so early?
            rest = first
            for piece in chunks:
                rest += piece
                if len(rest) > 1 << 20:
                    break
            pytest.fail(f"in flight {in_flight} while the stream is open; stream tail: {rest[-600:]!r}")
    deadline = time.monotonic() + 10
    while basic_in_flight(proxy) != 0:
        assert time.monotonic() < deadline, "the abandoned request still counts as in flight after 10 s"
        time.sleep(0.2)
    assert_error(proxy.signature(chat_id), 404, "not_found")
