"""SPEC §3 traffic control, observed from outside: congestion from vLLM's /metrics, the in-flight cap, premium."""

from __future__ import annotations

import http.server
import threading
import time
import uuid

import pytest
import requests

from conftest import TIMEOUT
from helpers import assert_error, basic_in_flight, chat_body

CHAT = "/v1/chat/completions"
PREMIUM = {"X-User-Tier": "PreMium"}


def poll_until(condition, what: str, seconds: float = 10):
    deadline = time.monotonic() + seconds
    while True:
        result = condition()
        if result:
            return result
        assert time.monotonic() < deadline, f"{what} did not happen within {seconds} s"
        time.sleep(0.2)


def set_waiting(stack, value: int) -> None:
    requests.post(f"{stack.stub_url}/stub/waiting/{value}", timeout=TIMEOUT).raise_for_status()


def test_congested_vllm_refuses_basic_but_not_premium(proxy, stack, stub):
    set_waiting(stack, 3)
    try:
        refused = []  # a 429 Response is falsy (not r.ok), so keep it aside rather than returning it
        poll_until(
            lambda: refused.append(proxy.post(CHAT, chat_body("busy?"))) or refused[-1].status_code == 429,
            "a 429 while congested",
        )
        error = assert_error(refused[-1], 429, "rate_limit")
        assert error["message"] == "Upstream vLLM is congested"
        assert proxy.post(CHAT, chat_body("premium"), headers=PREMIUM).status_code == 200
    finally:
        set_waiting(stack, 0)
    poll_until(lambda: proxy.post(CHAT, chat_body("calm again")).status_code == 200, "recovery after congestion")


@pytest.fixture(scope="session")
def one_slot_proxy(stack):
    return stack.proxies.get("one-slot-proxy") or stack.start_proxy("one-slot-proxy", BASIC_MAX_REQUEST="1")


def test_in_flight_cap_refuses_basic_but_not_premium(one_slot_proxy, stub):
    proxy = one_slot_proxy
    results = {}
    slow = threading.Thread(
        target=lambda: results.update(slow=proxy.post(CHAT, chat_body(f"{uuid.uuid4()}", model="stub-slow-2000")))
    )
    slow.start()
    try:
        poll_until(lambda: basic_in_flight(proxy) == 1, "the slow request counting as in flight", 5)
        error = assert_error(proxy.post(CHAT, chat_body("second")), 429, "rate_limit")
        assert error["message"] == "Too many concurrent requests"
        assert proxy.post(CHAT, chat_body("premium"), headers=PREMIUM).status_code == 200
    finally:
        slow.join(timeout=30)
    assert not slow.is_alive() and results["slow"].status_code == 200
    assert basic_in_flight(proxy) == 0
    assert proxy.post(CHAT, chat_body("slot free again")).status_code == 200


def test_failed_requests_give_their_slot_back(one_slot_proxy, stub):
    """SPEC §3: a request stops counting as in flight when it fails, whatever the failure."""
    proxy = one_slot_proxy
    assert_error(proxy.post(CHAT, b"{broken"), 400, "invalid_request_error")
    assert_error(proxy.post(CHAT, chat_body("x" * (11 << 20))), 413, "request_too_large")
    assert proxy.post(CHAT, chat_body("boom", model="stub-error-500")).status_code == 500
    assert proxy.post(CHAT, chat_body("boom", model="stub-error-500", stream=True)).status_code == 500
    assert_error(proxy.post(CHAT, chat_body("hi"), auth=False), 401)
    assert basic_in_flight(proxy) == 0
    for _ in range(3):
        assert proxy.post(CHAT, chat_body("still served")).status_code == 200


class FlakyMetricsVLLM:
    """A minimal vLLM stand-in whose /metrics says `waiting` until told to fail; completions always answer."""

    def __init__(self):
        owner = self
        self.metrics_ok = True

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path == "/metrics" and owner.metrics_ok:
                    self.reply(200, b'vllm:num_requests_waiting{engine="0",model_name="m"} 1.0\n', "text/plain")
                else:
                    self.reply(500, b"metrics broken", "text/plain")

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.reply(200, b'{"id":"chatcmpl-flaky","object":"chat.completion","choices":[]}', "application/json")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_a_stale_congestion_reading_stops_blocking(stack):
    """SPEC §3: once vLLM's /metrics fails, the last 'congested' reading ages out (max age, at least 10 s)."""
    vllm = FlakyMetricsVLLM()
    try:
        proxy = stack.start_proxy("stale-reading-proxy", VLLM_BASE_URL=vllm.url, METRICS_MAX_AGE_SECONDS="10")
        poll_until(lambda: proxy.post(CHAT, chat_body("busy?")).status_code == 429, "a 429 while congested")
        vllm.metrics_ok = False
        failed_at = time.monotonic()
        poll_until(lambda: proxy.post(CHAT, chat_body("aged out?")).status_code == 200, "the reading aging out", 20)
        assert time.monotonic() - failed_at >= 8, "the last good reading should have been honoured until its max age"
    finally:
        vllm.close()
