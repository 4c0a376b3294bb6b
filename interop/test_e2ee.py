"""SPEC §4 on the wire: the real proxy driven by an independent Python E2EE client (e2ee_client.py).

First the client is checked against the known-answer vectors (so a failure below is the proxy's, not the
client's); then round trips through the running binary, AAD binding, structured content, every error of
the validation table, replay protection, and receipts over the ciphertext bytes.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from e2ee_client import (
    ALGOS,
    SECP256K1_P,
    E2EEClient,
    decrypt_field,
    ed25519_non_point,
    ed25519_public_to_x25519,
    ed25519_seed_to_x25519_private,
    encrypt_field,
    hkdf_key,
    request_aad,
    secp256k1_off_curve,
    shared_secret,
    split_field,
    x25519_public,
)
from helpers import assert_error, sha256_hex, sse_events, text_body, verify_ecdsa_receipt, verify_ed25519_receipt

CHAT = "/v1/chat/completions"
TEXT = "/v1/completions"
REPLAY_WINDOW = 300  # E2EE_REPLAY_WINDOW_SECONDS default; the conftest proxy does not set it
VECTORS_PATH = Path(__file__).resolve().parent.parent / "Tests" / "Vectors" / "e2ee.json"
VECTORS = json.loads(VECTORS_PATH.read_text())
E2EE_HEADERS = ("X-Signing-Algo", "X-Client-Pub-Key", "X-Model-Pub-Key", "X-E2EE-Version", "X-E2EE-Nonce", "X-E2EE-Timestamp")
PNG = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="


def unique(label: str) -> str:
    return f"{label} ✓ {uuid.uuid4()}"


# ---------------------------------------------------------------- 1. the client against the vectors


def vector_id(case: dict) -> str:
    return f"{case['algo']}-{case['direction']}-{'v2' if case['aad'] else 'v1'}"


def vector_keys(case: dict) -> tuple[bytes, bytes]:
    """(recipient's wire public key, recipient's private key): the server for requests, the client for responses."""
    party = VECTORS["server" if case["direction"] == "request" else "client"]
    if case["algo"] == "ecdsa":
        return bytes.fromhex(party["secp256k1_public_key_64"]), bytes.fromhex(party["secp256k1_private_key"])
    return bytes.fromhex(party["ed25519_public_key"]), bytes.fromhex(party["ed25519_seed"])


@pytest.mark.parametrize("party", ["server", "client"])
def test_vectors_keys_and_x25519_conversion(party):
    keys = VECTORS[party]
    seed = bytes.fromhex(keys["ed25519_seed"])
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    assert public.hex() == keys["ed25519_public_key"]
    x_private = ed25519_seed_to_x25519_private(seed)
    assert x_private.hex() == keys["x25519_private_from_ed25519"]
    assert ed25519_public_to_x25519(public).hex() == keys["x25519_public_from_ed25519"]
    # The birational map agrees with the scalar: the converted private key's X25519 public is the converted public.
    assert x25519_public(x_private).hex() == keys["x25519_public_from_ed25519"]

    scalar = int(keys["secp256k1_private_key"], 16)
    numbers = ec.derive_private_key(scalar, ec.SECP256K1()).public_key().public_numbers()
    assert (numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big")).hex() == keys["secp256k1_public_key_64"]


@pytest.mark.parametrize("case", VECTORS["cases"], ids=vector_id)
def test_vectors_reproduced_and_decrypted(case):
    algo, aad = case["algo"], case["aad"]
    recipient_public, recipient_private = vector_keys(case)
    ephemeral_private = bytes.fromhex(case["ephemeral_private"])
    if algo == "ecdsa":
        numbers = ec.derive_private_key(int.from_bytes(ephemeral_private, "big"), ec.SECP256K1()).public_key().public_numbers()
        ephemeral_public = b"\x04" + numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big")
        peer = recipient_public
    else:
        ephemeral_public = x25519_public(ephemeral_private)
        peer = ed25519_public_to_x25519(recipient_public)
    assert ephemeral_public.hex() == case["ephemeral_public"]

    secret = shared_secret(algo, ephemeral_private, peer)
    assert secret.hex() == case["shared_secret"]
    # The recipient reaches the same secret from its own key and the ephemeral public key.
    own = recipient_private if algo == "ecdsa" else ed25519_seed_to_x25519_private(recipient_private)
    assert shared_secret(algo, own, ephemeral_public) == secret
    assert hkdf_key(secret, algo).hex() == case["aes_key"]

    field = encrypt_field(
        algo, recipient_public, case["plaintext"], aad,
        ephemeral_private=ephemeral_private, nonce=bytes.fromhex(case["gcm_nonce"]),
    )
    assert field == case["ciphertext_field_hex"]
    ephemeral, nonce, _ = split_field(algo, field)
    assert ephemeral.hex() == case["ephemeral_public"] and nonce.hex() == case["gcm_nonce"]

    assert decrypt_field(algo, recipient_private, case["ciphertext_field_hex"], aad).decode() == case["plaintext"]
    wrong_aad = None if aad else "v2|req|algo=x"
    with pytest.raises(InvalidTag):
        decrypt_field(algo, recipient_private, case["ciphertext_field_hex"], wrong_aad)


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="session")
def model_keys(proxy) -> dict[str, bytes]:
    """The proxy's keys as X-Model-Pub-Key carries them, from its attestation report (SPEC §4, §6)."""
    keys = {}
    for algo in ALGOS:
        r = proxy.get("/v1/attestation/report", params={"signing_algo": algo})
        assert r.status_code == 200, r.text
        report = r.json()
        key = bytes.fromhex(report["signing_public_key"])
        if algo == "ed25519":
            assert key == bytes.fromhex(report["signing_address"])
            assert len(key) == 32
        else:
            assert len(key) == 64
        keys[algo] = key
    return keys


@pytest.fixture
def make_client(model_keys):
    def make(algo: str, version: int = 2) -> E2EEClient:
        return E2EEClient(algo=algo, version=version, model_public=model_keys[algo])

    return make


def encode(body: dict) -> bytes:
    return json.dumps(body).encode()


def chat(model: str, *contents, stream: bool = False) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": c} for c in contents]}
    if stream:
        body["stream"] = True
    return body


def without_cache_salt(body: dict) -> dict:
    """SPEC §4: every v1/v2 request goes upstream with a fresh random `cache_salt` (the prefix cache is an
    oracle); checked here and removed, so the rest can be compared with what the client sent."""
    salt = body.pop("cache_salt", None)
    assert salt is None or re.fullmatch(r"[0-9a-f]{64}", salt), salt
    return body


def forwarded(stub, path: str = CHAT) -> list[dict]:
    return [without_cache_salt(json.loads(entry["body"])) for entry in stub.requests() if entry["path"] == path]


def assert_refused(stub, r, error_type: str) -> dict:
    """SPEC §4: each validation failure is a 400 with the given type, and nothing reaches the upstream."""
    error = assert_error(r, 400, error_type)
    assert stub.requests() == [], "a refused E2EE request must not reach vLLM"
    return error


def check_receipt(proxy, chat_id: str, expected_text: str) -> None:
    """SPEC §5: both signatures over `{sha256(request bytes)}:{sha256(response bytes)}`, verified independently."""
    for algo, verify in (("ecdsa", verify_ecdsa_receipt), ("ed25519", verify_ed25519_receipt)):
        r = proxy.signature(chat_id, algo)
        assert r.status_code == 200, r.text
        record = r.json()
        assert record["signing_algo"] == algo and record["upstream"] == "vllm"
        assert record["text"] == expected_text
        verify(record["text"], record["signature"], record["signing_address"])


def assert_e2ee_headers(r, client: E2EEClient) -> None:
    assert r.headers.get("X-E2EE-Applied") == "true", dict(r.headers)
    assert r.headers.get("X-E2EE-Version") == str(client.version), dict(r.headers)
    assert r.headers.get("X-E2EE-Algo") == client.algo, dict(r.headers)


def post(proxy, body: bytes, headers: dict, path: str = CHAT):
    return proxy.post(path, body, headers=headers)


def stream_chunks(raw: bytes) -> list[dict]:
    events = sse_events(raw)
    assert events[-1] == b"[DONE]", events[-3:]
    return [json.loads(event) for event in events[:-1]]


def valid_request(make_client, algo: str, version: int = 2) -> tuple[E2EEClient, bytes, dict]:
    client = make_client(algo, version)
    body = encode(client.encrypt_body(chat("stub-model", unique("valid"))))
    return client, body, client.headers()


# ---------------------------------------------------------------- 2. round trips through the real binary


@pytest.mark.parametrize("model", ["stub-model", "stub-reasoning"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("version", [1, 2], ids=["v1", "v2"])
@pytest.mark.parametrize("algo", ALGOS)
def test_round_trip(proxy, stub, make_client, algo, version, stream, model):
    client = make_client(algo, version)
    system, text = unique("be brief"), unique("héllo TEE")
    plain = {
        "model": model,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": text}],
    }
    if stream:
        plain["stream"] = True
    body = encode(client.encrypt_body(plain))
    assert text.encode() not in body and system.split()[-1].encode() not in body

    if stream:
        r, raw = proxy.post_stream(CHAT, body, headers=client.headers())
    else:
        r = post(proxy, body, client.headers())
        raw = r.content
    assert r.status_code == 200, raw[:500]
    assert_e2ee_headers(r, client)

    # vLLM received the plaintext, and nothing sealed.
    (upstream,) = [entry for entry in stub.requests() if entry["path"] == CHAT]
    sent = json.loads(upstream["body"])
    assert isinstance(sent.get("cache_salt"), str)
    assert without_cache_salt(sent) == plain
    sealed_fields = [m["content"] for m in json.loads(body)["messages"]]
    assert not any(f in upstream["body"] for f in sealed_fields), "ciphertext must not reach vLLM"

    # The client received no plaintext.
    marker = text.split()[-1]  # the uuid
    assert marker.encode() not in raw and b"Echo" not in raw and b"Thinking" not in raw, raw[:500]

    reasoning = model == "stub-reasoning"
    expected = {"content": "Echo: " + text}
    if reasoning:
        expected |= {"reasoning_content": "Thinking about: " + text, "reasoning": "Thinking about: " + text}

    if not stream:
        response = json.loads(raw)
        assert response["id"] == "chatcmpl-stub-" + sha256_hex(upstream["body"].encode())[:24]
        opened = client.open_choices(response, "message")
        assert {(choice, name) for choice, name, _, _ in opened} == {(0, name) for name in expected}
        assert {name: plaintext for _, name, _, plaintext in opened} == expected
        # One fresh ephemeral key per response, a fresh nonce per field (SPEC §4).
        ephemerals = {split_field(algo, sealed)[0] for _, _, sealed, _ in opened}
        nonces = {split_field(algo, sealed)[1] for _, _, sealed, _ in opened}
        assert len(ephemerals) == 1 and len(nonces) == len(opened)
        assert response["choices"][0]["message"]["role"] == "assistant"
        chat_id = response["id"]
    else:
        assert r.headers["Content-Type"].split(";")[0].strip() == "text/event-stream"
        chunks = stream_chunks(raw)
        chat_id = chunks[0]["id"]
        assert {chunk["id"] for chunk in chunks} == {chat_id}
        # The stub's first delta is {"role": "assistant", "content": ""}: the empty content is removed.
        assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}, chunks[0]
        joined = {name: "" for name in expected}
        nonces, ephemerals = [], set()
        for chunk in chunks:
            delta = chunk["choices"][0]["delta"]
            assert delta.get("content") != "", chunk
            for choice, name, sealed, plaintext in client.open_choices(chunk, "delta"):
                assert choice == 0
                joined[name] += plaintext
                nonces.append(split_field(algo, sealed)[1])
                ephemerals.add(split_field(algo, sealed)[0])
        assert joined == expected
        assert len(ephemerals) == 1, "one fresh ephemeral key per response (the whole stream)"
        assert len(set(nonces)) == len(nonces), "a fresh GCM nonce per sealed field"
        assert chunks[-1]["choices"][0]["finish_reason"] == "stop"

    check_receipt(proxy, chat_id, f"{sha256_hex(body)}:{sha256_hex(raw)}")


@pytest.mark.parametrize("algo", ALGOS)
def test_responses_get_fresh_ephemeral_keys(proxy, stub, make_client, algo):
    client = make_client(algo, 1)
    ephemerals = set()
    for _ in range(2):
        r = post(proxy, encode(client.encrypt_body(chat("stub-model", unique("again")))), client.headers())
        assert r.status_code == 200, r.text
        ((_, _, sealed, _),) = client.open_choices(r.json(), "message")
        ephemerals.add(split_field(algo, sealed)[0])
    assert len(ephemerals) == 2


def test_algo_header_is_case_insensitive(proxy, stub, make_client):
    client = make_client("ed25519", 1)
    text = unique("case")
    headers = client.headers() | {"X-Signing-Algo": "Ed25519"}
    r = post(proxy, encode(client.encrypt_body(chat("stub-model", text))), headers)
    assert r.status_code == 200, r.text
    assert r.headers.get("X-E2EE-Algo") == "ed25519"
    ((_, _, _, plaintext),) = client.open_choices(r.json(), "message")
    assert plaintext == "Echo: " + text


@pytest.mark.parametrize("which", ["client", "model", "both"])
def test_ecdsa_keys_accepted_in_04_prefixed_form(proxy, stub, make_client, which):
    client = make_client("ecdsa", 2)
    text = unique("prefixed")
    headers = client.headers()
    if which in ("client", "both"):
        headers["X-Client-Pub-Key"] = "04" + headers["X-Client-Pub-Key"]
    if which in ("model", "both"):
        headers["X-Model-Pub-Key"] = "04" + headers["X-Model-Pub-Key"]
    r = post(proxy, encode(client.encrypt_body(chat("stub-model", text))), headers)
    assert r.status_code == 200, r.text
    ((_, _, _, plaintext),) = client.open_choices(r.json(), "message")
    assert plaintext == "Echo: " + text


@pytest.mark.parametrize("algo", ALGOS)
def test_uppercase_hex_keys_accepted(proxy, stub, make_client, algo):
    client = make_client(algo, 1)
    text = unique("upper")
    headers = client.headers()
    headers["X-Client-Pub-Key"] = headers["X-Client-Pub-Key"].upper()
    headers["X-Model-Pub-Key"] = headers["X-Model-Pub-Key"].upper()
    r = post(proxy, encode(client.encrypt_body(chat("stub-model", text))), headers)
    assert r.status_code == 200, r.text
    ((_, _, _, plaintext),) = client.open_choices(r.json(), "message")
    assert plaintext == "Echo: " + text


@pytest.mark.parametrize(
    "variant", ["version-header-only", "nonce-and-timestamp-only", "explicit-v1", "v1-header-with-nonce-and-timestamp"]
)
def test_version_selection(proxy, stub, make_client, variant):
    """SPEC §4: v2 when X-E2EE-Version: 2 or when both nonce and timestamp are present; else v1."""
    version = 1 if variant == "explicit-v1" else 2
    client = make_client("ecdsa", version)
    text = unique("version")
    headers = client.headers()
    if variant == "nonce-and-timestamp-only":
        del headers["X-E2EE-Version"]
    if variant == "explicit-v1":
        headers["X-E2EE-Version"] = "1"
    if variant == "v1-header-with-nonce-and-timestamp":
        headers["X-E2EE-Version"] = "1"  # both present → version 2, whatever the header says
    r = post(proxy, encode(client.encrypt_body(chat("stub-model", text))), headers)
    assert r.status_code == 200, r.text
    assert_e2ee_headers(r, client)
    ((_, _, _, plaintext),) = client.open_choices(r.json(), "message")
    assert plaintext == "Echo: " + text


def test_plain_request_is_not_encrypted(proxy, stub):
    text = unique("plain")
    r = post(proxy, encode(chat("stub-model", text)), {})
    assert r.status_code == 200
    assert r.headers.get("X-E2EE-Applied") == "false"
    assert r.json()["choices"][0]["message"]["content"] == "Echo: " + text


@pytest.mark.parametrize("header", ["X-E2EE-Version", "X-E2EE-Nonce", "X-E2EE-Timestamp"])
def test_version_headers_without_key_headers_mean_plain(proxy, stub, make_client, header):
    """SPEC §4: mode selection looks at the three key headers only; none of them → plain."""
    text = unique("plain after all")
    value = make_client("ecdsa", 2).headers()[header]
    r = post(proxy, encode(chat("stub-model", text)), {header: value})
    assert r.status_code == 200, r.text
    assert r.headers.get("X-E2EE-Applied") == "false"
    assert r.json()["choices"][0]["message"]["content"] == "Echo: " + text


@pytest.mark.parametrize("algo", ALGOS)
def test_upstream_error_keeps_its_status_not_its_body_under_e2ee(proxy, stub, make_client, algo):
    """SPEC §4: a non-2xx upstream answer keeps its status; its body (which may echo the request) is replaced."""
    client = make_client(algo, 2)
    body = encode(client.encrypt_body(chat("stub-error-422", unique("fail upstream"))))
    r = post(proxy, body, client.headers())
    error = assert_error(r, 422, "upstream_error")
    assert error["message"] == "Upstream answered 422"
    assert_e2ee_headers(r, client)


# ---------------------------------------------------------------- 3. AAD binding


def sealed_request(client: E2EEClient, aad_changes: dict, *, message_count: int = 1) -> tuple[bytes, str]:
    """A v2 body whose last message was sealed under an AAD with some parts changed (model, m, c, n, ts, algo)."""
    text = unique("bound")
    parts = {
        "algo": client.algo, "model": "stub-model", "message": message_count - 1, "item": None,
        "nonce": client.nonce, "timestamp": client.timestamp,
    } | aad_changes
    messages = [
        {"role": "user", "content": client.seal(unique("earlier"), "stub-model", i, None)}
        for i in range(message_count - 1)
    ]
    aad = request_aad(parts["algo"], parts["model"], parts["message"], parts["item"], parts["nonce"], parts["timestamp"])
    messages.append({"role": "user", "content": encrypt_field(client.algo, client.model_public, text, aad)})
    return encode({"model": "stub-model", "messages": messages}), text


@pytest.mark.parametrize(
    "changes,message_count",
    [
        ({"model": "other-model"}, 1),
        ({"message": 0}, 2),
        ({"message": 1}, 1),
        ({"item": 0}, 1),
        ({"nonce": "ffffffffffffffffffff"}, 1),
        ({"timestamp": "1700000000"}, 1),
        ({"algo": "ed25519"}, 1),
    ],
    ids=["model", "message-index", "message-index-2", "item-index", "nonce", "timestamp", "algo"],
)
@pytest.mark.parametrize("algo", ALGOS)
def test_request_aad_binds(proxy, stub, make_client, algo, changes, message_count):
    client = make_client(algo, 2)
    if changes.get("algo") == algo:
        changes = {"algo": "ecdsa"}
    body, _ = sealed_request(client, changes, message_count=message_count)
    assert_refused(stub, post(proxy, body, client.headers()), "e2ee_decryption_failed")

    # The same request with the right AAD goes through (the refusal did not spend the nonce).
    good, text = sealed_request(client, {}, message_count=message_count)
    r = post(proxy, good, client.headers())
    assert r.status_code == 200, r.text
    ((_, _, _, plaintext),) = client.open_choices(r.json(), "message")
    assert plaintext == "Echo: " + text


@pytest.mark.parametrize("sent_as", [1, 2])
@pytest.mark.parametrize("algo", ALGOS)
def test_request_sealed_for_the_other_version_fails(proxy, stub, make_client, algo, sent_as):
    sealer = make_client(algo, 3 - sent_as)
    sender = E2EEClient(algo=algo, version=sent_as, model_public=sealer.model_public, private=sealer.private)
    sender.nonce, sender.timestamp = sealer.nonce, sealer.timestamp
    body = encode(sealer.encrypt_body(chat("stub-model", unique("version"))))
    assert_refused(stub, post(proxy, body, sender.headers()), "e2ee_decryption_failed")


def wrong_aads(client: E2EEClient, response: dict, choice: int, name: str) -> dict[str, str | None]:
    model, chat_id = response["model"], response["id"]
    other = {"content": "reasoning_content", "reasoning_content": "reasoning", "reasoning": "content"}[name]

    def aad(**kw) -> str:
        args = {"model": model, "chat_id": chat_id, "choice": choice, "field_name": name,
                "nonce": client.nonce, "timestamp": client.timestamp} | kw
        return (f"v2|resp|algo={client.algo}|model={args['model']}|id={args['chat_id']}|choice={args['choice']}"
                f"|field={args['field_name']}|n={args['nonce']}|ts={args['timestamp']}")

    return {
        "field": aad(field_name=other),
        "choice": aad(choice=choice + 1),
        "id": aad(chat_id=chat_id + "x"),
        "model": aad(model=model + "x"),
        "nonce": aad(nonce=client.nonce[::-1]),
        "timestamp": aad(timestamp=str(int(client.timestamp) + 1)),
        "request-aad": f"v2|req|algo={client.algo}|model={model}|m=0|c=-|n={client.nonce}|ts={client.timestamp}",
        "no-aad": None,
    }


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("algo", ALGOS)
def test_response_aad_binds(proxy, stub, make_client, algo, stream):
    client = make_client(algo, 2)
    body = encode(client.encrypt_body(chat("stub-reasoning", unique("bind my answer"), stream=stream)))
    if stream:
        r, raw = proxy.post_stream(CHAT, body, headers=client.headers())
        responses, container = stream_chunks(raw), "delta"
    else:
        r = post(proxy, body, client.headers())
        responses, container = [r.json()], "message"
    assert r.status_code == 200
    checked = set()
    for response in responses:
        for choice, name, sealed, _ in client.open_choices(response, container):
            for what, aad in wrong_aads(client, response, choice, name).items():
                with pytest.raises(InvalidTag):
                    decrypt_field(algo, client.private, sealed, aad)
                checked.add((name, what))
            # Sealed to our key only: another client key cannot open it.
            other = make_client(algo, 2)
            with pytest.raises(InvalidTag):
                decrypt_field(algo, other.private, sealed, client.resp_aad(response["model"], response["id"], choice, name))
    assert {name for name, _ in checked} == {"content", "reasoning_content", "reasoning"}


# ---------------------------------------------------------------- 4. structured content


@pytest.mark.parametrize("version", [1, 2], ids=["v1", "v2"])
@pytest.mark.parametrize("algo", ALGOS)
def test_whole_array_sealed_as_one_string_becomes_structured_content(proxy, stub, make_client, algo, version):
    client = make_client(algo, version)
    text = unique("describe this")
    array = [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": PNG}}]
    body = {"model": "stub-model", "messages": [{"role": "user", "content": client.seal(json.dumps(array), "stub-model", 0, None)}]}
    r = post(proxy, encode(body), client.headers())
    assert r.status_code == 200, r.text
    (upstream,) = forwarded(stub)
    assert upstream["messages"][0]["content"] == array
    ((_, _, _, plaintext),) = client.open_choices(r.json(), "message")
    assert plaintext == "Echo: " + text


@pytest.mark.parametrize("version", [1, 2], ids=["v1", "v2"])
@pytest.mark.parametrize("algo", ALGOS)
def test_array_content_text_items_decrypted_others_untouched(proxy, stub, make_client, algo, version):
    client = make_client(algo, version)
    first, second = unique("first"), unique("second")
    plain_items = [
        {"type": "text", "text": first},
        {"type": "image_url", "image_url": {"url": PNG}},
        {"type": "text", "text": second},
    ]
    plain = {"model": "stub-model", "messages": [{"role": "user", "content": plain_items}]}
    sealed = client.encrypt_body(plain)
    assert sealed["messages"][0]["content"][1] == plain_items[1]
    r = post(proxy, encode(sealed), client.headers())
    assert r.status_code == 200, r.text
    (upstream,) = forwarded(stub)
    assert upstream == plain
    ((_, _, _, plaintext),) = client.open_choices(r.json(), "message")
    assert plaintext == f"Echo: {first} {second}"


@pytest.mark.parametrize("plaintext", ['{"type": "text", "text": "an object"}', "[not json", '"a json string"', "42"])
def test_plaintext_that_is_not_a_json_array_stays_a_string(proxy, stub, make_client, plaintext):
    client = make_client("ecdsa", 2)
    body = {"model": "stub-model", "messages": [{"role": "user", "content": client.seal(plaintext, "stub-model", 0, None)}]}
    r = post(proxy, encode(body), client.headers())
    assert r.status_code == 200, r.text
    (upstream,) = forwarded(stub)
    assert upstream["messages"][0]["content"] == plaintext


@pytest.mark.parametrize("algo", ALGOS)
def test_null_content_and_non_object_messages_pass(proxy, stub, make_client, algo):
    client = make_client(algo, 2)
    text = unique("after the odd ones")
    plain = {
        "model": "stub-model",
        "messages": [
            {"role": "system", "content": unique("system")},
            "not an object",
            {"role": "assistant", "content": None, "tool_calls": [{"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "user", "content": text},
        ],
    }
    r = post(proxy, encode(client.encrypt_body(plain)), client.headers())
    assert r.status_code == 200, r.text
    (upstream,) = forwarded(stub)
    assert upstream == plain
    ((_, _, _, plaintext),) = client.open_choices(r.json(), "message")
    assert plaintext == "Echo: " + text


# ---------------------------------------------------------------- 5. the validation table, in order


def drop(*names):
    return lambda h, c: {k: v for k, v in h.items() if k not in names}


def with_(**values):
    def apply(h, c):
        out = dict(h)
        for key, value in values.items():
            out[key.replace("_", "-")] = value(c) if callable(value) else value
        return out

    return apply


def other_ecdsa_key() -> str:
    numbers = ec.generate_private_key(ec.SECP256K1()).public_key().public_numbers()
    return (numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big")).hex()


def other_ed25519_key() -> str:
    return Ed25519PrivateKey.generate().public_key().public_bytes_raw().hex()


def ecdsa_negated(key_hex: str) -> str:
    """The same x with y → p − y: a valid point, but not the same key."""
    raw = bytes.fromhex(key_hex)
    y = int.from_bytes(raw[32:], "big")
    return (raw[:32] + (SECP256K1_P - y).to_bytes(32, "big")).hex()


def ed25519_sign_flipped(key_hex: str) -> str:
    """The same y with the other x sign: a valid point (same X25519 u), but not the same Ed25519 key."""
    raw = bytearray(bytes.fromhex(key_hex))
    raw[31] ^= 0x80
    return raw.hex()


def now(offset: int = 0) -> str:
    return str(int(time.time()) + offset)


HEADER_MISSING = [
    ("algo-only", drop("X-Client-Pub-Key", "X-Model-Pub-Key")),
    ("client-key-only", drop("X-Signing-Algo", "X-Model-Pub-Key")),
    ("model-key-only", drop("X-Signing-Algo", "X-Client-Pub-Key")),
    ("no-model-key", drop("X-Model-Pub-Key")),
    ("no-client-key", drop("X-Client-Pub-Key")),
    ("no-algo", drop("X-Signing-Algo")),
    ("no-model-key-bad-algo", lambda h, c: drop("X-Model-Pub-Key")(h, c) | {"X-Signing-Algo": "rsa"}),
    ("nonce-without-timestamp", drop("X-E2EE-Timestamp")),
    ("timestamp-without-nonce", drop("X-E2EE-Nonce")),
    ("nonce-without-timestamp-no-version", drop("X-E2EE-Timestamp", "X-E2EE-Version")),
    ("timestamp-without-nonce-no-version", drop("X-E2EE-Nonce", "X-E2EE-Version")),
    ("v2-without-either", drop("X-E2EE-Nonce", "X-E2EE-Timestamp")),
]


@pytest.mark.parametrize("name,mutate", HEADER_MISSING, ids=[n for n, _ in HEADER_MISSING])
@pytest.mark.parametrize("algo", ALGOS)
def test_header_missing(proxy, stub, make_client, algo, name, mutate):
    client, body, headers = valid_request(make_client, algo)
    assert_refused(stub, post(proxy, body, mutate(headers, client)), "e2ee_header_missing")


@pytest.mark.parametrize("value", ["rsa", "secp256k1", "ecdsa2", "ed448", "ed25519x"])
def test_invalid_signing_algo(proxy, stub, make_client, value):
    client, body, headers = valid_request(make_client, "ecdsa")
    headers["X-Signing-Algo"] = value
    assert_refused(stub, post(proxy, body, headers), "e2ee_invalid_signing_algo")


def invalid_keys(algo: str, good_hex: str) -> list[tuple[str, str]]:
    common = [
        ("odd-hex", good_hex[:-1]),
        ("not-hex", "zz" * (len(good_hex) // 2)),
        ("0x-prefixed", "0x" + good_hex[2:]),
        ("one-byte-short", good_hex[:-2]),
        ("one-byte-long", good_hex + "00"),
    ]
    if algo == "ecdsa":
        return common + [
            ("off-curve", secp256k1_off_curve().hex()),
            ("all-zero", "00" * 64),
            ("compressed-33", "02" + good_hex[:64]),
            ("65-bytes-wrong-prefix", "05" + good_hex),
            ("65-bytes-off-curve", "04" + secp256k1_off_curve().hex()),
            ("x-coordinate-too-large", "ff" * 64),
        ]
    return common + [("not-a-point", ed25519_non_point().hex()), ("64-bytes", good_hex * 2)]


def invalid_key_cases():
    for algo in ALGOS:
        placeholder = "11" * (64 if algo == "ecdsa" else 32)
        for label, _ in invalid_keys(algo, placeholder):
            for which in ("X-Client-Pub-Key", "X-Model-Pub-Key"):
                yield pytest.param(algo, label, which, id=f"{algo}-{which}-{label}")


@pytest.mark.parametrize("algo,label,which", list(invalid_key_cases()))
def test_invalid_public_key(proxy, stub, make_client, algo, label, which):
    client, body, headers = valid_request(make_client, algo)
    bad = dict(invalid_keys(algo, headers[which]))[label]
    headers[which] = bad
    assert_refused(stub, post(proxy, body, headers), "e2ee_invalid_public_key")


@pytest.mark.parametrize(
    "algo,variant",
    [("ecdsa", "other-key"), ("ecdsa", "negated-y"), ("ed25519", "other-key"), ("ed25519", "sign-bit-flipped")],
)
def test_model_key_mismatch(proxy, stub, make_client, algo, variant):
    client, body, headers = valid_request(make_client, algo)
    if variant == "other-key":
        headers["X-Model-Pub-Key"] = other_ecdsa_key() if algo == "ecdsa" else other_ed25519_key()
    elif variant == "negated-y":
        headers["X-Model-Pub-Key"] = ecdsa_negated(headers["X-Model-Pub-Key"])
    else:
        headers["X-Model-Pub-Key"] = ed25519_sign_flipped(headers["X-Model-Pub-Key"])
    assert_refused(stub, post(proxy, body, headers), "e2ee_model_key_mismatch")


def test_model_key_of_the_other_algorithm(proxy, stub, make_client, model_keys):
    """The ed25519 key under X-Signing-Algo: ecdsa is a wrong-length ecdsa key; the reverse too."""
    client, body, headers = valid_request(make_client, "ecdsa")
    headers["X-Model-Pub-Key"] = model_keys["ed25519"].hex()
    assert_refused(stub, post(proxy, body, headers), "e2ee_invalid_public_key")


@pytest.mark.parametrize("value", ["4", "0", "abc", "2.0", "v2", "12"])
def test_invalid_version(proxy, stub, make_client, value):
    client, body, headers = valid_request(make_client, "ecdsa")
    headers["X-E2EE-Version"] = value
    assert_refused(stub, post(proxy, body, headers), "e2ee_invalid_version")


@pytest.mark.parametrize("algo", ALGOS)
def test_short_nonce(proxy, stub, make_client, algo):
    client = make_client(algo, 2)
    client.nonce = "0123456789abcde"  # 15 characters
    body = encode(client.encrypt_body(chat("stub-model", unique("short nonce"))))
    assert_refused(stub, post(proxy, body, client.headers()), "e2ee_invalid_nonce")


def test_sixteen_character_nonce_is_enough(proxy, stub, make_client):
    client = make_client("ed25519", 2)
    client.nonce = uuid.uuid4().hex[:16]
    text = unique("nonce of 16")
    r = post(proxy, encode(client.encrypt_body(chat("stub-model", text))), client.headers())
    assert r.status_code == 200, r.text
    ((_, _, _, plaintext),) = client.open_choices(r.json(), "message")
    assert plaintext == "Echo: " + text


@pytest.mark.parametrize(
    "label,timestamp",
    [
        ("not-a-number", lambda: "abc"),
        ("fraction", lambda: now() + ".5"),
        ("hex", lambda: hex(int(time.time()))),
        ("too-old", lambda: now(-REPLAY_WINDOW - 60)),
        ("too-new", lambda: now(REPLAY_WINDOW + 60)),
        ("zero", lambda: "0"),
        ("milliseconds", lambda: str(int(time.time() * 1000))),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
@pytest.mark.parametrize("algo", ALGOS)
def test_bad_timestamp(proxy, stub, make_client, algo, label, timestamp):
    client = make_client(algo, 2)
    client.timestamp = timestamp()
    body = encode(client.encrypt_body(chat("stub-model", unique("when"))))
    assert_refused(stub, post(proxy, body, client.headers()), "e2ee_invalid_timestamp")


@pytest.mark.parametrize("offset", [-(REPLAY_WINDOW - 60), REPLAY_WINDOW - 60])
def test_timestamp_inside_the_window_is_accepted(proxy, stub, make_client, offset):
    client = make_client("ecdsa", 2)
    client.timestamp = now(offset)
    text = unique("skewed clock")
    r = post(proxy, encode(client.encrypt_body(chat("stub-model", text))), client.headers())
    assert r.status_code == 200, r.text
    ((_, _, _, plaintext),) = client.open_choices(r.json(), "message")
    assert plaintext == "Echo: " + text


@pytest.mark.parametrize("shape", ["string", "text-item"])
@pytest.mark.parametrize("version", [1, 2], ids=["v1", "v2"])
@pytest.mark.parametrize("algo", ALGOS)
def test_content_that_is_not_hex(proxy, stub, make_client, algo, version, shape):
    client = make_client(algo, version)
    not_hex = "hello, this is plaintext"
    content = not_hex if shape == "string" else [{"type": "text", "text": not_hex}]
    body = encode({"model": "stub-model", "messages": [{"role": "user", "content": content}]})
    assert_refused(stub, post(proxy, body, client.headers()), "invalid_e2ee_request")


def tamper(field_hex: str, algo: str, where: str) -> str:
    raw = bytearray(bytes.fromhex(field_hex))
    n = {"ecdsa": 65, "ed25519": 32}[algo]
    if where == "tag":
        raw[-1] ^= 0x01
    elif where == "ciphertext":
        raw[n + 12] ^= 0x80
    elif where == "nonce":
        raw[n] ^= 0x01
    elif where == "ephemeral":
        raw[n - 1] ^= 0x01  # ecdsa: y changes, so the point leaves the curve; ed25519: another u
    elif where == "truncated":
        raw = raw[: n + 12 + 8]
    elif where == "tag-only":
        raw = raw[: n + 12 + 16]
        raw[-1] ^= 0x01
    elif where == "ephemeral-only":
        raw = raw[:n]
    return raw.hex()


@pytest.mark.parametrize("where", ["tag", "ciphertext", "nonce", "ephemeral", "truncated", "tag-only", "ephemeral-only"])
@pytest.mark.parametrize("version", [1, 2], ids=["v1", "v2"])
@pytest.mark.parametrize("algo", ALGOS)
def test_tampered_ciphertext(proxy, stub, make_client, algo, version, where):
    client = make_client(algo, version)
    body = client.encrypt_body(chat("stub-model", unique("tamper")))
    body["messages"][0]["content"] = tamper(body["messages"][0]["content"], algo, where)
    assert_refused(stub, post(proxy, encode(body), client.headers()), "e2ee_decryption_failed")


@pytest.mark.parametrize("algo", ALGOS)
def test_tampered_text_item(proxy, stub, make_client, algo):
    client = make_client(algo, 2)
    plain = {"model": "stub-model", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": PNG}}, {"type": "text", "text": unique("item")}]}]}
    body = client.encrypt_body(plain)
    body["messages"][0]["content"][1]["text"] = tamper(body["messages"][0]["content"][1]["text"], algo, "tag")
    assert_refused(stub, post(proxy, encode(body), client.headers()), "e2ee_decryption_failed")


@pytest.mark.parametrize("algo", ALGOS)
def test_sealed_to_another_key(proxy, stub, make_client, algo):
    client = make_client(algo, 2)
    other = other_ecdsa_key() if algo == "ecdsa" else other_ed25519_key()
    aad = client.req_aad("stub-model", 0, None)
    body = {"model": "stub-model", "messages": [
        {"role": "user", "content": encrypt_field(algo, bytes.fromhex(other), unique("not for you"), aad)}]}
    assert_refused(stub, post(proxy, encode(body), client.headers()), "e2ee_decryption_failed")


ORDER_CASES = [
    # (label, header changes, body breakage, expected): the first failing row of the table wins.
    ("missing-beats-algo", {"X-Signing-Algo": "rsa", "X-Model-Pub-Key": None}, None, "e2ee_header_missing"),
    ("missing-beats-key", {"X-Client-Pub-Key": "zz", "X-E2EE-Timestamp": None}, None, "e2ee_header_missing"),
    ("algo-beats-key", {"X-Signing-Algo": "rsa", "X-Client-Pub-Key": "abc"}, None, "e2ee_invalid_signing_algo"),
    ("key-beats-mismatch", {"X-Client-Pub-Key": "abc", "X-Model-Pub-Key": "MISMATCH"}, None, "e2ee_invalid_public_key"),
    ("mismatch-beats-version", {"X-Model-Pub-Key": "MISMATCH", "X-E2EE-Version": "7"}, None, "e2ee_model_key_mismatch"),
    ("version-beats-nonce", {"X-E2EE-Version": "7", "X-E2EE-Nonce": "short"}, None, "e2ee_invalid_version"),
    ("nonce-beats-timestamp", {"X-E2EE-Nonce": "short", "X-E2EE-Timestamp": "abc"}, None, "e2ee_invalid_nonce"),
    ("timestamp-beats-content", {"X-E2EE-Timestamp": "abc"}, "not-hex", "e2ee_invalid_timestamp"),
    ("not-hex-then-tampered", {}, "not-hex-then-tampered", "invalid_e2ee_request"),
]


@pytest.mark.parametrize("label,changes,breakage,expected", ORDER_CASES, ids=[c[0] for c in ORDER_CASES])
@pytest.mark.parametrize("algo", ALGOS)
def test_validation_order(proxy, stub, make_client, algo, label, changes, breakage, expected):
    client = make_client(algo, 2)
    plain = chat("stub-model", unique("first"), unique("second"))
    body = client.encrypt_body(plain)
    if breakage == "not-hex":
        body["messages"][0]["content"] = "plaintext"
    elif breakage == "not-hex-then-tampered":
        body["messages"][0]["content"] = "plaintext"
        body["messages"][1]["content"] = tamper(body["messages"][1]["content"], algo, "tag")
    headers = client.headers()
    for name, value in changes.items():
        if value is None:
            del headers[name]
        elif value == "MISMATCH":
            headers[name] = other_ecdsa_key() if algo == "ecdsa" else other_ed25519_key()
        else:
            headers[name] = value
    assert_refused(stub, post(proxy, encode(body), headers), expected)


# ---------------------------------------------------------------- replay (v2)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("algo", ALGOS)
def test_replay_is_refused(proxy, stub, make_client, algo, stream):
    client = make_client(algo, 2)
    body = encode(client.encrypt_body(chat("stub-model", unique("once"), stream=stream)))
    if stream:
        first, _ = proxy.post_stream(CHAT, body, headers=client.headers())
    else:
        first = post(proxy, body, client.headers())
    assert first.status_code == 200
    assert len(forwarded(stub)) == 1
    stub.reset()
    assert_refused(stub, post(proxy, body, client.headers()), "e2ee_replay_detected")


@pytest.mark.parametrize("algo", ALGOS)
def test_replay_with_fresh_ciphertext_same_nonce(proxy, stub, make_client, algo):
    """The pair (nonce, timestamp) is what is spent, not the ciphertext."""
    client = make_client(algo, 2)
    assert post(proxy, encode(client.encrypt_body(chat("stub-model", unique("a")))), client.headers()).status_code == 200
    stub.reset()
    body = encode(client.encrypt_body(chat("stub-model", unique("b"))))
    assert_refused(stub, post(proxy, body, client.headers()), "e2ee_replay_detected")


@pytest.mark.parametrize("algo", ALGOS)
def test_failed_decryption_does_not_spend_the_nonce_and_wins_over_replay(proxy, stub, make_client, algo):
    client = make_client(algo, 2)
    body = client.encrypt_body(chat("stub-model", unique("decrypt first")))
    tampered = dict(body, messages=[{"role": "user", "content": tamper(body["messages"][0]["content"], algo, "tag")}])
    assert_refused(stub, post(proxy, encode(tampered), client.headers()), "e2ee_decryption_failed")
    # Not spent by the failure:
    assert post(proxy, encode(body), client.headers()).status_code == 200
    stub.reset()
    # Spent now; yet a ciphertext that does not decrypt is reported as such (replay is checked after decryption).
    assert_refused(stub, post(proxy, encode(tampered), client.headers()), "e2ee_decryption_failed")
    assert_refused(stub, post(proxy, encode(body), client.headers()), "e2ee_replay_detected")


@pytest.mark.parametrize("change", ["timestamp", "algo"])
def test_replay_key_is_algo_timestamp_and_nonce(proxy, stub, make_client, change):
    """SPEC §4: the claim key is {MODEL_NAME}:e2ee_replay:{algo}:{timestamp}:{nonce}."""
    first = make_client("ecdsa", 2)
    assert post(proxy, encode(first.encrypt_body(chat("stub-model", unique("one")))), first.headers()).status_code == 200
    second = make_client("ecdsa" if change == "timestamp" else "ed25519", 2)
    second.nonce = first.nonce
    second.timestamp = str(int(first.timestamp) - 1) if change == "timestamp" else first.timestamp
    text = unique("two")
    r = post(proxy, encode(second.encrypt_body(chat("stub-model", text))), second.headers())
    assert r.status_code == 200, r.text
    ((_, _, _, plaintext),) = second.open_choices(r.json(), "message")
    assert plaintext == "Echo: " + text


RESPELLINGS = {
    "timestamp-plus-sign": lambda h: h | {"X-E2EE-Timestamp": "+" + h["X-E2EE-Timestamp"]},
    "timestamp-leading-zero": lambda h: h | {"X-E2EE-Timestamp": "0" + h["X-E2EE-Timestamp"]},
    "algo-upper-case": lambda h: h | {"X-Signing-Algo": h["X-Signing-Algo"].upper()},
    "key-upper-case": lambda h: h | {"X-Client-Pub-Key": h["X-Client-Pub-Key"].upper()},
    "version-header-dropped": lambda h: {k: v for k, v in h.items() if k != "X-E2EE-Version"},
    "downgraded-to-v1": lambda h: {k: v for k, v in h.items() if not k.startswith("X-E2EE-")},
}


@pytest.mark.parametrize("respelling", RESPELLINGS)
@pytest.mark.parametrize("algo", ALGOS)
def test_replay_with_respelled_headers_is_not_accepted(proxy, stub, make_client, algo, respelling):
    """The same sealed body must never be accepted twice, however the headers are re-spelled."""
    client = make_client(algo, 2)
    body = encode(client.encrypt_body(chat("stub-model", unique("once only"))))
    assert post(proxy, body, client.headers()).status_code == 200
    stub.reset()
    r = post(proxy, body, RESPELLINGS[respelling](client.headers()))
    error = assert_error(r, 400)
    assert error["type"] in {"e2ee_replay_detected", "e2ee_decryption_failed"}, error
    assert stub.requests() == []


def test_v1_has_no_replay_protection(proxy, stub, make_client):
    client = make_client("ecdsa", 1)
    body = encode(client.encrypt_body(chat("stub-model", unique("legacy"))))
    for _ in range(2):
        assert post(proxy, body, client.headers()).status_code == 200


# ---------------------------------------------------------------- /v1/completions refuses E2EE


@pytest.mark.parametrize("header", E2EE_HEADERS)
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_text_completions_refuse_any_e2ee_header(proxy, stub, make_client, header, stream):
    client = make_client("ecdsa", 2)
    value = client.headers()[header]
    error = assert_refused(stub, post(proxy, text_body(unique("prompt"), stream=stream), {header: value}, TEXT),
                           "invalid_e2ee_request")
    assert error["message"] == "E2EE v1/v2 is only supported on /v1/chat/completions"


def test_text_completions_refuse_a_full_e2ee_header_set(proxy, stub, make_client):
    client = make_client("ed25519", 2)
    error = assert_refused(stub, post(proxy, text_body(unique("prompt")), client.headers(), TEXT), "invalid_e2ee_request")
    assert error["message"] == "E2EE v1/v2 is only supported on /v1/chat/completions"


@pytest.mark.parametrize("algo", ALGOS)
def test_empty_tool_calls_are_stripped_under_e2ee(proxy, stub, make_client, algo):
    """SPEC §2's stripping still applies to an encrypted request, and message indices in the AAD are unchanged."""
    client = make_client(algo, 2)
    text = unique("after a tool-less assistant turn")
    plain = {
        "model": "stub-model",
        "messages": [
            {"role": "user", "content": unique("question")},
            {"role": "assistant", "content": unique("answer"), "tool_calls": []},
            {"role": "user", "content": text},
        ],
    }
    r = post(proxy, encode(client.encrypt_body(plain)), client.headers())
    assert r.status_code == 200, r.text
    (upstream,) = forwarded(stub)
    expected = json.loads(json.dumps(plain))
    del expected["messages"][1]["tool_calls"]
    assert upstream == expected
    ((_, _, _, plaintext),) = client.open_choices(r.json(), "message")
    assert plaintext == "Echo: " + text


# ---------------------------------------------------------------- a short replay window


SHORT_WINDOW = 3


@pytest.fixture(scope="session")
def short_window_proxy(stack):
    """A second instance with E2EE_REPLAY_WINDOW_SECONDS=3, so window edges can be reached in a test."""
    name = "e2ee-short-window-proxy"
    return stack.proxies.get(name) or stack.start_proxy(name, E2EE_REPLAY_WINDOW_SECONDS=str(SHORT_WINDOW))


@pytest.fixture
def short_window_client(short_window_proxy):
    r = short_window_proxy.get("/v1/attestation/report", params={"signing_algo": "ecdsa"})
    assert r.status_code == 200, r.text
    return E2EEClient(algo="ecdsa", version=2, model_public=bytes.fromhex(r.json()["signing_public_key"]))


@pytest.mark.parametrize("offset,accepted", [(0, True), (-(SHORT_WINDOW + 5), False), (SHORT_WINDOW + 5, False)])
def test_replay_window_setting_bounds_the_timestamp(short_window_proxy, stub, short_window_client, offset, accepted):
    client = short_window_client
    client.timestamp = now(offset)
    r = post(short_window_proxy, encode(client.encrypt_body(chat("stub-model", unique("window")))), client.headers())
    if accepted:
        assert r.status_code == 200, r.text
    else:
        assert_refused(stub, r, "e2ee_invalid_timestamp")


def test_a_pair_with_a_future_timestamp_cannot_be_replayed_once_its_claim_expires(short_window_proxy, stub, short_window_client):
    """SPEC §4: a v2 nonce+timestamp already used → e2ee_replay_detected, for as long as the timestamp is valid."""
    client = short_window_client
    client.timestamp = now(SHORT_WINDOW)  # at the edge of the window, in the future: valid until now + 2·window
    body = encode(client.encrypt_body(chat("stub-model", unique("future"))))
    assert post(short_window_proxy, body, client.headers()).status_code == 200
    time.sleep(SHORT_WINDOW + 0.7)  # a claim of one window from first use would be gone; the timestamp is still valid
    stub.reset()
    r = post(short_window_proxy, body, client.headers())
    assert_refused(stub, r, "e2ee_replay_detected")
