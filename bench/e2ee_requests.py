"""Pre-generates distinct E2EE v2 chat requests for bench/run's wrk case (bench/e2ee.lua replays each once).

Every request has two encrypted messages, its own nonce and the generation time as timestamp (the
proxy's replay window is 300 s by default, so the file is used right away). The fields are sealed as
interop/e2ee_client.py seals them (SPEC §4: ephemeral key, HKDF-SHA256, AES-256-GCM, v2 AAD), except
that the ephemeral keys come from a pool of a few thousand, each with its AES key derived once: an
ECDH per field in Python would take longer than the case itself. The proxy still does its ECDH for
every field (a pool key is only reused every few thousand requests, and only by AES-GCM with a fresh
nonce). The first request is checked byte for byte against e2ee_client.encrypt_field.

Output: one line per request, `nonce TAB timestamp TAB body`; the constant headers go to `<out>.headers`
as `name TAB value` lines.

    python3 bench/e2ee_requests.py ALGO MODEL_PUBLIC_HEX COUNT OUT
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "interop"))

from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402

from e2ee_client import (  # noqa: E402
    NONCE_LEN,
    E2EEClient,
    ed25519_public_to_x25519,
    encrypt_field,
    hkdf_key,
    request_aad,
    secp256k1_private,
    secp256k1_public_from_wire,
    secp256k1_uncompressed,
    shared_secret,
    x25519_public,
)

MODEL = "bench-model"
MESSAGES = [
    ("system", "You are a terse assistant."),
    ("user", "Say something short about benchmarks."),
]
POOL = 4096


def ephemeral_pool(algo: str, recipient: bytes, size: int) -> list[tuple[bytes, bytes, bytes]]:
    """(ephemeral private, ephemeral public as it goes on the wire, AES key), as encrypt_field derives them."""
    pool = []
    for _ in range(size):
        if algo == "ecdsa":
            private = ec.generate_private_key(ec.SECP256K1()).private_numbers().private_value.to_bytes(32, "big")
            key = secp256k1_private(private)
            secret = key.exchange(ec.ECDH(), secp256k1_public_from_wire(recipient))
            public = secp256k1_uncompressed(key.public_key())
        else:
            private = os.urandom(32)
            secret = shared_secret(algo, private, ed25519_public_to_x25519(recipient))
            public = x25519_public(private)
        pool.append((private, public, hkdf_key(secret, algo)))
    return pool


def main() -> None:
    algo, model_public_hex, count, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    model_public = bytes.fromhex(model_public_hex)
    client = E2EEClient(algo=algo, version=2, model_public=model_public)
    pool = ephemeral_pool(algo, model_public, min(POOL, 2 * count))
    ciphers = [(public, AESGCM(key)) for _, public, key in pool]
    timestamp = str(int(time.time()))
    prefix = secrets.token_hex(8)  # nonces unique across runs against one proxy, too
    next_key = 0
    with out.open("w") as f:
        for n in range(count):
            nonce = f"{prefix}{n:016x}"
            messages = []
            for i, (role, text) in enumerate(MESSAGES):
                aad = request_aad(algo, MODEL, i, None, nonce, timestamp)
                public, cipher = ciphers[next_key % len(ciphers)]
                gcm_nonce = os.urandom(NONCE_LEN)
                field = (public + gcm_nonce + cipher.encrypt(gcm_nonce, text.encode(), aad.encode())).hex()
                if n == 0:
                    reference = encrypt_field(
                        algo, model_public, text, aad, ephemeral_private=pool[next_key % len(pool)][0], nonce=gcm_nonce
                    )
                    assert field == reference, "fast sealing differs from e2ee_client.encrypt_field"
                next_key += 1
                messages.append({"role": role, "content": field})
            body = json.dumps({"model": MODEL, "messages": messages}, separators=(",", ":"))
            f.write(f"{nonce}\t{timestamp}\t{body}\n")
    headers = client.headers()
    for name in ("X-E2EE-Nonce", "X-E2EE-Timestamp"):
        headers.pop(name)
    with Path(f"{out}.headers").open("w") as f:
        for name, value in headers.items():
            f.write(f"{name}\t{value}\n")


if __name__ == "__main__":
    main()
