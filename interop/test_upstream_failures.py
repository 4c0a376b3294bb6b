"""SPEC §2/§5/§6 failure paths that need their own instance: dead upstream and agent, short timeout, abandon."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import uuid

import pytest
import requests

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


# ---------------------------------------------------------------- issue #20: what is sent, and how often


def _received(stub, marker: str) -> int:
    """Completion requests the stub received whose body carries `marker`."""
    return sum(1 for r in stub.requests() if marker in r["body"])


def _post_in_thread(proxy, body: bytes, timeout: float = 30):
    """Starts a POST on its own connection; the returned dict gets `response` or `error` when it ends."""
    outcome: dict = {}

    def run():
        try:
            outcome["response"] = requests.post(
                proxy.base_url + CHAT, data=body, headers={**proxy.auth(), "Content-Type": "application/json"},
                timeout=timeout,
            )
        except Exception as error:  # the client that leaves times out on purpose
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    outcome["thread"] = thread
    return outcome


def _post_alone(proxy, body: bytes):
    """A POST on a connection of its own (the session's is busy with the stream)."""
    return requests.post(
        proxy.base_url + CHAT, data=body, headers={**proxy.auth(), "Content-Type": "application/json"}, timeout=30)


@pytest.fixture(scope="session")
def one_connection_proxy(stack):
    return stack.proxies.get("one-connection-proxy") or stack.start_proxy(
        "one-connection-proxy", UPSTREAM_MAX_CONNECTIONS="1")


@pytest.fixture(scope="session")
def one_impatient_connection_proxy(stack):
    return stack.proxies.get("one-impatient-connection-proxy") or stack.start_proxy(
        "one-impatient-connection-proxy", UPSTREAM_MAX_CONNECTIONS="1", UPSTREAM_TIMEOUT_SECONDS="1")


@pytest.fixture(scope="session")
def small_answer_proxy(stack):
    return stack.proxies.get("small-answer-proxy") or stack.start_proxy(
        "small-answer-proxy", UPSTREAM_MAX_RESPONSE_BYTES="1024")


def test_a_request_whose_client_left_while_waiting_for_a_connection_is_never_sent(one_connection_proxy, stub):
    """SPEC §2: the only upstream connection is busy; clients that leave while their requests wait for it leave
    nothing upstream, and the live requests queued behind them are served when the connection frees up.
    Several of each, so that some share the busy request's event loop whichever loops the proxy picks."""
    tag = uuid.uuid4().hex
    # Busy for 6 s: ample time, even on a loaded machine, for the proxy to notice the clients that leave.
    busy = _post_in_thread(one_connection_proxy, chat_body(f"busy {tag}", model="stub-pause-6000"))
    deadline = time.monotonic() + 10
    while _received(stub, f"busy {tag}") == 0:
        assert time.monotonic() < deadline, "the busy request never reached the stub"
        time.sleep(0.05)
    # These clients give up after 1 s, while their requests still wait for the busy connection.
    leaving = [_post_in_thread(one_connection_proxy, chat_body(f"leaving {i} {tag}"), timeout=1) for i in range(4)]
    time.sleep(0.5)
    staying = [_post_in_thread(one_connection_proxy, chat_body(f"staying {i} {tag}")) for i in range(2)]
    for outcome in [busy, *leaving, *staying]:
        outcome["thread"].join(30)
    assert all("error" in outcome for outcome in leaving), leaving
    assert busy["response"].status_code == 200, busy
    for i, outcome in enumerate(staying):
        assert outcome["response"].status_code == 200, outcome
        assert f"Echo: staying {i} {tag}" in outcome["response"].text
    time.sleep(0.5)  # anything sent for the clients that left would have arrived by now
    assert _received(stub, tag) == 3, [r["body"] for r in stub.requests()]  # busy and the two staying


def test_a_wait_for_a_connection_is_bounded_by_the_upstream_timeout(one_impatient_connection_proxy, stub):
    """SPEC §1/§2: with the only connection held by a stream, a request waits at most UPSTREAM_TIMEOUT_SECONDS
    for it, then gets 504 upstream_timeout, unsent."""
    proxy = one_impatient_connection_proxy
    tag = uuid.uuid4().hex
    with proxy.session.post(
        proxy.base_url + CHAT, data=chat_body(f"holding {tag}", model="stub-long", stream=True),
        headers={**proxy.auth(), "Content-Type": "application/json"}, stream=True, timeout=(5, 30),
    ) as holding:
        assert holding.status_code == 200
        chunks = holding.iter_content(None)
        next(chunks)  # the stream is flowing: the connection is taken
        started = time.monotonic()
        r = _post_alone(proxy, chat_body(f"waited {tag}"))
        assert_error(r, 504, "upstream_timeout")
        assert time.monotonic() - started < 10
    time.sleep(0.3)
    assert _received(stub, f"waited {tag}") == 0


def test_a_read_timeout_on_a_kept_alive_connection_sends_the_request_once(impatient_proxy, stub):
    """SPEC §2: a request is sent upstream at most once — never again after a read timeout (the proxy used to
    send it again on a fresh connection: vLLM generated it twice, and the client waited twice as long)."""
    for index in range(4):  # keep-alive connections to the stub, which the slow request then reuses
        assert impatient_proxy.post(CHAT, chat_body(f"warm {index}")).status_code == 200
    tag = uuid.uuid4().hex
    assert_error(impatient_proxy.post(CHAT, chat_body(f"once {tag}", model="stub-slow-4000")), 504, "upstream_timeout")
    time.sleep(1.5)  # a second attempt would have been sent as the first timed out
    assert _received(stub, f"once {tag}") == 1


def test_an_answer_over_upstream_max_response_bytes_is_502(small_answer_proxy, stub):
    """SPEC §1/§2: an answer held whole over UPSTREAM_MAX_RESPONSE_BYTES is 502 upstream_unavailable; a stream
    of the same size is not held whole and passes; a small listing passes through."""
    tag = uuid.uuid4().hex
    long_text = f"{tag} " + "x" * 2000
    assert_error(small_answer_proxy.post(CHAT, chat_body(long_text)), 502, "upstream_unavailable")
    assert _received(stub, tag) == 1
    assert small_answer_proxy.post(CHAT, chat_body("short")).status_code == 200
    r, raw = small_answer_proxy.post_stream(CHAT, chat_body(long_text, stream=True))
    assert r.status_code == 200 and b"data: [DONE]" in raw
    assert small_answer_proxy.get("/v1/models", auth=False).status_code == 200


def test_upstream_max_response_bytes_out_of_range_stops_start_up(stack):
    """SPEC §1: a number outside its range stops start-up with exit 2 and one line naming the variable."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOST": "127.0.0.1", "PORT": "0", "TOKEN": "t",
        "MODEL_NAME": "interop-model", "VLLM_BASE_URL": "http://127.0.0.1:9", "UPSTREAM_MAX_RESPONSE_BYTES": "1023",
    }
    done = subprocess.run(
        [str(stack.bins / "vllm-proxy")], env=env, capture_output=True, text=True, timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "UPSTREAM_MAX_RESPONSE_BYTES" in lines[0] and "1024" in lines[0], done.stderr
