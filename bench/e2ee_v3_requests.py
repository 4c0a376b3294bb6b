"""Pre-generates distinct E2EE v3 requests for bench/run's wrk cases (bench/e2ee_v3.lua sends each once).

Attests the proxy first (`fetch_attestation(..., allow_unverified_quotes=True)`: version 3 report of the dev
attestation agent, key list K and kc checked), then seals COUNT copies of the bench chat request with
`vllm_proxy_client.seal_request` (clients/python; X25519 + HKDF-SHA256 + AES-256-GCM) for
/v1/chat/completions. Every request is a full HPKE encapsulation with its own ephemeral key: the proxy
claims SHA-256(enc) against replay, so unlike the v2 generator no key can be pooled. pyhpke needs
~0.25 ms a request, so the work is spread over all cores (multiprocessing, in order); the timestamp is the
generation time, so the file must be used within the proxy's replay window (300 s by default).

Before writing, one extra request (not in the file) is sent and its sealed answer opened and verified with
the client's own readers, so a broken case stops here instead of measuring 400s; the number of sealed
chunks the answer had is printed on stdout (a stream gets one per upstream read, not per event).

Output: one envelope body per line; the constant headers go to `<out>.headers` as `name TAB value`
lines (`X-E2EE-Version: 3`).

    python bench/e2ee_v3_requests.py BASE_URL TOKEN COUNT OUT [stream]
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
from pathlib import Path

import httpx
from vllm_proxy_client import (
    StreamEnvelopeReader,
    Suite,
    fetch_attestation,
    open_json_envelope,
    parse_key_configs,
    seal_request,
)

ROUTE = "/v1/chat/completions"
SUITE = Suite.X25519_AES256GCM
BATCH = 2000

_worker_args: tuple = ()


def plaintext(stream: bool) -> bytes:
    request = {"model": "bench-model"}
    if stream:
        request["stream"] = True
    request["messages"] = [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "Say something short about benchmarks."},
    ]
    return json.dumps(request, separators=(",", ":")).encode()


def _init(key_list: bytes, kc: str, body: bytes) -> None:
    global _worker_args
    _worker_args = (parse_key_configs(key_list), kc, body)


def _seal_batch(n: int) -> bytes:
    key_configs, kc, body = _worker_args
    return b"".join(
        seal_request(body, route=ROUTE, key_configs=key_configs, kc=kc, suite=SUITE).body + b"\n" for _ in range(n)
    )


def check_one(base_url: str, token: str, att, body: bytes, stream: bool) -> str:
    sealed = seal_request(body, route=ROUTE, key_configs=att.key_configs, kc=att.kc, suite=SUITE)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "X-E2EE-Version": "3"}
    response = httpx.post(base_url + ROUTE, content=sealed.body, headers=headers, timeout=30)
    if response.status_code != 200:
        sys.exit(f"e2ee_v3_requests: the check request got {response.status_code}: {response.text[:300]}")
    if stream:
        reader = StreamEnvelopeReader(sealed)
        opened = reader.feed(response.content) + reader.finish()
        chunks = response.content.count(b'{"e2ee":{"c":')
        events = opened.count(b"data: ")
        return f"stream answer opened: {len(opened)} bytes, {events} events, in {chunks} sealed chunks + final"
    opened = open_json_envelope(sealed, response.content)
    return f"JSON answer opened: {len(opened.body)} bytes, chat id {opened.chat_id}, usage {opened.usage}"


def main() -> None:
    base_url, token, count, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    stream = len(sys.argv) > 5 and sys.argv[5] == "stream"
    att = fetch_attestation(base_url, token, allow_unverified_quotes=True)  # the dev agent's quote; not the bench's concern
    body = plaintext(stream)
    summary = check_one(base_url, token, att, body, stream)
    batches = [BATCH] * (count // BATCH) + ([count % BATCH] if count % BATCH else [])
    with multiprocessing.Pool(os.cpu_count() or 1, _init, (att.key_list, att.kc, body)) as pool, out.open("wb") as f:
        for chunk in pool.imap(_seal_batch, batches):
            f.write(chunk)
    with Path(f"{out}.headers").open("w") as f:
        f.write("X-E2EE-Version\t3\n")
    print(summary)


if __name__ == "__main__":
    main()
