"""A stand-in for Chutes' E2EE transport: the relay (`/v1/models`, `/e2e/instances`, `/e2e/invoke`) and the GPU
instances behind it, over HTTPS with a throwaway CA, in a thread of the test process.

Written from the wire format of PyPI `chutes-e2ee` 0.1.0 with `pqcrypto` (ML-KEM-768) and `cryptography`
(HKDF-SHA256, ChaCha20-Poly1305) only; `test_chutes_e2ee_stub.py` first proves it against that package.

What it enforces like the real relay would: the bearer key; nonces are issued per instance, single-use, and
expire after `nonce_expires_in` seconds (a spent, unknown or expired nonce is a 403); a retired instance answers
410. Faults are queued on `faults` (one per following invoke) or set as attributes. `relay_log` holds every byte
the relay received or sent (request line, headers, bodies), so tests can assert no plaintext crossed it.
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import json
import os
import ssl
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pqcrypto.kem import ml_kem_768

MLKEM_CT_SIZE = 1088
NONCE_SIZE = 12
INFO_REQ, INFO_RESP, INFO_STREAM = b"e2e-req-v1", b"e2e-resp-v1", b"e2e-stream-v1"


# ---------------------------------------------------------------- the instance side of the wire format


def derive_key(shared_secret: bytes, mlkem_ct: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=mlkem_ct[:16], info=info).derive(shared_secret)


def open_request(blob: bytes, instance_sk: bytes) -> dict:
    """ct ‖ nonce ‖ ciphertext ‖ tag → the JSON payload (with its `e2e_response_pk`). Raises on any tampering."""
    if len(blob) < MLKEM_CT_SIZE + NONCE_SIZE + 16:
        raise ValueError("blob too short")
    mlkem_ct, nonce, sealed = blob[:MLKEM_CT_SIZE], blob[MLKEM_CT_SIZE:MLKEM_CT_SIZE + NONCE_SIZE], blob[MLKEM_CT_SIZE + NONCE_SIZE:]
    key = derive_key(ml_kem_768.decrypt(instance_sk, mlkem_ct), mlkem_ct, INFO_REQ)
    return json.loads(gzip.decompress(ChaCha20Poly1305(key).decrypt(nonce, sealed, None)))


def seal_response(document: dict, response_pk: bytes) -> bytes:
    mlkem_ct, shared_secret = ml_kem_768.encrypt(response_pk)
    nonce = os.urandom(NONCE_SIZE)
    sealed = ChaCha20Poly1305(derive_key(shared_secret, mlkem_ct, INFO_RESP)).encrypt(
        nonce, gzip.compress(json.dumps(document).encode()), None
    )
    return mlkem_ct + nonce + sealed


def stream_init(response_pk: bytes) -> tuple[str, bytes]:
    """The `e2e_init` value (base64 ML-KEM ciphertext) and the stream key it carries."""
    mlkem_ct, shared_secret = ml_kem_768.encrypt(response_pk)
    return base64.b64encode(mlkem_ct).decode(), derive_key(shared_secret, mlkem_ct, INFO_STREAM)


def seal_chunk(line: str, stream_key: bytes) -> str:
    """One whole SSE line (`data: …`, no line ending) → the `e2e` value: base64(nonce ‖ ciphertext ‖ tag)."""
    nonce = os.urandom(NONCE_SIZE)
    return base64.b64encode(nonce + ChaCha20Poly1305(stream_key).encrypt(nonce, line.encode(), None)).decode()


# ---------------------------------------------------------------- state


@dataclasses.dataclass
class Instance:
    instance_id: str
    chute_id: str
    public_key: bytes
    secret_key: bytes
    gone: bool = False


@dataclasses.dataclass
class Model:
    id: str
    chute_id: str
    confidential_compute: bool


@dataclasses.dataclass
class Invocation:
    """What one /e2e/invoke carried, decrypted (for assertions); `status` is what the stub answered."""

    headers: dict[str, str]
    payload: dict | None
    status: int


class ChutesE2EEStub:
    """See the module docstring. Start with `start()`, stop with `stop()`; `reset()` between tests."""

    # Answers the stub can be told to give for the following invoke(s), in order.
    FAULTS = {
        "spend": "the nonce presented was already spent: 403",
        "gone": "retire the instance invoked: 410 now and for every later request to it",
        "garbage": "200 with random bytes instead of a sealed answer",
        "garbage_stream": "a stream whose e2e chunk does not decrypt",
        "truncated_stream": "a stream that ends after e2e_init and one chunk, without [DONE]",
        "e2e_error": "a stream carrying an e2e_error event",
        "inject_usage": "a stream into which the relay injects a clear usage-keyed event with its own id and text",
        "repeat_chunk": "a stream in which the relay sends one sealed chunk twice",
        "early_done": "a stream in which the relay sends a clear [DONE] after the first word, then the rest",
        "status_429": "429 with a JSON error body",
        "status_502": "502 with a JSON error body",
    }

    def __init__(self, api_key: str, cert: Path, key: Path, models: list[tuple[str, bool]] | None = None):
        self.api_key = api_key
        self._lock = threading.Lock()
        self.models = [
            Model(name, str(uuid.uuid4()), confidential)
            for name, confidential in (models or [("stub-e2e-model", True), ("stub-plain-model", False)]
                                       + [(f"stub-e2e-{n}", True) for n in ("exhaust", "expiry")])
        ]
        self.instances_per_chute = 2
        self.nonces_per_instance = 4
        self.nonce_expires_in = 55.0
        self.done_encrypted = False
        self.reset()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.server.daemon_threads = True
        self.url = f"https://localhost:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="chutes-e2ee-stub", daemon=True)

    def start(self) -> "ChutesE2EEStub":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reset(self) -> None:
        """Empty logs and counters, no faults; retired instances replaced by new ones (new keys). Nonces already
        issued stay valid, as they would at the real relay: a client's pool outlives one test."""
        with self._lock:
            if not hasattr(self, "instances"):
                self.instances: dict[str, list[Instance]] = {m.chute_id: [] for m in self.models}
                self.nonces: dict[str, tuple[str, float]] = {}  # nonce -> (instance id, expires at)
                self.spent: set[str] = set()
            for chute_id, listed in self.instances.items():
                listed[:] = [i for i in listed if not i.gone]
                while len(listed) < self.instances_per_chute:
                    self._add_instance(chute_id)
            self.relay_log: list[bytes] = []
            self.invocations: list[Invocation] = []
            self.instance_fetches: dict[str, int] = {}
            self.model_fetches = 0
            self.faults: list[str] = []

    def _add_instance(self, chute_id: str) -> Instance:
        public_key, secret_key = ml_kem_768.generate_keypair()
        instance = Instance(str(uuid.uuid4()), chute_id, public_key, secret_key)
        self.instances[chute_id].append(instance)
        return instance

    def model(self, name: str) -> Model:
        return next(m for m in self.models if m.id == name)

    def relay_bytes(self) -> bytes:
        with self._lock:
            return b"\n".join(self.relay_log)

    # ---------------------------------------------------------------- endpoints

    def models_document(self) -> dict:
        with self._lock:
            self.model_fetches += 1
        return {
            "object": "list",
            "data": [
                {"id": m.id, "object": "model", "chute_id": m.chute_id, "confidential_compute": m.confidential_compute}
                for m in self.models
            ],
        }

    def instances_document(self, chute_id: str) -> dict | None:
        with self._lock:
            if chute_id not in self.instances:
                return None
            self.instance_fetches[chute_id] = self.instance_fetches.get(chute_id, 0) + 1
            expires_at = time.monotonic() + self.nonce_expires_in
            listed = []
            for instance in self.instances[chute_id]:
                if instance.gone:
                    continue
                fresh = [os.urandom(16).hex() for _ in range(self.nonces_per_instance)]
                for nonce in fresh:
                    self.nonces[nonce] = (instance.instance_id, expires_at)
                listed.append({
                    "instance_id": instance.instance_id,
                    "e2e_pubkey": base64.b64encode(instance.public_key).decode(),
                    "nonces": fresh,
                })
            return {"instances": listed, "nonce_expires_in": self.nonce_expires_in}

    def admit_invoke(self, headers: dict[str, str]) -> tuple[int, Instance | None, str | None]:
        """Checks the invoke headers and spends the nonce: (status, instance, fault for this invoke)."""
        with self._lock:
            fault = self.faults.pop(0) if self.faults else None
            chute_id, instance_id = headers.get("x-chute-id", ""), headers.get("x-instance-id", "")
            instance = next((i for i in self.instances.get(chute_id, []) if i.instance_id == instance_id), None)
            if instance is None:  # never listed, or retired and forgotten: gone, as far as a client can tell
                return 410, None, fault
            if fault == "gone":
                instance.gone = True
            if instance.gone:
                return 410, instance, fault
            nonce = headers.get("x-e2e-nonce", "")
            issued = self.nonces.get(nonce)
            if fault == "spend" or nonce in self.spent or issued is None or issued[0] != instance_id:
                return 403, instance, fault
            self.spent.add(nonce)
            if time.monotonic() >= issued[1]:
                return 403, instance, fault
            return 200, instance, fault


def echo_answer(payload: dict) -> str:
    messages = payload.get("messages") or [{}]
    content = messages[-1].get("content") if isinstance(messages[-1], dict) else ""
    return f"Echo: {content if isinstance(content, str) else json.dumps(content)}"


def _handler(stub: ChutesE2EEStub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet: pytest shows failures, not every request
            pass

        # ------------------------------------------------ plumbing that records every byte

        def _record(self, data: bytes) -> None:
            with stub._lock:
                stub.relay_log.append(data)

        def _read_body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            head = f"{self.requestline}\n{self.headers}".encode()
            self._record(head + body)
            return body

        def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            self._record(head + body)
            self.wfile.write(head + body)
            self.wfile.flush()

        def _send_json(self, status: int, document: dict) -> None:
            self._send(status, json.dumps(document).encode())

        def _error(self, status: int, message: str) -> None:
            self._send_json(status, {"detail": message})

        def _authorized(self) -> bool:
            if self.headers.get("Authorization") == f"Bearer {stub.api_key}":
                return True
            self._error(401, "invalid api key")
            return False

        # ------------------------------------------------ routes

        def do_GET(self) -> None:
            self._read_body()
            if not self._authorized():
                return
            if self.path == "/v1/models":
                self._send_json(200, stub.models_document())
            elif self.path.startswith("/e2e/instances/"):
                document = stub.instances_document(self.path[len("/e2e/instances/"):])
                if document is None:
                    self._error(404, "no such chute")
                else:
                    self._send_json(200, document)
            else:
                self._error(404, "not found")

        def do_POST(self) -> None:
            blob = self._read_body()
            if not self._authorized():
                return
            if self.path != "/e2e/invoke":
                self._error(404, "not found")
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, instance, fault = stub.admit_invoke(headers)
            payload = None
            if status == 200:
                try:
                    payload = open_request(blob, instance.secret_key)
                except Exception:  # noqa: BLE001 - any failure to open is the client's fault
                    status = 400
            with stub._lock:
                stub.invocations.append(Invocation(headers, payload, status))
            if status != 200:
                self._error(status, {403: "nonce invalid or spent", 410: "instance gone", 400: "could not decrypt"}[status])
                return
            if fault in ("status_429", "status_502"):
                self._error(int(fault[-3:]), "stub fault")
                return
            response_pk = base64.b64decode(payload["e2e_response_pk"])
            answer = echo_answer(payload)
            model = payload.get("model", "")
            chat_id = "chatcmpl-e2e-" + os.urandom(8).hex()
            stream = headers.get("x-e2e-stream") == "true"
            if not stream:
                if fault == "garbage":
                    self._send(200, os.urandom(MLKEM_CT_SIZE + 64), "application/octet-stream")
                    return
                document = {
                    "id": chat_id, "object": "chat.completion", "created": int(time.time()), "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
                }
                self._send(200, seal_response(document, response_pk), "application/octet-stream")
                return
            self._stream(chat_id, model, answer, response_pk, fault)

        def _stream(self, chat_id: str, model: str, answer: str, response_pk: bytes, fault: str | None) -> None:
            head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
            self._record(head)
            self.wfile.write(head)

            def event(document_or_text) -> None:
                text = document_or_text if isinstance(document_or_text, str) else json.dumps(document_or_text)
                data = f"data: {text}\n\n".encode()
                self._record(data)
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            init, key = stream_init(response_pk)
            event({"e2e_init": init})

            def chunk(delta: dict, finish: str | None = None) -> str:
                return "data: " + json.dumps({
                    "id": chat_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                })

            if fault == "garbage_stream":
                event({"e2e": base64.b64encode(os.urandom(64)).decode()})
            elif fault == "e2e_error":
                event({"e2e": seal_chunk(chunk({"role": "assistant", "content": ""}), key)})
                event({"e2e_error": {"message": "instance failed", "type": "internal_error"}})
            else:
                event({"e2e": seal_chunk(chunk({"role": "assistant", "content": ""}), key)})
                words = answer.split(" ")
                for index, word in enumerate(words):
                    if fault == "truncated_stream" and index == 1:
                        break
                    sealed = seal_chunk(chunk({"content": word if index == 0 else " " + word}), key)
                    event({"e2e": sealed})
                    if fault == "repeat_chunk" and index == 0:
                        event({"e2e": sealed})
                    if fault == "early_done" and index == 0:
                        event("[DONE]")
                    if fault == "inject_usage" and index == 0:
                        event({"usage": {"prompt_tokens": 1}, "id": "chatcmpl-RELAYCHOSEN", "object":
                               "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "RELAYINJECTED"}}]})
                if fault != "truncated_stream":
                    event({"e2e": seal_chunk(chunk({}, "stop"), key)})
                    event({"usage": {"prompt_tokens": 3, "completion_tokens": len(words), "total_tokens": 3 + len(words)}})
                    if stub.done_encrypted:
                        event({"e2e": seal_chunk("data: [DONE]", key)})
                    else:
                        event("[DONE]")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    return Handler
