"""Issue #20: what a large sealed JSON answer costs the proxy in memory, v1/v2 (fields sealed) and v3 (whole).

The stub answers `stub-large-<bytes>` with that much text. The proxy's peak resident size is reset to its
current size (`/proc/<pid>/clear_refs`, 5) just before the request, and read back (`VmHWM`) after it: the
growth is what holding, sealing and writing that answer took at its worst moment, whatever the machine's
load (memory, not time). Each case gets a proxy of its own, fresh, so memory an earlier large answer left
resident in the allocator cannot hide this one's cost.
"""

from __future__ import annotations

import json
import re

import pytest
import requests

from conftest import TIMEOUT
from e2ee_client import E2EEClient
from v3_support import CHAT, V3, attest, chat_request, seal
from vllm_proxy_client import open_json_envelope

ANSWER = 8 << 20  # bytes of generated text
MODEL = f"stub-large-{ANSWER}"
# What an answer needs at its peak, in multiples of its text: v1/v2 fields are hex, twice the text, held as
# the sealed tree and as its bytes (4×); v3 holds the clear body, its ciphertext and the base64 envelope
# (~3.4×). Measured in the debug build: 4.0× and 3.4× after the fix (issue #20), 9.1× and 4.8× before it;
# the bounds leave 1× and 0.6× of margin.
FIELDS_BOUND = 5 * ANSWER
WHOLE_BOUND = 4 * ANSWER


def status_bytes(pid: int, field: str) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024  # kB
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def peak_growth(pid: int, send):
    """(bytes the peak resident size rose above the resident size while `send` ran, what `send` returned)."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")  # the peak (VmHWM) starts again from the current resident size
    before = status_bytes(pid, "VmRSS")
    result = send()
    return status_bytes(pid, "VmHWM") - before, result


def post(proxy, body: bytes, headers: dict) -> requests.Response:
    """Not through `proxy.post`: that keeps every response for test_zz_secrets, and these are tens of MB of
    ciphertext, which cannot hold the token."""
    all_headers = {**proxy.auth(), "Content-Type": "application/json", **headers}
    return requests.post(proxy.base_url + CHAT, data=body, headers=all_headers, timeout=TIMEOUT)


@pytest.fixture
def fresh_proxy(stack, request):
    return stack.start_proxy("memory-proxy-" + re.sub(r"[^a-z0-9]+", "-", request.node.name).strip("-"))


@pytest.mark.parametrize("version", [1, 2], ids=["v1", "v2"])
def test_sealed_fields_answer_costs_a_bounded_multiple_of_its_size(fresh_proxy, version):
    report = fresh_proxy.get("/v1/attestation/report", params={"signing_algo": "ecdsa"}).json()
    client = E2EEClient(algo="ecdsa", version=version, model_public=bytes.fromhex(report["signing_public_key"]))

    def send(model: str) -> requests.Response:
        client.fresh_nonce()
        body = client.encrypt_body({"model": model, "messages": [{"role": "user", "content": "write a lot"}]})
        return post(fresh_proxy, json.dumps(body).encode(), client.headers())

    assert send("stub-model").status_code == 200  # first use of the path: code, connection, keys
    growth, r = peak_growth(fresh_proxy.process.popen.pid, lambda: send(MODEL))
    assert r.status_code == 200, r.text[:300]
    [(_, name, _, text)] = client.open_choices(r.json(), "message")
    assert name == "content" and len(text) == ANSWER and text.startswith("All work and no play")
    assert growth <= FIELDS_BOUND, f"peak grew by {growth / ANSWER:.1f}× the answer ({growth >> 20} MiB)"


def test_sealed_whole_answer_costs_a_bounded_multiple_of_its_size(stack, fresh_proxy):
    att = attest(fresh_proxy, stack)

    def send(model: str):
        sealed = seal(att, CHAT, chat_request("write a lot", model=model))
        return sealed, post(fresh_proxy, sealed.body, V3)

    assert send("stub-model")[1].status_code == 200  # first use of the path: code, connection, keys
    growth, (sealed, r) = peak_growth(fresh_proxy.process.popen.pid, lambda: send(MODEL))
    assert r.status_code == 200, r.text[:300]
    answer = json.loads(open_json_envelope(sealed, r.content).body)
    text = answer["choices"][0]["message"]["content"]
    assert len(text) == ANSWER and text.startswith("All work and no play")
    assert growth <= WHOLE_BOUND, f"peak grew by {growth / ANSWER:.1f}× the answer ({growth >> 20} MiB)"
