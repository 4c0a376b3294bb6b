"""Attestation version 3: report data binding, quote kinds, refusals, and the no-downgrade policy."""

from __future__ import annotations

import hashlib
import struct

import httpx
import pytest
from reference_server import ReferenceServer

from vllm_proxy_client import (
    AttestationError,
    DowngradeError,
    NoDowngradePolicy,
    Suite,
    fetch_attestation,
    quote_report_data,
    verify_report,
)

SERVER = ReferenceServer()
NONCE = bytes(range(32))


def verify(report, **options):
    return verify_report(report, nonce=NONCE, origin="https://p", **({"allow_unverified_quotes": True} | options))


def test_report_verifies_and_yields_the_key_list():
    attestation = verify(SERVER.report(NONCE))
    assert attestation.key_list == SERVER.K and attestation.kc == SERVER.kc
    assert attestation.quote_kind == "tdx" and attestation.e2ee_versions == (1, 2, 3)
    assert attestation.key_configs[0].offers(Suite.X25519_CHACHA20POLY1305)


def test_a_quote_needs_a_verifier_or_explicit_permission():
    with pytest.raises(AttestationError, match="quote_verifier"):
        verify_report(SERVER.report(NONCE), nonce=NONCE)
    seen = []
    verify_report(SERVER.report(NONCE), nonce=NONCE, quote_verifier=seen.append)
    assert seen == [bytes.fromhex(SERVER.report(NONCE)["quote"])]


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda r: r | {"version": 2}, id="version-2"),
        pytest.param(lambda r: r | {"version": True}, id="version-bool"),
        pytest.param(lambda r: {k: v for k, v in r.items() if k != "e2ee_v3_key_config"}, id="no-K"),
        pytest.param(lambda r: {k: v for k, v in r.items() if k != "e2ee_versions"}, id="no-versions"),
        pytest.param(lambda r: r | {"e2ee_versions": [1, 2]}, id="no-v3"),
        pytest.param(lambda r: r | {"e2ee_v3_key_config_id": "00" * 16}, id="kc-mismatch"),
        pytest.param(lambda r: r | {"request_nonce": "11" * 32}, id="other-nonce"),
        pytest.param(lambda r: r | {"signing_address": "0x" + "cd" * 20}, id="other-address"),
        pytest.param(lambda r: r | {"nvidia_payload": r["nvidia_payload"] + " "}, id="gpu-payload-edited"),
        pytest.param(lambda r: r | {"signing_algo": "ed25519"}, id="other-algo"),
        pytest.param(lambda r: r | {"intel_quote": "00"}, id="quotes-differ"),
    ],
)
def test_reports_that_do_not_bind_are_refused(edit):
    with pytest.raises(AttestationError):
        verify(edit(SERVER.report(NONCE)))


def test_key_list_swapped_with_a_consistent_kc_is_refused():
    other = ReferenceServer(b"the gateway's own key")
    report = SERVER.report(NONCE) | {
        "e2ee_v3_key_config": other.report(NONCE)["e2ee_v3_key_config"],
        "e2ee_v3_key_config_id": other.kc,
    }
    with pytest.raises(AttestationError, match="report data"):
        verify(report)


def test_tls_binding():
    spki = b"0\x2a fake spki der"
    digest = hashlib.sha256(spki).digest()
    report = SERVER.report(NONCE, spki_sha256=digest)
    assert verify(report, tls_spki_der=spki).tls_spki_sha256 == digest
    with pytest.raises(AttestationError, match="another TLS key"):
        verify(report, tls_spki_der=b"other")
    with pytest.raises(AttestationError, match="tls_cert_fingerprint"):
        verify(report)
    assert verify(report, accept_reported_tls_fingerprint=True).tls_spki_sha256 == digest
    # Without a TLS binding in the report, a caller's SPKI makes the identity differ: refused.
    with pytest.raises(AttestationError):
        verify(SERVER.report(NONCE), tls_spki_der=spki)


def tdx_quote(version: int, report_data: bytes) -> bytes:
    header = struct.pack("<HHI", version, 2, 0x81) + bytes(40)
    body = bytes(520) + report_data + bytes(64)
    return header + (struct.pack("<HI", 2, len(body)) if version == 5 else b"") + body + bytes(100)


@pytest.mark.parametrize("version", [4, 5])
def test_tdx_quote_report_data_and_verifier_hook(version):
    data = bytes(range(64))
    quote = tdx_quote(version, data)
    seen = []
    assert quote_report_data(quote, quote_verifier=seen.append) == (data, "tdx") and seen == [quote]
    with pytest.raises(AttestationError, match="quote_verifier"):
        quote_report_data(quote)
    assert quote_report_data(quote, allow_unverified_quotes=True)[0] == data

    def reject(_):
        raise ValueError("bad signature")

    with pytest.raises(AttestationError, match="bad signature"):
        quote_report_data(quote, quote_verifier=reject)


def test_non_tdx_or_short_quotes_are_refused():
    with pytest.raises(AttestationError):
        quote_report_data(b"\x04\x00\x02\x00" + b"\x00" * 60, allow_unverified_quotes=True)
    with pytest.raises(AttestationError):
        quote_report_data(struct.pack("<HHI", 4, 2, 0) + bytes(700), allow_unverified_quotes=True)


def test_fetch_asks_for_version_3_with_a_fresh_nonce():
    asked = []

    def handler(request: httpx.Request) -> httpx.Response:
        params = request.url.params
        asked.append(dict(params))
        assert request.url.path == "/v1/attestation/report" and request.headers["authorization"] == "Bearer t"
        return httpx.Response(200, json=SERVER.report(bytes.fromhex(params["nonce"])))

    client = httpx.Client(transport=httpx.MockTransport(handler))
    policy = NoDowngradePolicy()
    first = fetch_attestation("http://p/v1", "t", client=client, allow_unverified_quotes=True, policy=policy)
    fetch_attestation("http://p", "t", client=client, allow_unverified_quotes=True, policy=policy)
    assert asked[0]["version"] == "3" and asked[0]["signing_algo"] == "ecdsa"
    assert asked[0]["nonce"] != asked[1]["nonce"] and len(asked[0]["nonce"]) == 64
    assert first.origin == "http://p"
    assert not policy.allows_version("http://p", 2) and policy.allows_version("http://other", 2)


def test_a_replayed_report_for_another_nonce_is_refused():
    client = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200, json=SERVER.report(NONCE))))
    with pytest.raises(AttestationError, match="nonce"):
        fetch_attestation("http://p", "t", client=client, allow_unverified_quotes=True, policy=NoDowngradePolicy())


def test_policy_refuses_a_key_list_without_the_chosen_suite():
    attestation = verify(SERVER.report(NONCE))
    policy = NoDowngradePolicy()
    policy.choose_suite("https://p", Suite.X25519_AES256GCM, attestation)
    with pytest.raises(DowngradeError, match="no longer offers"):
        policy.choose_suite("https://p", Suite.XWING_AES256GCM, attestation)
