"""SPEC §6 on the wire: report data recomputed in Python, the quote compared with the agent's own, key binding."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from eth_keys import keys as eth_keys
from eth_utils import keccak, to_checksum_address

from conftest import REPO_ROOT, make_certificate, pem
from helpers import HEX64, agent_call, assert_error, chat_body

REPORT = "/v1/attestation/report"
# The dev agent's quotes are TDX v4 quotes (from its throwaway dev PKI): a 48-byte header, then the 584-byte TD
# report whose last 64 bytes are the report data. Header and report are what the quote signature covers.
V4_HEADER = bytes.fromhex("0400020081000000")  # version 4, ECDSA-P256 attestation key, TEE type TDX
REPORT_DATA_OFFSET = 48 + 520
SIGNED_LENGTH = 48 + 584
FIELDS = {
    "signing_address", "signing_algo", "signing_public_key", "request_nonce", "intel_quote", "quote",
    "event_log", "vm_config", "info", "nvidia_payload", "version", "all_attestations",
}


def attest(proxy, **params) -> dict:
    r = proxy.get(REPORT, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def address_bytes(algo: str, address: str) -> bytes:
    """The signing address as bytes: 20 for the 0x ecdsa address, 32 for the ed25519 public key."""
    return bytes.fromhex(address[2:]) if algo == "ecdsa" else bytes.fromhex(address)


def spki_sha256(cert_path) -> bytes:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return hashlib.sha256(cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).digest()


def expected_report_data(algo: str, address: str, nonce: bytes, version: int, cert_path) -> bytes:
    addr = address_bytes(algo, address)
    identity = addr.ljust(32, b"\0") if version == 1 else hashlib.sha256(addr + spki_sha256(cert_path)).digest()
    return identity + nonce


def quoted_report_data(report: dict) -> bytes:
    quote = bytes.fromhex(report["quote"])
    assert quote[:8] == V4_HEADER, quote[:48].hex()
    return quote[REPORT_DATA_OFFSET:REPORT_DATA_OFFSET + 64]


def agent_info(agent_socket) -> dict:
    """The agent's /Info as the proxy relays it: tcb_info, a JSON string on dstack's wire, decoded to an object
    (as dstack's own Python SDK does, so verifier scripts read `info["tcb_info"]["mrtd"]`)."""
    info = agent_call(agent_socket, "/Info", {})
    info["tcb_info"] = json.loads(info["tcb_info"])
    return info


def check_public_key(algo: str, report: dict) -> None:
    address, public_key = report["signing_address"], report["signing_public_key"]
    if algo == "ed25519":
        assert HEX64.fullmatch(address)
        assert public_key == address
    else:
        assert to_checksum_address(address) == address
        raw = bytes.fromhex(public_key)
        assert len(raw) == 64, "ecdsa signing_public_key is x‖y, 64 bytes, no 04 prefix"
        assert "0x" + keccak(raw)[-20:].hex() == address.lower()
        assert eth_keys.PublicKey(raw).to_checksum_address() == address


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("algo", ["ecdsa", "ed25519"])
def test_report_binds_key_and_nonce(proxy, stack, algo, version):
    nonce = secrets.token_bytes(32)
    report = attest(proxy, signing_algo=algo, nonce=nonce.hex(), version=str(version))

    assert set(report) == FIELDS | ({"tls_cert_fingerprint"} if version == 2 else set()), set(report)
    assert report["signing_algo"] == algo
    assert report["version"] == version
    assert report["request_nonce"] == nonce.hex()
    assert report["intel_quote"] == report["quote"]
    check_public_key(algo, report)

    expected = expected_report_data(algo, report["signing_address"], nonce, version, stack.cert_path)
    assert quoted_report_data(report) == expected
    if version == 2:
        assert report["tls_cert_fingerprint"] == spki_sha256(stack.cert_path).hex()

    # The agent, asked directly for the report data computed here, quotes the very header and TD report the proxy
    # relayed (the ECDSA signatures differ from call to call, as a real quoting enclave's do).
    direct = agent_call(stack.agent_socket, "/GetQuote", {"report_data": expected.hex()})
    assert report["quote"][:2 * SIGNED_LENGTH] == direct["quote"][:2 * SIGNED_LENGTH]
    assert report["event_log"] == direct["event_log"]
    assert report["vm_config"] == direct["vm_config"]
    assert report["info"] == agent_info(stack.agent_socket)

    payload = json.loads(report["nvidia_payload"])
    assert isinstance(report["nvidia_payload"], str)
    assert payload["nonce"] == nonce.hex()
    assert payload["arch"] == "HOPPER"
    assert isinstance(payload["evidence_list"], list)

    inner = {k: v for k, v in report.items() if k != "all_attestations"}
    assert report["all_attestations"] == [inner]


def test_defaults_are_ecdsa_version_1_and_a_fresh_nonce(proxy, stack):
    first, second = attest(proxy), attest(proxy)
    for report in (first, second):
        assert report["signing_algo"] == "ecdsa" and report["version"] == 1
        assert "tls_cert_fingerprint" not in report
        assert HEX64.fullmatch(report["request_nonce"])
        nonce = bytes.fromhex(report["request_nonce"])
        assert quoted_report_data(report) == expected_report_data(
            "ecdsa", report["signing_address"], nonce, 1, stack.cert_path
        )
        assert json.loads(report["nvidia_payload"])["nonce"] == report["request_nonce"]
    assert first["request_nonce"] != second["request_nonce"]


@pytest.mark.parametrize("algo", ["ecdsa", "ed25519"])
def test_signing_address_filter_matches_case_insensitively(proxy, algo):
    address = attest(proxy, signing_algo=algo)["signing_address"]
    for variant in {address, address.lower(), address.upper().replace("0X", "0x")}:
        assert attest(proxy, signing_algo=algo, signing_address=variant)["signing_address"] == address


def test_attested_keys_are_the_receipt_keys(proxy, stub):
    chat_id = proxy.post("/v1/chat/completions", chat_body("attested?")).json()["id"]
    for algo in ("ecdsa", "ed25519"):
        receipt = proxy.signature(chat_id, algo).json()
        assert receipt["signing_address"] == attest(proxy, signing_algo=algo)["signing_address"]


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "nonce",
    ["zz" * 32, "ab" * 31, "ab" * 33, "0x" + "ab" * 31, "ab" * 31 + "a", ""],
    ids=["not-hex", "short", "long", "0x-prefixed", "odd-length", "empty"],
)
def test_malformed_nonce_is_400(proxy, nonce):
    assert_error(proxy.get(REPORT, params={"nonce": nonce}), 400)


@pytest.mark.parametrize("algo", ["ecdsa", "ed25519"])
def test_foreign_signing_address_is_404(proxy, algo):
    other = {"ecdsa": to_checksum_address("0x" + secrets.token_hex(20)), "ed25519": secrets.token_hex(32)}
    assert_error(proxy.get(REPORT, params={"signing_algo": algo, "signing_address": other[algo]}), 404)
    # The other algorithm's address is not this algorithm's address either.
    own_other = attest(proxy, signing_algo="ed25519" if algo == "ecdsa" else "ecdsa")["signing_address"]
    assert_error(proxy.get(REPORT, params={"signing_algo": algo, "signing_address": own_other}), 404)


@pytest.mark.parametrize("version", ["0", "4", "v2", "two", "1.0"])
def test_unknown_version_is_400(proxy, version):
    assert_error(proxy.get(REPORT, params={"version": version}), 400)


@pytest.mark.parametrize("algo", ["rsa", "secp256k1", "ed448"])
def test_unknown_signing_algo_is_400(proxy, algo):
    assert_error(proxy.get(REPORT, params={"signing_algo": algo}), 400, "invalid_signing_algo")


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token"], ids=["missing", "wrong"])
def test_report_needs_auth(proxy, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    assert_error(proxy.get(REPORT, auth=False, headers=headers), 401)


def test_uppercase_nonce_is_accepted_and_echoed_lowercase(proxy, stack):
    nonce = secrets.token_bytes(32)
    report = attest(proxy, nonce=nonce.hex().upper())
    assert report["request_nonce"] == nonce.hex()
    assert quoted_report_data(report) == expected_report_data(
        "ecdsa", report["signing_address"], nonce, 1, stack.cert_path
    )


# ---------------------------------------------------------------- version 2 with a real-life certificate file


@pytest.fixture(scope="session")
def bundle(stack):
    """TLS_CERT_PATH holding key + leaf + CA, as certbot-style bundles do; the leaf is what v2 must bind."""
    ca = make_certificate("interop test CA")
    leaf, leaf_key = make_certificate("leaf.interop.test", issuer=ca)
    path = stack.tmp / "bundle.pem"
    path.write_bytes(pem(leaf_key) + pem(leaf) + pem(ca[0]))
    proxy = stack.proxies.get("bundle-proxy") or stack.start_proxy("bundle-proxy", TLS_CERT_PATH=str(path))
    return proxy, path, leaf


def spki_sha256_of(cert: x509.Certificate) -> bytes:
    return hashlib.sha256(cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).digest()


def check_v2_binds(proxy, cert: x509.Certificate, algo: str = "ed25519") -> None:
    nonce = secrets.token_bytes(32)
    report = attest(proxy, signing_algo=algo, nonce=nonce.hex(), version="2")
    assert report["tls_cert_fingerprint"] == spki_sha256_of(cert).hex()
    identity = hashlib.sha256(address_bytes(algo, report["signing_address"]) + spki_sha256_of(cert)).digest()
    assert quoted_report_data(report) == identity + nonce


@pytest.mark.parametrize("algo", ["ecdsa", "ed25519"])
def test_v2_binds_the_leaf_of_a_key_and_chain_bundle(bundle, algo):
    proxy, _, leaf = bundle
    check_v2_binds(proxy, leaf, algo)


def test_v2_follows_a_certificate_renewed_in_place(bundle, stack):
    proxy, path, leaf = bundle
    check_v2_binds(proxy, leaf)
    renewed, renewed_key = make_certificate("leaf.interop.test")
    staging = stack.tmp / "bundle.pem.new"
    staging.write_bytes(pem(renewed_key) + pem(renewed))
    os.replace(staging, path)  # how certbot and similar tools swap a renewed certificate in
    check_v2_binds(proxy, renewed)


def test_hung_gpu_driver_gives_503_within_the_timeout_then_recovers(stack):
    """A wedged NVML call (the fake driver blocks while a file exists): each caller gets 503
    attestation_unavailable after ATTESTATION_TIMEOUT_SECONDS, callers past ATTESTATION_MAX_WAITING get it at
    once, and once the driver answers, reports carry GPU evidence again."""
    hang = stack.tmp / "nvml-hang"
    library = stack.tmp / "libfakenvml-hang.so"
    source = REPO_ROOT / "Tests/AttestationTests/Fixtures/fake_nvml.c"
    subprocess.run(
        ["cc", "-shared", "-fPIC", "-o", str(library), str(source), f'-DFAKE_NVML_HANG_FILE="{hang}"'],
        check=True, timeout=60,
    )
    proxy = stack.proxies.get("nvml-proxy") or stack.start_proxy(
        "nvml-proxy", GPU_NO_HW_MODE="0", NVML_LIBRARY_PATH=str(library), ATTESTATION_TIMEOUT_SECONDS="1",
        ATTESTATION_MAX_WAITING="1",
    )
    payload = json.loads(attest(proxy)["nvidia_payload"])
    assert len(payload["evidence_list"]) == 2  # the fake has two GPUs

    hang.touch()
    try:
        # One caller stuck in the driver, one waiting behind it: both give up after the 1 s timeout.
        answers: list = []
        started = time.monotonic()
        callers = [threading.Thread(target=lambda: answers.append(proxy.get(REPORT))) for _ in range(2)]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join(timeout=30)
        assert time.monotonic() - started < 10  # generous: the timeout is 1 s
        assert len(answers) == 2
        for r in answers:
            error = assert_error(r, 503, "attestation_unavailable")
            assert "in time" in error["message"], error
        # Their jobs still fill the queue (one is stuck in the driver): the next caller is refused at once.
        error = assert_error(proxy.get(REPORT), 503, "attestation_unavailable")
        assert "busy" in error["message"], error
    finally:
        hang.unlink()
    deadline = time.monotonic() + 10
    while (r := proxy.get(REPORT)).status_code != 200:
        assert time.monotonic() < deadline, r.text
        time.sleep(0.1)
    assert len(json.loads(r.json()["nvidia_payload"])["evidence_list"]) == 2
