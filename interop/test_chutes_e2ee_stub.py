"""The Chutes E2EE stand-in (chutes_e2ee_stub.py) proven against PyPI `chutes-e2ee` 0.1.0 itself, before any test
trusts it to judge the proxy: the package's requests open in the stub, and the stub's answers open with the
package's own decryption, JSON and stream, through the package's real httpx transport against the stub over TLS.
"""

from __future__ import annotations

import base64
import json
import secrets
import ssl

import httpx
import pytest
from chutes_e2ee import ChutesE2EETransport
from chutes_e2ee.crypto import build_e2ee_request, decrypt_response, decrypt_stream_chunk, decrypt_stream_init
from pqcrypto.kem import ml_kem_768

import chutes_e2ee_stub as wire
from chutes_e2ee_stub import ChutesE2EEStub

KEY = "cpk-stubproof-" + secrets.token_hex(8)


@pytest.fixture(scope="module")
def e2e_stub(tmp_path_factory):
    stub = ChutesE2EEStub.started(KEY, tmp_path_factory.mktemp("chutes-e2ee-stub"))
    yield stub
    stub.stop()


@pytest.fixture
def package_client(e2e_stub):
    """An httpx client whose transport is the package's own E2EE transport, pointed at the stub."""
    e2e_stub.reset()
    transport = ChutesE2EETransport(
        api_key=KEY, api_base=e2e_stub.url, inner=httpx.HTTPTransport(verify=ssl.create_default_context(cafile=str(e2e_stub.ca_path)))
    )
    with httpx.Client(transport=transport, timeout=30) as client:
        yield client


def test_package_request_opens_in_the_stub():
    sk_public, sk_secret = ml_kem_768.generate_keypair()
    payload = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
    built = build_e2ee_request(base64.b64encode(sk_public).decode(), payload)
    assert len(built.blob) > 1088 + 12 + 16
    opened = wire.open_request(built.blob, sk_secret)
    response_pk = base64.b64decode(opened.pop("e2e_response_pk"))
    assert opened == payload and len(response_pk) == 1184
    # The stub's sealed answer opens with the package's decrypt_response and the response key it kept.
    answer = {"id": "x", "choices": [{"message": {"content": "hi"}}]}
    assert decrypt_response(wire.seal_response(answer, response_pk), built.response_sk) == answer
    # And a stream: e2e_init → stream key; each e2e value → one whole SSE line.
    init, key = wire.stream_init(response_pk)
    assert decrypt_stream_init(built.response_sk, init) == key
    assert decrypt_stream_chunk(wire.seal_chunk('data: {"a": 1}', key), key) == 'data: {"a": 1}'


def test_tampered_request_does_not_open():
    public, secret = ml_kem_768.generate_keypair()
    blob = bytearray(build_e2ee_request(base64.b64encode(public).decode(), {"model": "m"}).blob)
    blob[-1] ^= 1
    with pytest.raises(Exception):
        wire.open_request(bytes(blob), secret)


def test_package_transport_non_stream_through_the_stub(e2e_stub, package_client):
    body = {"model": "stub-e2e-model", "messages": [{"role": "user", "content": "secret prompt 41"}]}
    r = package_client.post("https://llm.invalid/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "Echo: secret prompt 41"
    (invocation,) = e2e_stub.invocations
    assert invocation.status == 200
    assert invocation.headers["x-e2e-path"] == "/v1/chat/completions"
    assert invocation.headers["x-e2e-stream"] == "false"
    assert invocation.headers["x-chute-id"] == e2e_stub.model("stub-e2e-model").chute_id
    assert invocation.payload["messages"] == body["messages"]
    relay = e2e_stub.relay_bytes()
    assert b"secret prompt 41" not in relay and b"Echo:" not in relay


@pytest.mark.parametrize("done_encrypted", [False, True])
def test_package_transport_stream_through_the_stub(e2e_stub, package_client, done_encrypted):
    e2e_stub.done_encrypted = done_encrypted
    try:
        body = {"model": "stub-e2e-model", "stream": True, "messages": [{"role": "user", "content": "two words"}]}
        with package_client.stream("POST", "https://llm.invalid/v1/chat/completions", json=body) as r:
            assert r.status_code == 200
            text = b"".join(r.iter_raw()).decode()
    finally:
        e2e_stub.done_encrypted = False
    events = [e[len("data: "):] for e in text.split("\n\n") if e]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if "choices" in c)
    assert content == "Echo: two words"
    assert chunks[-1] == {"usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}}
    assert b"two words" not in e2e_stub.relay_bytes()


def test_stub_enforces_single_use_nonces(e2e_stub, package_client):
    """Nonces are single-use: a second invoke with the same nonce is a 403, as the package does not retry."""
    body = {"model": "stub-e2e-model", "messages": [{"role": "user", "content": "once"}]}
    assert package_client.post("https://llm.invalid/v1/chat/completions", json=body).status_code == 200
    first = e2e_stub.invocations[0].headers
    replay = httpx.post(
        e2e_stub.url + "/e2e/invoke", content=b"\0" * 2000, verify=ssl.create_default_context(cafile=str(e2e_stub.ca_path)),
        headers={"Authorization": f"Bearer {KEY}", "X-Chute-Id": first["x-chute-id"],
                 "X-Instance-Id": first["x-instance-id"], "X-E2E-Nonce": first["x-e2e-nonce"]},
    )
    assert replay.status_code == 403
    e2e_stub.faults.append("gone")
    r = package_client.post("https://llm.invalid/v1/chat/completions", json=body)
    assert r.status_code == 410  # the package surfaces it; retrying is ours to do


# ---------------------------------------------------------------- attestation evidence (SPEC §7.2)
#
# The stub's evidence is judged here with code of its own: dcap-qvl 0.7.0 verifies the quotes against the collateral
# it fetches itself from the stub's PCCS stand-in and the root in `pki_dir`; the report data is recomputed with
# hashlib and the certificate read with cryptography (no helper of the stub is used to judge the stub).

import asyncio  # noqa: E402
import hashlib  # noqa: E402
import time  # noqa: E402

import dcap_qvl  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

MODEL = "stub-e2e-model"


@pytest.fixture
def relay(e2e_stub):
    """The stub, reset, with an authenticated GET over its own TLS."""
    e2e_stub.reset()
    context = ssl.create_default_context(cafile=str(e2e_stub.ca_path))

    def get(path: str, auth: bool = True, **params) -> httpx.Response:
        headers = {"Authorization": f"Bearer {KEY}"} if auth else {}
        return httpx.get(e2e_stub.url + path, params=params, headers=headers, verify=context, timeout=30)

    e2e_stub.get = get
    yield e2e_stub
    e2e_stub.reset()


def listed_keys(relay, chute_id: str) -> dict[str, str]:
    r = relay.get(f"/e2e/instances/{chute_id}")
    assert r.status_code == 200, r.text
    return {i["instance_id"]: i["e2e_pubkey"] for i in r.json()["instances"]}


def evidence(relay, chute_id: str, nonce: str) -> dict:
    r = relay.get(f"/chutes/{chute_id}/evidence", nonce=nonce)
    assert r.status_code == 200, r.text
    document = r.json()
    assert set(document) == {"evidence", "failed_instance_ids"}
    return document


@pytest.fixture(scope="module")
def trust(e2e_stub):
    """(collateral dcap-qvl fetched from the stub's PCCS stand-in, root DER from pki_dir/root.pem, allowed sets)."""
    e2e_stub.reset()
    chute_id = e2e_stub.model(MODEL).chute_id
    context = ssl.create_default_context(cafile=str(e2e_stub.ca_path))
    r = httpx.get(f"{e2e_stub.url}/chutes/{chute_id}/evidence", params={"nonce": "00" * 32},
                  headers={"Authorization": f"Bearer {KEY}"}, verify=context)
    quote = base64.b64decode(r.json()["evidence"][0]["quote"])

    async def fetch():
        return await dcap_qvl.get_collateral(e2e_stub.pccs_url, quote)

    collateral = asyncio.run(fetch())
    fetched = json.loads(collateral.to_json())
    fetched.pop("pck_certificate_chain", None)  # dcap-qvl adds the quote's own PCK chain
    assert fetched == json.loads((e2e_stub.pki_dir / "collateral.json").read_text())
    root_der = x509.load_pem_x509_certificate((e2e_stub.pki_dir / "root.pem").read_bytes()).public_bytes(
        serialization.Encoding.DER)
    allowed = json.loads((e2e_stub.pki_dir / "measurements.json").read_text())
    assert isinstance(allowed, list) and allowed and all(set(m) == {"mr_td", "rtmr0", "rtmr1", "rtmr2"} for m in allowed)
    e2e_stub.reset()
    return collateral, root_der, allowed


def judge(trust, item: dict, nonce: str, listed_key: str) -> dict:
    """SPEC §7.2's checks of one evidence item, written independently of the stub."""
    collateral, root_der, allowed = trust
    assert set(item) == {"instance_id", "quote", "gpu_evidence", "certificate"}, item
    quote = base64.b64decode(item["quote"], validate=True)
    report = dcap_qvl.verify_with_root_ca(quote, collateral, root_der, int(time.time()))
    td = json.loads(report.to_json())["report"]["TD10"]
    report_data = bytes.fromhex(td["report_data"])
    certificate = x509.load_der_x509_certificate(base64.b64decode(item["certificate"], validate=True))
    spki = certificate.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
    measured = {"mr_td": td["mr_td"].lower(), "rtmr0": td["rt_mr0"].lower(), "rtmr1": td["rt_mr1"].lower(),
                "rtmr2": td["rt_mr2"].lower()}
    return {
        "status": report.status,
        "key_bound": report_data[:32] == hashlib.sha256((nonce + listed_key).encode("utf-8")).digest(),
        "cert_bound": report_data[32:] == hashlib.sha256(spki).digest(),
        "measured": measured in [{k: v.lower() for k, v in m.items()} for m in allowed],
        "certificate": certificate,
    }


def passes(verdict: dict) -> bool:
    return verdict["status"] == "UpToDate" and verdict["key_bound"] and verdict["cert_bound"] and verdict["measured"]


def test_evidence_verifies_with_dcap_qvl_and_binds_nonce_key_and_certificate(relay, trust):
    chute_id = relay.model(MODEL).chute_id
    keys = listed_keys(relay, chute_id)
    nonce = secrets.token_hex(32)
    document = evidence(relay, chute_id, nonce)
    assert document["failed_instance_ids"] == []
    assert sorted(e["instance_id"] for e in document["evidence"]) == sorted(keys) and len(keys) == 2
    certificates = set()
    for item in document["evidence"]:
        verdict = judge(trust, item, nonce, keys[item["instance_id"]])
        assert passes(verdict), verdict
        assert item["gpu_evidence"] == []
        certificate = verdict["certificate"]  # self-signed P-256, verifies under its own key
        assert isinstance(certificate.public_key().curve, ec.SECP256R1)
        certificate.public_key().verify(certificate.signature, certificate.tbs_certificate_bytes,
                                        ec.ECDSA(hashes.SHA256()))
        certificates.add(certificate.public_bytes(serialization.Encoding.DER))
    assert len(certificates) == 2, "one certificate per instance"
    # The same instance, asked again: the same certificate, a new quote for the new nonce.
    again = evidence(relay, chute_id, secrets.token_hex(32))
    assert {base64.b64decode(e["certificate"]) for e in again["evidence"]} == certificates
    assert relay.evidence_fetches == {chute_id: 2} and relay.evidence_nonces[0] == nonce
    assert [a.status for a in relay.evidence_served] == [200, 200]
    # Intel's own root refuses the synthetic PKI.
    with pytest.raises(ValueError):
        dcap_qvl.verify(base64.b64decode(document["evidence"][0]["quote"]), trust[0], int(time.time()))
    relay.reset()
    assert relay.evidence_fetches == {} and relay.evidence_nonces == [] and relay.evidence_served == []


def test_evidence_request_errors(relay):
    chute_id = relay.model(MODEL).chute_id
    assert relay.get(f"/chutes/{chute_id}/evidence", auth=False, nonce="00" * 32).status_code == 401
    assert relay.get("/chutes/no-such-chute/evidence", nonce="00" * 32).status_code == 404
    for bad in ["", "00" * 31, "00" * 33, "AB" * 32, "zz" * 32, "0x" + "00" * 31]:
        assert relay.get(f"/chutes/{chute_id}/evidence", nonce=bad).status_code == 400, bad
    assert relay.get(f"/chutes/{chute_id}/evidence").status_code == 400
    assert relay.get(f"/chutes/{chute_id}/evidence?nonce={'00' * 32}&nonce={'11' * 32}").status_code == 400
    assert relay.evidence_fetches == {}


@pytest.mark.parametrize("fault,status,key_bound,cert_bound,measured", [
    ("other_key", "UpToDate", False, True, True),
    ("stale_nonce", "UpToDate", False, True, True),
    ("wrong_cert", "UpToDate", True, False, True),
    ("tcb_outofdate", "OutOfDate", True, True, True),
    ("measurement", "UpToDate", True, True, False),
])
def test_each_evidence_fault_breaks_exactly_one_check(relay, trust, fault, status, key_bound, cert_bound, measured):
    chute_id = relay.model(MODEL).chute_id
    keys = listed_keys(relay, chute_id)
    relay.evidence_fault = fault
    nonce = secrets.token_hex(32)
    document = evidence(relay, chute_id, nonce)
    assert len(document["evidence"]) == 2 and document["failed_instance_ids"] == []
    for item in document["evidence"]:
        verdict = judge(trust, item, nonce, keys[item["instance_id"]])
        got = (verdict["status"], verdict["key_bound"], verdict["cert_bound"], verdict["measured"])
        assert got == (status, key_bound, cert_bound, measured)
        assert not passes(verdict)


def test_whole_answer_evidence_faults(relay):
    chute_id = relay.model(MODEL).chute_id
    ids = sorted(listed_keys(relay, chute_id))
    relay.evidence_fault = "status_500"
    r = relay.get(f"/chutes/{chute_id}/evidence", nonce=secrets.token_hex(32))
    assert r.status_code == 500 and "detail" in r.json()
    relay.evidence_fault = "malformed"
    r = relay.get(f"/chutes/{chute_id}/evidence", nonce=secrets.token_hex(32))
    assert r.status_code == 200
    with pytest.raises(ValueError):
        json.loads(r.content)
    relay.evidence_fault = "no_instances"
    document = evidence(relay, chute_id, secrets.token_hex(32))
    assert document["evidence"] == [] and sorted(document["failed_instance_ids"]) == ids
    assert relay.evidence_fetches == {chute_id: 3}
    assert [a.status for a in relay.evidence_served] == [500, 200, 200]


@pytest.mark.parametrize("fault", ["other_key", "no_instances"])
def test_an_evidence_fault_can_hit_one_instance(relay, trust, fault):
    chute_id = relay.model(MODEL).chute_id
    keys = listed_keys(relay, chute_id)
    bad, good = sorted(keys)
    relay.evidence_fault, relay.evidence_fault_instances = fault, {bad}
    nonce = secrets.token_hex(32)
    document = evidence(relay, chute_id, nonce)
    verdicts = {e["instance_id"]: passes(judge(trust, e, nonce, keys[e["instance_id"]])) for e in document["evidence"]}
    if fault == "no_instances":
        assert verdicts == {good: True} and document["failed_instance_ids"] == [bad]
    else:
        assert verdicts == {good: True, bad: False} and document["failed_instance_ids"] == []


def test_evidence_delay_is_counted_before_the_wait(relay):
    chute_id = relay.model(MODEL).chute_id
    relay.evidence_delay = 0.5
    started = time.monotonic()
    evidence(relay, chute_id, secrets.token_hex(32))
    assert time.monotonic() - started >= 0.5
    relay.reset()
    assert relay.evidence_delay == 0 and relay.evidence_fault is None and relay.evidence_fault_instances == set()


def test_key_swap_lists_relay_keys_and_the_relay_opens_what_is_sealed_to_them(relay, trust, package_client):
    """A relay in the middle: same instance ids, its own keys. The package (which does not verify) seals to them and
    the relay reads the prompt; the evidence still binds the instance's own key, so a verifier sees the swap."""
    chute_id = relay.model(MODEL).chute_id
    honest = listed_keys(relay, chute_id)
    relay.swap_key = True
    swapped = listed_keys(relay, chute_id)
    assert set(swapped) == set(honest) and all(swapped[i] != honest[i] for i in honest)
    assert listed_keys(relay, chute_id) == swapped, "one relay key per instance while the swap lasts"
    assert {i: base64.b64encode(pk).decode() for i, (pk, _) in relay.relay_keys.items()} == swapped
    nonce = secrets.token_hex(32)
    for item in evidence(relay, chute_id, nonce)["evidence"]:
        assert passes(judge(trust, item, nonce, honest[item["instance_id"]]))
        assert not judge(trust, item, nonce, swapped[item["instance_id"]])["key_bound"]
    body = {"model": MODEL, "messages": [{"role": "user", "content": "read by the relay"}]}
    r = package_client.post("https://llm.invalid/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "Echo: read by the relay"
    assert [p["messages"] for p in relay.relay_decrypted] == [body["messages"]]
    assert [i.sealed_to for i in relay.invocations] == ["relay"]
    relay.reset()
    assert relay.swap_key is False and relay.relay_keys == {} and relay.relay_decrypted == []
    assert listed_keys(relay, chute_id) == honest
