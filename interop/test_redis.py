"""SPEC §8 on the wire: replicas sharing receipts and E2EE replay claims through a real redis-server.

Every Redis here is Debian's `redis-server` on a free loopback port with a password and no persistence
(`--save ''`, `--appendonly no`), started by this module and stopped at its end, also on failure. The
Python side talks to it with the `redis` package, the client the Python implementation uses, and writes
and reads records in that implementation's format (`json.dumps(record)` under `{MODEL_NAME}:chat:{id}`).
Proxies use REDIS_RETRY_SECONDS=1 so recovery is seen within seconds, and a generous REDIS_TIMEOUT_MS
because this machine's two cores are shared with builds.
"""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eth_account import Account
from eth_account.messages import encode_defunct

from conftest import Process, free_port
from e2ee_client import E2EEClient
from helpers import assert_error, chat_body, sha256_hex, sse_events, verify_ecdsa_receipt, verify_ed25519_receipt
from test_chutes import CHUTES_KEY, start_chutes_stub, write_ca_and_leaf

MODEL = "interop-model"  # conftest's MODEL_NAME: the key namespace
CHAT = "/v1/chat/completions"
CHUTES_CHAT = "/v1/chutes/chat/completions"
NOT_HEX = "ghijklmnopqrstuvwxyzGHIJKLMNOPQRSTUVWXYZ"
RETRY_SECONDS = 1
FAST = {"REDIS_RETRY_SECONDS": str(RETRY_SECONDS), "REDIS_TIMEOUT_MS": "3000"}


def secret(label: str) -> str:
    """A password no hash or hex dump in a trace log can match by chance."""
    return f"{label}-" + "".join(secrets.choice(NOT_HEX) for _ in range(24))


def unique(label: str) -> str:
    return f"{label} {uuid.uuid4()}"


# ---------------------------------------------------------------- redis-server


def redis_port() -> int:
    """A free port outside the kernel's ephemeral range, so no proxy binding port 0 can take it before
    redis-server binds it."""
    for _ in range(50):
        port = secrets.randbelow(10000) + 20000
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    return free_port()


class RedisServer:
    """Debian's redis-server on 127.0.0.1; stop() and start() again keep the port, as an operator's restart does."""

    def __init__(self, name: str, tmp: Path, password: str, tls: dict[str, Path] | None = None):
        self.name, self.tmp, self.password, self.tls = name, tmp, password, tls
        self.port = redis_port()
        self.process: Process | None = None
        self.starts = 0
        self.start()

    def argv(self) -> list[str]:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        argv = [binary, "--bind", "127.0.0.1", "--requirepass", self.password, "--save", "", "--appendonly", "no"]
        if self.tls:
            argv += [
                "--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(self.tls["cert"]),
                "--tls-key-file", str(self.tls["key"]), "--tls-ca-cert-file", str(self.tls["ca"]),
                "--tls-auth-clients", "no",
            ]
        else:
            argv += ["--port", str(self.port)]
        return argv

    def client(self, **kwargs) -> redis.Redis:
        if self.tls:
            kwargs.update(ssl=True, ssl_ca_certs=str(self.tls["ca"]), host="localhost")
        kwargs.setdefault("host", "127.0.0.1")
        kwargs.setdefault("socket_timeout", 5)
        return redis.Redis(port=self.port, password=self.password, **kwargs)

    def start(self) -> None:
        self.starts += 1
        self.process = Process(f"{self.name}-{self.starts}", self.argv(), self.tmp)
        self.process.wait_until(self.answers_ping, f"{self.name} answering PING")

    def answers_ping(self) -> bool:
        try:
            return bool(self.client(socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.process:
            self.process.stop()

    def env(self, **extra: str) -> dict[str, str]:
        return {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(self.port), "REDIS_PASSWORD": self.password, **FAST, **extra}


def metric(proxy, name: str, labels: str | None = None) -> float:
    """Sum of every sample of `name` (whose label set contains `labels`) in the proxy's own exposition."""
    text = proxy.get("/v1/metrics", auth=False).text.split("# --- vLLM Backend Metrics ---")[0]
    total, found = 0.0, False
    for match in re.finditer(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", text, re.M):
        if labels is None or labels in (match.group(1) or ""):
            total += float(match.group(2))
            found = True
    assert found, f"no {name} {labels or ''} in:\n{text[:3000]}"
    return total


def model_key(proxy, algo: str = "ecdsa") -> bytes:
    r = proxy.get("/v1/attestation/report", params={"signing_algo": algo})
    assert r.status_code == 200, r.text
    return bytes.fromhex(r.json()["signing_public_key"])


def v2_post(proxy, path: str, algo: str = "ecdsa", nonce: str | None = None, timestamp: str | None = None):
    """One E2EE v2 chat request encrypted to this proxy's key; returns (response, client)."""
    client = E2EEClient(algo=algo, version=2, model_public=model_key(proxy, algo))
    if nonce is not None:
        client.nonce, client.timestamp = nonce, timestamp
    body = client.encrypt_body({"model": "stub-model", "messages": [{"role": "user", "content": unique("v2")}]})
    return proxy.post(path, json.dumps(body).encode(), headers=client.headers()), client


def log_of(proxy) -> str:
    return proxy.process.stdout_path.read_text(errors="replace") + proxy.process.stderr_path.read_text(errors="replace")


# ---------------------------------------------------------------- fixtures


@dataclasses.dataclass
class Replicas:
    redis: RedisServer
    a: object
    b: object
    chutes_url: str


@pytest.fixture(scope="module")
def tmp(stack) -> Path:
    path = stack.tmp / "redis"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="module")
def servers():
    """Every redis-server this module starts; all stopped at its end, also on failure."""
    started: list[RedisServer] = []
    yield started
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def replicas(stack, tmp, servers) -> Replicas:
    """Two proxies on one Redis, both with the Chutes route on (against the TLS Chutes stand-in)."""
    server = RedisServer("redis-shared", tmp, secret("shared"))
    servers.append(server)
    ca, leaf, leaf_key = write_ca_and_leaf(tmp)
    chutes_url = start_chutes_stub(stack, "redis-chutes-stub", CHUTES_KEY, leaf, leaf_key, ca, stack.processes)
    chutes_env = {"CHUTES_ENABLED": "1", "CHUTES_BASE_URL": chutes_url, "CHUTES_API_KEY": CHUTES_KEY,
                  "CHUTES_CA_FILE": str(ca)}
    a = stack.start_proxy("redis-replica-a", **server.env(**chutes_env))
    b = stack.start_proxy("redis-replica-b", **server.env(**chutes_env))
    return Replicas(server, a, b, chutes_url)


# ---------------------------------------------------------------- two replicas, one truth


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_receipt_made_on_a_is_served_by_b_byte_identical(replicas, stream):
    a, b = replicas.a, replicas.b
    body = chat_body(unique("shared receipt"), stream=stream)
    if stream:
        r, raw = a.post_stream(CHAT, body)
        chat_id = json.loads(sse_events(raw)[0])["id"]
    else:
        r = a.post(CHAT, body)
        raw, chat_id = r.content, r.json()["id"]
    assert r.status_code == 200
    for algo in ("ecdsa", "ed25519"):
        from_a, from_b = a.signature(chat_id, algo), b.signature(chat_id, algo)
        assert from_a.status_code == 200 and from_b.status_code == 200, (from_a.text, from_b.text)
        assert from_b.content == from_a.content
        record = from_b.json()
        assert record["text"] == f"{sha256_hex(body)}:{sha256_hex(raw)}"
        verify = verify_ecdsa_receipt if algo == "ecdsa" else verify_ed25519_receipt
        verify(record["text"], record["signature"], record["signing_address"])
    # B serves A's signature: the address is A's, not B's own.
    assert b.signature(chat_id).json()["signing_address"] != b.get(
        "/v1/attestation/report", params={"signing_algo": "ecdsa"}).json()["signing_address"]


@pytest.mark.parametrize(
    "first,second", [(CHAT, CHAT), (CHUTES_CHAT, CHUTES_CHAT), (CHAT, CHUTES_CHAT), (CHUTES_CHAT, CHAT)],
    ids=["vllm-vllm", "chutes-chutes", "vllm-chutes", "chutes-vllm"],
)
@pytest.mark.parametrize("algo", ["ecdsa", "ed25519"])
def test_v2_nonce_spent_on_a_is_a_replay_on_b(replicas, first, second, algo):
    r, client = v2_post(replicas.a, first, algo)
    assert r.status_code == 200, r.text
    assert r.headers.get("X-E2EE-Applied") == "true"
    replay, _ = v2_post(replicas.b, second, algo, nonce=client.nonce, timestamp=client.timestamp)
    assert_error(replay, 400, "e2ee_replay_detected")
    key = f"{MODEL}:e2ee_replay:{algo}:{client.timestamp}:{client.nonce}"
    assert replicas.redis.client().exists(key), "the claim must be in Redis under SPEC §4's key"
    # A fresh nonce still passes on B.
    fresh, _ = v2_post(replicas.b, second, algo)
    assert fresh.status_code == 200, fresh.text


def python_signing_keys():
    account = Account.create()
    ed = Ed25519PrivateKey.generate()
    return account, ed


def test_record_written_by_the_python_implementation_is_served_as_is(replicas):
    """Written like the Python implementation: redis-py `set(key, json.dumps(record), ex=CHAT_CACHE_EXPIRATION)`."""
    account, ed = python_signing_keys()
    chat_id = "chatcmpl-" + uuid.uuid4().hex
    text = f"{sha256_hex(b'python request')}:{sha256_hex(b'python response')}"
    record = {
        "text": text,
        "signature_ecdsa": "0x" + bytes(account.sign_message(encode_defunct(text=text)).signature).hex(),
        "signing_address_ecdsa": account.address,
        "signature_ed25519": ed.sign(text.encode()).hex(),
        "signing_address_ed25519": ed.public_key().public_bytes_raw().hex(),
    }
    written = json.dumps(record)
    assert ", " in written and '": "' in written  # Python's default separators, not compact JSON
    replicas.redis.client().set(f"{MODEL}:chat:{chat_id}", written, ex=1200)
    for proxy in (replicas.a, replicas.b):
        for algo in ("ecdsa", "ed25519"):
            r = proxy.signature(chat_id, algo)
            assert r.status_code == 200, r.text
            assert r.json() == {
                "text": text, "signature": record[f"signature_{algo}"],
                "signing_address": record[f"signing_address_{algo}"], "signing_algo": algo, "upstream": "vllm",
                "record": record,  # SPEC §5: the stored record as is, and no record_signature (it has none)
            }
            verify = verify_ecdsa_receipt if algo == "ecdsa" else verify_ed25519_receipt
            verify(text, r.json()["signature"], r.json()["signing_address"])


def python_reader(client: redis.Redis, chat_id: str, algo: str) -> dict:
    """The Python implementation's read path: GET, json.loads, pick the algorithm's fields."""
    data = json.loads(client.get(f"{MODEL}:chat:{chat_id}"))
    return {
        "text": data["text"], "signature": data[f"signature_{algo}"],
        "signing_address": data[f"signing_address_{algo}"], "signing_algo": algo,
    }


def test_record_we_write_is_read_by_a_python_reader(replicas):
    body = chat_body(unique("for python"))
    r = replicas.a.post(CHAT, body)
    chat_id = r.json()["id"]
    client = replicas.redis.client()
    ttl = client.ttl(f"{MODEL}:chat:{chat_id}")
    assert 1100 < ttl <= 1200, ttl  # CHAT_CACHE_EXPIRATION's default
    for algo in ("ecdsa", "ed25519"):
        python_view = python_reader(client, chat_id, algo)
        served = replicas.a.signature(chat_id, algo).json()
        assert python_view == {k: served[k] for k in python_view}
        assert python_view["text"] == f"{sha256_hex(body)}:{sha256_hex(r.content)}"
        verify = verify_ecdsa_receipt if algo == "ecdsa" else verify_ed25519_receipt
        verify(python_view["text"], python_view["signature"], python_view["signing_address"])
    assert json.loads(client.get(f"{MODEL}:chat:{chat_id}"))["upstream"] == "vllm"


def test_redis_password_never_reaches_logs_or_metrics(replicas):
    for proxy in (replicas.a, replicas.b):
        text = log_of(proxy) + proxy.get("/v1/metrics", auth=False).text
        assert replicas.redis.password not in text
        assert replicas.redis.password[-12:] not in text
        assert "redis: redis://:<redacted>@127.0.0.1:" in log_of(proxy), "the start-up line hides the password"


# ---------------------------------------------------------------- outage under load


def test_redis_outage_under_load_fails_v2_closed_keeps_plain_traffic_and_recovers(stack, tmp, servers):
    server = RedisServer("redis-outage", tmp, secret("outage"))
    servers.append(server)
    strict = stack.start_proxy("redis-outage-reject", **server.env())
    lenient = stack.start_proxy("redis-outage-local", **server.env(E2EE_REPLAY_ON_REDIS_FAILURE="local"))
    assert metric(strict, "vllm_proxy_redis_up") == 1

    stop = threading.Event()
    failures: list[str] = []
    done = [0]
    lock = threading.Lock()

    def load(worker: int) -> None:
        proxy = (strict, lenient)[worker % 2]
        for _ in range(200):
            if stop.is_set():
                return
            r = proxy.post(CHAT, chat_body(unique("load")), headers={"X-User-Tier": "premium"})
            with lock:
                done[0] += 1
                if r.status_code != 200:
                    failures.append(f"{r.status_code} {r.text[:200]}")

    with ThreadPoolExecutor(max_workers=50) as pool:
        futures = [pool.submit(load, worker) for worker in range(50)]
        deadline = time.monotonic() + 30
        while done[0] < 100 and time.monotonic() < deadline:
            time.sleep(0.05)
        server.stop()  # mid-run
        before = done[0]
        while done[0] < before + 150 and time.monotonic() < deadline:
            time.sleep(0.05)
        # Still down: v2 fails closed on the strict replica and falls back on the lenient one.
        refused, _ = v2_post(strict, CHAT)
        assert_error(refused, 503, "replay_store_unavailable")
        accepted, client = v2_post(lenient, CHAT)
        assert accepted.status_code == 200, accepted.text
        replay, _ = v2_post(lenient, CHAT, nonce=client.nonce, timestamp=client.timestamp)
        assert_error(replay, 400, "e2ee_replay_detected")
        stop.set()
        for future in futures:
            future.result()
    assert done[0] > before, "no load ran during the outage"
    assert failures == [], f"{len(failures)} plain requests failed during the Redis outage: {failures[:3]}"

    # A record made during the outage is kept by this replica.
    r = strict.post(CHAT, chat_body(unique("during outage")))
    assert strict.signature(r.json()["id"]).status_code == 200
    assert metric(strict, "vllm_proxy_redis_up") == 0
    assert metric(strict, "vllm_proxy_redis_failures_total") >= 1
    assert metric(strict, "vllm_proxy_redis_operations_total", 'result="skipped"') >= 1
    assert metric(strict, "vllm_proxy_redis_command_duration_seconds_count") >= 1
    warnings = [line for line in log_of(strict).splitlines() if "redis: unavailable" in line]
    assert len(warnings) == 1, warnings  # once per outage, however many requests

    # Back again: used within the retry interval (plus this loaded machine's slack), no restart.
    server.start()
    started = time.monotonic()
    while True:
        r, _ = v2_post(strict, CHAT)
        if r.status_code == 200:
            break
        assert_error(r, 503, "replay_store_unavailable")
        assert time.monotonic() - started < RETRY_SECONDS + 10, "Redis not used again after it came back"
        time.sleep(0.1)
    assert metric(strict, "vllm_proxy_redis_up") == 1
    assert "redis: reachable again" in log_of(strict)
    assert strict.process.popen.poll() is None and lenient.process.popen.poll() is None


# ---------------------------------------------------------------- wrong password


def test_wrong_password_warns_once_and_fails_closed_without_crashing(stack, tmp, servers, stub):
    server = RedisServer("redis-wrong-password", tmp, secret("right"))
    servers.append(server)
    wrong = secret("wrong")
    proxy = stack.start_proxy("redis-wrong-password-proxy", **server.env(REDIS_PASSWORD=wrong))
    plain = proxy.post(CHAT, chat_body(unique("plain still works")))
    assert plain.status_code == 200
    assert proxy.signature(plain.json()["id"]).status_code == 200  # kept locally
    refused, _ = v2_post(proxy, CHAT)
    assert_error(refused, 503, "replay_store_unavailable")
    assert proxy.process.popen.poll() is None
    log = log_of(proxy)
    warnings = [line for line in log.splitlines() if "redis" in line.lower() and "warning" in line.lower()]
    assert len(warnings) == 1, warnings
    assert "authentication refused" in warnings[0] and "WRONGPASS" in warnings[0], warnings[0]
    assert wrong not in log and server.password not in log
    assert wrong[-12:] not in log
    assert metric(proxy, "vllm_proxy_redis_failures_total", 'kind="auth"') >= 1


def test_malformed_redis_settings_stop_startup_naming_the_variable(stack):
    token = secret("tok")
    base = {"PATH": "/usr/bin:/bin", "TOKEN": token, "MODEL_NAME": MODEL, "HOST": "127.0.0.1", "PORT": "0",
            "VLLM_BASE_URL": "http://127.0.0.1:9"}
    url_secret = secret("urlpass")
    for name, value in [("REDIS_PORT", "70000"), ("REDIS_DB", "16"), ("REDIS_TIMEOUT_MS", "0"),
                        ("REDIS_RETRY_SECONDS", "x"), ("E2EE_REPLAY_ON_REDIS_FAILURE", "allow"),
                        ("REDIS_URL", f"http://:{url_secret}@host:6379")]:
        done = subprocess.run([str(stack.bins / "vllm-proxy")], env={**base, name: value}, capture_output=True,
                              text=True, timeout=30, stdin=subprocess.DEVNULL)
        assert done.returncode == 2, (name, done.stderr)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and name in lines[0], done.stderr
        assert url_secret not in done.stderr and token not in done.stderr


# ---------------------------------------------------------------- TLS


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
            "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.pem",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            cwd=directory)
    return directory / f"{name}.pem", directory / f"{name}.key"


@pytest.fixture(scope="module")
def tls_redis(tmp, servers) -> RedisServer:
    """redis-server speaking only TLS, with a leaf for localhost/127.0.0.1 from a throwaway openssl CA."""
    directory = tmp / "tls"
    directory.mkdir(exist_ok=True)
    ca, ca_key = make_ca(directory, "redis-ca")
    make_ca(directory, "other-ca")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=localhost",
            "-keyout", "server.key", "-out", "server.csr", cwd=directory)
    (directory / "ext.cnf").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
            "-days", "1", "-out", "server.pem", "-extfile", "ext.cnf", cwd=directory)
    server = RedisServer("redis-tls", tmp, secret("tls"), tls={
        "ca": ca, "cert": directory / "server.pem", "key": directory / "server.key"})
    servers.append(server)
    return server


def test_tls_to_redis_with_a_private_ca_works(stack, tls_redis):
    ca = tls_redis.tls["ca"]
    proxy = stack.start_proxy(
        "redis-tls-proxy", REDIS_URL=f"rediss://:{tls_redis.password}@localhost:{tls_redis.port}/2",
        REDIS_CA_FILE=str(ca), **FAST)
    assert metric(proxy, "vllm_proxy_redis_up") == 1
    r = proxy.post(CHAT, chat_body(unique("over tls")))
    chat_id = r.json()["id"]
    assert python_reader(tls_redis.client(db=2), chat_id, "ecdsa")["text"] == proxy.signature(chat_id).json()["text"]
    ok, _ = v2_post(proxy, CHAT)
    assert ok.status_code == 200, ok.text
    assert tls_redis.password not in log_of(proxy)
    assert "rediss://:<redacted>@localhost" in log_of(proxy)
    # SIGTERM closes the Redis connections with everything else and still exits 0.
    proxy.process.popen.send_signal(signal.SIGTERM)
    assert proxy.process.popen.wait(timeout=15) == 0, log_of(proxy)[-1500:]


@pytest.mark.parametrize("how", ["other-ca", "system-roots-only", "plain-tcp"])
def test_tls_to_redis_refuses_an_untrusted_server(stack, tls_redis, how):
    env = {"REDIS_HOST": "localhost", "REDIS_PORT": str(tls_redis.port), "REDIS_PASSWORD": tls_redis.password,
           **FAST}
    if how == "other-ca":
        env.update(REDIS_TLS="1", REDIS_CA_FILE=str(tls_redis.tls["ca"].parent / "other-ca.pem"))
    elif how == "system-roots-only":
        env.update(REDIS_TLS="1")
    proxy = stack.start_proxy(f"redis-tls-{how}-proxy", **env)
    assert metric(proxy, "vllm_proxy_redis_up") == 0
    refused, _ = v2_post(proxy, CHAT)
    assert_error(refused, 503, "replay_store_unavailable")
    warnings = [line for line in log_of(proxy).splitlines() if "redis: unavailable" in line]
    assert len(warnings) == 1, warnings
    if how != "plain-tcp":
        assert "TLS failed" in warnings[0], warnings[0]
    proxy.process.stop()


# ---------------------------------------------------------------- a record is never overwritten (SPEC §2)


def test_a_reused_request_id_on_another_replica_gets_no_record(replicas):
    """A's answer holds the id in Redis; B's later answer under the same `request_id` is served but stored
    nowhere (`SET NX`), and both replicas and a Python reader keep seeing A's record."""
    a, b = replicas.a, replicas.b
    request_id = f"dup-{uuid.uuid4().hex}"
    chat_id = f"chatcmpl-{request_id}"
    first = chat_body(unique("first on a"), request_id=request_id)
    r = a.post(CHAT, first)
    assert r.status_code == 200 and r.json()["id"] == chat_id, r.text
    expected = f"{sha256_hex(first)}:{sha256_hex(r.content)}"
    stored = replicas.redis.client().get(f"{MODEL}:chat:{chat_id}")

    second = b.post(CHAT, chat_body(unique("second on b"), request_id=request_id))
    assert second.status_code == 200 and second.json()["id"] == chat_id
    assert replicas.redis.client().get(f"{MODEL}:chat:{chat_id}") == stored, "Redis still holds A's record"
    for proxy in (a, b):
        record = proxy.signature(chat_id).json()
        assert record["text"] == expected
        verify_ecdsa_receipt(record["text"], record["signature"], record["signing_address"])
    assert python_reader(replicas.redis.client(), chat_id, "ecdsa")["text"] == expected
    warnings = [line for line in log_of(b).splitlines() if f'"{chat_id}" already has a signature record' in line]
    assert len(warnings) == 1, warnings
    assert metric(b, "vllm_proxy_receipts_duplicate_id_total", 'upstream="vllm"') >= 1


# ---------------------------------------------------------------- eviction policy (SPEC §8)


class EvictingRedisServer(RedisServer):
    """A redis-server that may evict keys when full, as managed services often configure it."""

    def argv(self) -> list[str]:
        return super().argv() + ["--maxmemory-policy", "allkeys-lru"]


def test_an_evicting_maxmemory_policy_is_warned_about_at_start_up(stack, tmp, servers, replicas):
    server = EvictingRedisServer("redis-lru", tmp, secret("lru"))
    servers.append(server)
    proxy = stack.start_proxy("redis-lru-proxy", **server.env())
    assert metric(proxy, "vllm_proxy_redis_up") == 1, "a policy is a warning, not a failure"
    warnings = [line for line in log_of(proxy).splitlines() if "maxmemory-policy" in line]
    assert len(warnings) == 1 and "warning" in warnings[0], warnings
    assert "maxmemory-policy is allkeys-lru, not noeviction" in warnings[0] and "replay" in warnings[0]
    assert server.password not in log_of(proxy)
    # Debian's default, noeviction, is only a debug line.
    assert [line for line in log_of(replicas.a).splitlines()
            if "maxmemory-policy" in line and "debug" not in line] == []

    # An ACL user without CONFIG (as on managed services): logged as unchecked, Redis still used.
    server.client().acl_setuser("proxy", enabled=True, passwords=["+proxy-pass"], keys=["~*"],
                                commands=["+@all", "-config"])
    limited = stack.start_proxy("redis-noconfig-proxy", **server.env(REDIS_USERNAME="proxy",
                                                                      REDIS_PASSWORD="proxy-pass"))
    assert metric(limited, "vllm_proxy_redis_up") == 1
    lines = [line for line in log_of(limited).splitlines() if "maxmemory-policy" in line]
    assert len(lines) == 1 and "could not check maxmemory-policy (server error: NOPERM)" in lines[0], lines
    r = limited.post(CHAT, chat_body(unique("acl user")))
    assert r.status_code == 200 and limited.signature(r.json()["id"]).status_code == 200
