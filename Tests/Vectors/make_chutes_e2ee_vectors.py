#!/usr/bin/env python3
"""Writes Tests/Vectors/chutes_e2ee.json: known answers for Chutes' E2EE wire format (chutes-e2ee 0.1.0).

Run by hand, not by the tests (its output is committed):
    python3 -m venv /tmp/v && /tmp/v/bin/pip install chutes-e2ee==0.1.0 pqcrypto==0.4.0 kyber-py==1.2.0
    /tmp/v/bin/python Tests/Vectors/make_chutes_e2ee_vectors.py > Tests/Vectors/chutes_e2ee.json

Every byte of the symmetric layers comes from the package's own `chutes_e2ee.crypto` functions (derive_key,
chacha_encrypt, build_e2ee_request, decrypt_response, decrypt_stream_*). ML-KEM-768 keys are made from fixed
64-byte seeds (d ‖ z, FIPS 203 §7.1, the form swift-crypto's `MLKEM768.PrivateKey(seedRepresentation:)` takes)
with kyber-py, whose expanded secret keys pqcrypto (the package's ML-KEM) then uses to check every ciphertext:
two independent ML-KEM implementations agree on each vector. Encapsulation randomness is fixed where kyber-py
allows it (`_encaps_internal`), so the file is reproducible except for the `package_request` blob, which
`build_e2ee_request` makes with fresh randomness (it is still a valid answer: decrypting it is the test).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import sys

from chutes_e2ee import crypto
from kyber_py.ml_kem import ML_KEM_768
from pqcrypto.kem import ml_kem_768 as pq


def seed(label: str) -> bytes:
    return hashlib.sha512(label.encode()).digest()  # 64 bytes


def fixed(label: str, size: int) -> bytes:
    return hashlib.sha256(label.encode()).digest()[:size]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def encapsulate(public_key: bytes, label: str) -> tuple[bytes, bytes]:
    ss, ct = ML_KEM_768._encaps_internal(public_key, fixed(label, 32))
    return ct, ss


def gz(document) -> bytes:
    return gzip.compress(json.dumps(document).encode(), mtime=0)


def main() -> None:
    out: dict = {
        "about": (
            "Chutes E2EE (chutes-e2ee 0.1.0) known answers. Seeds are ML-KEM-768 d||z (hex). "
            "Blobs: mlkem ciphertext (1088) || nonce (12) || chacha20-poly1305 ciphertext || tag (16). "
            "Stream e2e values: base64(nonce || ciphertext || tag). Made by make_chutes_e2ee_vectors.py."
        ),
        "mlkem": [],
        "hkdf": [],
    }

    # ML-KEM-768: seed → public key; ciphertext → shared secret (kyber-py encapsulates, pqcrypto decapsulates).
    for index in range(3):
        s = seed(f"mlkem-{index}")
        public_key, expanded_secret = ML_KEM_768.key_derive(s)
        ct, ss = encapsulate(public_key, f"mlkem-m-{index}")
        assert pq.decrypt(expanded_secret, ct) == ss
        out["mlkem"].append(
            {"seed": s.hex(), "public_key_b64": b64(public_key), "ciphertext_hex": ct.hex(), "shared_secret_hex": ss.hex()}
        )

    # HKDF-SHA256 over the shared secret, salt = ciphertext[:16], one key per info string.
    ct, ss = bytes.fromhex(out["mlkem"][0]["ciphertext_hex"]), bytes.fromhex(out["mlkem"][0]["shared_secret_hex"])
    for info in (crypto.INFO_REQ, crypto.INFO_RESP, crypto.INFO_STREAM):
        out["hkdf"].append(
            {"shared_secret_hex": ss.hex(), "salt_hex": ct[:16].hex(), "info": info.decode(),
             "key_hex": crypto.derive_key(ss, ct, info).hex()}
        )

    # A request as the package builds it, to an instance key from a seed: the instance side must open it.
    instance_seed = seed("instance")
    instance_public, instance_secret = ML_KEM_768.key_derive(instance_seed)
    payload = {"model": "vendor/Model-1", "messages": [{"role": "user", "content": "Grüße, 世界"}],
               "temperature": 0.7, "stream": False}
    built = crypto.build_e2ee_request(b64(instance_public), payload)
    opened = json.loads(gzip.decompress(_open(built.blob, pq.decrypt(instance_secret, built.blob[:1088]), crypto.INFO_REQ)))
    assert {k: v for k, v in opened.items() if k != "e2e_response_pk"} == payload
    out["package_request"] = {
        "instance_seed": instance_seed.hex(),
        "instance_public_key_b64": b64(instance_public),
        "payload": payload,
        "blob_hex": built.blob.hex(),
        "e2e_response_pk_b64": opened["e2e_response_pk"],
    }

    # A fully fixed request: every layer reproducible (encapsulation randomness, nonce, gzip mtime).
    response_seed = seed("response")
    response_public, response_secret = ML_KEM_768.key_derive(response_seed)
    fixed_payload = {**payload, "e2e_response_pk": b64(response_public)}
    ct, ss = encapsulate(instance_public, "request-m")
    nonce = fixed("request-nonce", 12)
    body, tag = crypto.chacha_encrypt(crypto.derive_key(ss, ct, crypto.INFO_REQ), nonce, gz(fixed_payload))
    out["fixed_request"] = {
        "instance_seed": instance_seed.hex(),
        "plaintext_json": json.dumps(fixed_payload),
        "blob_hex": (ct + nonce + body + tag).hex(),
    }

    # A non-streamed answer sealed to the response key; the package's decrypt_response opens it.
    answer = {"id": "chatcmpl-vector", "object": "chat.completion", "model": "vendor/Model-1",
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hallo 🌍"},
                           "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}
    ct, ss = encapsulate(response_public, "response-m")
    nonce = fixed("response-nonce", 12)
    body, tag = crypto.chacha_encrypt(crypto.derive_key(ss, ct, crypto.INFO_RESP), nonce, gz(answer))
    blob = ct + nonce + body + tag
    assert crypto.decrypt_response(blob, response_secret) == answer
    out["response"] = {"response_seed": response_seed.hex(), "blob_hex": blob.hex(), "json": answer}

    # A stream: e2e_init carries the stream key; each e2e value is one whole SSE line (including an encrypted
    # [DONE]); the package's decrypt_stream_* open them.
    ct, ss = encapsulate(response_public, "stream-m")
    stream_key = crypto.derive_key(ss, ct, crypto.INFO_STREAM)
    assert crypto.decrypt_stream_init(response_secret, b64(ct)) == stream_key
    lines = [
        'data: {"id":"chatcmpl-s","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}',
        'data: {"id":"chatcmpl-s","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hallo 🌍"},"finish_reason":null}]}',
        "data: [DONE]",
    ]
    chunks = []
    for index, line in enumerate(lines):
        nonce = fixed(f"stream-nonce-{index}", 12)
        body, tag = crypto.chacha_encrypt(stream_key, nonce, line.encode())
        value = b64(nonce + body + tag)
        assert crypto.decrypt_stream_chunk(value, stream_key) == line
        chunks.append({"e2e": value, "line": line})
    out["stream"] = {
        "response_seed": response_seed.hex(),
        "e2e_init": b64(ct),
        "stream_key_hex": stream_key.hex(),
        "chunks": chunks,
    }

    json.dump(out, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def _open(blob: bytes, shared_secret: bytes, info: bytes) -> bytes:
    ct, nonce, rest = blob[:1088], blob[1088:1100], blob[1100:]
    return crypto.chacha_decrypt(crypto.derive_key(shared_secret, ct, info), nonce, rest[:-16], rest[-16:])


if __name__ == "__main__":
    main()
