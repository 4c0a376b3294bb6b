#!/usr/bin/env python3
"""Writes Tests/Vectors/e2ee_v3.json: E2EE v3 known answers (SPEC §4.3, §6 v3) made with the Python client.

Run by hand, not by the tests (its output is committed):
    python3 -m venv .venv-client && .venv-client/bin/pip install -e clients/python
    .venv-client/bin/python Tests/Vectors/make_e2ee_v3_vectors.py > Tests/Vectors/e2ee_v3.json

Same schema and the same recipient key as the independent vectors (/work/shared/vectors/e2ee_v3.json, pyhpke
0.6.5): the X25519 key comes from DeriveKeyPair of the same ikm, so `K` and `kc` are identical. pyhpke has no
X-Wing, so the X-Wing key config of `K` (there for its place in the list only) is copied from that file, given
with --reference. Requests are sealed by `vllm_proxy_client.seal_request` with ephemeral keys from
DeriveKeyPair of fixed ikms; responses use fixed response nonces. Every request is opened again with pyhpke's
recipient side and every chunk with the client's `ResponseOpener`, so the file is checked before it is written.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from pyhpke import AEADId, CipherSuite, KDFId, KEMId

from vllm_proxy_client import Suite, identity_v3, key_config_id, parse_key_configs, seal_request
from vllm_proxy_client.v3 import AEAD_AES256GCM, KEM_X25519

RECIPIENT_IKM = "vllm-proxy e2ee v3 vectors: recipient x25519 key 0"
SUITE_NAMES = {Suite.X25519_AES256GCM: "x25519-aes256gcm", Suite.X25519_CHACHA20POLY1305: "x25519-chacha20poly1305"}
NONCE = bytes(range(32))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def sse(*events: str) -> list[str]:
    return [f"data: {event}\n\n" for event in events]


CASES = [
    {
        "name": "client: chat, not streamed, X25519 + AES-256-GCM",
        "route": "/v1/chat/completions",
        "suite": Suite.X25519_AES256GCM,
        "ts": 1764910000,
        "request": {"model": "vec-model", "messages": [{"role": "user", "content": "Weather in Paris?"}],
                    "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
                    "logprobs": True},
        "chunks": [json.dumps({"id": "chatcmpl-cli1", "object": "chat.completion", "created": 1764910000,
                               "model": "vec-model", "choices": [{"index": 0, "message": {"role": "assistant",
                               "content": "Sunny."}, "finish_reason": "stop"}],
                               "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14}})],
    },
    {
        "name": "client: chat, streamed, X25519 + ChaCha20-Poly1305, three chunks and a final",
        "route": "/v1/chat/completions",
        "suite": Suite.X25519_CHACHA20POLY1305,
        "ts": 1764910001,
        "request": {"model": "vec-model", "stream": True, "stream_options": {"include_usage": True},
                    "messages": [{"role": "user", "content": "Count to two."}]},
        "chunks": [
            *sse('{"id":"chatcmpl-cli2","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":"One"}}]}'),
            *sse('{"id":"chatcmpl-cli2","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":", two."}}]}'),
            "".join(sse(
                '{"id":"chatcmpl-cli2","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}',
                '{"id":"chatcmpl-cli2","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":4,"total_tokens":9}}',
            )),
            "data: [DONE]\n\n",
        ],
    },
    {
        "name": "client: text completion, not streamed, X25519 + AES-256-GCM",
        "route": "/v1/completions",
        "suite": Suite.X25519_AES256GCM,
        "ts": 1764910002,
        "request": {"model": "vec-model", "prompt": "2+2=", "max_tokens": 1},
        "chunks": [json.dumps({"id": "cmpl-cli3", "object": "text_completion", "created": 1764910002,
                               "model": "vec-model", "choices": [{"index": 0, "text": "4", "finish_reason": "length"}],
                               "usage": {"prompt_tokens": 4, "completion_tokens": 1, "total_tokens": 5}})],
    },
    {
        "name": "client: responses, streamed, X25519 + AES-256-GCM, empty final",
        "route": "/v1/responses",
        "suite": Suite.X25519_AES256GCM,
        "ts": 1764910003,
        "request": {"model": "vec-model", "stream": True, "input": "Hi"},
        "chunks": [
            'event: response.created\ndata: {"type":"response.created","response":{"id":"resp_cli4","usage":null}}\n\n',
            'event: response.completed\ndata: {"type":"response.completed","response":{"id":"resp_cli4",'
            '"usage":{"input_tokens":1,"output_tokens":1,"total_tokens":2}}}\n\n',
            "",
        ],
    },
]


def make_case(index: int, case: dict, key_list: bytes, kc: str, recipient) -> dict:
    suite = case["suite"]
    ephemeral_ikm = f"vllm-proxy e2ee v3 client vectors: ephemeral {index}"
    plaintext = json.dumps(case["request"]).encode()
    sealed = seal_request(plaintext, route=case["route"], key_configs=parse_key_configs(key_list), kc=kc,
                          suite=suite, ts=case["ts"], ephemeral_ikm=ephemeral_ikm.encode())
    # The request must open with an HPKE implementation's recipient side, under the same info.
    hpke = CipherSuite.new(KEMId(suite.kem_id), KDFId(suite.kdf_id), AEADId(suite.aead_id))
    context = hpke.create_recipient_context(sealed.enc, recipient, sealed.info)
    assert context.open(sealed.ct, b"") == plaintext
    assert context.export(b"vllm-proxy e2ee v3 response", 32) == sealed.exported_secret

    response_nonce = bytes([0x40 + index]) * 32
    opener = sealed.response_opener(response_nonce)
    aead = AESGCM(opener.key) if suite.aead_id == AEAD_AES256GCM else ChaCha20Poly1305(opener.key)
    chunks = []
    last = len(case["chunks"]) - 1
    for i, text in enumerate(case["chunks"]):
        aad = b"final" if i == last else b""
        ciphertext = aead.encrypt(opener.chunk_nonce(i), text.encode(), aad)
        assert opener.open(ciphertext, final=i == last) == text.encode()
        chunks.append({"plaintext_utf8": text, "nonce": opener.chunk_nonce(i).hex(), "aad_utf8": aad.decode(),
                       "ciphertext_b64": b64(ciphertext)})
    return {
        "name": case["name"],
        "route": case["route"],
        "suite": SUITE_NAMES[suite],
        "hdr": sealed.hdr.hex(),
        "ephemeral_ikm_utf8": ephemeral_ikm,
        "model": sealed.model,
        "stream": sealed.stream,
        "ts": sealed.ts,
        "info": sealed.info.hex(),
        "request_plaintext_utf8": plaintext.decode(),
        "enc": sealed.enc.hex(),
        "ct": sealed.ct.hex(),
        "envelope": json.loads(sealed.body),
        "response_nonce": response_nonce.hex(),
        "exported_secret": sealed.exported_secret.hex(),
        "response_key": opener.key.hex(),
        "response_nonce_base": opener.nonce_base.hex(),
        "response_chunks": chunks,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, default=Path("/work/shared/vectors/e2ee_v3.json"),
                        help="independent vectors whose X-Wing key config is copied into K")
    args = parser.parse_args()
    reference = json.loads(args.reference.read_text())

    hpke = CipherSuite.new(KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.AES256_GCM)
    recipient = hpke.kem.derive_key_pair(RECIPIENT_IKM.encode())
    pk = recipient.public_key.to_public_bytes()
    x25519_config = bytes([0]) + KEM_X25519.to_bytes(2, "big") + pk + bytes.fromhex("0008" "00010002" "00010003")
    reference_k = bytes.fromhex(reference["K"])
    xwing_entry = reference_k[2 + len(x25519_config) :]  # the second length-prefixed config, as it is
    key_list = len(x25519_config).to_bytes(2, "big") + x25519_config + xwing_entry
    assert key_list == reference_k, "the derived X25519 key config differs from the reference K"
    kc = key_config_id(key_list)
    configs = parse_key_configs(key_list)
    assert [(c.key_id, c.kem_id) for c in configs] == [(0, 0x0020), (1, 0x647A)]

    address = "0x2222222222222222222222222222222222222222"
    spki_sha256 = bytes.fromhex("5f" * 32)
    nvidia_payload = json.dumps({"nonce": NONCE.hex(), "evidence_list": [], "arch": "HOPPER"})
    address_bytes = bytes.fromhex(address[2:])
    identity = identity_v3(address_bytes, spki_sha256, key_list, nvidia_payload)
    document = {
        "about": "E2EE v3 known answers (SPEC \u00a74.3, \u00a76 v3), made with clients/python (vllm_proxy_client) "
                 "by Tests/Vectors/make_e2ee_v3_vectors.py. Hex unless named b64.",
        "recipient_x25519": {
            "ikm_utf8": RECIPIENT_IKM,
            "skR": recipient.private_key.to_private_bytes().hex(),
            "pkR": pk.hex(),
        },
        "K": key_list.hex(),
        "kc": kc,
        "identity_v3": {
            "signing_address": address,
            "spki_sha256": spki_sha256.hex(),
            "K": "as above",
            "nvidia_payload": nvidia_payload,
            "identity_v3": identity.hex(),
            "identity_v3_without_tls_and_gpu": identity_v3(address_bytes, None, key_list, None).hex(),
            "nonce": NONCE.hex(),
            "report_data": (identity + NONCE).hex(),
        },
        "cases": [make_case(i, case, key_list, kc, recipient.private_key) for i, case in enumerate(CASES)],
    }
    json.dump(document, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
