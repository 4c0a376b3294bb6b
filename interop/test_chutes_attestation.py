"""SPEC §7.2, the attested chain to Chutes instances: the real proxy binary against the Chutes E2EE stand-in
(chutes_e2ee_stub.py), whose evidence test_chutes_e2ee_stub.py proves with dcap-qvl 0.7.0 and hashlib.

An instance key is used only after the instance's TDX quote verified (synthetic PKI, collateral from the stand-in's
PCCS) and its report data bound a fresh nonce, the listed key and its certificate; anything else is
`502 chutes_attestation_failed` with nothing sent. Receipts name the quote; `/v1/attestation/chain` is the signed
statement, checked here with eth-account and cryptography over Python's own canonical JSON.

Where the proxy's cache of verified keys matters, a test starts a proxy of its own (stopped again at its end).
"""

from __future__ import annotations

import concurrent.futures
import datetime
import hashlib
import json
import re
import secrets
import threading
import time
import uuid

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from eth_account import Account
from eth_account.messages import encode_defunct

from chutes_e2ee_stub import ChutesE2EEStub
from conftest import TIMEOUT, ProxyClient
from helpers import (HEX64, assert_error, chat_body, sha256_hex, sse_events, verify_ecdsa_receipt,
                     verify_ed25519_receipt)
from test_chutes_e2ee import KEY, assert_no_plaintext, e2ee_env

CHAT = "/v1/chutes/chat/completions"
CHAIN = "/v1/attestation/chain"
MODEL = "stub-e2e-model"
PLAIN_MODEL = "stub-plain-model"  # listed without confidential_compute
OTHER_MODELS = ("stub-e2e-exhaust", "stub-e2e-expiry")  # confidential chutes no other test here touches first
TTL = {"CHUTES_ATTESTATION_TTL_SECONDS": "60"}
RFC3339_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|\+00:00)")
QUOTE_REPORT_DATA = 48 + 520  # v4 quote: 48-byte header, report data at the end of the 584-byte TD report
EVIDENCE_FAULTS = ["other_key", "stale_nonce", "wrong_cert", "tcb_outofdate", "measurement", "status_500",
                   "malformed", "no_instances"]


def unique(label: str) -> str:
    return f"{label} {uuid.uuid4().hex[:12]}"


def canonical(value) -> str:
    """SPEC §7.2's canonical JSON: exactly Python's."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def relay(stack):
    stub = ChutesE2EEStub.started(KEY, stack.tmp)
    yield stub
    stub.stop()


@pytest.fixture
def fresh(relay):
    """No faults, no logs, default nonce supply; instance keys (and the proxies' verified cache of them) stay."""
    relay.reset()
    relay.nonces_per_instance, relay.nonce_expires_in, relay.done_encrypted = 4, 55.0, False
    yield relay
    relay.reset()


@pytest.fixture(scope="module")
def proxy_verified(stack, relay) -> ProxyClient:
    return stack.start_proxy("chutes-attest-proxy", **e2ee_env(relay, **TTL))


@pytest.fixture(scope="module")
def proxy_chain_faults(stack, relay) -> ProxyClient:
    """For /v1/attestation/chain with faulty evidence: each case on a chute of its own (no cache, no back-off)."""
    return stack.start_proxy("chutes-attest-chain-faults-proxy", **e2ee_env(relay, **TTL))


@pytest.fixture
def new_proxy(stack, relay):
    """start(label, drop=(...), **env): a proxy of this test's own (cold cache), stopped at the test's end."""
    started: list[ProxyClient] = []

    def start(label: str, drop: tuple[str, ...] = (), **extra: str) -> ProxyClient:
        env = e2ee_env(relay, **{**TTL, **extra})
        for name in drop:
            env.pop(name, None)
        client = stack.start_proxy(f"chutes-attest-{label}-{uuid.uuid4().hex[:6]}", **env)
        started.append(client)
        return client

    yield start
    for client in started:
        client.process.stop()


# ---------------------------------------------------------------- helpers


def chat(proxy: ProxyClient, text: str, stream: bool = False, model: str = MODEL) -> tuple[requests.Response, str | None]:
    """One chat through the proxy: (response, chat id of a 200 answer). Checks the echoed text on success."""
    body = chat_body(text, stream=stream, model=model)
    if not stream:
        r = proxy.post(CHAT, body)
        if r.status_code != 200:
            return r, None
        assert r.json()["choices"][0]["message"]["content"] == f"Echo: {text}"
        return r, r.json()["id"]
    r, raw = proxy.post_stream(CHAT, body)
    if r.status_code != 200:
        r._content = raw  # so assert_error can read the body
        return r, None
    events = sse_events(raw)
    assert events[-1] == b"[DONE]", raw[-500:]
    chunks = [json.loads(e) for e in events[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices")) == f"Echo: {text}"
    return r, chunks[0]["id"]


def signature_record(proxy: ProxyClient, chat_id: str, algo: str) -> dict:
    r = proxy.signature(chat_id, algo)
    assert r.status_code == 200, r.text
    return r.json()


def chutes_attestation(proxy: ProxyClient, chat_id: str, algo: str = "ecdsa") -> dict:
    """`chutes_attestation` of a receipt: from `record` (preferred) or the top level; equal where both are given.
    Where `record_signature` is served, it is checked too (it is what authenticates the record's fields)."""
    body = signature_record(proxy, chat_id, algo)
    record = body.get("record")
    found = [v for v in ((record or {}).get("chutes_attestation"), body.get("chutes_attestation")) if v is not None]
    assert found, f"no chutes_attestation in {body}"
    assert all(v == found[0] for v in found), body
    if record is not None and body.get("record_signature"):
        check_signed(canonical(record), body["record_signature"], algo, body["signing_address"])
    if algo == "ecdsa":
        verify_ecdsa_receipt(body["text"], body["signature"], body["signing_address"])
    else:
        verify_ed25519_receipt(body["text"], body["signature"], body["signing_address"])
    return found[0]


def check_signed(text: str, signature: str, algo: str, address: str) -> None:
    """SPEC §5's algorithms, verified independently: EIP-191 text with eth-account, Ed25519 with cryptography."""
    if algo == "ecdsa":
        assert Account.recover_message(encode_defunct(text=text), signature=signature) == address
    else:
        assert algo == "ed25519", algo
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(address)).verify(bytes.fromhex(signature), text.encode())


def assert_verified_attestation(relay, attestation: dict, instance_id: str) -> None:
    assert set(attestation) == {"verified", "instance_id", "mr_td", "tcb_status", "quote_sha256", "verified_at"}, \
        attestation
    assert attestation["verified"] is True
    assert attestation["instance_id"] == instance_id
    assert attestation["mr_td"] == relay.good_measurements["mr_td"].hex()
    assert attestation["tcb_status"] == "UpToDate"
    assert attestation["quote_sha256"] in {sha256_hex(q) for q in relay.served_quotes(instance_id)}
    assert RFC3339_UTC.fullmatch(attestation["verified_at"]), attestation["verified_at"]
    at = datetime.datetime.fromisoformat(attestation["verified_at"].replace("Z", "+00:00"))
    assert relay.tdx_now - 1 <= at.timestamp() <= time.time() + 5


def invoked_instances(relay) -> list[str]:
    return [i.headers["x-instance-id"] for i in relay.invocations]


def evidence_nonces_are_fresh(relay) -> None:
    assert all(re.fullmatch(r"[0-9a-f]{64}", n) for n in relay.evidence_nonces), relay.evidence_nonces
    assert len(set(relay.evidence_nonces)) == len(relay.evidence_nonces), "an evidence nonce was used twice"


# ---------------------------------------------------------------- a. the verified path


@pytest.mark.parametrize("stream", [False, True])
def test_a_verified_instance_answers_and_the_receipt_names_its_quote(fresh, proxy_verified, stream):
    text = unique("attested secret")
    r, chat_id = chat(proxy_verified, text, stream=stream)
    assert r.status_code == 200, r.text
    assert r.headers["X-Proxy-Upstream-Transport"] == "e2ee"
    assert [i.status for i in fresh.invocations] == [200]
    assert [i.sealed_to for i in fresh.invocations] == ["instance"]
    (instance_id,) = invoked_instances(fresh)
    for algo in ("ecdsa", "ed25519"):
        record = signature_record(proxy_verified, chat_id, algo)
        assert (record.get("record") or record)["chutes_instance_id"] == instance_id
        assert_verified_attestation(fresh, chutes_attestation(proxy_verified, chat_id, algo), instance_id)
    evidence_nonces_are_fresh(fresh)
    assert_no_plaintext(fresh, text, f"Echo: {text}")


def test_a_verification_fetches_evidence_with_a_fresh_nonce_once_per_chute(fresh, new_proxy):
    proxy = new_proxy("cold")
    chute_id = fresh.model(MODEL).chute_id
    for n in range(3):
        assert chat(proxy, unique(f"cold {n}"), stream=n == 1)[0].status_code == 200
    assert fresh.evidence_fetches == {chute_id: 1}, "verified keys are cached (TTL 60 s)"
    evidence_nonces_are_fresh(fresh)
    assert fresh.pccs_requests(), "the collateral came from PCCS_URL"


# ---------------------------------------------------------------- b. faulty evidence: nothing is sent


@pytest.mark.parametrize("fault", EVIDENCE_FAULTS)
def test_b_faulty_evidence_is_a_502_and_nothing_is_sent(fresh, new_proxy, fault):
    proxy = new_proxy(f"fault-{fault.replace('_', '-')}")
    fresh.evidence_fault = fault
    r, _ = chat(proxy, unique("must not leave the proxy"))
    assert_error(r, 502, "chutes_attestation_failed")
    r, _ = chat(proxy, unique("must not leave the proxy either"), stream=True)
    assert_error(r, 502, "chutes_attestation_failed")
    assert fresh.invocations == [], f"{fault}: an invoke reached the relay"
    assert fresh.evidence_fetches.get(fresh.model(MODEL).chute_id, 0) >= 1, "no evidence was asked for"
    evidence_nonces_are_fresh(fresh)


# ---------------------------------------------------------------- c. one good instance, one bad


@pytest.mark.parametrize("fault", ["other_key", "no_instances"])
def test_c_only_the_verified_instance_is_used(fresh, new_proxy, fault):
    proxy = new_proxy(f"one-bad-{fault.replace('_', '-')}")
    chute_id = fresh.model(MODEL).chute_id
    bad, good = (i.instance_id for i in fresh.live_instances(chute_id))
    fresh.evidence_fault, fresh.evidence_fault_instances = fault, {bad}
    for n in range(6):
        r, chat_id = chat(proxy, unique(f"good only {n}"), stream=n % 2 == 1)
        assert r.status_code == 200, r.text
        attestation = chutes_attestation(proxy, chat_id)
        assert_verified_attestation(fresh, attestation, good)
    assert set(invoked_instances(fresh)) == {good}, "an invoke went to the instance that failed verification"
    assert all(i.status == 200 for i in fresh.invocations)


# ---------------------------------------------------------------- d. a relay swapping the keys it lists


def test_d_key_swap_after_verification_is_refused_without_sending(fresh, new_proxy):
    proxy = new_proxy("swap-after")
    fresh.nonce_expires_in = 3.0  # so the proxy must list again (and see the swapped keys) for the second request
    r, chat_id = chat(proxy, unique("before the swap"))
    assert r.status_code == 200, r.text
    assert chutes_attestation(proxy, chat_id)["verified"] is True
    assert [i.sealed_to for i in fresh.invocations] == ["instance"]
    fresh.swap_key = True
    time.sleep(3.2)  # every nonce the proxy holds has expired
    for stream in (False, True):
        r, _ = chat(proxy, unique("after the swap"), stream=stream)
        assert_error(r, 502, "chutes_attestation_failed")
    assert fresh.relay_decrypted == [], "the relay opened a request sealed to its own key"
    assert [i.sealed_to for i in fresh.invocations if i.sealed_to != "instance"] == []
    assert fresh.relay_keys, "the proxy never saw the swapped listing"


def test_d_key_swap_on_a_cold_proxy_is_refused_without_sending(fresh, new_proxy):
    proxy = new_proxy("swap-cold")
    fresh.swap_key = True
    r, _ = chat(proxy, unique("never to the relay"))
    assert_error(r, 502, "chutes_attestation_failed")
    assert fresh.relay_decrypted == [] and fresh.invocations == []


# ---------------------------------------------------------------- e. one fetch at a time, back-off after a failure


def test_e_concurrent_requests_to_a_cold_chute_fetch_evidence_once(fresh, new_proxy):
    proxy = new_proxy("concurrent")
    fresh.evidence_delay = 1.0
    fresh.nonces_per_instance = 100  # one listing serves every request: this test is about the evidence fetch
    n = 200
    barrier = threading.Barrier(n)

    def one(i: int) -> tuple[int, str]:
        body = chat_body(f"concurrent {i}", model=MODEL)
        barrier.wait(timeout=60)
        r = requests.post(proxy.base_url + CHAT, data=body, timeout=TIMEOUT,
                          headers={**proxy.auth(), "Content-Type": "application/json"})
        return r.status_code, r.text

    with concurrent.futures.ThreadPoolExecutor(max_workers=n) as pool:
        results = list(pool.map(one, range(n)))
    failures = [(status, text[:300]) for status, text in results if status != 200]
    assert failures == [], f"{len(failures)} of {n} failed, e.g. {failures[:3]}"
    assert fresh.evidence_fetches == {fresh.model(MODEL).chute_id: 1}
    assert len(fresh.invocations) == n and all(i.status == 200 for i in fresh.invocations)


def test_e_a_failed_fetch_is_not_repeated_for_10_seconds(fresh, new_proxy):
    proxy = new_proxy("backoff")
    chute_id = fresh.model(MODEL).chute_id
    fresh.evidence_fault = "status_500"
    r, _ = chat(proxy, unique("first"))
    failed_at = time.monotonic()
    assert_error(r, 502, "chutes_attestation_failed")
    assert fresh.evidence_fetches == {chute_id: 1}
    fresh.evidence_fault = None  # the relay would answer now, but the proxy waits
    r, _ = chat(proxy, unique("within ten seconds"))
    assert_error(r, 502, "chutes_attestation_failed")
    assert fresh.evidence_fetches == {chute_id: 1}, "fetched again within 10 s of a failure"
    assert fresh.invocations == []
    time.sleep(max(0.0, failed_at + 10.5 - time.monotonic()))
    r, _ = chat(proxy, unique("after ten seconds"))
    assert r.status_code == 200, r.text
    assert fresh.evidence_fetches == {chute_id: 2}
    evidence_nonces_are_fresh(fresh)


# ---------------------------------------------------------------- f. configuration


@pytest.mark.parametrize("stream", [False, True])
def test_f_verification_off_works_says_so_and_warns(fresh, new_proxy, stream):
    proxy = new_proxy("unverified", drop=("CHUTES_TDX_MEASUREMENTS_FILE",), CHUTES_VERIFY_ATTESTATION="0")
    warnings = [line for line in proxy.log_path.read_text(errors="replace").splitlines()
                if " warning " in line and ("CHUTES_VERIFY_ATTESTATION" in line
                                            or ("attestation" in line.lower() and "verif" in line.lower()))]
    assert warnings, "no start-up warning that Chutes instances are not verified"
    r, chat_id = chat(proxy, unique("unverified"), stream=stream)
    assert r.status_code == 200, r.text
    for algo in ("ecdsa", "ed25519"):
        assert chutes_attestation(proxy, chat_id, algo) == {"verified": False}


@pytest.mark.parametrize("verify,measurements", [("1", None), (None, "/nonexistent/measurements.json")])
def test_f_verification_without_a_measurement_policy_is_misconfigured(fresh, new_proxy, verify, measurements):
    env = {} if verify is None else {"CHUTES_VERIFY_ATTESTATION": verify}
    if measurements is not None:
        env["CHUTES_TDX_MEASUREMENTS_FILE"] = measurements
    proxy = new_proxy("no-policy", drop=() if measurements else ("CHUTES_TDX_MEASUREMENTS_FILE",), **env)
    for stream in (False, True):
        r, _ = chat(proxy, unique("no policy"), stream=stream)
        error = assert_error(r, 503, "chutes_misconfigured")
        assert "CHUTES_TDX_MEASUREMENTS_FILE" in error["message"], error
        assert KEY not in r.text
    assert fresh.invocations == []
    # The other routes keep serving.
    assert proxy.get("/", auth=False).status_code == 200
    assert proxy.post("/v1/chat/completions", chat_body("vllm still works")).status_code == 200


def test_f_tee_only_verifies_even_with_verification_off(fresh, new_proxy):
    proxy = new_proxy("tee-only-unverified", CHUTES_TEE_ONLY="1", CHUTES_VERIFY_ATTESTATION="0")
    assert_error(chat(proxy, unique("plain"), model=PLAIN_MODEL)[0], 403, "chutes_model_not_confidential")
    fresh.evidence_fault = "other_key"
    assert_error(chat(proxy, unique("forced"))[0], 502, "chutes_attestation_failed")
    assert fresh.invocations == []
    fresh.evidence_fault = None
    model = OTHER_MODELS[1]  # a chute this proxy has not tried yet (no back-off)
    r, chat_id = chat(proxy, unique("forced and fine"), model=model)
    assert r.status_code == 200, r.text
    (instance_id,) = invoked_instances(fresh)
    assert_verified_attestation(fresh, chutes_attestation(proxy, chat_id), instance_id)


# ---------------------------------------------------------------- g. /v1/attestation/chain


def proxy_identity(proxy: ProxyClient, algo: str) -> dict:
    r = proxy.get("/v1/attestation/report", params={"signing_algo": algo})
    assert r.status_code == 200, r.text
    return r.json()


def check_proxy_part(proxy: ProxyClient, part: dict, nonce: str, algo: str) -> dict:
    """`proxy`: this proxy's signing key and its attestation report for the same nonce."""
    identity = proxy_identity(proxy, algo)
    assert set(part) >= {"signing_public_key", "attestation"}, part.keys()
    assert part["signing_public_key"] == identity["signing_public_key"]
    report = part["attestation"]
    assert report["request_nonce"] == nonce
    assert report["signing_algo"] == algo and report["signing_address"] == identity["signing_address"]
    assert report["signing_public_key"] == identity["signing_public_key"]
    quote = bytes.fromhex(report["quote"])
    assert quote[QUOTE_REPORT_DATA + 32:QUOTE_REPORT_DATA + 64] == bytes.fromhex(nonce), "the quote binds the nonce"
    return identity


def check_signed_statement(statement: dict, algo: str, address: str) -> dict:
    assert set(statement) == {"payload", "signing_algo", "signing_address", "signature"}, statement.keys()
    assert statement["signing_algo"] == algo and statement["signing_address"] == address
    check_signed(canonical(statement["payload"]), statement["signature"], algo, address)
    return statement["payload"]


def chain(proxy: ProxyClient, **params) -> requests.Response:
    return proxy.get(CHAIN, params=params)


@pytest.mark.parametrize("algo", ["ecdsa", "ed25519"])
def test_g_chain_proxy_mode_is_a_signed_verification(fresh, proxy_verified, algo):
    nonce = secrets.token_hex(32)
    r = chain(proxy_verified, model=MODEL, nonce=nonce, signing_algo=algo)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["version"] == "1" and body["verify_mode"] == "proxy"
    identity = check_proxy_part(proxy_verified, body["proxy"], nonce, algo)
    payload = check_signed_statement(body["verification_receipt"], algo, identity["signing_address"])
    assert set(payload) == {"result", "model", "nonce", "verification_summary", "instance_results"}, payload
    assert payload["result"] == "pass" and payload["model"] == MODEL and payload["nonce"] == nonce
    live = {i.instance_id for i in fresh.live_instances(fresh.model(MODEL).chute_id)}
    assert payload["verification_summary"] == {"total_instances": len(live), "quote_verified_instances": len(live),
                                               "binding_verified_instances": len(live)}
    assert {i["instance_id"] for i in payload["instance_results"]} == live
    for result in payload["instance_results"]:
        assert set(result) == {"instance_id", "quote_verified", "binding_verified", "tcb_status", "mr_td", "error"}
        assert result["quote_verified"] is True and result["binding_verified"] is True
        assert result["tcb_status"] == "UpToDate" and result["error"] is None
        assert result["mr_td"] == fresh.good_measurements["mr_td"].hex()
    assert fresh.evidence_nonces == [nonce], "the proxy verifies the instances for the client's nonce"


@pytest.mark.parametrize("algo", ["ecdsa", "ed25519"])
def test_g_chain_passthrough_carries_the_evidence_as_received(fresh, proxy_verified, algo):
    nonce = secrets.token_hex(32)
    r = chain(proxy_verified, model=MODEL, nonce=nonce, signing_algo=algo, verify_mode="passthrough")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["version"] == "1" and body["verify_mode"] == "passthrough"
    identity = check_proxy_part(proxy_verified, body["proxy"], nonce, algo)
    (served,) = [a for a in fresh.evidence_served if a.nonce == nonce]
    upstream = body["upstream"]
    assert upstream["attestation"] == json.loads(served.body)
    digest = hashlib.sha256(canonical(upstream["attestation"]).encode()).hexdigest()
    assert upstream["attestation_sha256"] == digest
    payload = check_signed_statement(body["binding_proof"], algo, identity["signing_address"])
    assert payload == {"nonce": nonce, "model": MODEL, "upstream_attestation_sha256": digest}


def test_g_chain_without_a_nonce_picks_one(fresh, proxy_verified):
    r = chain(proxy_verified, model=MODEL)
    assert r.status_code == 200, r.text
    payload = r.json()["verification_receipt"]["payload"]
    assert HEX64.fullmatch(payload["nonce"]) and payload["result"] == "pass"
    assert r.json()["proxy"]["attestation"]["request_nonce"] == payload["nonce"]


def test_g_chain_refusals(fresh, proxy_verified):
    nonce = secrets.token_hex(32)
    assert proxy_verified.get(CHAIN, params={"model": MODEL, "nonce": nonce}, auth=False).status_code == 401
    assert_error(chain(proxy_verified, model="no-such-model", nonce=nonce), 404, "model_not_found")
    assert_error(chain(proxy_verified, model="stub-model", nonce=nonce), 404, "model_not_found")  # vLLM's model
    assert_error(chain(proxy_verified, model=MODEL, nonce=nonce, verify_mode="trust-me"), 400)
    assert_error(chain(proxy_verified, model=MODEL, nonce="00" * 31), 400)
    assert_error(chain(proxy_verified, model=MODEL, nonce=nonce, signing_algo="rsa"), 400, "invalid_signing_algo")
    assert fresh.invocations == []


@pytest.mark.parametrize("fault,model", [("other_key", MODEL), ("tcb_outofdate", OTHER_MODELS[0]),
                                         ("measurement", OTHER_MODELS[1])])
def test_g_chain_reports_a_failed_verification(fresh, proxy_chain_faults, fault, model):
    fresh.evidence_fault = fault
    nonce = secrets.token_hex(32)
    r = chain(proxy_chain_faults, model=model, nonce=nonce)
    assert r.status_code == 200, r.text
    identity = proxy_identity(proxy_chain_faults, "ecdsa")
    payload = check_signed_statement(r.json()["verification_receipt"], "ecdsa", identity["signing_address"])
    assert payload["result"] == "fail" and payload["nonce"] == nonce and payload["model"] == model
    summary = payload["verification_summary"]
    assert summary["total_instances"] == 2
    if fault == "other_key":
        assert summary == {"total_instances": 2, "quote_verified_instances": 2, "binding_verified_instances": 0}
    for result in payload["instance_results"]:
        assert isinstance(result["error"], str) and result["error"], result
    if fault == "tcb_outofdate":
        assert {i["tcb_status"] for i in payload["instance_results"]} == {"OutOfDate"}


def test_g_chain_evidence_unavailable_is_a_502(fresh, new_proxy):
    proxy = new_proxy("chain-500")
    fresh.evidence_fault = "status_500"
    for mode in ("proxy", "passthrough"):
        r = chain(proxy, model=MODEL, nonce=secrets.token_hex(32), verify_mode=mode)
        assert_error(r, 502, "chutes_attestation_failed")
