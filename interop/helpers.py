"""Request builders and independent verifiers (eth-account, cryptography) shared by the test files."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import to_checksum_address

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
HEX64 = re.compile(r"[0-9a-f]{64}")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def chat_body(text: str, stream: bool = False, model: str = "stub-model", **extra) -> bytes:
    body = {"model": model, "messages": [{"role": "user", "content": text}], **extra}
    if stream:
        body["stream"] = True
    return json.dumps(body).encode()


def text_body(prompt: str, stream: bool = False, model: str = "stub-model") -> bytes:
    body = {"model": model, "prompt": prompt, "max_tokens": 16}
    if stream:
        body["stream"] = True
    return json.dumps(body).encode()


def assert_error(r: requests.Response, status: int, error_type: str | None = None) -> dict:
    """SPEC §2: every error is {"error": {"message", "type", "param": null, "code": null}}."""
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and error["type"]
    assert error["param"] is None and error["code"] is None
    if error_type is not None:
        assert error["type"] == error_type, error
    return error


def sse_events(stream: bytes) -> list[bytes]:
    """Splits an event stream framed as `data: …\\n\\n` events; fails on anything else."""
    assert stream.endswith(b"\n\n"), stream[-200:]
    events = stream[:-2].split(b"\n\n")
    for event in events:
        assert event.startswith(b"data: ") and b"\n" not in event, event
    return [event[len(b"data: "):] for event in events]


def verify_ecdsa_receipt(text: str, signature: str, address: str) -> None:
    """EIP-191 personal_sign, checked with eth-account; 0x r‖s‖v, v in {27, 28}, low s, EIP-55 address."""
    assert re.fullmatch(r"0x[0-9a-fA-F]{40}", address), address
    assert to_checksum_address(address) == address, f"{address} is not EIP-55 checksummed"
    assert re.fullmatch(r"0x[0-9a-f]{130}", signature), signature
    raw = bytes.fromhex(signature[2:])
    s, v = int.from_bytes(raw[32:64], "big"), raw[64]
    assert v in (27, 28), v
    assert 0 < s <= SECP256K1_N // 2, "signature is not low-s"
    recovered = Account.recover_message(encode_defunct(text=text), signature=signature)
    assert recovered == address


def verify_ed25519_receipt(text: str, signature: str, address: str) -> None:
    """Ed25519 over the UTF-8 text, checked with cryptography; address = 32-byte public key, lowercase hex."""
    assert HEX64.fullmatch(address), address
    assert re.fullmatch(r"[0-9a-f]{128}", signature), signature
    Ed25519PublicKey.from_public_bytes(bytes.fromhex(address)).verify(bytes.fromhex(signature), text.encode())


def agent_call(socket_path, path: str, payload: dict, timeout: float = 10) -> dict:
    """One HTTP/1.1 POST to the dstack agent over its unix socket, read independently of the proxy."""
    import socket

    body = json.dumps(payload).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(socket_path))
        s.sendall(head + body)
        response = b""
        while chunk := s.recv(65536):
            response += chunk
    header_block, _, content = response.partition(b"\r\n\r\n")
    status_line, *header_lines = header_block.decode("latin-1").split("\r\n")
    assert status_line.split()[1] == "200", response[:500]
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in header_lines)}
    if headers.get("transfer-encoding", "").lower() == "chunked":
        decoded = b""
        while True:
            size_line, _, content = content.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            decoded, content = decoded + content[:size], content[size + 2:]
        content = decoded
    return json.loads(content)


def basic_in_flight(proxy) -> float:
    """The proxy's own gauge of basic-tier requests in flight (SPEC §3), from /v1/metrics."""
    text = proxy.get("/v1/metrics", auth=False).text
    match = re.search(r"^vllm_proxy_basic_inflight_requests(?:\{[^}]*\})? (\S+)$", text, re.M)
    assert match, text[:2000]
    return float(match.group(1))


class LoopbackServer:
    """A threaded HTTP server on a free loopback port, serving `handler` (a BaseHTTPRequestHandler class)."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def send_json(handler: BaseHTTPRequestHandler, status: int, body: bytes) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


class EditingRelay(LoopbackServer):
    """A hostile relay between a verifier and the proxy: forwards every GET and applies `edit` (settable later) to
    the attestation report it returns, over plain HTTP, so only what the report binds can catch it."""

    def __init__(self, target: str, edit: Callable[[dict], dict] = lambda report: report):
        relay = self
        self.edit = edit

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                upstream = requests.get(
                    target + self.path, headers={"Authorization": self.headers.get("Authorization", "")}, timeout=60)
                body = upstream.content
                if self.path.startswith("/v1/attestation/report") and upstream.status_code == 200:
                    body = json.dumps(relay.edit(upstream.json())).encode()
                send_json(self, upstream.status_code, body)

            def log_message(self, *args):
                pass

        super().__init__(Handler)
