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
from test_chutes import write_ca_and_leaf

KEY = "cpk-stubproof-" + secrets.token_hex(8)


@pytest.fixture(scope="module")
def e2e_stub(tmp_path_factory):
    ca, leaf, leaf_key = write_ca_and_leaf(tmp_path_factory.mktemp("chutes-e2ee-stub"))
    stub = ChutesE2EEStub(KEY, leaf, leaf_key).start()
    stub.ca_path = ca
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
