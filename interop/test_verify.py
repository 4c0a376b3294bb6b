"""SPEC §6.2, `vllm-proxy verify URL` end to end against the real proxy in dev mode: the dev agent's quotes come from
a throwaway PKI (its root written to `--dev-pki-dir`), the proxy is reached over TLS through a terminator holding
the certificate at TLS_CERT_PATH, as in a CVM. Verification passes with the dev root, the dev collateral and the
dev compose hash — and fails for each thing an attacker between client and proxy could change: another root
(Intel's: a dev quote is not genuine hardware), another TLS key (a man in the middle), and every field of the
report a relay could edit (the key list, the signing key, the nonce, the event log, the GPU evidence)."""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

from conftest import Process, bin_dir, make_certificate, pem, stop_all, unix_socket_accepts
from helpers import EditingRelay

TIMEOUT = 120


class TLSTerminator:
    """Accepts TLS with `cert`/`key` and pipes the plaintext to `target_port`: a CVM's TLS endpoint in front of the
    proxy (or, with another certificate, a man in the middle)."""

    def __init__(self, cert: Path, key: Path, target_port: int):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            client = self.context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()
            return
        upstream = socket.create_connection(("127.0.0.1", self.target_port))

        def pipe(source, sink) -> None:
            try:
                while data := source.recv(65536):
                    sink.sendall(data)
            except OSError:
                pass
            finally:
                for s in (source, sink):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
        pipe(client, upstream)

    def close(self) -> None:
        self.closed = True
        self.listener.close()


@pytest.fixture(scope="module")
def dev(stack):
    """A dev agent with its PKI written out, two proxies on it (one binding a TLS certificate, one without), the
    TLS terminator, and a man in the middle with its own certificate."""
    tmp = Path(tempfile.mkdtemp(prefix="vllm-proxy-verify-"))
    pki = tmp / "pki"
    socket_path = tmp / "dstack.sock"
    agent = Process("verify-dev-agent", [str(bin_dir() / "dev-attestation-agent"), "--socket", str(socket_path),
                                         "--dev-pki-dir", str(pki)], tmp)
    terminators: list[TLSTerminator] = []
    try:
        agent.wait_until(lambda: unix_socket_accepts(socket_path) and (pki / "collateral.json").exists(),
                         "the dev agent's socket and PKI files")
        tls = stack.start_proxy("verify-proxy-tls", DSTACK_SIMULATOR_ENDPOINT=str(socket_path))
        plain = stack.start_proxy("verify-proxy-plain", DSTACK_SIMULATOR_ENDPOINT=str(socket_path), TLS_CERT_PATH="")
        tls_port = int(tls.base_url.rsplit(":", 1)[1])
        terminator = TLSTerminator(stack.cert_path, stack.cert_path.parent / "tls-key.pem", tls_port)
        terminators.append(terminator)
        mitm_cert, mitm_key = make_certificate("vllm-proxy-interop.test")
        (tmp / "mitm-cert.pem").write_bytes(pem(mitm_cert))
        (tmp / "mitm-key.pem").write_bytes(pem(mitm_key))
        mitm = TLSTerminator(tmp / "mitm-cert.pem", tmp / "mitm-key.pem", tls_port)
        terminators.append(mitm)
        yield {
            "tmp": tmp, "pki": pki, "token": stack.token, "tls": tls, "plain": plain,
            "https": f"https://127.0.0.1:{terminator.port}", "mitm": f"https://127.0.0.1:{mitm.port}",
            "compose_hash": (pki / "compose-hash").read_text().strip(),
        }
    finally:
        for t in terminators:
            t.close()
        stop_all([agent])
        shutil.rmtree(tmp, ignore_errors=True)


def verify(dev, url: str, *extra: str, root: bool = True, collateral: bool = True, token: bool = True,
           json_out: bool = True) -> tuple[int, dict | str]:
    argv = [str(bin_dir() / "vllm-proxy"), "verify", url]
    if token:
        argv += ["--token", dev["token"]]
    if root:
        argv += ["--root-ca", str(dev["pki"] / "tdx-root.pem")]
    if collateral:
        argv += ["--collateral", str(dev["pki"] / "collateral.json")]
    argv += list(extra)
    if json_out:
        argv.append("--json")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL,
                          env={"PATH": "/usr/bin:/bin"})
    if not json_out:
        return done.returncode, done.stdout + done.stderr
    return done.returncode, (json.loads(done.stdout) if done.stdout.strip() else {"stderr": done.stderr})


def checks(result: dict) -> dict[str, bool]:
    return {c["check"]: c["passed"] for c in result["checks"]}


def failed(result: dict) -> set[str]:
    return {name for name, passed in checks(result).items() if not passed}


def expect_code(dev) -> list[str]:
    return ["--expect-compose-hash", dev["compose_hash"], "--allow-no-gpu"]


# ---------------------------------------------------------------- the honest path


def test_dev_mode_verifies_end_to_end_over_tls(dev):
    code, result = verify(dev, dev["https"], *expect_code(dev))
    assert code == 0, result
    assert result["verified"] is True
    assert set(checks(result)) == {"attestation", "tdx_quote", "tcb_status", "signing_key", "e2ee_key_config",
                                   "report_data", "event_log", "measurement", "gpu_evidence"}
    assert all(checks(result).values())
    assert result["tcb_status"] == "UpToDate"
    assert result["compose_hash"] == dev["compose_hash"]
    assert result["root_ca"].startswith("override:")
    assert any("trust root is replaced" in w for w in result["warnings"])
    assert any("--allow-no-gpu" in w for w in result["warnings"])
    # The quote binds this connection's certificate: the SPKI in the detail is the one at TLS_CERT_PATH.
    assert "this connection's TLS key" in next(c["detail"] for c in result["checks"] if c["check"] == "report_data")


def test_the_human_readable_form(dev):
    code, text = verify(dev, dev["https"], *expect_code(dev), json_out=False)
    assert code == 0, text
    assert "PASS  tdx_quote" in text and "VERIFIED: all 9 checks passed." in text
    assert "FAIL" not in text


def test_plain_http_verifies_a_proxy_without_tls_binding(dev):
    code, result = verify(dev, dev["plain"].base_url, *expect_code(dev))
    assert code == 0, result


def test_ed25519_key_verifies_too(dev):
    code, result = verify(dev, dev["https"], *expect_code(dev), "--signing-algo", "ed25519")
    assert code == 0, result
    assert result["signing_algo"] == "ed25519" and len(result["signing_address"]) == 64


def test_expected_mr_td_and_rtmrs(dev):
    _, result = verify(dev, dev["https"], *expect_code(dev))
    td = result["td"]
    code, ok = verify(dev, dev["https"], "--expect-mr-td", td["mr_td"], "--expect-rtmr0", td["rtmr0"],
                      "--expect-rtmr1", td["rtmr1"], "--expect-rtmr2", td["rtmr2"], "--allow-no-gpu")
    assert code == 0, ok
    code, bad = verify(dev, dev["https"], "--expect-mr-td", "00" * 48, "--allow-no-gpu")
    assert code == 1 and failed(bad) == {"measurement"}


def test_a_receipt_verifies_against_the_attested_key(dev):
    tls = dev["tls"]
    r = tls.post("/v1/chat/completions", json.dumps(
        {"model": "interop-model", "messages": [{"role": "user", "content": "receipt please"}]}).encode())
    assert r.status_code == 200, r.text
    chat_id = r.json()["id"]
    for algo in ("ecdsa", "ed25519"):
        code, result = verify(dev, dev["https"], *expect_code(dev), "--receipt", chat_id, "--signing-algo", algo)
        assert code == 0, result
        assert checks(result)["receipt"] is True
    code, result = verify(dev, dev["https"], *expect_code(dev), "--receipt", "chatcmpl-does-not-exist")
    assert code == 1 and failed(result) == {"receipt"}


# ---------------------------------------------------------------- what must fail


def test_without_the_dev_root_the_quote_fails(dev):
    """Intel's pinned root: a dev quote is not genuine hardware — the command must say so and exit 1."""
    code, result = verify(dev, dev["https"], *expect_code(dev), root=False)
    assert code == 1
    assert "tdx_quote" in failed(result)
    assert result["root_ca"] == "intel"


def test_no_expectation_fails_unless_any_code_is_allowed(dev):
    code, result = verify(dev, dev["https"], "--allow-no-gpu")
    assert code == 1 and failed(result) == {"measurement"}
    code, result = verify(dev, dev["https"], "--allow-no-gpu", "--allow-any-code")
    assert code == 0, result
    assert any("--allow-any-code" in w for w in result["warnings"])


def test_a_wrong_compose_hash_fails(dev):
    code, result = verify(dev, dev["https"], "--expect-compose-hash", "ab" * 32, "--allow-no-gpu")
    assert code == 1 and failed(result) == {"measurement"}


def test_no_gpu_fails_unless_allowed(dev):
    code, result = verify(dev, dev["https"], "--expect-compose-hash", dev["compose_hash"])
    assert code == 1 and failed(result) == {"gpu_evidence"}


def test_a_man_in_the_middle_with_its_own_certificate_fails(dev):
    """The MITM relays the genuine report, but over its own TLS key, which the quote does not bind."""
    code, result = verify(dev, dev["mitm"], *expect_code(dev))
    assert code == 1 and failed(result) == {"report_data"}


def test_plain_http_to_a_proxy_that_binds_a_certificate_fails(dev):
    """The proxy's report binds its TLS key; a client that saw no TLS cannot match it (a TLS-stripping relay)."""
    code, result = verify(dev, dev["tls"].base_url, *expect_code(dev))
    assert code == 1 and failed(result) == {"report_data"}


def _swap_x25519(k_b64: str) -> str:
    from cryptography.hazmat.primitives.asymmetric import x25519
    k = bytearray(base64.b64decode(k_b64))
    attacker = x25519.X25519PrivateKey.generate().public_key().public_bytes_raw()
    k[5:37] = attacker  # V3Client reads the X25519 key at [5, 37)
    return base64.b64encode(bytes(k)).decode()


EDITS = {
    # A gateway swapping the E2EE key list for its own (the attack v3 exists to stop).
    "key_list": lambda r: {**r, "e2ee_v3_key_config": _swap_x25519(r["e2ee_v3_key_config"])},
    # Another signing key (and its address) named as the proxy's.
    "signing_key": lambda r: {**r, "signing_address": "0x" + "11" * 20},
    # A report for another nonce replayed.
    "nonce": lambda r: {**r, "request_nonce": secrets.token_hex(32)},
    # The event log's compose hash edited.
    "event_log": lambda r: {**r, "event_log": json.dumps([
        {**e, "event_payload": "ab" * 32} if e.get("event") == "compose-hash" else e
        for e in json.loads(r["event_log"])])},
    # GPU evidence from elsewhere.
    "gpu": lambda r: {**r, "nvidia_payload": r["nvidia_payload"].replace("}", ', "x": 1}', 1)},
}

EXPECTED_FAILURES = {
    "key_list": {"report_data", "e2ee_key_config"},
    "signing_key": {"report_data", "signing_key"},
    "nonce": {"report_data"},
    "event_log": {"event_log", "measurement"},
    "gpu": {"report_data"},
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_a_relay_editing_the_report_is_caught(dev, edit):
    relay = EditingRelay(dev["plain"].base_url)
    try:
        relay.edit = EDITS[edit]
        code, result = verify(dev, relay.url, *expect_code(dev))
    finally:
        relay.close()
    assert code == 1, result
    assert EXPECTED_FAILURES[edit] <= failed(result), result
    assert failed(result) <= EXPECTED_FAILURES[edit] | {"e2ee_key_config"}, result


def test_an_unreachable_proxy_fails_cleanly(dev):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, result = verify(dev, f"http://127.0.0.1:{port}", *expect_code(dev))
    assert code == 1 and failed(result) == {"attestation"}


def test_a_wrong_token_fails_cleanly(dev):
    argv_token = ["--token", "tok-wrong"]
    code, result = verify(dev, dev["https"], *expect_code(dev), *argv_token, token=False)
    assert code == 1 and failed(result) == {"attestation"}
    assert "401" in result["checks"][0]["detail"]


@pytest.mark.parametrize("args", [
    ["ftp://x"], ["http://x", "--expect-mr-td", "zz"], ["http://x", "--expect-compose-hash", "00"],
    ["http://x", "--signing-algo", "rsa"], ["http://x", "--collateral", "/nonexistent"],
    ["http://x", "--pccs", "http://example.com"],
])
def test_unusable_arguments_exit_2(args):
    done = subprocess.run([str(bin_dir() / "vllm-proxy"), "verify", *args], capture_output=True, text=True,
                          timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stdout + done.stderr


def test_collateral_fetched_from_a_pccs(dev):
    """Without --collateral the command fetches it from a PCCS (here a stand-in serving the dev collateral, the
    wire format dcap-qvl's get_collateral reads): the same verdict as with the file."""
    import sys
    standin = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve().parent / "pccs_standin.py"), "--collateral",
         str(dev["pki"] / "collateral.json")], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        port = int(standin.stdout.readline())
        code, result = verify(dev, dev["https"], *expect_code(dev), "--pccs", f"http://127.0.0.1:{port}",
                              collateral=False)
        assert code == 0, result
        code, result = verify(dev, dev["https"], *expect_code(dev), "--pccs", f"http://127.0.0.1:{port}/nowhere",
                              collateral=False)
        assert code == 1 and failed(result) == {"tdx_quote"}
        assert "collateral_unavailable" in next(c["detail"] for c in result["checks"] if c["check"] == "tdx_quote")
    finally:
        standin.terminate()
        standin.wait(timeout=10)


# ---------------------------------------------------------------- the chain to Chutes (SPEC §7.2)


@pytest.fixture(scope="module")
def chutes_chain(stack, dev):
    """A proxy on the dev agent (no TLS binding, reached over http) sealing to the Chutes stand-in's instances,
    which it verifies against the stand-in's synthetic TDX PKI."""
    from chutes_e2ee_stub import ChutesE2EEStub

    relay = ChutesE2EEStub.started("cpk-verify-chain-" + secrets.token_hex(16), dev["tmp"])
    try:
        proxy = stack.start_proxy(
            "verify-proxy-chutes",
            **relay.proxy_env(DSTACK_SIMULATOR_ENDPOINT=str(dev["tmp"] / "dstack.sock"), TLS_CERT_PATH=""))
        yield relay, proxy
    finally:
        relay.stop()


def test_the_chain_to_chutes_instances_verifies_against_the_attested_key(dev, chutes_chain):
    relay, proxy = chutes_chain
    relay.reset()
    code, result = verify(dev, proxy.base_url, *expect_code(dev), "--chutes-model", "stub-e2e-model")
    assert code == 0, result
    assert checks(result)["chutes_chain"] is True
    # The verdict answered verify's own nonce: the relay was asked for evidence with it.
    assert result["chutes_chain"]["nonce"] in relay.evidence_nonces
    # A receipt of a Chutes answer: its record (chutes_attestation included) is signed by the attested key.
    r = proxy.post("/v1/chutes/chat/completions", json.dumps(
        {"model": "stub-e2e-model", "messages": [{"role": "user", "content": "chain receipt"}]}).encode())
    assert r.status_code == 200, r.text
    code, result = verify(dev, proxy.base_url, *expect_code(dev), "--receipt", r.json()["id"])
    assert code == 0, result
    assert result["receipt_record"]["chutes_attestation"]["verified"] is True


def test_a_chain_whose_instances_fail_verification_fails(dev, chutes_chain):
    relay, proxy = chutes_chain
    relay.reset()
    relay.evidence_fault = "measurement"
    code, result = verify(dev, proxy.base_url, *expect_code(dev), "--chutes-model", "stub-e2e-model")
    assert code == 1 and failed(result) == {"chutes_chain"}, result
    code, result = verify(dev, proxy.base_url, *expect_code(dev), "--chutes-model", "no-such-model")
    assert code == 1 and failed(result) == {"chutes_chain"}, result
