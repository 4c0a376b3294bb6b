"""A stand-in for Chutes' E2EE transport: the relay (`/v1/models`, `/e2e/instances`, `/e2e/invoke`) and the GPU
instances behind it, over HTTPS with a throwaway CA, in a thread of the test process.

Written from the wire format of PyPI `chutes-e2ee` 0.1.0 with `pqcrypto` (ML-KEM-768) and `cryptography`
(HKDF-SHA256, ChaCha20-Poly1305) only; `test_chutes_e2ee_stub.py` first proves it against that package.

What it enforces like the real relay would: the bearer key; nonces are issued per instance, single-use, and
expire after `nonce_expires_in` seconds (a spent, unknown or expired nonce is a 403); a retired instance answers
410. Faults are queued on `faults` (one per following invoke) or set as attributes. `relay_log` holds every byte
the relay received or sent (request line, headers, bodies), so tests can assert no plaintext crossed it.

Attestation (SPEC §7.2): `GET /chutes/{chute_id}/evidence?nonce=<64 lowercase hex>` answers, for every live
instance, a synthetic TDX quote (Tests/TDX/make_synthetic.py, one PKI per stub, valid around the stub's start)
whose report data binds the nonce and the instance's ML-KEM key as listed (`[0:32]`) and the SHA-256 of its
throwaway P-256 certificate's SPKI (`[32:64]`), with the stub's "good" MRTD/RTMR0-2. The matching collateral is
served by an in-thread PCCS stand-in (pccs_standin.py); `pki_dir` holds the root and the allowed measurements, and
`verification_env()` is what a proxy needs to verify them. `evidence_fault` (see EVIDENCE_FAULTS), optionally
limited to `evidence_fault_instances`, makes the evidence wrong in one way; `swap_key` makes the relay list keys of
its own (a relay in the middle) and open what is sealed to them (`relay_decrypted`).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import gzip
import hashlib
import importlib.util
import json
import os
import re
import shutil
import ssl
import tempfile
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import NameOID
from pqcrypto.kem import ml_kem_768

import pccs_standin


def _load_make_synthetic():
    """Tests/TDX/make_synthetic.py, the synthetic Intel-DCAP-shaped PKI and TDX quote generator (test data only)."""
    path = Path(__file__).resolve().parent.parent / "Tests" / "TDX" / "make_synthetic.py"
    spec = importlib.util.spec_from_file_location("make_synthetic", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_synthetic = _load_make_synthetic()

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


# ---------------------------------------------------------------- attestation material


def throwaway_certificate(common_name: str) -> bytes:
    """A self-signed P-256 certificate (DER), as an instance would make at boot; its key is thrown away."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def spki_sha256(certificate_der: bytes) -> bytes:
    """SHA-256 of the DER SubjectPublicKeyInfo of a DER certificate."""
    public_key = x509.load_der_x509_certificate(certificate_der).public_key()
    return hashlib.sha256(
        public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    ).digest()


def binding_digest(nonce_hex: str, e2e_pubkey: str) -> bytes:
    """report_data[0:32] (SPEC §7.2): SHA-256 of the UTF-8 text nonce_hex ‖ the instance's base64 key as listed."""
    return hashlib.sha256((nonce_hex + e2e_pubkey).encode("utf-8")).digest()


NONCE_HEX = re.compile(r"[0-9a-f]{64}")
EVIDENCE_PATH = re.compile(r"/chutes/([^/]+)/evidence")


# ---------------------------------------------------------------- state


@dataclasses.dataclass
class Instance:
    instance_id: str
    chute_id: str
    public_key: bytes
    secret_key: bytes
    gone: bool = False
    certificate: bytes = b""  # DER, self-signed P-256, made with the instance

    @property
    def e2e_pubkey(self) -> str:
        """The instance's own key as /e2e/instances lists it (when the relay does not swap it)."""
        return base64.b64encode(self.public_key).decode()


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
    sealed_to: str | None = None  # "instance", "relay" (a key the relay listed in the instance's place) or None


@dataclasses.dataclass
class EvidenceAnswer:
    """One /chutes/{chute_id}/evidence request and the exact bytes answered."""

    chute_id: str
    nonce: str
    status: int
    body: bytes

    def document(self) -> dict:
        return json.loads(self.body)


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024  # hundreds of concurrent connections from one proxy must not wait on SYN retries
    daemon_threads = True


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

    # `evidence_fault` values (one at a time, until reset); per-instance ones apply to `evidence_fault_instances`
    # (every instance when empty), the others to the whole answer.
    EVIDENCE_FAULTS = {
        "other_key": "report data binds another ML-KEM key than the instance's listed one",
        "stale_nonce": "report data binds another nonce than the one asked for",
        "wrong_cert": "report_data[32:64] is the SPKI digest of another certificate than the one served",
        "tcb_outofdate": "the quote's platform TCB level is OutOfDate (same collateral)",
        "measurement": "MRTD not in measurements.json",
        "no_instances": "the instance is left out of `evidence` and listed in `failed_instance_ids`",
        "status_500": "the whole answer is a 500 with a JSON error body",
        "malformed": "the whole answer is a 200 that is not JSON",
    }
    PER_INSTANCE_EVIDENCE_FAULTS = {"other_key", "stale_nonce", "wrong_cert", "tcb_outofdate", "measurement",
                                    "no_instances"}
    TDX_SEED = "chutes-e2ee-stub-tdx-v1"

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
        self._make_pki()
        self.evidence_history: list[EvidenceAnswer] = []  # every evidence answer of the stub's life (not reset)
        self.reset()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        self.server = _Server(("127.0.0.1", 0), _handler(self))
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://localhost:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="chutes-e2ee-stub", daemon=True)

    def _make_pki(self) -> None:
        """One synthetic PKI for the stub's life (`now` fixed at construction, so the collateral is valid around it),
        its collateral served by a PCCS stand-in in a thread, and `pki_dir` with root.pem and measurements.json."""
        self.tdx_now = int(time.time())
        fill = make_synthetic.fill
        self.good_measurements = {field: fill(self.TDX_SEED, f"good-{field}", 48)
                                  for field in ("mr_td", "rtmr0", "rtmr1", "rtmr2")}
        self.bad_mr_td = fill(self.TDX_SEED, "unlisted-mr_td", 48)
        base = make_synthetic.build(self.TDX_SEED, self.tdx_now, "default", dict(self.good_measurements))
        self.collateral: dict = base["collateral"]
        self.root_der: bytes = base["root_der"]
        self.pki_dir = Path(tempfile.mkdtemp(prefix="chutes-stub-pki-"))
        (self.pki_dir / "root.pem").write_text(base["root_pem"])
        (self.pki_dir / "root.der").write_bytes(base["root_der"])
        (self.pki_dir / "collateral.json").write_text(json.dumps(self.collateral, indent=1) + "\n")
        (self.pki_dir / "measurements.json").write_text(
            json.dumps([{k: v.hex() for k, v in self.good_measurements.items()}], indent=1) + "\n")
        self.pccs = pccs_standin.serve(self.collateral)
        self.pccs.daemon_threads = True
        self.pccs_url = f"http://127.0.0.1:{self.pccs.server_address[1]}"
        self._pccs_thread = threading.Thread(target=self.pccs.serve_forever, name="chutes-stub-pccs", daemon=True)

    def verification_env(self) -> dict[str, str]:
        """What a proxy needs to verify this stub's instances (SPEC §6.2, §7.2)."""
        return {
            "PCCS_URL": self.pccs_url,
            "TDX_ROOT_CA_FILE": str(self.pki_dir / "root.pem"),
            "CHUTES_TDX_MEASUREMENTS_FILE": str(self.pki_dir / "measurements.json"),
        }

    def pccs_requests(self) -> list[str]:
        """Paths the PCCS stand-in was asked for, in order."""
        import urllib.request
        with urllib.request.urlopen(self.pccs_url + "/_requests", timeout=10) as r:
            return json.loads(r.read())["paths"]

    def start(self) -> "ChutesE2EEStub":
        self._pccs_thread.start()
        self._thread.start()
        return self

    @classmethod
    def started(cls, api_key: str, directory: Path) -> "ChutesE2EEStub":
        """A running stand-in with a throwaway CA and leaf written to `directory` (its CA file: `ca_path`)."""
        from test_chutes import write_ca_and_leaf

        ca, leaf, leaf_key = write_ca_and_leaf(directory)
        stub = cls(api_key, leaf, leaf_key).start()
        stub.ca_path = ca
        return stub

    def proxy_env(self, **extra: str) -> dict[str, str]:
        """A proxy's environment for Chutes E2EE through this stand-in, verifying its instances (SPEC §7.2: on by
        default) against its PCCS stand-in, synthetic root and allowed measurements. `extra` wins."""
        return {
            "CHUTES_ENABLED": "1", "CHUTES_API_KEY": self.api_key, "CHUTES_BASE_URL": self.url,
            "CHUTES_E2E_BASE_URL": self.url, "CHUTES_CA_FILE": str(self.ca_path), "CHUTES_E2EE": "1",
            **self.verification_env(), **extra,
        }

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.pccs.shutdown()
        self.pccs.server_close()
        shutil.rmtree(self.pki_dir, ignore_errors=True)

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
            # attestation
            self.evidence_fetches: dict[str, int] = {}
            self.evidence_nonces: list[str] = []
            self.evidence_served: list[EvidenceAnswer] = []
            self.evidence_delay = 0.0
            self.evidence_fault: str | None = None
            self.evidence_fault_instances: set[str] = set()
            # a relay in the middle
            self.swap_key = False
            self.relay_keys: dict[str, tuple[bytes, bytes]] = {}  # instance id -> (public, secret) the relay made
            self.relay_decrypted: list[dict] = []

    def _add_instance(self, chute_id: str) -> Instance:
        public_key, secret_key = ml_kem_768.generate_keypair()
        instance_id = str(uuid.uuid4())
        instance = Instance(instance_id, chute_id, public_key, secret_key,
                            certificate=throwaway_certificate(f"chutes-instance-{instance_id}"))
        self.instances[chute_id].append(instance)
        return instance

    def live_instances(self, chute_id: str) -> list[Instance]:
        with self._lock:
            return [i for i in self.instances.get(chute_id, []) if not i.gone]

    def served_quotes(self, instance_id: str) -> list[bytes]:
        """Every quote ever served for this instance (raw bytes; `evidence_history` outlives `reset()`)."""
        quotes = []
        with self._lock:
            answers = list(self.evidence_history)
        for answer in answers:
            if answer.status != 200:
                continue
            try:
                document = answer.document()
            except ValueError:
                continue
            quotes += [base64.b64decode(e["quote"]) for e in document.get("evidence", [])
                       if e.get("instance_id") == instance_id]
        return quotes

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
                e2e_pubkey = instance.e2e_pubkey
                if self.swap_key:
                    if instance.instance_id not in self.relay_keys:
                        self.relay_keys[instance.instance_id] = ml_kem_768.generate_keypair()
                    e2e_pubkey = base64.b64encode(self.relay_keys[instance.instance_id][0]).decode()
                listed.append({"instance_id": instance.instance_id, "e2e_pubkey": e2e_pubkey, "nonces": fresh})
            return {"instances": listed, "nonce_expires_in": self.nonce_expires_in}

    def evidence_answer(self, chute_id: str, nonce: str) -> tuple[int, bytes] | None:
        """The answer to GET /chutes/{chute_id}/evidence?nonce= (None: unknown chute). The request is counted first,
        then `evidence_delay` passes, then the evidence is made for the instances live at that moment."""
        with self._lock:
            if chute_id not in self.instances:
                return None
            self.evidence_fetches[chute_id] = self.evidence_fetches.get(chute_id, 0) + 1
            self.evidence_nonces.append(nonce)
            delay = self.evidence_delay
        if delay > 0:
            time.sleep(delay)
        with self._lock:
            fault, targets = self.evidence_fault, set(self.evidence_fault_instances)
            live = [i for i in self.instances[chute_id] if not i.gone]
        if fault == "status_500":
            status, body = 500, json.dumps({"detail": "evidence unavailable"}).encode()
        elif fault == "malformed":
            status, body = 200, b"<html>this is not the evidence you asked for"
        else:
            evidence, failed = [], []
            for instance in live:
                own = fault if fault and (not targets or instance.instance_id in targets) else None
                if own == "no_instances":
                    failed.append(instance.instance_id)
                else:
                    evidence.append(self._instance_evidence(instance, nonce, own))
            status, body = 200, json.dumps({"evidence": evidence, "failed_instance_ids": failed}).encode()
        with self._lock:
            answer = EvidenceAnswer(chute_id, nonce, status, body)
            self.evidence_served.append(answer)
            self.evidence_history.append(answer)
        return status, body

    def _instance_evidence(self, instance: Instance, nonce: str, fault: str | None) -> dict:
        bound_nonce, bound_key, bound_cert = nonce, instance.e2e_pubkey, instance.certificate
        if fault == "stale_nonce":
            bound_nonce = os.urandom(32).hex()
        elif fault == "other_key":
            bound_key = base64.b64encode(ml_kem_768.generate_keypair()[0]).decode()
        elif fault == "wrong_cert":
            bound_cert = throwaway_certificate("another-instance")
        overrides = {**self.good_measurements,
                     "report_data": binding_digest(bound_nonce, bound_key) + spki_sha256(bound_cert)}
        if fault == "measurement":
            overrides["mr_td"] = self.bad_mr_td
        variant = "tcb_outofdate" if fault == "tcb_outofdate" else "default"
        quote = make_synthetic.build(self.TDX_SEED, self.tdx_now, variant, overrides)["quote"]
        return {
            "instance_id": instance.instance_id,
            "quote": base64.b64encode(quote).decode(),
            "gpu_evidence": [],
            "certificate": base64.b64encode(instance.certificate).decode(),
        }

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
            route = urllib.parse.urlsplit(self.path)
            evidence = EVIDENCE_PATH.fullmatch(route.path)
            if evidence:
                self._evidence(evidence.group(1), urllib.parse.parse_qs(route.query, keep_blank_values=True))
            elif self.path == "/v1/models":
                self._send_json(200, stub.models_document())
            elif self.path.startswith("/e2e/instances/"):
                document = stub.instances_document(self.path[len("/e2e/instances/"):])
                if document is None:
                    self._error(404, "no such chute")
                else:
                    self._send_json(200, document)
            else:
                self._error(404, "not found")

        def _evidence(self, chute_id: str, query: dict[str, list[str]]) -> None:
            if chute_id not in stub.instances:
                self._error(404, "no such chute")
                return
            nonces = query.get("nonce", [])
            if len(nonces) != 1 or not NONCE_HEX.fullmatch(nonces[0]):
                self._error(400, "nonce must be 64 lowercase hex characters")
                return
            answer = stub.evidence_answer(chute_id, nonces[0])
            if answer is None:
                self._error(404, "no such chute")
                return
            self._send(*answer)

        def do_POST(self) -> None:
            blob = self._read_body()
            if not self._authorized():
                return
            if self.path != "/e2e/invoke":
                self._error(404, "not found")
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, instance, fault = stub.admit_invoke(headers)
            payload, sealed_to = None, None
            if status == 200:
                with stub._lock:
                    relay_key = stub.relay_keys.get(instance.instance_id)
                if relay_key is not None:  # a relay in the middle opens what was sealed to the key it listed
                    try:
                        payload, sealed_to = open_request(blob, relay_key[1]), "relay"
                    except Exception:  # noqa: BLE001 - not sealed to the relay's key
                        pass
                if payload is None:
                    try:
                        payload, sealed_to = open_request(blob, instance.secret_key), "instance"
                    except Exception:  # noqa: BLE001 - any failure to open is the client's fault
                        status = 400
            with stub._lock:
                if sealed_to == "relay":
                    stub.relay_decrypted.append(payload)
                stub.invocations.append(Invocation(headers, payload, status, sealed_to))
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
