"""SPEC §5 `SIGNING_KEY_SOURCE=kms` end to end against the dev agent's `GetKey` (its KMS root secret is public: a
dev stand-in): replicas and a restart share one signing identity while their E2EE v3 keys stay their own, a receipt
made by one replica verifies with another's attested address (through a shared redis-server), the report's
`key_provenance` chains check out with an implementation independent of the proxy (eth-keys, dstack's message
format), `vllm-proxy verify --kms-root` passes them and refuses forged ones, and start-up stops (exit 2, one line
naming the path) when GetKey fails or answers something malformed — never with random keys instead."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import shutil
import socket
import subprocess
import tempfile
import uuid
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eth_hash.auto import keccak
from eth_keys import keys as eth_keys

from conftest import Process, bin_dir, refusing_port, stop_all, unix_socket_accepts
from helpers import (
    SECP256K1_N, EditingRelay, LoopbackServer, agent_call, chat_body, send_json, verify_ecdsa_receipt,
    verify_ed25519_receipt,
)

MODEL = "interop-model"  # stack.start_proxy's MODEL_NAME
PATHS = {"ecdsa": f"{MODEL}/ecdsa-signing-key", "ed25519": f"{MODEL}/ed25519-signing-key"}
# The dev KMS's root: SHA-256 of this fixed text (Sources/DevStubs/DevKMS.swift), public on purpose.
DEV_ROOT_SECRET = hashlib.sha256(b"vllm-proxy dev KMS root key: NOT SECURE, this secret is public").digest()
DEV_ROOT = eth_keys.PrivateKey(DEV_ROOT_SECRET).public_key.to_compressed_bytes().hex()
TIMEOUT = 120
NOT_HEX = "ghijklmnopqrstuvwxyzGHIJKLMNOPQRSTUVWXYZ"


# ---------------------------------------------------------------- dstack's chain, checked independently


def recover(signature: bytes, message: bytes) -> eth_keys.PublicKey:
    """The signer of a dstack chain link: 65 bytes r‖s‖recovery id over Keccak-256 of the message."""
    assert len(signature) == 65 and signature[64] in (0, 1, 2, 3), signature.hex()
    return eth_keys.Signature(signature).recover_public_key_from_msg_hash(keccak(message))


def chain_root(chain: list[str], purpose: str, public_key: bytes, app_id: bytes) -> str:
    """Where a chain leads: `purpose:hex(key)` signed by the app key, `dstack-kms-issued:` ‖ app id ‖ compressed
    app key signed by the KMS (as the dstack guest agent and KMS build them). Returns the compressed root hex."""
    assert len(chain) == 2, chain
    app = recover(bytes.fromhex(chain[0]), f"{purpose}:{public_key.hex()}".encode())
    kms = recover(bytes.fromhex(chain[1]), b"dstack-kms-issued:" + app_id + app.to_compressed_bytes())
    return kms.to_compressed_bytes().hex()


def ed25519_public(seed: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)


# ---------------------------------------------------------------- processes


class Redis:
    """Debian's redis-server on a free loopback port, with a password and no persistence."""

    def __init__(self, tmp: Path):
        self.password = "kms-" + "".join(secrets.choice(NOT_HEX) for _ in range(24))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.process = Process("kms-redis", [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--requirepass",
                                             self.password, "--save", "", "--appendonly", "no"], tmp)
        self.process.wait_until(self.answers, "redis-server answering PING")

    def answers(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
            s.sendall(f"AUTH {self.password}\r\nPING\r\n".encode())
            answer = b""
            while b"+PONG" not in answer and b"-" not in answer and (chunk := s.recv(100)):
                answer += chunk
            return b"+PONG" in answer

    def env(self) -> dict[str, str]:
        return {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(self.port), "REDIS_PASSWORD": self.password,
                "REDIS_TIMEOUT_MS": "3000"}


@pytest.fixture(scope="module")
def kms(stack):
    """A dev agent with its PKI written out; replicas A and B (kms, sharing one Redis when redis-server is
    installed) and R (random keys), all on that agent, plain HTTP (no TLS key in the v3 identity)."""
    tmp = Path(tempfile.mkdtemp(prefix="vllm-proxy-kms-"))
    pki = tmp / "pki"
    socket_path = tmp / "dstack.sock"
    agent = Process("kms-dev-agent", [str(bin_dir() / "dev-attestation-agent"), "--socket", str(socket_path),
                                      "--dev-pki-dir", str(pki)], tmp)
    started = [agent]
    try:
        agent.wait_until(lambda: unix_socket_accepts(socket_path) and (pki / "collateral.json").exists(),
                         "the dev agent's socket and PKI files")
        redis = Redis(tmp) if shutil.which("redis-server") or Path("/usr/bin/redis-server").exists() else None
        if redis:
            started.append(redis.process)
        env = {"DSTACK_SIMULATOR_ENDPOINT": str(socket_path), "TLS_CERT_PATH": "", "SIGNING_KEY_SOURCE": "kms",
               **(redis.env() if redis else {})}
        a = stack.start_proxy("kms-replica-a", **env)
        b = stack.start_proxy("kms-replica-b", **env)
        r = stack.start_proxy("kms-random", DSTACK_SIMULATOR_ENDPOINT=str(socket_path), TLS_CERT_PATH="")
        yield {"stack": stack, "tmp": tmp, "pki": pki, "socket": socket_path, "env": env, "redis": redis,
               "a": a, "b": b, "random": r, "compose_hash": (pki / "compose-hash").read_text().strip()}
    finally:
        stop_all(started)
        shutil.rmtree(tmp, ignore_errors=True)


def report(proxy, algo: str = "ecdsa") -> dict:
    r = proxy.get("/v1/attestation/report", params={"signing_algo": algo, "version": "3"})
    assert r.status_code == 200, r.text
    return r.json()


def app_id_of(rep: dict) -> bytes:
    return bytes.fromhex(rep["info"]["app_id"])


def log_of(proxy) -> str:
    return proxy.process.stdout_path.read_text(errors="replace") + proxy.process.stderr_path.read_text(errors="replace")


# ---------------------------------------------------------------- one identity, per-process E2EE keys


def test_replicas_and_a_restart_share_one_signing_identity(kms):
    a, b = kms["a"], kms["b"]
    before = {algo: (report(a, algo), report(b, algo)) for algo in ("ecdsa", "ed25519")}
    for algo, (ra, rb) in before.items():
        assert ra["signing_address"] == rb["signing_address"], algo
        assert ra["signing_public_key"] == rb["signing_public_key"], algo
    # E2EE v3 keys are the process's own, random: the two replicas' key lists differ.
    ra, rb = before["ecdsa"]
    assert ra["e2ee_v3_key_config"] != rb["e2ee_v3_key_config"]
    assert ra["e2ee_v3_key_config_id"] != rb["e2ee_v3_key_config_id"]

    # A restart (a new process with the same configuration) comes back with the same addresses, new v3 keys.
    b.process.stop()
    b2 = kms["stack"].start_proxy("kms-replica-b-restarted", **kms["env"])
    for algo in ("ecdsa", "ed25519"):
        again = report(b2, algo)
        assert again["signing_address"] == before[algo][0]["signing_address"], algo
    assert report(b2)["e2ee_v3_key_config"] not in (ra["e2ee_v3_key_config"], rb["e2ee_v3_key_config"])
    kms["b"] = b2

    # The random-key proxy on the same agent has an identity of its own and no provenance.
    random_report = report(kms["random"])
    assert random_report["signing_address"] != ra["signing_address"]
    assert "key_provenance" not in random_report


def test_addresses_are_those_of_the_agents_getkey_bytes(kms):
    """The proxy serves exactly the keys GetKey gives (checked with eth-keys and cryptography), and the derived
    bytes never appear in any log."""
    ecdsa_key = bytes.fromhex(agent_call(kms["socket"], "/GetKey", {"path": PATHS["ecdsa"], "purpose": "signing",
                                                                     "algorithm": "secp256k1"})["key"])
    ed_seed = bytes.fromhex(agent_call(kms["socket"], "/GetKey", {"path": PATHS["ed25519"], "purpose": "signing",
                                                                   "algorithm": "ed25519"})["key"])
    assert report(kms["a"])["signing_address"] == eth_keys.PrivateKey(ecdsa_key).public_key.to_checksum_address()
    assert report(kms["a"], "ed25519")["signing_address"] == ed25519_public(ed_seed).hex()
    for name in ("a", "b", "random"):
        log = log_of(kms[name]).lower()
        assert ecdsa_key.hex() not in log and ed_seed.hex() not in log, name
        assert "signing keys derived through the dstack kms" in log or name == "random", name


def test_provenance_chains_lead_to_the_dev_root_for_the_quoted_app(kms):
    for algo in ("ecdsa", "ed25519"):
        rep = report(kms["a"], algo)
        provenance = rep["key_provenance"]
        assert set(provenance) == set(PATHS.values()), provenance
        assert rep["all_attestations"][0]["key_provenance"] == provenance
        entry = provenance[PATHS[algo]]
        assert entry["purpose"] == "signing"
        if algo == "ecdsa":
            public = eth_keys.PublicKey(bytes.fromhex(rep["signing_public_key"])).to_compressed_bytes()
        else:
            public = bytes.fromhex(rep["signing_public_key"])
        assert chain_root(entry["signature_chain"], "signing", public, app_id_of(rep)) == DEV_ROOT
        # The same chain for another key or app id leads elsewhere.
        assert chain_root(entry["signature_chain"], "signing", b"\x02" + bytes(32), app_id_of(rep)) != DEV_ROOT
        assert chain_root(entry["signature_chain"], "signing", public, bytes(20)) != DEV_ROOT


def test_a_receipt_from_a_verifies_with_bs_attested_address(kms):
    a, b = kms["a"], kms["b"]
    r = a.post("/v1/chat/completions", chat_body(f"kms receipt {uuid.uuid4()}"))
    assert r.status_code == 200, r.text
    chat_id = r.json()["id"]
    for algo in ("ecdsa", "ed25519"):
        attested_by_b = report(b, algo)["signing_address"]
        # Served by A, and — through the shared Redis — by B; either way signed by B's attested key.
        servers = [a, b] if kms["redis"] else [a]
        for server in servers:
            record = server.signature(chat_id, algo)
            assert record.status_code == 200, (server.base_url, record.text)
            record = record.json()
            assert record["signing_address"] == attested_by_b
            verify = verify_ecdsa_receipt if algo == "ecdsa" else verify_ed25519_receipt
            verify(record["text"], record["signature"], attested_by_b)
    if not kms["redis"]:
        pytest.skip("redis-server is not installed: B could not serve A's record (A's was checked against B)")


# ---------------------------------------------------------------- vllm-proxy verify --kms-root


def verify(kms, url: str, *extra: str) -> tuple[int, dict]:
    argv = [str(bin_dir() / "vllm-proxy"), "verify", url, "--token", kms["stack"].token,
            "--root-ca", str(kms["pki"] / "tdx-root.pem"), "--collateral", str(kms["pki"] / "collateral.json"),
            "--expect-compose-hash", kms["compose_hash"], "--allow-no-gpu", "--json", *extra]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL,
                          env={"PATH": "/usr/bin:/bin"})
    return done.returncode, (json.loads(done.stdout) if done.stdout.strip() else {"stderr": done.stderr})


def checks(result: dict) -> dict[str, tuple[bool, str]]:
    return {c["check"]: (c["passed"], c["detail"]) for c in result["checks"]}


def failed(result: dict) -> set[str]:
    return {name for name, (passed, _) in checks(result).items() if not passed}


@pytest.mark.parametrize("algo", ["ecdsa", "ed25519"])
def test_verify_checks_the_provenance_against_the_kms_root(kms, algo):
    code, result = verify(kms, kms["a"].base_url, "--kms-root", DEV_ROOT, "--signing-algo", algo)
    assert code == 0, result
    passed, detail = checks(result)["kms_provenance"]
    assert passed and PATHS[algo] in detail and DEV_ROOT in detail, detail
    assert result["key_provenance"]["kms_root"] == DEV_ROOT
    assert result["key_provenance"]["app_key"] and result["key_provenance"]["path"] == PATHS[algo]


def test_verify_takes_the_root_from_a_file_and_uncompressed(kms):
    path = kms["tmp"] / "kms-root.hex"
    path.write_text("0x" + DEV_ROOT + "\n")
    code, result = verify(kms, kms["b"].base_url, "--kms-root", str(path))
    assert code == 0, result
    uncompressed = eth_keys.PrivateKey(DEV_ROOT_SECRET).public_key.to_bytes().hex()
    code, result = verify(kms, kms["b"].base_url, "--kms-root", "04" + uncompressed)
    assert code == 0, result


def test_verify_without_a_root_reports_the_provenance_unchecked(kms):
    code, result = verify(kms, kms["a"].base_url)
    assert code == 0, result
    passed, detail = checks(result)["kms_provenance"]
    assert passed and detail.startswith("not checked"), detail
    assert any("--kms-root" in w for w in result["warnings"])
    # A proxy with random keys has nothing to report: no such line at all.
    code, result = verify(kms, kms["random"].base_url)
    assert code == 0, result
    assert "kms_provenance" not in checks(result)


def test_verify_fails_another_root_and_a_random_key_proxy(kms):
    other = eth_keys.PrivateKey(secrets.token_bytes(32)).public_key.to_compressed_bytes().hex()
    code, result = verify(kms, kms["a"].base_url, "--kms-root", other)
    assert code == 1 and failed(result) == {"kms_provenance"}, result
    assert DEV_ROOT in checks(result)["kms_provenance"][1]  # where the chain does lead
    code, result = verify(kms, kms["random"].base_url, "--kms-root", DEV_ROOT)
    assert code == 1 and failed(result) == {"kms_provenance"}, result
    assert "no key_provenance" in checks(result)["kms_provenance"][1]


@pytest.mark.parametrize("bad", ["", "02" + "00" * 32, "zz", "05" + "11" * 32, "/nonexistent/kms-root"])
def test_verify_refuses_an_unusable_root(kms, bad):
    code, result = verify(kms, kms["a"].base_url, "--kms-root", bad)
    assert code == 2, result
    assert "--kms-root" in result["stderr"]


def forge_swap(report_: dict) -> dict:
    """The Ed25519 key's chain shown for the ecdsa key and the other way round (swapped paths)."""
    p = report_["key_provenance"]
    p[PATHS["ecdsa"]], p[PATHS["ed25519"]] = p[PATHS["ed25519"]], p[PATHS["ecdsa"]]
    return report_


def forge_flip(report_: dict) -> dict:
    """One bit of the app signature flipped."""
    for entry in report_["key_provenance"].values():
        sig = bytearray(bytes.fromhex(entry["signature_chain"][0]))
        sig[5] ^= 0x01
        entry["signature_chain"][0] = sig.hex()
    return report_


def forge_other_kms(report_: dict) -> dict:
    """A chain re-signed by a KMS key of the forger's own (a complete, well-formed chain for the same key)."""
    forger = eth_keys.PrivateKey(secrets.token_bytes(32))
    app = eth_keys.PrivateKey(secrets.token_bytes(32))
    for path, entry in report_["key_provenance"].items():
        if path == PATHS["ecdsa"]:
            public = eth_keys.PublicKey(bytes.fromhex(report_["signing_public_key"])).to_compressed_bytes()
            app_sig = app.sign_msg_hash(keccak(f"signing:{public.hex()}".encode())).to_bytes()
            kms_sig = forger.sign_msg_hash(keccak(b"dstack-kms-issued:" + app_id_of(report_)
                                                  + app.public_key.to_compressed_bytes())).to_bytes()
            entry["signature_chain"] = [app_sig.hex(), kms_sig.hex()]
    return report_


def forge_purpose(report_: dict) -> dict:
    for entry in report_["key_provenance"].values():
        entry["purpose"] = "encryption"
    return report_


@pytest.mark.parametrize("forge", [forge_swap, forge_flip, forge_other_kms, forge_purpose],
                         ids=["swapped-paths", "flipped-bit", "other-kms", "other-purpose"])
def test_verify_refuses_a_forged_chain(kms, forge):
    relay = EditingRelay(kms["a"].base_url, forge)
    try:
        code, result = verify(kms, relay.url, "--kms-root", DEV_ROOT)
    finally:
        relay.close()
    # Everything else still verifies: only the provenance was touched.
    assert code == 1 and failed(result) == {"kms_provenance"}, result


def test_verify_refuses_a_malformed_provenance_field(kms):
    def garble(report_: dict) -> dict:
        report_["key_provenance"] = {PATHS["ecdsa"]: {"purpose": "signing", "signature_chain": ["not hex"]}}
        return report_

    relay = EditingRelay(kms["a"].base_url, garble)
    try:
        code, result = verify(kms, relay.url, "--kms-root", DEV_ROOT)
    finally:
        relay.close()
    assert code == 1 and failed(result) == {"attestation"}, result


# ---------------------------------------------------------------- start-up: never random keys instead


def start_kms_proxy(stack, endpoint: str, **extra: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "TOKEN": stack.token, "MODEL_NAME": MODEL, "HOST": "127.0.0.1", "PORT": "0",
           "VLLM_BASE_URL": stack.stub_url, "GPU_NO_HW_MODE": "1", "SIGNING_KEY_SOURCE": "kms",
           "DSTACK_SIMULATOR_ENDPOINT": endpoint, "LOG_LEVEL": "trace", **extra}
    return subprocess.run([str(stack.bins / "vllm-proxy")], env=env, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def assert_stopped_naming(done: subprocess.CompletedProcess, path: str, *words: str) -> str:
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert path in lines[0] and "SIGNING_KEY_SOURCE=kms" in lines[0], lines[0]
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_getkey_down_stops_startup_naming_the_path(stack, tmp_path):
    done = start_kms_proxy(stack, f"http://127.0.0.1:{refusing_port()}")
    assert_stopped_naming(done, PATHS["ecdsa"], "cannot be reached")
    done = start_kms_proxy(stack, str(tmp_path / "nobody-listens.sock"))
    assert_stopped_naming(done, PATHS["ecdsa"], "cannot be reached", "nobody-listens.sock")


class FakeAgent(LoopbackServer):
    """A guest agent answering /GetKey with `answer(request) -> (status, body bytes)`."""

    def __init__(self, answer):
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                send_json(self, *answer(request))

            def log_message(self, *args):
                pass

        super().__init__(Handler)


APP = eth_keys.PrivateKey(hashlib.sha256(b"fake agent app key").digest())
KMS_SIG = eth_keys.PrivateKey(DEV_ROOT_SECRET).sign_msg_hash(
    keccak(b"dstack-kms-issued:" + bytes(20) + APP.public_key.to_compressed_bytes())).to_bytes().hex()


def dstack_answer(key: bytes, signed_public: bytes, purpose: str = "signing") -> bytes:
    app_sig = APP.sign_msg_hash(keccak(f"{purpose}:{signed_public.hex()}".encode())).to_bytes().hex()
    return json.dumps({"key": key.hex(), "signature_chain": [app_sig, KMS_SIG]}).encode()


def honest(request: dict) -> tuple[int, bytes]:
    key = hashlib.sha256(request["path"].encode()).digest()
    if request.get("algorithm") == "ed25519":
        return 200, dstack_answer(key, ed25519_public(key))
    return 200, dstack_answer(key, eth_keys.PrivateKey(key).public_key.to_compressed_bytes())


def for_path(path: str, bad):
    """Answers `path` with `bad`, every other path honestly."""
    return lambda request: bad(request) if request["path"] == path else honest(request)


MALFORMED = {
    "not-json": (PATHS["ecdsa"], lambda r: (200, b"<html>not JSON"), "malformed answer"),
    "status-500": (PATHS["ecdsa"], lambda r: (500, b'{"error":"boom"}'), "status 500"),
    "key-31-bytes": (PATHS["ecdsa"], lambda r: (200, json.dumps({"key": "11" * 31, "signature_chain": []}).encode()),
                     "32 bytes"),
    "key-not-hex": (PATHS["ed25519"], lambda r: (200, json.dumps({"key": "zz" * 32, "signature_chain": []}).encode()),
                    "32 bytes"),
    "scalar-zero": (PATHS["ecdsa"], lambda r: (200, json.dumps({"key": "00" * 32, "signature_chain": []}).encode()),
                    "not a valid scalar"),
    "scalar-n": (PATHS["ecdsa"], lambda r: (200, json.dumps(
        {"key": SECP256K1_N.to_bytes(32, "big").hex(), "signature_chain": []}).encode()), "not a valid scalar"),
    "no-chain": (PATHS["ecdsa"], lambda r: (200, json.dumps({"key": "11" * 32}).encode()), "signature_chain"),
    "short-chain": (PATHS["ecdsa"], lambda r: (200, json.dumps(
        {"key": "11" * 32, "signature_chain": ["ab" * 65]}).encode()), "1 signatures, not 2"),
    # A guest agent that ignores `algorithm` signs the secp256k1 point of the Ed25519 seed.
    "ed25519-chain-signs-secp256k1": (PATHS["ed25519"], lambda r: (200, dstack_answer(
        hashlib.sha256(r["path"].encode()).digest(),
        eth_keys.PrivateKey(hashlib.sha256(r["path"].encode()).digest()).public_key.to_compressed_bytes())),
        "does not vouch for this Ed25519 key"),
}


def test_the_fake_agent_is_honest_when_told_to_be(stack):
    """The control: the same fake agent, honest for both paths, lets the proxy start with its keys."""
    agent = FakeAgent(honest)
    try:
        proxy = stack.start_proxy("kms-fake-agent", DSTACK_SIMULATOR_ENDPOINT=agent.url, SIGNING_KEY_SOURCE="kms")
        expected = eth_keys.PrivateKey(hashlib.sha256(PATHS["ecdsa"].encode()).digest()).public_key
        addresses = [line for line in log_of(proxy).splitlines() if "signing keys derived" in line]
        assert addresses and expected.to_checksum_address() in addresses[0], addresses
        # It serves with those keys.
        r = proxy.post("/v1/chat/completions", chat_body(f"fake agent {uuid.uuid4()}"))
        assert r.status_code == 200, r.text
        record = proxy.signature(r.json()["id"]).json()
        verify_ecdsa_receipt(record["text"], record["signature"], expected.to_checksum_address())
    finally:
        agent.close()
    # Stopped here, with its agent: test_zz_secrets wants the long trace log of a proxy that served the session.
    stack.proxies.pop("kms-fake-agent").process.stop()
    assert stack.token not in log_of(proxy)


@pytest.mark.parametrize("case", list(MALFORMED), ids=list(MALFORMED))
def test_malformed_getkey_stops_startup_naming_the_path(stack, case):
    path, bad, words = MALFORMED[case]
    agent = FakeAgent(for_path(path, bad))
    try:
        done = start_kms_proxy(stack, agent.url)
    finally:
        agent.close()
    line = assert_stopped_naming(done, path, words)
    key = hashlib.sha256(path.encode()).hexdigest()
    assert key not in line and "11" * 32 not in line


def test_an_unknown_source_stops_startup(stack):
    done = start_kms_proxy(stack, "http://127.0.0.1:1", SIGNING_KEY_SOURCE="hsm")
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == ["configuration error: SIGNING_KEY_SOURCE must be random or kms"], lines


def test_random_is_the_default_and_reports_no_provenance(proxy):
    rep = report(proxy)
    assert "key_provenance" not in rep
    assert base64.b64decode(rep["e2ee_v3_key_config"])
