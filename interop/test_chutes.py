"""SPEC §7 (Chutes) on the wire, driving the real binaries.

A Chutes stand-in is `stub-vllm --api-key KEY --tls-cert … --tls-key …` serving HTTPS with a leaf certificate
from a throwaway CA; the proxy trusts that CA through `CHUTES_CA_FILE`. Every proxy instance this module
starts (one per Chutes mode, each with `LOG_LEVEL=trace`) is its own process with its own captured
stdout/stderr; all of them, and both Chutes stubs, are stopped at the end of the module, also on failure.

The Chutes API key is a canary (`cpk-LEAKCANARY-…`); the last test drives every Chutes path again and then
searches every instance's logs and every response (status line, headers, body) for any 8-character piece of it.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import ipaddress
import json
import os
import re
import secrets
import time
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import TIMEOUT, Process, ProxyClient, free_port, http_ok
from helpers import (
    assert_error,
    chat_body,
    sha256_hex,
    sse_events,
    verify_ecdsa_receipt,
    verify_ed25519_receipt,
)

CHAT = "/v1/chutes/chat/completions"
MODELS = "/v1/chutes/models"
VLLM_CHAT = "/v1/chat/completions"
MIN_LEAK = 8  # any 8 consecutive characters of a secret count as a leak
NOT_HEX = "ghijklmnopqrstuvwxyzGHIJKLMNOPQRSTUVWXYZ"  # no hash, id or hex dump in a log can match these

# The canary: distinctive, and its random part avoids hex digits so no hash in a trace log matches by chance.
CHUTES_KEY = "cpk-LEAKCANARY-" + "".join(secrets.choice(NOT_HEX) for _ in range(32))
OTHER_KEY = "cpk-OTHERKEY-" + "".join(secrets.choice(NOT_HEX) for _ in range(32))  # what the refusing stub wants


def unique(label: str) -> str:
    return f"{label} {uuid.uuid4()}"


# ---------------------------------------------------------------- leak detection


def leaked_fragments(secret: str, text: str) -> set[str]:
    """Every 8-character piece of `secret` in `text`: as is, hex-encoded (any case) or inside base64."""
    pieces = {secret[i:i + MIN_LEAK] for i in range(len(secret) - MIN_LEAK + 1)}
    lowered = text.lower()
    found = {p for p in pieces if p in text or p.encode().hex() in lowered}
    for shift in range(3):  # base64 of the key at each alignment; 12 base64 characters = 9 key bytes
        encoded = base64.b64encode(secret[shift:].encode()).decode()
        for i in range(0, len(encoded) - 16, 4):
            if encoded[i:i + 12] in text:
                found.add(f"base64:{encoded[i:i + 12]}")
    return found


def test_leak_detector_sees_plain_hex_and_base64_fragments():
    assert leaked_fragments(CHUTES_KEY, "x" + CHUTES_KEY[10:18] + "y")
    assert leaked_fragments(CHUTES_KEY, "[" + CHUTES_KEY[16:26].encode().hex().upper() + "]")
    assert leaked_fragments(CHUTES_KEY, base64.b64encode(("Bearer " + CHUTES_KEY).encode()).decode())
    assert leaked_fragments(CHUTES_KEY, base64.b64encode(("Bearer: " + CHUTES_KEY).encode()).decode())
    assert not leaked_fragments(CHUTES_KEY, CHUTES_KEY[:7] + " " + CHUTES_KEY[7:14] + " [REDACTED]")
    assert not leaked_fragments(CHUTES_KEY, OTHER_KEY)


# ---------------------------------------------------------------- certificates


def write_ca_and_leaf(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a leaf for localhost/127.0.0.1 it signed: (CA PEM, leaf PEM, leaf key PEM)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vllm-proxy chutes interop CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = directory / "chutes-ca.pem"
    leaf_path, key_path = directory / "chutes-leaf.pem", directory / "chutes-leaf-key.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    leaf_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return ca_path, leaf_path, key_path


# ---------------------------------------------------------------- clients that remember everything


class RecordingProxyClient(ProxyClient):
    """ProxyClient that also keeps the status line of every response, for this module's leak check."""

    def __init__(self, *args, transcript: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.transcript = transcript

    def _remember(self, r: requests.Response, body: bytes) -> None:
        super()._remember(r, body)  # into stack.seen too: test_zz_secrets checks those for the TOKEN
        header_text = "\n".join(f"{k}: {v}" for k, v in r.headers.items())
        self.transcript.append(
            f"HTTP/1.1 {r.status_code} {r.reason}\n{header_text}\n\n{body.decode(errors='replace')}"
        )


class RecordingTransport(httpx.BaseTransport):
    """Wraps httpx's transport for the openai SDK: reads each whole response, records it, hands it on unchanged."""

    def __init__(self, transcript: list[str]):
        self.inner = httpx.HTTPTransport()
        self.transcript = transcript

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        try:
            raw = b"".join(response.iter_raw())
        finally:
            response.close()
        header_text = "\n".join(f"{k}: {v}" for k, v in response.headers.multi_items())
        self.transcript.append(
            f"{response.http_version} {response.status_code} {response.reason_phrase}\n{header_text}\n\n"
            + raw.decode(errors="replace")
        )
        return httpx.Response(
            response.status_code, headers=response.headers, stream=httpx.ByteStream(raw),
            request=request, extensions=response.extensions,
        )

    def close(self) -> None:
        self.inner.close()


class ChutesStubClient:
    """Talks to a Chutes stand-in directly (HTTPS, trusting the throwaway CA, with its key)."""

    def __init__(self, base_url: str, ca_path: Path, key: str):
        self.base_url = base_url
        self.ca_path = ca_path
        self.key = key

    def reset(self) -> None:
        requests.post(self.base_url + "/stub/reset", timeout=TIMEOUT, verify=str(self.ca_path)).raise_for_status()

    def requests(self) -> list[dict]:
        r = requests.get(self.base_url + "/stub/requests", timeout=TIMEOUT, verify=str(self.ca_path))
        r.raise_for_status()
        return r.json()

    def post(self, path: str, data: bytes) -> bytes:
        """The stub's own answer to these exact bytes, asked with the key the proxy uses."""
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.key}"}
        with requests.post(
            self.base_url + path, data=data, headers=headers, timeout=TIMEOUT, stream=True, verify=str(self.ca_path)
        ) as r:
            return b"".join(r.iter_content(None))


# ---------------------------------------------------------------- the module's processes


@dataclasses.dataclass
class Chutes:
    stack: object
    ca_path: Path
    stub_url: str  # the Chutes stand-in that accepts CHUTES_KEY
    stub: ChutesStubClient
    refusing_stub_url: str  # a Chutes stand-in that wants OTHER_KEY
    processes: list[Process]
    proxies: dict[str, RecordingProxyClient]
    transcript: list[str]  # every response any client in this module received

    def start_proxy(self, name: str, **extra_env: str) -> RecordingProxyClient:
        """One vllm-proxy process (the session stack's settings, trace logging), not shared with other modules."""
        port = free_port()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "TOKEN": self.stack.token,
            "MODEL_NAME": "interop-model",
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "VLLM_BASE_URL": self.stack.stub_url,
            "DSTACK_SIMULATOR_ENDPOINT": str(self.stack.agent_socket),
            "GPU_NO_HW_MODE": "1",
            "LOG_LEVEL": "trace",
            "METRICS_POLL_INTERVAL_SECONDS": "0.5",
            **extra_env,
        }
        process = Process(name, [str(self.stack.bins / "vllm-proxy")], self.stack.tmp, env=env)
        self.processes.append(process)
        base_url = f"http://127.0.0.1:{port}"
        process.wait_until(lambda: http_ok(base_url + "/"), f"GET {base_url}/ answering 200")
        client = RecordingProxyClient(
            base_url, self.stack.token, process, self.stack.seen, transcript=self.transcript
        )
        self.proxies[name] = client
        return client

    def enabled_env(self, **overrides: str) -> dict[str, str]:
        env = {
            "CHUTES_ENABLED": "1",
            "CHUTES_BASE_URL": self.stub_url,
            "CHUTES_API_KEY": CHUTES_KEY,
            "CHUTES_CA_FILE": str(self.ca_path),
        }
        env.update(overrides)
        return {k: v for k, v in env.items() if v is not None}

    def sdk(self, proxy: ProxyClient, **kwargs) -> openai.OpenAI:
        kwargs.setdefault("api_key", proxy.token)
        return openai.OpenAI(
            base_url=proxy.base_url + "/v1/chutes", max_retries=0,
            http_client=httpx.Client(transport=RecordingTransport(self.transcript), timeout=httpx.Timeout(60, connect=5)),
            **kwargs,
        )


def start_chutes_stub(stack, name: str, key: str, cert: Path, key_file: Path, ca_path: Path, processes) -> str:
    port = free_port()
    stub = Process(
        name,
        [str(stack.bins / "stub-vllm"), "--host", "127.0.0.1", "--port", str(port), "--api-key", key,
         "--tls-cert", str(cert), "--tls-key", str(key_file)],
        stack.tmp,
    )
    processes.append(stub)
    url = f"https://localhost:{port}"
    stub.wait_until(
        lambda: requests.get(url + "/stub/requests", timeout=(1, 2), verify=str(ca_path)).status_code == 200,
        f"{url}/stub/requests answering 200 over TLS",
    )
    return url


# The long-lived instances, one per Chutes mode.
MODES = {
    "enabled": lambda c: c.enabled_env(MAX_BODY_BYTES="65536"),
    "disabled": lambda c: {"CHUTES_API_KEY": CHUTES_KEY, "CHUTES_BASE_URL": c.stub_url},  # key set, not enabled
    "refused": lambda c: c.enabled_env(CHUTES_BASE_URL=c.refusing_stub_url),
    "unreachable": lambda c: c.enabled_env(CHUTES_BASE_URL=f"https://localhost:{free_port()}"),
    # Shorter than the client's 10 s connect timeout: a refused connection must still be 502, not 504.
    "unreachable-fast": lambda c: c.enabled_env(
        CHUTES_BASE_URL=f"https://localhost:{free_port()}", UPSTREAM_TIMEOUT_SECONDS="2"
    ),
    "untrusted": lambda c: c.enabled_env(CHUTES_CA_FILE=None),  # system roots only: the stub's CA is unknown
    "timeout": lambda c: c.enabled_env(UPSTREAM_TIMEOUT_SECONDS="0.5"),
    # Takes all `stub-echo-auth` traffic (Chutes echoing the key), so that the known trace-log leak it causes
    # (see test_zz_key_never_leaks_into_logs_when_chutes_echoes_it) does not mask every other log check.
    "echo": lambda c: c.enabled_env(),
}


@pytest.fixture(scope="module")
def chutes(stack):
    processes: list[Process] = []
    try:
        ca_path, leaf, leaf_key = write_ca_and_leaf(stack.tmp)
        stub_url = start_chutes_stub(stack, "chutes-stub", CHUTES_KEY, leaf, leaf_key, ca_path, processes)
        refusing_url = start_chutes_stub(stack, "chutes-stub-refusing", OTHER_KEY, leaf, leaf_key, ca_path, processes)
        c = Chutes(
            stack, ca_path, stub_url, ChutesStubClient(stub_url, ca_path, CHUTES_KEY), refusing_url, processes, {}, []
        )
        for mode, env in MODES.items():
            c.start_proxy(f"chutes-{mode}-proxy", **env(c))
        yield c
    finally:
        for process in processes:  # all at once: a stub with a stalled handler takes its full 10 s grace
            if process.popen.poll() is None:
                process.popen.terminate()
        for process in reversed(processes):
            process.stop()


def proxy_for(chutes: Chutes, mode: str) -> RecordingProxyClient:
    return chutes.proxies[f"chutes-{mode}-proxy"]


@pytest.fixture
def enabled(chutes) -> RecordingProxyClient:
    chutes.stub.reset()
    return proxy_for(chutes, "enabled")


# The three kinds of misconfiguration (key, base URL, CA file), two cases each, each case its own short-lived
# instance: name -> (environment, the variable the reason must name).
MISCONFIGURATIONS = {
    "no-key": (lambda c: c.enabled_env(CHUTES_API_KEY=None), "CHUTES_API_KEY"),
    "empty-key": (lambda c: c.enabled_env(CHUTES_API_KEY=""), "CHUTES_API_KEY"),
    "http-url": (lambda c: c.enabled_env(CHUTES_BASE_URL=c.stub_url.replace("https://", "http://")), "CHUTES_BASE_URL"),
    "relative-url": (lambda c: c.enabled_env(CHUTES_BASE_URL="localhost:443/v1"), "CHUTES_BASE_URL"),
    "missing-ca": (lambda c: c.enabled_env(CHUTES_CA_FILE=str(c.stack.tmp / "no-such-ca.pem")), "CHUTES_CA_FILE"),
    "garbage-ca": (lambda c: c.enabled_env(CHUTES_CA_FILE=str(c.stack.tmp / "garbage-ca.pem")), "CHUTES_CA_FILE"),
}


@dataclasses.dataclass
class MisconfiguredRun:
    variable: str
    log: str
    chat: requests.Response
    stream: requests.Response
    models: requests.Response
    vllm_chat: requests.Response


@pytest.fixture(scope="module")
def misconfigured(chutes) -> dict[str, MisconfiguredRun]:
    """Starts each misconfigured instance, asks every Chutes route and one vLLM route, stops it, keeps the log."""
    (chutes.stack.tmp / "garbage-ca.pem").write_text("this is not a certificate\n")
    runs = {}
    for name, (env, variable) in MISCONFIGURATIONS.items():
        proxy = chutes.start_proxy(f"chutes-misconfigured-{name}-proxy", **env(chutes))
        try:
            chat = proxy.post(CHAT, chat_body(unique("misconfigured")))
            stream = post_stream(proxy, CHAT, chat_body(unique("misconfigured"), stream=True))
            models = proxy.get(MODELS)
            vllm_chat = proxy.post(VLLM_CHAT, chat_body(unique("vllm still serves")), headers={"X-User-Tier": "premium"})
        finally:
            proxy.process.stop()
        log = proxy.process.stdout_path.read_text(errors="replace") + proxy.process.stderr_path.read_text(errors="replace")
        runs[name] = MisconfiguredRun(variable, log, chat, stream, models, vllm_chat)
    return runs


def post_stream(proxy: ProxyClient, path: str, body: bytes) -> requests.Response:
    """ProxyClient.post_stream, with the raw body put back so that .text/.json() work on an error answer."""
    r, raw = proxy.post_stream(path, body)
    r._content = raw  # requests keeps no copy of a streamed body; this is the exact bytes that arrived
    return r


def assert_chutes_error(r: requests.Response, status: int, error_type: str) -> dict:
    assert r.headers.get("X-Proxy-Upstream") == "chutes", dict(r.headers)
    return assert_error(r, status, error_type)


def check_receipt(proxy, chat_id: str, expected_text: str, upstream: str = "chutes") -> None:
    for algo in ("ecdsa", "ed25519"):
        r = proxy.signature(chat_id, algo)
        assert r.status_code == 200, r.text
        record = r.json()
        assert record["upstream"] == upstream, record
        assert record["signing_algo"] == algo
        assert record["text"] == expected_text
        verify = verify_ecdsa_receipt if algo == "ecdsa" else verify_ed25519_receipt
        verify(record["text"], record["signature"], record["signing_address"])


# ---------------------------------------------------------------- 1. the official openai SDK


def test_openai_sdk_chat_json_stream_and_models(chutes, enabled):
    client = chutes.sdk(enabled)
    try:
        text = unique("hello from the openai SDK")
        completion = client.chat.completions.create(model="stub-model", messages=[{"role": "user", "content": text}])
        assert completion.choices[0].message.content == f"Echo: {text}"
        assert completion.id.startswith("chatcmpl-stub-")

        text = unique("stream through the openai SDK")
        stream = client.chat.completions.create(
            model="stub-model", messages=[{"role": "user", "content": text}], stream=True
        )
        pieces, ids, finish = [], set(), None
        for chunk in stream:
            ids.add(chunk.id)
            if chunk.choices:
                pieces.append(chunk.choices[0].delta.content or "")
                finish = chunk.choices[0].finish_reason or finish
        assert "".join(pieces) == f"Echo: {text}"
        assert len(ids) == 1 and finish == "stop"

        models = client.models.list()
        assert [m.id for m in models.data] == ["stub-model"]

        raw = client.chat.completions.with_raw_response.create(
            model="stub-model", messages=[{"role": "user", "content": "headers"}]
        )
        assert raw.headers.get("x-proxy-upstream") == "chutes"
        assert raw.headers.get("x-e2ee-applied") == "false"
    finally:
        client.close()

    paths = [(e["method"], e["path"]) for e in chutes.stub.requests()]
    assert paths == [("POST", "/v1/chat/completions"), ("POST", "/v1/chat/completions"), ("GET", "/v1/models"),
                     ("POST", "/v1/chat/completions")]


def test_openai_sdk_sees_proxy_errors_as_api_errors(chutes):
    for mode, status, error_type in (("disabled", 503, "chutes_disabled"), ("refused", 503, "chutes_misconfigured")):
        client = chutes.sdk(proxy_for(chutes, mode))
        try:
            with pytest.raises(openai.APIStatusError) as caught:
                client.chat.completions.create(model="stub-model", messages=[{"role": "user", "content": "hi"}])
            assert caught.value.status_code == status
            assert caught.value.type == error_type
            with pytest.raises(openai.APIStatusError) as caught:
                client.models.list()
            assert caught.value.status_code == status
        finally:
            client.close()
    client = chutes.sdk(proxy_for(chutes, "enabled"), api_key="wrong-token")
    try:
        with pytest.raises(openai.AuthenticationError):
            client.models.list()
    finally:
        client.close()


# ---------------------------------------------------------------- 2. relay, receipts, credentials, isolation


def test_chat_json_relayed_byte_for_byte_with_verified_chutes_receipt(chutes, enabled):
    body = chat_body(unique("hello chutes"))
    r = enabled.post(CHAT, body)
    assert r.status_code == 200, r.text
    assert r.headers.get("X-Proxy-Upstream") == "chutes"
    assert r.headers.get("X-E2EE-Applied") == "false"
    assert r.headers["Content-Type"].startswith("application/json")
    (entry,) = chutes.stub.requests()
    assert (entry["method"], entry["path"]) == ("POST", "/v1/chat/completions")
    assert entry["body"].encode() == body, "an unchanged request must reach Chutes as the same bytes"
    assert r.content == chutes.stub.post("/v1/chat/completions", body), "Chutes' JSON must be relayed untouched"
    chat_id = r.json()["id"]
    assert chat_id == "chatcmpl-stub-" + sha256_hex(body)[:24]
    assert r.json()["choices"][0]["message"]["content"].startswith("Echo: hello chutes")
    check_receipt(enabled, chat_id, f"{sha256_hex(body)}:{sha256_hex(r.content)}")


def test_chat_stream_relayed_byte_for_byte_with_verified_chutes_receipt(chutes, enabled):
    body = chat_body(unique("stream chutes"), stream=True)
    r, raw = enabled.post_stream(CHAT, body)
    assert r.status_code == 200, raw[:500]
    assert r.headers.get("X-Proxy-Upstream") == "chutes"
    assert r.headers.get("X-E2EE-Applied") == "false"
    assert r.headers["Content-Type"].split(";")[0].strip() == "text/event-stream"
    assert r.headers.get("Cache-Control") == "no-cache" and r.headers.get("X-Accel-Buffering") == "no"
    events = sse_events(raw)
    assert events[-1] == b"[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    chat_id = chunks[0]["id"]
    assert {c["id"] for c in chunks} == {chat_id}
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks).startswith("Echo: stream chutes")
    (entry,) = chutes.stub.requests()
    assert entry["body"].encode() == body
    assert raw == chutes.stub.post("/v1/chat/completions", body), "the event stream must be relayed untouched"
    check_receipt(enabled, chat_id, f"{sha256_hex(body)}:{sha256_hex(raw)}")


def test_chutes_gets_the_chutes_key_never_the_client_token(chutes, enabled):
    enabled.post(CHAT, chat_body(unique("whose key?")), headers={"X-Request-Hash": "0" * 64})
    enabled.post_stream(CHAT, chat_body(unique("whose key?"), stream=True))
    enabled.get(MODELS)
    entries = chutes.stub.requests()
    assert [e["path"] for e in entries] == ["/v1/chat/completions", "/v1/chat/completions", "/v1/models"]
    for entry in entries:
        assert entry["headers"].get("authorization") == f"Bearer {CHUTES_KEY}", entry["headers"]
        assert not leaked_fragments(chutes.stack.token, json.dumps(entry)), "the client's TOKEN reached Chutes"


def test_upstreams_never_see_each_others_traffic(chutes, enabled, stub):
    chutes_text, vllm_text = unique("for chutes only"), unique("for vllm only")
    assert enabled.post(CHAT, chat_body(chutes_text)).status_code == 200
    enabled.post_stream(CHAT, chat_body(chutes_text, stream=True))
    assert enabled.get(MODELS).status_code == 200
    r = enabled.post(VLLM_CHAT, chat_body(vllm_text), headers={"X-User-Tier": "premium"})
    assert r.status_code == 200, r.text
    assert "X-Proxy-Upstream" not in r.headers or r.headers["X-Proxy-Upstream"] != "chutes"
    check_receipt(enabled, r.json()["id"], f"{sha256_hex(chat_body(vllm_text))}:{sha256_hex(r.content)}", "vllm")
    assert enabled.get("/v1/models", auth=False).status_code == 200

    vllm_seen = stub.requests()
    assert [(e["method"], e["path"]) for e in vllm_seen] == [("POST", "/v1/chat/completions"), ("GET", "/v1/models")]
    assert vllm_text in vllm_seen[0]["body"]
    for entry in vllm_seen:
        assert chutes_text not in entry["body"]
        assert "authorization" not in entry["headers"], entry["headers"]
        assert not leaked_fragments(CHUTES_KEY, json.dumps(entry)), "the Chutes key reached vLLM"
    chutes_seen = chutes.stub.requests()
    assert [(e["method"], e["path"]) for e in chutes_seen] == [
        ("POST", "/v1/chat/completions"), ("POST", "/v1/chat/completions"), ("GET", "/v1/models")
    ]
    assert all(vllm_text not in e["body"] for e in chutes_seen)


def test_no_client_header_reaches_chutes(chutes, enabled):
    client_headers = {
        "X-Request-Hash": "ab" * 32, "X-User-Tier": "premium", "Cookie": "session=client-cookie-value",
        "X-Forwarded-For": "203.0.113.7", "X-Client-Secret": "client-private-value", "User-Agent": "client-agent/1.0",
    }
    assert enabled.post(CHAT, chat_body(unique("headers")), headers=client_headers).status_code == 200
    assert enabled.get(MODELS, headers=client_headers).status_code == 200
    for entry in chutes.stub.requests():
        sent = json.dumps(entry["headers"])
        for value in ("ab" * 32, "premium", "client-cookie-value", "203.0.113.7", "client-private-value",
                      "client-agent/1.0"):
            assert value not in sent, (value, entry["headers"])
        assert set(entry["headers"]) <= {
            "host", "authorization", "content-type", "content-length", "user-agent", "connection", "accept",
        }, entry["headers"]


def test_same_pipeline_body_checks_and_empty_tool_calls(chutes, enabled):
    for bad in (b"{not json", b"[1, 2]", b'"a string"'):
        assert_chutes_error(enabled.post(CHAT, bad), 400, "invalid_request_error")
    assert_chutes_error(enabled.post(CHAT, chat_body("x" * 70000)), 413, "request_too_large")
    assert chutes.stub.requests() == [], "a rejected body must not reach Chutes"

    text = unique("after a tool-less assistant turn")
    body = json.dumps({
        "model": "stub-model",
        "messages": [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok", "tool_calls": []},
            {"role": "user", "content": text},
        ],
    }).encode()
    r = enabled.post(CHAT, body)
    assert r.status_code == 200, r.text
    (entry,) = chutes.stub.requests()
    forwarded = json.loads(entry["body"])
    assert "tool_calls" not in forwarded["messages"][1], forwarded
    assert forwarded["messages"][1] == {"role": "assistant", "content": "ok"}
    assert r.json()["choices"][0]["message"]["content"] == f"Echo: {text}"
    check_receipt(enabled, r.json()["id"], f"{sha256_hex(body)}:{sha256_hex(r.content)}")


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_gateway_request_hash_is_the_request_half_of_a_chutes_receipt(chutes, enabled, stream):
    gateway_hash = sha256_hex(unique("what the gateway's client sent").encode())
    body = chat_body(unique("hashed"), stream=stream)
    if stream:
        r, raw = enabled.post_stream(CHAT, body, headers={"X-Request-Hash": gateway_hash})
        chat_id = json.loads(sse_events(raw)[0])["id"]
    else:
        r = enabled.post(CHAT, body, headers={"X-Request-Hash": gateway_hash})
        raw, chat_id = r.content, r.json()["id"]
    assert r.status_code == 200
    check_receipt(enabled, chat_id, f"{gateway_hash}:{sha256_hex(raw)}")


# ---------------------------------------------------------------- E2EE (SPEC §4) on the Chutes route, ecdsa v2


class E2EEClient:
    """An independent SPEC §4 ecdsa client (cryptography's secp256k1 ECDH, HKDF-SHA256, AES-256-GCM)."""

    def __init__(self, model_public_hex: str):
        raw = bytes.fromhex(model_public_hex)
        raw = raw if len(raw) == 65 else b"\x04" + raw
        self.model_public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), raw)
        self.model_public_hex = model_public_hex
        self.private = ec.generate_private_key(ec.SECP256K1())
        point = self.private.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        self.public_hex = point[1:].hex()

    @staticmethod
    def _key(private, public) -> AESGCM:
        shared = private.exchange(ec.ECDH(), public)  # the x-coordinate
        return AESGCM(HKDF(hashes.SHA256(), 32, salt=None, info=b"ecdsa_encryption").derive(shared))

    def encrypt(self, plaintext: str, aad: str) -> str:
        ephemeral = ec.generate_private_key(ec.SECP256K1())
        nonce = os.urandom(12)
        sealed = self._key(ephemeral, self.model_public).encrypt(nonce, plaintext.encode(), aad.encode())
        point = ephemeral.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return (point + nonce + sealed).hex()

    def decrypt(self, field: str, aad: str) -> str:
        raw = bytes.fromhex(field)
        ephemeral = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), raw[:65])
        return self._key(self.private, ephemeral).decrypt(raw[65:77], raw[77:], aad.encode()).decode()

    def request(self, text: str, stream: bool = False, model: str = "stub-model") -> tuple[bytes, dict, str, str]:
        """(body, headers, nonce, timestamp) of a v2 request whose one message content is encrypted."""
        nonce, ts = secrets.token_hex(16), str(int(time.time()))
        aad = f"v2|req|algo=ecdsa|model={model}|m=0|c=-|n={nonce}|ts={ts}"
        body = chat_body(self.encrypt(text, aad), stream=stream, model=model)
        headers = {
            "X-Signing-Algo": "ecdsa", "X-Client-Pub-Key": self.public_hex, "X-Model-Pub-Key": self.model_public_hex,
            "X-E2EE-Version": "2", "X-E2EE-Nonce": nonce, "X-E2EE-Timestamp": ts,
        }
        return body, headers, nonce, ts

    def response_aad(self, response: dict, choice: int, field: str, nonce: str, ts: str) -> str:
        return (f"v2|resp|algo=ecdsa|model={response['model']}|id={response['id']}|choice={choice}|field={field}"
                f"|n={nonce}|ts={ts}")


@pytest.fixture
def e2ee(enabled) -> E2EEClient:
    r = enabled.get("/v1/attestation/report", params={"signing_algo": "ecdsa"})
    assert r.status_code == 200, r.text[:300]
    return E2EEClient(r.json()["signing_public_key"])


def assert_e2ee_headers(r: requests.Response) -> None:
    assert r.headers.get("X-Proxy-Upstream") == "chutes"
    assert (r.headers.get("X-E2EE-Applied"), r.headers.get("X-E2EE-Version"), r.headers.get("X-E2EE-Algo")) == (
        "true", "2", "ecdsa"
    ), dict(r.headers)


def test_e2ee_v2_json_chutes_sees_plaintext_client_gets_ciphertext(chutes, enabled, e2ee):
    text = unique("secret question for chutes")
    body, headers, nonce, ts = e2ee.request(text)
    r = enabled.post(CHAT, body, headers=headers)
    assert r.status_code == 200, r.text
    assert_e2ee_headers(r)
    (entry,) = chutes.stub.requests()
    assert json.loads(entry["body"])["messages"][0]["content"] == text, "Chutes must get the decrypted request"
    response = r.json()
    field = response["choices"][0]["message"]["content"]
    assert text not in r.text and "Echo" not in r.text, "the answer must leave the proxy encrypted"
    assert e2ee.decrypt(field, e2ee.response_aad(response, 0, "content", nonce, ts)) == f"Echo: {text}"
    check_receipt(enabled, response["id"], f"{sha256_hex(body)}:{sha256_hex(r.content)}")


def test_e2ee_v2_stream_through_chutes(chutes, enabled, e2ee):
    text = unique("secret stream for chutes")
    body, headers, nonce, ts = e2ee.request(text, stream=True)
    r, raw = enabled.post_stream(CHAT, body, headers=headers)
    assert r.status_code == 200, raw[:500]
    assert_e2ee_headers(r)
    assert json.loads(chutes.stub.requests()[0]["body"])["messages"][0]["content"] == text
    assert text.encode() not in raw and b"Echo" not in raw
    events = sse_events(raw)
    assert events[-1] == b"[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    pieces = []
    for chunk in chunks:
        content = chunk["choices"][0]["delta"].get("content") if chunk["choices"] else None
        if content is not None:
            pieces.append(e2ee.decrypt(content, e2ee.response_aad(chunk, 0, "content", nonce, ts)))
    assert "".join(pieces) == f"Echo: {text}"
    check_receipt(enabled, chunks[0]["id"], f"{sha256_hex(body)}:{sha256_hex(raw)}")


def test_e2ee_nonce_spent_on_vllm_is_spent_on_chutes(chutes, enabled, e2ee, stub):
    body, headers, _, _ = e2ee.request(unique("once only"))
    assert enabled.post(VLLM_CHAT, body, headers={**headers, "X-User-Tier": "premium"}).status_code == 200
    assert_chutes_error(enabled.post(CHAT, body, headers=headers), 400, "e2ee_replay_detected")
    assert chutes.stub.requests() == [], "a replayed request must not reach Chutes"
    body, headers, _, _ = e2ee.request(unique("and the other way round"))
    assert enabled.post(CHAT, body, headers=headers).status_code == 200
    r = enabled.post(VLLM_CHAT, body, headers={**headers, "X-User-Tier": "premium"})
    assert_error(r, 400, "e2ee_replay_detected")


def test_e2ee_errors_on_the_chutes_route(chutes, enabled, e2ee):
    body, headers, _, _ = e2ee.request(unique("tampered"))
    tampered = json.loads(body)
    content = tampered["messages"][0]["content"]
    tampered["messages"][0]["content"] = content[:-2] + ("00" if content[-2:] != "00" else "11")
    assert_chutes_error(enabled.post(CHAT, json.dumps(tampered).encode(), headers=headers), 400, "e2ee_decryption_failed")
    wrong_model = {**headers, "X-Model-Pub-Key": e2ee.public_hex}
    assert_chutes_error(enabled.post(CHAT, body, headers=wrong_model), 400, "e2ee_model_key_mismatch")
    assert chutes.stub.requests() == []


def test_e2ee_plaintext_never_reaches_the_log(chutes, enabled, e2ee):
    words = [f"{name}{secrets.choice(NOT_HEX)}{secrets.choice(NOT_HEX)}" for name in ("quokka", "numbat", "wombat")]
    text = " ".join(words)
    body, headers, _, _ = e2ee.request(text, stream=True)
    r, raw = enabled.post_stream(CHAT, body, headers=headers)
    assert r.status_code == 200 and r.headers.get("X-E2EE-Applied") == "true"
    assert all(word.encode() not in raw for word in words), "the answer itself must be encrypted"
    time.sleep(0.3)
    log = proxy_log(enabled)
    found = [w for w in words if w in log or w.encode().hex() in log.lower()]
    assert not found, f"E2EE-protected text in the proxy's log: {found}"


@pytest.fixture
def congested_vllm(chutes, stub):
    """vLLM reports waiting requests; every proxy polling the shared stub must see it clear again afterwards."""
    requests.post(chutes.stack.stub_url + "/stub/waiting/5", timeout=TIMEOUT).raise_for_status()
    try:
        yield
    finally:
        requests.post(chutes.stack.stub_url + "/stub/waiting/0", timeout=TIMEOUT).raise_for_status()
        proxy = proxy_for(chutes, "enabled")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if proxy.post(VLLM_CHAT, chat_body("clear?")).status_code == 200:
                break
            time.sleep(0.25)
        time.sleep(1.0)  # the other instances poll at the same 0.5 s interval


def test_vllm_traffic_control_does_not_apply_to_chutes(chutes, enabled, congested_vllm):
    deadline = time.monotonic() + 15
    while enabled.post(VLLM_CHAT, chat_body("congested?")).status_code != 429:
        assert time.monotonic() < deadline, "the proxy never saw vLLM congested"
        time.sleep(0.25)
    r = enabled.post(CHAT, chat_body(unique("chutes ignores vllm congestion")))
    assert r.status_code == 200, r.text
    r, raw = enabled.post_stream(CHAT, chat_body(unique("stream ignores it too"), stream=True))
    assert r.status_code == 200, raw[:300]


# ---------------------------------------------------------------- errors


def test_client_auth_is_required_and_answers_carry_the_upstream_header(chutes, enabled):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": enabled.token}):
        r = enabled.request("POST", CHAT, auth=False, headers={"Content-Type": "application/json", **headers},
                            data=chat_body("hi"))
        assert_chutes_error(r, 401, None)
        r = enabled.request("GET", MODELS, auth=False, headers=headers)
        assert_chutes_error(r, 401, None)
    assert chutes.stub.requests() == [], "an unauthenticated request must not reach Chutes"


def test_disabled(chutes):
    proxy = proxy_for(chutes, "disabled")
    assert_chutes_error(proxy.post(CHAT, chat_body("hi")), 503, "chutes_disabled")
    assert_chutes_error(post_stream(proxy, CHAT, chat_body("hi", stream=True)), 503, "chutes_disabled")
    assert_chutes_error(proxy.get(MODELS), 503, "chutes_disabled")
    assert proxy.post(VLLM_CHAT, chat_body("vllm"), headers={"X-User-Tier": "premium"}).status_code == 200


@pytest.mark.parametrize("name", list(MISCONFIGURATIONS))
def test_misconfigured_names_the_problem_and_vllm_keeps_serving(misconfigured, name):
    run = misconfigured[name]
    for r in (run.chat, run.stream, run.models):
        error = assert_chutes_error(r, 503, "chutes_misconfigured")
        assert run.variable in error["message"], error
        assert not leaked_fragments(CHUTES_KEY, error["message"])
    assert run.vllm_chat.status_code == 200, run.vllm_chat.text
    assert run.vllm_chat.headers.get("X-Proxy-Upstream") != "chutes"


@pytest.mark.parametrize("path", [CHAT, MODELS])
def test_refused_key_is_our_misconfiguration(chutes, path):
    proxy = proxy_for(chutes, "refused")
    r = proxy.post(CHAT, chat_body("hi")) if path == CHAT else proxy.get(MODELS)
    assert_chutes_error(r, 503, "chutes_misconfigured")
    assert not leaked_fragments(CHUTES_KEY, r.text)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("status", [401, 403])
def test_upstream_401_403_become_503_misconfigured(enabled, status, stream):
    r = ask(enabled, CHAT, stream, model=f"stub-error-{status}")
    error = assert_chutes_error(r, 503, "chutes_misconfigured")
    assert str(status) in error["message"] or "key" in error["message"].lower(), error


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("status", [400, 404, 429, 500])
def test_other_upstream_errors_keep_their_status_and_message(chutes, enabled, status, stream):
    """Chutes' status passes; its body does not (it could echo the key): the message is rebuilt from its own."""
    body = chat_body("hi", model=f"stub-error-{status}", stream=stream)
    r = post_stream(enabled, CHAT, body) if stream else enabled.post(CHAT, body)
    error = assert_chutes_error(r, status, "upstream_error")
    assert error["message"] == f"The chutes upstream answered HTTP {status}: stub error {status}", error
    assert json.loads(chutes.stub.post("/v1/chat/completions", body))["message"] == f"stub error {status}"


# Each way a careless Chutes could echo the key (see StubUpstream.echo): as is, in `detail`, with one character
# JSON-escaped, percent-encoded, cut into 6-character pieces across fields, masked, in a body that is not JSON.
ECHO_FORMS = ["", "-detail", "-escaped", "-url", "-split", "-masked", "-text"]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("form", ECHO_FORMS, ids=lambda f: f or "raw")
def test_upstream_echoing_the_key_in_any_form_is_never_relayed(chutes, form, stream):
    body = chat_body("hi", model=f"stub-echo-auth{form}", stream=stream)
    r = proxy_for(chutes, "echo").post(CHAT, body)
    error = assert_chutes_error(r, 400, "upstream_error")
    assert error["message"] == "The chutes upstream answered HTTP 400", error
    echoed = chutes.stub.post("/v1/chat/completions", body).decode()
    # Positive control: the stub really echoes the key in that form (decoded, all of it is there).
    decoded = urllib.parse.unquote(echoed)
    if form != "-text":
        decoded += "".join(v for v in flatten(json.loads(echoed)))
    assert CHUTES_KEY[20:32] in decoded or CHUTES_KEY[:10] in decoded, echoed
    for start in range(len(CHUTES_KEY) - 11):
        assert CHUTES_KEY[start:start + 12] not in r.text
    assert not leaked_fragments(CHUTES_KEY, r.text)


def test_a_clean_chutes_error_message_is_relayed(chutes):
    r = proxy_for(chutes, "echo").post(CHAT, chat_body("hi", model="stub-echo-auth-clean"))
    error = assert_chutes_error(r, 400, "upstream_error")
    assert error["message"] == "The chutes upstream answered HTTP 400: model not found", error


def flatten(value) -> list[str]:
    """Every string of a JSON document, in order (what a client joining fields would read)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in flatten(item)]
    if isinstance(value, list):
        return [s for item in value for s in flatten(item)]
    return []


def ask(proxy: ProxyClient, path: str, stream: bool = False, model: str = "stub-model") -> requests.Response:
    if path == MODELS:
        return proxy.get(MODELS)
    body = chat_body(unique("hi"), stream=stream, model=model)
    return post_stream(proxy, path, body) if stream else proxy.post(path, body)


@pytest.mark.parametrize("path,stream", [(CHAT, False), (CHAT, True), (MODELS, False)])
def test_unreachable_is_502(chutes, path, stream):
    proxy = proxy_for(chutes, "unreachable")
    r = ask(proxy, path, stream)
    assert_chutes_error(r, 502, "upstream_unavailable")


@pytest.mark.parametrize("path", [CHAT, MODELS])
def test_unreachable_is_502_even_with_a_short_upstream_timeout(chutes, path):
    started = time.monotonic()
    assert_chutes_error(ask(proxy_for(chutes, "unreachable-fast"), path), 502, "upstream_unavailable")
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("path,stream", [(CHAT, False), (CHAT, True), (MODELS, False)])
def test_untrusted_certificate_is_502(chutes, path, stream):
    chutes.stub.reset()
    proxy = proxy_for(chutes, "untrusted")
    r = ask(proxy, path, stream)
    assert_chutes_error(r, 502, "upstream_unavailable")
    assert chutes.stub.requests() == [], "no request may be sent over a connection whose certificate failed"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_slow_upstream_is_504(chutes, stream):
    proxy = proxy_for(chutes, "timeout")
    started = time.monotonic()
    r = ask(proxy, CHAT, stream, model="stub-slow-3000")
    assert_chutes_error(r, 504, "upstream_timeout")
    assert time.monotonic() - started < 2.9, "the timeout must not wait for the slow answer"
    assert proxy.post(CHAT, chat_body("fast enough")).status_code == 200


def test_stalled_stream_ends_after_the_silence_timeout(chutes):
    """UPSTREAM_TIMEOUT_SECONDS also bounds the silence between two chunks: a stalled Chutes stream must end."""
    proxy = proxy_for(chutes, "timeout")
    started = time.monotonic()
    r, raw = proxy.post_stream(CHAT, chat_body(unique("stall"), model="stub-stall", stream=True))
    elapsed = time.monotonic() - started
    assert elapsed < 10, f"the stream hung for {elapsed:.1f} s"
    assert r.status_code == 200 and r.headers.get("X-Proxy-Upstream") == "chutes"
    assert raw.startswith(b"data: "), raw[:300]
    assert proxy.post(CHAT, chat_body("still serving")).status_code == 200


# ---------------------------------------------------------------- 4. the start-up line

STARTUP_LINE = re.compile(r"chutes: (disabled|enabled \(.*\)|misconfigured \(.*\))\s*$")


def startup_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if STARTUP_LINE.search(line)]


def proxy_log(proxy: ProxyClient) -> str:
    return proxy.process.stdout_path.read_text(errors="replace") + proxy.process.stderr_path.read_text(errors="replace")


@pytest.mark.parametrize("mode", list(MODES))
def test_startup_line(chutes, mode):
    (line,) = startup_lines(proxy_log(proxy_for(chutes, mode)))
    message = STARTUP_LINE.search(line).group(0).strip()
    if mode == "disabled":
        assert message == "chutes: disabled"
    else:
        assert re.fullmatch(r"chutes: enabled \(https://localhost(:\d+)?\)", message), message
    assert "info" in line.lower()


@pytest.mark.parametrize("name", list(MISCONFIGURATIONS))
def test_startup_line_misconfigured_names_the_variable(misconfigured, name):
    run = misconfigured[name]
    (line,) = startup_lines(run.log)
    message = STARTUP_LINE.search(line).group(0).strip()
    assert message.startswith("chutes: misconfigured (") and message.endswith(")"), message
    assert run.variable in message, message
    assert not leaked_fragments(CHUTES_KEY, line)


# ---------------------------------------------------------------- 3. the leak test (last: it reads everything)


def drive_every_chutes_path(chutes: Chutes) -> None:
    """Success (stream and not), models, and every error, on every long-lived instance (one thread per instance:
    the unreachable and untrusted ones take ~10 s per request)."""

    def enabled() -> None:
        proxy = proxy_for(chutes, "enabled")
        for stream in (False, True):
            ask(proxy, CHAT, stream)
            for model in ("stub-error-400", "stub-error-500", "stub-error-401", "stub-error-403"):
                ask(proxy, CHAT, stream, model=model)
        ask(proxy, MODELS)
        proxy.post(CHAT, b"{not json")
        # A client presenting the Chutes key as its token is refused without echoing or logging it.
        proxy.post(CHAT, chat_body("hi"), auth=False, headers={"Authorization": f"Bearer {CHUTES_KEY}"})
        client = chutes.sdk(proxy)
        try:
            client.chat.completions.create(model="stub-model", messages=[{"role": "user", "content": "sdk leak?"}])
            for _ in client.chat.completions.create(
                model="stub-model", messages=[{"role": "user", "content": "sdk leak?"}], stream=True
            ):
                pass
            client.models.list()
        finally:
            client.close()

    def every_path(mode: str, model: str = "stub-model") -> None:
        proxy = proxy_for(chutes, mode)
        for stream in (False, True):
            ask(proxy, CHAT, stream, model=model)
        ask(proxy, MODELS)

    jobs = [enabled] + [lambda m=m: every_path(m) for m in ("disabled", "refused", "unreachable", "untrusted")]
    jobs += [lambda: every_path("timeout", "stub-slow-3000"), lambda: every_path("echo", "stub-echo-auth")]
    with ThreadPoolExecutor(len(jobs)) as pool:
        for future in [pool.submit(job) for job in jobs]:
            future.result(timeout=120)
    time.sleep(0.5)  # let the last log lines reach the files


@pytest.fixture(scope="module")
def everything_driven(chutes, misconfigured) -> Chutes:
    drive_every_chutes_path(chutes)
    # Positive control: the key is really in use, and the detector finds it where it must be.
    assert leaked_fragments(CHUTES_KEY, json.dumps(chutes.stub.requests()))
    names = {proxy.process.name for proxy in chutes.proxies.values()}
    assert {f"chutes-{mode}-proxy" for mode in MODES} <= names
    assert {f"chutes-misconfigured-{name}-proxy" for name in MISCONFIGURATIONS} <= names
    return chutes


def test_zz_key_never_leaks_into_responses(everything_driven):
    chutes = everything_driven
    assert len(chutes.transcript) > 50, len(chutes.transcript)
    for expected in ("chutes_disabled", "chutes_misconfigured", "upstream_unavailable", "upstream_timeout",
                     "The chutes upstream answered HTTP 400", "stub error 500", "Echo: sdk leak?", "data: [DONE]", "stub-model"):
        assert any(expected in t for t in chutes.transcript), f"no response with {expected!r} was checked"
    for response in chutes.transcript:
        assert not leaked_fragments(CHUTES_KEY, response), response[:800]
        assert not leaked_fragments(chutes.stack.token, response), response[:800]


def test_zz_key_never_leaks_into_logs(everything_driven):
    chutes = everything_driven
    for proxy in chutes.proxies.values():
        log = proxy_log(proxy)
        assert startup_lines(log), f"{proxy.process.name}: no start-up line captured"
        assert log.count("\n") > 10, f"{proxy.process.name}: too little trace logging to be a meaningful check"
        assert not leaked_fragments(chutes.stack.token, log), f"{proxy.process.name}'s output contains part of TOKEN"
        if proxy is proxy_for(chutes, "echo"):
            continue  # the known leak: the next test
        assert not leaked_fragments(CHUTES_KEY, log), f"{proxy.process.name}'s output contains part of the Chutes key"


def test_zz_key_never_leaks_into_logs_when_chutes_echoes_it(everything_driven):
    echo = proxy_for(everything_driven, "echo")
    assert any("The chutes upstream answered HTTP 400" in t for t in everything_driven.transcript)
    assert not leaked_fragments(CHUTES_KEY, proxy_log(echo)), "the echo instance's output contains part of the key"
