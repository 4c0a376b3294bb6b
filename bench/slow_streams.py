"""bench/run's many-slow-streams case, standard library only (asyncio protocols, no HTTP library).

    python3 bench/slow_streams.py serve PORT CHUNKS INTERVAL
        An upstream that answers every POST with an event stream of CHUNKS `data:` chunks, the first at
        once and then one every INTERVAL seconds, then `data: [DONE]` (chunked encoding, keep-alive).
        GET /metrics says nothing waits (so the proxy's congestion check passes); GET /stats answers
        {"streams": total started, "max_concurrent": most streams open at once}. Cheap per stream: one
        timer each, no task, so 10 000 streams cost it little CPU.

    python3 bench/slow_streams.py drive HOST PORT TOKEN STREAMS RAMP_SECONDS OUT_JSON
        Opens STREAMS streaming chat requests, spread evenly over RAMP_SECONDS, each on its own
        connection, and records for each the time from starting to connect until the first `data:`
        chunk arrives (time to first token), how long the connect took, and whether it ended with
        `data: [DONE]`. Writes a JSON summary: counts, errors by kind, TTFT p50/p99/max, connects of a
        second or more, most streams open at once.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

# Each stream has its own id, as vLLM's do: a repeated id would get no receipt (records are never
# overwritten) and the proxy would be measured on that rare path.
CHUNK = (
    'data: {{"id":"chatcmpl-slow-{stream}","object":"chat.completion.chunk","created":1700000000,"model":"bench-model",'
    '"choices":[{{"index":0,"delta":{{"content":"token {n} "}},"finish_reason":null}}]}}\n\n'
)
DONE = "data: [DONE]\n\n"


def chunked(text: str) -> bytes:
    data = text.encode()
    return b"%x\r\n%s\r\n" % (len(data), data)


# ---------------------------------------------------------------- upstream


class Upstream:
    def __init__(self, chunks: int, interval: float) -> None:
        self.chunks = chunks
        self.interval = interval
        self.open = 0
        self.max_concurrent = 0
        self.total = 0


class UpstreamConnection(asyncio.Protocol):
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.buffer = b""
        self.timer: asyncio.TimerHandle | None = None
        self.streaming = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while not self.streaming:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            if len(self.buffer) < head_end + 4 + length:
                return
            self.buffer = self.buffer[head_end + 4 + length :]
            method, path = head.split(" ", 2)[:2]
            self.answer(method, path)

    def answer(self, method: str, path: str) -> None:
        if method == "POST":
            self.start_stream()
            return
        if path == "/stats":
            body = json.dumps({"streams": self.upstream.total, "max_concurrent": self.upstream.max_concurrent})
        elif path == "/metrics":
            body = "vllm:num_requests_waiting 0.0\n"
        else:
            body = '{"object":"list","data":[{"id":"bench-model","object":"model"}]}'
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body.encode())
        )

    def start_stream(self) -> None:
        u = self.upstream
        self.streaming = True
        u.open += 1
        u.total += 1
        u.max_concurrent = max(u.max_concurrent, u.open)
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + chunked(CHUNK.format(n=0, stream=u.total))
        )
        self.sent = 1
        self.stream_number = u.total
        self.timer = asyncio.get_running_loop().call_later(u.interval, self.next_chunk)

    def next_chunk(self) -> None:
        if self.sent < self.upstream.chunks:
            self.transport.write(chunked(CHUNK.format(n=self.sent, stream=self.stream_number)))
            self.sent += 1
            self.timer = asyncio.get_running_loop().call_later(self.upstream.interval, self.next_chunk)
            return
        self.transport.write(chunked(DONE) + b"0\r\n\r\n")
        self.end_stream()
        self.data_received(b"")  # a pipelined next request, if any

    def end_stream(self) -> None:
        if self.streaming:
            self.streaming = False
            self.upstream.open -= 1
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.end_stream()


async def serve(port: int, chunks: int, interval: float) -> None:
    upstream = Upstream(chunks, interval)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: UpstreamConnection(upstream), "127.0.0.1", port, backlog=4096)
    print(f"slow upstream listening on {port}", flush=True)
    async with server:
        await server.serve_forever()


# ---------------------------------------------------------------- load generator


class Driver:
    def __init__(self) -> None:
        self.ttft: list[float] = []
        self.connect: list[float] = []
        self.ok = 0
        self.errors: dict[str, int] = {}
        self.open = 0
        self.max_open = 0

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


class StreamClient(asyncio.Protocol):
    def __init__(self, driver: Driver, request: bytes, started: float, finished: asyncio.Future) -> None:
        self.driver = driver
        self.request = request
        self.started = started
        self.finished = finished
        self.buffer = b""
        self.status_checked = False
        self.first_token = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.driver.connect.append(time.monotonic() - self.started)
        self.driver.open += 1
        self.driver.max_open = max(self.driver.max_open, self.driver.open)
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.status_checked:
            if b"\r\n" not in self.buffer:
                return
            self.status_checked = True
            status = self.buffer.split(b" ", 2)[1] if self.buffer.startswith(b"HTTP/1.1 ") else b"?"
            if status != b"200":
                self.finish(f"status {status.decode(errors='replace')}")
                return
        if not self.first_token and b"data:" in self.buffer:
            self.first_token = True
            self.driver.ttft.append(time.monotonic() - self.started)
        if b"data: [DONE]" in self.buffer:
            self.finish(None)
        elif len(self.buffer) > 1 << 16:
            self.buffer = self.buffer[-64:]  # only the tail can still hold [DONE]

    def finish(self, error: str | None) -> None:
        if self.finished.done():
            return
        if error is None:
            self.driver.ok += 1
        else:
            self.driver.error(error)
        self.finished.set_result(None)
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.driver.open -= 1
        self.finish("closed before [DONE]" if exc is None else f"{type(exc).__name__}")


async def one_stream(driver: Driver, host: str, port: int, request: bytes, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    finished = loop.create_future()
    try:
        await asyncio.wait_for(
            loop.create_connection(lambda: StreamClient(driver, request, started, finished), host, port), timeout
        )
    except Exception as e:  # noqa: BLE001 (every failure is a result here)
        driver.error(f"connect: {type(e).__name__}: {getattr(e, 'strerror', None) or e}")
        return
    try:
        await asyncio.wait_for(finished, timeout)
    except asyncio.TimeoutError:
        driver.error("timeout")


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def drive(host: str, port: int, token: str, streams: int, ramp: float, out: str) -> None:
    body = b'{"model":"bench-model","stream":true,"messages":[{"role":"user","content":"Say something slowly."}]}'
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: %s:%d\r\nAuthorization: Bearer %s\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (host.encode(), port, token.encode(), len(body), body)
    )
    driver = Driver()
    tasks = []
    start = time.monotonic()
    for i in range(streams):
        delay = start + i * ramp / streams - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one_stream(driver, host, port, request, timeout=60)))
    ramp_actual = time.monotonic() - start
    await asyncio.gather(*tasks)
    summary = {
        "streams": streams,
        "ok": driver.ok,
        "errors": sum(driver.errors.values()),
        "error_kinds": driver.errors,
        "ttft_p50": percentile(driver.ttft, 50),
        "ttft_p99": percentile(driver.ttft, 99),
        "ttft_max": max(driver.ttft) if driver.ttft else None,
        "late_first_tokens": sum(1 for t in driver.ttft if t >= 1.0),
        # Connects of 1 s or 3 s are SYN retransmits: the listener's accept queue was full.
        "connect_p99": percentile(driver.connect, 99),
        "connect_max": max(driver.connect) if driver.connect else None,
        "slow_connects": sum(1 for t in driver.connect if t >= 0.9),
        "max_open": driver.max_open,
        "ramp_seconds": round(ramp_actual, 2),
        "wall_seconds": round(time.monotonic() - start, 2),
    }
    with open(out, "w") as f:
        json.dump(summary, f)


def main() -> None:
    mode = sys.argv[1]
    if mode == "serve":
        asyncio.run(serve(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])))
    elif mode == "drive":
        host, port, token, streams, ramp, out = sys.argv[2:8]
        asyncio.run(drive(host, int(port), token, int(streams), float(ramp), out))
    else:
        sys.exit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
