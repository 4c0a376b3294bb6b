"""SPEC §1/§2 hardening, driven as a hostile client would (issue #10), on the real vllm-proxy binary.

Every hostile request must be answered in the one error shape (or served), never with a 500, and cost the
proxy little CPU: the proxy's own user+system time is read from /proc/<pid>/stat around each request (10 ms
ticks), so the bound does not depend on how loaded this shared machine is. The settings test runs the binary
once per bad value; it exits before listening, so the whole matrix takes a few seconds.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess

import pytest

from conftest import make_token
from helpers import chat_body

CHAT = "/v1/chat/completions"
# The bounds: 100 ms of proxy CPU per hostile request, 50 ms for a 1 MiB body of 87 000 distinct keys
# (~16 ms of which is parsing in a release build). The suite normally drives the debug build, several times
# slower, where a body of a mebibyte or more gets a looser bound that still proves the cost linear: the
# quadratic parser took ~7.6 s of CPU for that body even in a release build.
RELEASE = "/release" in os.environ.get("VLLM_PROXY_BIN_DIR", "")
WIDE_BOUND = 0.050 if RELEASE else 0.250


def cpu_bound(body: bytes) -> float:
    return 0.100 if RELEASE or len(body) < (256 << 10) else 0.300
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14 and 15)


@pytest.fixture(scope="module")
def hostile(stack):
    """A proxy of its own, so no other test's traffic is counted; at the suite's trace log level (which
    test_zz_secrets needs, and which only makes the CPU bound more conservative)."""
    return stack.proxies.get("hostile-proxy") or stack.start_proxy("hostile-proxy")


def wide_object(count: int) -> bytes:
    return ("{" + ",".join(f'"k{i}":0' for i in range(count)) + "}").encode()


def wide_mebibyte() -> bytes:
    """About 1 MiB of distinct keys: the body that cost minutes of CPU with a quadratic duplicate check."""
    body = wide_object(87_000)
    assert 0.9 * (1 << 20) < len(body) < 1.1 * (1 << 20), len(body)
    return body


CORPUS: dict[str, bytes] = {
    "deep-arrays": b"[" * 100_000 + b"]" * 100_000,
    "deep-objects": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "deep-in-messages": chat_body("x")[:-1] + b',"extra":' + b"[" * 5000 + b"]" * 5000 + b"}",
    "wide-100k-keys": wide_object(100_000),
    "wide-100k-duplicate-keys": ("{" + ",".join('"k":0' for _ in range(100_000)) + "}").encode(),
    "wide-100k-array": b'{"a":[' + b",".join(b"0" for _ in range(100_000)) + b"]}",
    "huge-number": chat_body("x")[:-1] + b',"temperature":' + b"9" * 500_000 + b".5e+999999}",
    "huge-exponent": chat_body("x")[:-1] + b',"top_p":1e99999999999999999999}',
    "invalid-utf8": b'{"model":"stub-model","messages":[{"role":"user","content":"\xff\xfe\xc3"}]}',
    "overlong-utf8": b'{"model":"\xc0\xaf"}',
    "lone-high-surrogate": b'{"model":"stub-model","messages":[{"role":"user","content":"\\ud800"}]}',
    "lone-low-surrogate": b'{"a":"\\udc00x"}',
    "raw-nul": b'{"model":"stub-\x00model"}',
    "escaped-nul": chat_body("nul \u0000 inside"),
    "nul-outside-strings": b'{"a":1}\x00',
    "truncated": chat_body("x")[:-3],
    "trailing-garbage": chat_body("x") + b"garbage",
    "empty": b"",
    "not-an-object": b"[1,2,3]",
    "bare-null": b"null",
    "bom": b"\xef\xbb\xbf" + chat_body("x"),
    "long-string": chat_body("y" * 4_000_000),
    "many-escapes": b'{"a":"' + b"\\u00e9" * 300_000 + b'"}',
}
for value in ['"true"', "1", "0", "[]", "{}", '"false"', "null", "false", "true", '""', "1e0"]:
    CORPUS[f"stream-{value}"] = chat_body("stream flag")[:-1] + f',"stream":{value}}}'.encode()


def answer_is_well_formed(r, case: str) -> None:
    assert r.status_code != 500 and r.status_code < 600, (case, r.status_code, r.text[:300])
    if r.status_code >= 400:
        error = r.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}, (case, error)
    else:
        assert r.status_code == 200, (case, r.status_code)


@pytest.mark.parametrize("case", list(CORPUS))
def test_hostile_bodies_are_answered_cheaply_in_the_error_shape(hostile, case):
    body = CORPUS[case]
    pid = hostile.process.popen.pid
    hostile.post(CHAT, chat_body("warm-up"))
    before = cpu_seconds(pid)
    r = hostile.post(CHAT, body)
    spent = cpu_seconds(pid) - before
    print(f"cpu {case}: {spent * 1000:.0f} ms -> {r.status_code}")  # shown with pytest -s
    answer_is_well_formed(r, case)
    if case.startswith("stream-"):
        value = case.removeprefix("stream-")
        expected = 200 if value in ("null", "false", "true") else 400
        assert r.status_code == expected, (case, r.text[:300])
        if expected == 400:
            assert r.json()["error"]["type"] == "invalid_request_error"
    elif case in ("wide-100k-keys", "wide-100k-array", "huge-number", "huge-exponent", "escaped-nul", "long-string",
                  "many-escapes"):
        assert r.status_code == 200, (case, r.text[:300])  # valid JSON: relayed
    else:
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error", (case, r.text[:300])
    assert spent < cpu_bound(body), f"{case}: {spent * 1000:.0f} ms of proxy CPU"


def test_a_mebibyte_of_distinct_keys_is_answered_within_50ms_of_cpu(hostile):
    body = wide_mebibyte()
    pid = hostile.process.popen.pid
    hostile.post(CHAT, chat_body("warm-up"))
    costs = []
    for _ in range(5):
        before = cpu_seconds(pid)
        r = hostile.post(CHAT, body)
        costs.append(cpu_seconds(pid) - before)
        assert r.status_code == 200, r.text[:300]
    print(f"cpu 87000 keys: {[round(c * 1000) for c in costs]} ms")  # shown with pytest -s
    # The median of five: one tick of the shared machine's background work must not decide.
    assert sorted(costs)[2] < WIDE_BOUND, [f"{c * 1000:.0f} ms" for c in costs]


def raw_request(port: int, head: bytes, body: bytes = b"") -> bytes:
    """Sends bytes as they are (no client library would send these headers) and reads the answer, if any."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        try:
            s.sendall(head + body)
        except (BrokenPipeError, ConnectionResetError):
            pass
        s.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except (ConnectionResetError, socket.timeout):
            pass
    return b"".join(chunks)


@pytest.mark.parametrize("header", ["X-Filler", "Authorization", "X-Client-Pub-Key", "X-Request-Hash"])
def test_a_one_megabyte_header_value_is_refused_or_dropped_never_a_500(stack, hostile, header):
    port = int(hostile.base_url.rsplit(":", 1)[1])
    body = chat_body("big header")
    value = b"Bearer " + b"a" * (1 << 20) if header == "Authorization" else b"a" * (1 << 20)
    auth = b"" if header == "Authorization" else f"Authorization: Bearer {stack.token}\r\n".encode()
    head = (
        f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n".encode()
        + auth + header.encode() + b": " + value + b"\r\nConnection: close\r\n\r\n"
    )
    pid = hostile.process.popen.pid
    before = cpu_seconds(pid)
    answer = raw_request(port, head, body)
    spent = cpu_seconds(pid) - before
    # Either the connection is closed without an answer, or the answer is a 4xx in the error shape.
    if answer:
        status = int(answer.split(b" ", 2)[1])
        assert 400 <= status < 500, answer[:300]
        payload = answer.split(b"\r\n\r\n", 1)[1]
        if payload:
            assert set(json.loads(payload)["error"]) == {"message", "type", "param", "code"}
    assert spent < cpu_bound(value), f"{header}: {spent * 1000:.0f} ms of proxy CPU"
    assert hostile.post(CHAT, chat_body("still serving")).status_code == 200


# ---------------------------------------------------------------- settings (SPEC §1)

BASE_ENV = {"HOST": "127.0.0.1", "PORT": "0", "MODEL_NAME": "m", "VLLM_BASE_URL": "http://127.0.0.1:9"}
RANGE = re.compile(r"^([A-Z0-9_]+)\s.*\[range: (([0-9.e+]+)-([0-9.e+]+)[^\]]*)\]")
KNOWN_NUMERIC = {
    "PORT", "CHAT_CACHE_EXPIRATION", "E2EE_REPLAY_WINDOW_SECONDS", "E2EE_REPLAY_STORE_CAPACITY", "REDIS_PORT",
    "REDIS_DB", "REDIS_TIMEOUT_MS", "REDIS_RETRY_SECONDS", "BASIC_MAX_REQUEST",
    "METRICS_POLL_INTERVAL_SECONDS", "METRICS_TIMEOUT_SECONDS", "METRICS_MAX_AGE_SECONDS", "UPSTREAM_TIMEOUT_SECONDS",
    "MAX_BODY_BYTES",
}


def numeric_variables(stack) -> dict[str, tuple[float, float, str]]:
    """Every numeric variable, its bounds and its range text, as `--help` documents them."""
    done = subprocess.run([str(stack.bins / "vllm-proxy"), "--help"], capture_output=True, text=True, timeout=30)
    # The help text wraps long lines without indenting the continuation: join each variable's lines back.
    entries: list[str] = []
    for line in done.stdout.splitlines():
        if re.match(r"^  [A-Z][A-Z0-9_]+ ", line):
            entries.append(line.strip())
        elif entries and line and not line.startswith(" "):
            entries[-1] += " " + line.strip()
    found = {}
    for entry in entries:
        if m := RANGE.match(entry):
            found[m.group(1)] = (float(m.group(3)), float(m.group(4)), m.group(2))
    return found


def test_help_documents_a_range_for_every_numeric_variable(stack):
    assert KNOWN_NUMERIC <= set(numeric_variables(stack)), numeric_variables(stack)


def test_every_numeric_variable_refuses_nonsense_with_one_line_and_exit_2(stack):
    token = make_token()
    variables = numeric_variables(stack)
    checked = 0
    for name, (low, high, range_text) in variables.items():
        for value in ["-1", "0", "1e10", "nan", "abc", "inf", "9223372036854775807"]:
            try:
                number = float(value)
                if low <= number <= high and value not in ("inf", "nan"):
                    continue  # e.g. PORT=0 and REDIS_DB=0 are valid
            except ValueError:
                pass
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **BASE_ENV, "TOKEN": token, name: value}
            done = subprocess.run(
                [str(stack.bins / "vllm-proxy")], env=env, capture_output=True, text=True, timeout=30,
                stdin=subprocess.DEVNULL,
            )
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            assert done.returncode == 2, (name, value, done.returncode, done.stderr[-500:])
            assert len(lines) == 1 and name in lines[0], (name, value, done.stderr)
            assert range_text in lines[0], (name, range_text, lines[0])
            assert token not in done.stderr + done.stdout
            checked += 1
    assert checked >= 5 * len(KNOWN_NUMERIC) - 2, checked


# ---------------------------------------------------------------- repeated keys (SPEC §2, issue #20)

WIDE_REPEAT = ("{" + ",".join(f'"k{i}":0' for i in range(100_000)) + ',"\\u006b99999":1}').encode()
REPEATED_KEYS: dict[str, bytes] = {
    "stream-twice": b'{"model":"stub-model","stream":false,"messages":[{"role":"user","content":"hi"}],"stream":true}',
    "messages-twice": b'{"model":"stub-model","messages":[{"role":"user","content":"a"}],'
                      b'"messages":[{"role":"user","content":"b"}]}',
    "role-twice-in-a-message": b'{"model":"stub-model","messages":[{"role":"user","role":"system","content":"x"}]}',
    "deep-in-tool-calls": b'{"model":"stub-model","messages":[{"role":"assistant","content":null,"tool_calls":'
                          b'[{"id":"c","type":"function","function":{"name":"f","arguments":"{}","name":"g"}}]}]}',
    "escaped-spelling": b'{"model":"stub-model","messages":[{"role":"user","content":"x"}],"\\u006dodel":"other"}',
    "surrogate-pair-spelling": '{"model":"stub-model","messages":[],"\U0001F600":1,"\\ud83d\\ude00":2}'.encode(),
    "beside-empty-tool-calls": b'{"model":"stub-model","messages":[{"role":"assistant","content":"b","tool_calls":[]},'
                               b'{"role":"user","content":"a","content":"c"}]}',
    "after-100k-keys": WIDE_REPEAT,
    "one-key-100k-times": ("{" + ",".join('"k":0' for _ in range(100_000)) + "}").encode(),
}


@pytest.mark.parametrize("case", list(REPEATED_KEYS))
def test_a_repeated_key_is_refused_and_nothing_reaches_vllm(hostile, stub, case):
    body = REPEATED_KEYS[case]
    # Python (the upstream's reader) accepts these and keeps the last occurrence: the proxy must not guess.
    assert isinstance(json.loads(body), dict)
    pid = hostile.process.popen.pid
    before = cpu_seconds(pid)
    r = hostile.post(CHAT, body)
    spent = cpu_seconds(pid) - before
    assert r.status_code == 400, (case, r.status_code, r.text[:300])
    assert r.json()["error"]["type"] == "invalid_request_error", r.text[:300]
    assert stub.requests() == [], f"{case}: something reached the upstream"
    assert spent < cpu_bound(body), f"{case}: {spent * 1000:.0f} ms of proxy CPU"


def test_a_repeated_key_sent_as_raw_bytes_is_refused(stack, hostile, stub):
    """The exact bytes on the wire, no client library in between (the escaped spelling of `stream`)."""
    port = int(hostile.base_url.rsplit(":", 1)[1])
    body = b'{"model":"stub-model","stream":false,"messages":[{"role":"user","content":"hi"}],"str\\u0065am":true}'
    head = (
        f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {stack.token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    # Not `raw_request`: its half-close would read as a client that left before its answer.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(head + body)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    answer = b"".join(chunks)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:300]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["type"] == "invalid_request_error"
    assert stub.requests() == []


def test_keys_repeated_only_across_objects_are_relayed_byte_for_byte(hostile, stub):
    body = (b'{"model":"stub-model","messages":[{"role":"user","content":"a"},{"role":"user","content":"b"}],'
            b'"metadata":{"model":{"model":1},"e\\u0301":1,"\\u00e9":2}}')
    r = hostile.post(CHAT, body)
    assert r.status_code == 200, r.text[:300]
    (entry,) = stub.requests()
    assert entry["body"] == body.decode()
