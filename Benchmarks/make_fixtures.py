#!/usr/bin/env python3
"""Writes Fixtures/e2ee_requests.json: one v2 E2EE request per algorithm with two encrypted messages.

The fields are sealed by the interop suite's independent client (Python `cryptography`) to the server keys
of Tests/Vectors/e2ee.json, so the benchmark opens exactly what a real client sends. The output is
committed; rerun this only when the wire format or the vectors change:

    python3 Benchmarks/make_fixtures.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "interop"))

from e2ee_client import E2EEClient  # noqa: E402

NONCE = "0123456789abcdef"  # the vectors' v2 nonce and timestamp; the benchmark parses with now = TIMESTAMP
TIMESTAMP = "1700000000"
MODEL = "meta-llama/Llama-3.3-70B-Instruct"


def main() -> None:
    vectors = json.loads((REPO / "Tests/Vectors/e2ee.json").read_text())
    server, client = vectors["server"], vectors["client"]
    body = {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant. Answer briefly and precisely."},
            {"role": "user", "content": "What is the capital of France, and why is it famous?"},
        ],
        "max_tokens": 256,
        "temperature": 0.7,
    }
    out = {
        "server": {
            "secp256k1_private_key": server["secp256k1_private_key"],
            "ed25519_seed": server["ed25519_seed"],
        },
        "nonce": NONCE,
        "timestamp": int(TIMESTAMP),
    }
    for algo in ("ecdsa", "ed25519"):
        model_public = server["secp256k1_public_key_64" if algo == "ecdsa" else "ed25519_public_key"]
        private = client["secp256k1_private_key" if algo == "ecdsa" else "ed25519_seed"]
        party = E2EEClient(algo, 2, bytes.fromhex(model_public), private=bytes.fromhex(private))
        party.nonce, party.timestamp = NONCE, TIMESTAMP
        out[algo] = {"headers": party.headers(), "body": json.dumps(party.encrypt_body(body))}
    (HERE / "Fixtures/e2ee_requests.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
