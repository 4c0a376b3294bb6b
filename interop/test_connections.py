"""SPEC §1–§3 on the real binary: connection time limits (slowloris, trickled bodies, idle keep-alive) and client
disconnects that cancel the upstream request, free the slot, store nothing and give the memory back.

Raw sockets throughout: these tests are about what happens below HTTP clients' politeness."""

from __future__ import annotations

import hashlib
import json
import random
import re
import resource
import selectors
import socket
import struct
import threading
import time
import uuid

import pytest
import requests

from helpers import assert_error, chat_body

CHAT = "/v1/chat/completions"
HEADER_TIMEOUT, BODY_TIMEOUT, IDLE_TIMEOUT = 1, 2, 3


@pytest.fixture(scope="module")
def guarded_proxy(stack):
    """Short connection limits, one basic slot: a trickler that held the slot would lock every basic client out."""
    return stack.proxies.get("guarded-proxy") or stack.start_proxy(
        "guarded-proxy", HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT), BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT),
        IDLE_TIMEOUT_SECONDS=str(IDLE_TIMEOUT), BASIC_MAX_REQUEST="1",
    )


@pytest.fixture(scope="module")
def roomy_proxy(stack):
    """Room for 500 concurrent basic requests."""
    return stack.proxies.get("roomy-proxy") or stack.start_proxy(
        "roomy-proxy", BASIC_MAX_REQUEST="1000"
    )


def address(proxy) -> tuple[str, int]:
    host, port = proxy.base_url.removeprefix("http://").split(":")
    return host, int(port)


def raw_request(proxy, body: bytes, *, path: str = CHAT, extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: proxy\r\nAuthorization: Bearer {proxy.token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


def read_until_closed(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    """Everything the peer sends until it closes (EOF or reset), and when that happened (monotonic)."""
    sock.settimeout(limit)
    data = b""
    while True:
        try:
            piece = sock.recv(65536)
        except ConnectionResetError:
            return data, time.monotonic()
        except socket.timeout:
            pytest.fail(f"the proxy kept the connection open for {limit} s; received {data[:300]!r}")
        if not piece:
            return data, time.monotonic()
        data += piece


def metric(proxy, name: str) -> float:
    text = requests.get(proxy.base_url + "/v1/metrics", timeout=(5, 30)).text
    own = text.split("# --- vLLM Backend Metrics ---")[0]
    values = [float(m.group(1)) for m in re.finditer(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", own, re.M)]
    return sum(values)


def stub_counts(stack) -> dict:
    return requests.get(stack.stub_url + "/stub/counts", timeout=(5, 30)).json()


def wait_for(condition, what: str, limit: float = 20.0, step: float = 0.05):
    deadline = time.monotonic() + limit
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"not within {limit} s: {what}"
        time.sleep(step)


def rss_kib(pid: int) -> int:
    status = open(f"/proc/{pid}/status").read()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1))


def open_files(pid: int) -> tuple[int, int]:
    """(soft, hard) `Max open files` of a running process."""
    line = next(l for l in open(f"/proc/{pid}/limits") if l.startswith("Max open files"))
    soft, hard = line.split()[3:5]
    return int(soft), int(hard)


def stub_chat_id(body: bytes) -> str:
    """The stub's deterministic id for a chat body (DevStubs/StubUpstream: first 12 bytes of its SHA-256)."""
    return "chatcmpl-stub-" + hashlib.sha256(body).digest()[:12].hex()


def raise_own_file_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"hard open-file limit {hard} < {needed}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


# ---------------------------------------------------------------- time limits


def test_proxy_raises_its_open_file_limit_to_the_hard_limit(guarded_proxy):
    soft, hard = open_files(guarded_proxy.process.popen.pid)
    assert soft == hard, (soft, hard)


def test_slowloris_half_open_heads_are_closed_after_the_header_timeout(guarded_proxy):
    """2 000 connections that send part of a request head and stop: each is closed once the header timeout has
    passed, and ordinary requests keep succeeding meanwhile."""
    count = 2000
    raise_own_file_limit(count + 512)
    pid = guarded_proxy.process.popen.pid
    assert open_files(pid)[0] >= count + 100, open_files(pid)

    stop = threading.Event()
    outcomes: list[int] = []

    def ordinary_traffic():
        session = requests.Session()
        while not stop.is_set():
            r = session.post(
                guarded_proxy.base_url + CHAT, data=chat_body(f"meanwhile {uuid.uuid4()}"),
                headers={**guarded_proxy.auth(), "X-User-Tier": "premium"}, timeout=(5, 30),
            )
            outcomes.append(r.status_code)
            time.sleep(0.02)

    worker = threading.Thread(target=ordinary_traffic)
    worker.start()
    selector = selectors.DefaultSelector()
    opened: dict[socket.socket, float] = {}
    try:
        for i in range(count):
            s = socket.create_connection(address(guarded_proxy), timeout=10)
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\nContent-Type: applica")
            s.setblocking(False)
            opened[s] = time.monotonic()
            selector.register(s, selectors.EVENT_READ)
        assert len(opened) == count
        lifetimes: list[float] = []
        deadline = time.monotonic() + HEADER_TIMEOUT + 30
        while opened:
            assert time.monotonic() < deadline, f"{len(opened)} half-open connections still open"
            for key, _ in selector.select(timeout=1):
                s = key.fileobj
                try:
                    data = s.recv(4096)
                except (ConnectionResetError, BlockingIOError):
                    data = b""
                assert data == b"", f"a half-open connection got bytes: {data[:200]!r}"
                lifetimes.append(time.monotonic() - opened.pop(s))
                selector.unregister(s)
                s.close()
    finally:
        stop.set()
        worker.join(timeout=60)
        for s in opened:
            s.close()
        selector.close()
    # Never before the limit: the clock starts at accept, which is after our connect returned at the earliest.
    assert min(lifetimes) >= HEADER_TIMEOUT * 0.9, min(lifetimes)
    assert outcomes and set(outcomes) == {200}, (len(outcomes), set(outcomes))
    print(f"\nslowloris: {count} half-open connections closed after {min(lifetimes):.2f}–{max(lifetimes):.2f} s; "
          f"{len(outcomes)} ordinary requests meanwhile, all 200")


def test_idle_keep_alive_connection_is_closed_after_the_idle_timeout(guarded_proxy):
    with socket.create_connection(address(guarded_proxy), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: proxy\r\n\r\n")
        s.settimeout(10)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.endswith(b"{}"):
            piece = s.recv(4096)
            assert piece, answer
            answer += piece
        answered = time.monotonic()
        assert answer.startswith(b"HTTP/1.1 200"), answer
        rest, closed = read_until_closed(s, IDLE_TIMEOUT + 30)
    assert rest == b""
    # The idle limit (3 s), not the header limit (1 s), governs a connection waiting for its next request.
    assert closed - answered >= IDLE_TIMEOUT * 0.9, closed - answered


def test_keep_alive_connection_serves_requests_until_idle(guarded_proxy):
    """Several requests on one connection, each well inside the idle limit: the connection stays usable."""
    with socket.create_connection(address(guarded_proxy), timeout=10) as s:
        s.settimeout(30)
        for i in range(3):
            body = chat_body(f"keep-alive {i} {uuid.uuid4()}")
            s.sendall(raw_request(guarded_proxy, body, extra="X-User-Tier: premium\r\n"))
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += s.recv(65536)
            head, _, rest = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head
            length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))
            while len(rest) < length:
                rest += s.recv(65536)
            assert json.loads(rest)["id"]
            time.sleep(0.5)


def test_trickled_body_is_refused_with_408_and_holds_no_basic_slot(guarded_proxy, stub):
    marker = f"trickle {uuid.uuid4()}"
    body = chat_body(marker)
    with socket.create_connection(address(guarded_proxy), timeout=10) as s:
        s.sendall(raw_request(guarded_proxy, body)[: -len(body)] + body[:5])
        started = time.monotonic()
        stop = threading.Event()

        def trickle():
            sent = 5
            while not stop.wait(0.3) and sent < len(body) - 1:
                try:
                    s.sendall(body[sent:sent + 1])
                except OSError:
                    return
                sent += 1

        dripper = threading.Thread(target=trickle)
        dripper.start()
        try:
            # The only basic slot is free while the body trickles in.
            r = guarded_proxy.post(CHAT, chat_body(f"not blocked {uuid.uuid4()}"))
            assert r.status_code == 200, r.text
            answer, closed = read_until_closed(s, BODY_TIMEOUT + 30)
        finally:
            stop.set()
            dripper.join(timeout=10)
    assert closed - started >= BODY_TIMEOUT * 0.9
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), answer[:300]
    assert re.search(rb"(?i)\r\nconnection: close", head), head
    error = json.loads(payload)["error"]
    assert error["type"] == "request_timeout" and set(error) == {"message", "type", "param", "code"}
    assert not any(marker in r["body"] for r in stub.requests()), "a half-read body reached the upstream"


def test_silent_new_connection_is_closed_after_the_header_timeout(guarded_proxy):
    with socket.create_connection(address(guarded_proxy), timeout=10) as s:
        opened = time.monotonic()
        rest, closed = read_until_closed(s, HEADER_TIMEOUT + 30)
    assert rest == b"" and closed - opened >= HEADER_TIMEOUT * 0.9


# ---------------------------------------------------------------- disconnects


def wait_for_stub_started(stack, n: int):
    return wait_for(lambda: stub_counts(stack)["started"] >= n, f"the stub to see {n} requests start")


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_disconnect_while_generating_cancels_the_upstream_at_once(stack, roomy_proxy, stub, stream):
    """The client leaves while the upstream is silent (generating a JSON answer, or between stream events): the
    upstream request is cancelled well within a second, the slot is freed, and no receipt is stored."""
    body = chat_body(f"leave {uuid.uuid4()}", model="stub-pause-20000", stream=stream)
    s = socket.create_connection(address(roomy_proxy), timeout=10)
    s.sendall(raw_request(roomy_proxy, body))
    wait_for_stub_started(stack, 1)
    if stream:
        s.settimeout(10)
        first = b""
        while b"\n\n" not in first.partition(b"\r\n\r\n")[2]:
            first += s.recv(65536)
    assert metric(roomy_proxy, "vllm_proxy_completions_inflight_requests") == 1
    left = time.monotonic()
    s.close()
    wait_for(lambda: stub_counts(stack)["cancelled"] == 1, "the upstream request to be cancelled", step=0.01)
    elapsed = time.monotonic() - left
    assert elapsed < 1.0, f"upstream cancelled {elapsed:.3f} s after the client left"
    counts = stub_counts(stack)
    assert counts["completed"] == 0 and counts["running"] == 0, counts
    wait_for(lambda: metric(roomy_proxy, "vllm_proxy_completions_inflight_requests") == 0, "in-flight 0")
    assert metric(roomy_proxy, "vllm_proxy_basic_inflight_requests") == 0
    assert_error(roomy_proxy.signature(stub_chat_id(body)), 404, "not_found")
    print(f"\nupstream cancelled {elapsed * 1000:.0f} ms after the client left ({'stream' if stream else 'json'})")


def test_many_vanishing_clients_cancel_everything_and_leak_nothing(stack, roomy_proxy, stub):
    """500 concurrent requests, half streamed, whose clients vanish at random points (mid-body, while the answer is
    generated, after the first event; by FIN or by reset): every upstream request the stub saw is cancelled,
    in-flight gauges return to 0, no receipt is stored, and RSS returns to within 10 % of its idle value."""
    raise_own_file_limit(2000)
    pid = roomy_proxy.process.popen.pid
    rng = random.Random(1234)

    def storm(n: int) -> list[bytes]:
        bodies, sockets = [], []
        for i in range(n):
            stream = i % 2 == 1
            body = chat_body(f"storm {i} {uuid.uuid4()}", model="stub-pause-8000", stream=stream)
            bodies.append(body)
            request = raw_request(roomy_proxy, body, extra="X-User-Tier: premium\r\n" if i % 4 == 0 else "")
            s = socket.create_connection(address(roomy_proxy), timeout=10)
            point = rng.choice(["mid-body", "waiting", "waiting"] + (["first-bytes"] * 2 if stream else []))
            s.sendall(request[: len(request) // 2] if point == "mid-body" else request)
            sockets.append((s, point, rng.uniform(0.2, 2.0)))
        started = time.monotonic()
        for s, point, after in sorted(sockets, key=lambda item: item[2]):
            time.sleep(max(0.0, started + after - time.monotonic()))
            if point == "first-bytes":  # the stream's head and first event, then silence
                s.settimeout(10)
                s.recv(1)
            if rng.random() < 0.5:  # vanish by reset rather than FIN
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        return bodies

    def answered_in_full(n: int) -> None:
        """The same mix and concurrency, every answer read to the end."""
        sockets = []
        for i in range(n):
            body = chat_body(f"warm-up {i} {uuid.uuid4()}", model="stub-pause-2000", stream=i % 2 == 1)
            extra = ("X-User-Tier: premium\r\n" if i % 4 == 0 else "") + "Connection: close\r\n"
            s = socket.create_connection(address(roomy_proxy), timeout=10)
            s.sendall(raw_request(roomy_proxy, body, extra=extra))
            sockets.append(s)
        for s in sockets:
            answer, _ = read_until_closed(s, 60)
            s.close()
            assert answer.startswith(b"HTTP/1.1 200"), answer[:300]

    # Warm up with as many concurrent requests answered in full, so "idle" includes what that concurrency
    # allocates once and keeps for reuse (the allocator's arenas, pooled upstream connections).
    for _ in range(2):
        answered_in_full(500)
    time.sleep(2)
    idle = rss_kib(pid)
    stub.reset()

    bodies = storm(500)

    wait_for(lambda: stub_counts(stack)["running"] == 0, "every upstream request to end", limit=30, step=0.2)
    counts = stub_counts(stack)
    assert counts["completed"] == 0, counts
    assert counts["cancelled"] == counts["started"] > 250, counts
    wait_for(lambda: metric(roomy_proxy, "vllm_proxy_completions_inflight_requests") == 0, "in-flight 0", limit=30)
    assert metric(roomy_proxy, "vllm_proxy_basic_inflight_requests") == 0
    stored = [b for b in bodies if roomy_proxy.signature(stub_chat_id(b)).status_code != 404]
    assert not stored, f"{len(stored)} receipts stored for abandoned requests"

    peak = rss_kib(pid)
    series = [peak]
    deadline = time.monotonic() + 30
    while series[-1] > idle * 1.10:
        assert time.monotonic() < deadline, f"RSS not back within 10 % of idle {idle} KiB in 30 s: {series}"
        time.sleep(1)
        series.append(rss_kib(pid))
    settled = series[-1]
    print(f"\nvanishing clients: stub {counts}; RSS idle {idle} KiB, after storm {peak} KiB, settled {settled} KiB")
