"""SPEC §4.3 under a hostile gateway, against the real binary: the test plays a gateway that holds genuine v3
envelopes sealed by the client library (clients/python) and edits them, and that edits the proxy's real answers.

Request side, on /v1/chat/completions, /v1/completions and /v1/chutes/chat/completions (Chutes with the plain
stand-in and with CHUTES_E2EE against its E2EE stand-in), streamed or not: every edit is refused with §4.3's
status and `error.type` in the one error shape, nothing reaches any upstream, and nothing is claimed — the
untouched original then succeeds exactly once and its replay is `e2ee_replay_detected`.

Answer side: reordered, dropped, repeated, truncated, spliced or re-labelled chunks, a missing final chunk and an
edited clear usage all make the client library raise E2EEVerificationError (directly, and through the SDK).
"""

from __future__ import annotations

import base64
import copy
import json
import time

import httpx
import openai
import pytest

from chutes_e2ee_stub import ChutesE2EEStub
from test_chutes import CHUTES_KEY, ChutesStubClient, start_chutes_stub, write_ca_and_leaf
from v3_support import (
    CHAT, CHUTES, TEXT, TIMEOUT, Gateway, attest, body_for, flip, join_events, open_answer, open_json_envelope,
    open_stream, refused, seal, seal_mismatched, secret_text, send, stream_events, upstream_posts, with_envelope,
    with_req,
)
from vllm_proxy_client import E2EETransport, E2EEVerificationError

E2EE_CHUTES_KEY = CHUTES_KEY  # the E2EE stand-in wants the same key
HDR, ENC = 7, 32  # hdr = key_id(1) kem(2) kdf(2) aead(2); X25519 enc is 32 bytes


# ---------------------------------------------------------------- processes


class Target:
    """One route on one proxy, with every upstream that proxy could reach."""

    def __init__(self, proxy, att, route, model, upstream_count, others=None):
        self.proxy, self.att, self.route, self.model = proxy, att, route, model
        self.upstream_count = upstream_count  # () -> requests this route's upstream was asked to complete
        self.others = others or {}  # another route on the same proxy, for "moved to another route"


@pytest.fixture(scope="module")
def targets(stack, proxy):
    ca_path, leaf, leaf_key = write_ca_and_leaf(stack.tmp)
    chutes_url = start_chutes_stub(stack, "v3-chutes-stub", CHUTES_KEY, leaf, leaf_key, ca_path, stack.processes)
    chutes_stub = ChutesStubClient(chutes_url, ca_path, CHUTES_KEY)
    chutes_proxy = stack.start_proxy(
        "v3-chutes-proxy", CHUTES_ENABLED="1", CHUTES_BASE_URL=chutes_url, CHUTES_API_KEY=CHUTES_KEY,
        CHUTES_CA_FILE=str(ca_path))
    relay = ChutesE2EEStub(E2EE_CHUTES_KEY, leaf, leaf_key).start()
    relay.ca_path = ca_path
    e2ee_proxy = stack.start_proxy("v3-chutes-e2ee-proxy", **relay.proxy_env())
    att, chutes_att, e2ee_att = attest(proxy, stack), attest(chutes_proxy, stack), attest(e2ee_proxy, stack)
    chutes_stub.reset()
    out = {
        "vllm-chat": Target(proxy, att, CHAT, "stub-model", None, {"to": TEXT}),
        "vllm-text": Target(proxy, att, TEXT, "stub-model", None, {"to": CHAT}),
        "chutes": Target(chutes_proxy, chutes_att, CHUTES, "stub-model", lambda: len(upstream_posts(chutes_stub)),
                         {"to": CHAT}),
        "chutes-e2ee": Target(e2ee_proxy, e2ee_att, CHUTES, "stub-e2e-model", lambda: len(relay.invocations),
                              {"to": CHAT}),
    }
    out["_reset"] = lambda: (chutes_stub.reset(), relay.reset())
    yield out
    relay.stop()


# ---------------------------------------------------------------- request side: what the gateway may try


def clear(field, value):
    return lambda t, body: (t.route, with_envelope(body, lambda d: d.__setitem__(field, value(d))), {}, True)


def inner(field, value):
    return lambda t, body: (t.route, with_envelope(body, lambda d: d["e2ee"].__setitem__(field, value(d))), {}, True)


def req(edit):
    return lambda t, body: (t.route, with_req(body, edit), {}, True)


def header(name, value):
    return lambda t, body: (t.route, body, {name: value}, True)


def hdr(key_id, kem, aead):
    return req(lambda raw: bytes([key_id]) + kem.to_bytes(2, "big") + raw[3:5] + aead.to_bytes(2, "big") + raw[HDR:])


def mismatched(inner_change):
    """A real envelope (sealed to the attested key) whose opened body disagrees with the clear model/stream."""
    def make(t, body):
        document = json.loads(body)
        plain = body_for(t.route, "gateway's own", model=t.model, stream=document["stream"])
        inner_change(plain)
        return t.route, seal_mismatched(t.att, t.route, json.dumps(plain).encode(), document["model"],
                                        document["stream"]), {}, True
    return make


CASES = {
    # Route, model, stream flag and time are in the HPKE key schedule: any edit fails to open.
    "clear-model-changed": (clear("model", lambda d: "stub-other-model"), "e2ee_decryption_failed"),
    "clear-stream-flipped": (clear("stream", lambda d: not d["stream"]), "e2ee_decryption_failed"),
    "ts-changed": (inner("ts", lambda d: d["e2ee"]["ts"] + 1), "e2ee_decryption_failed"),
    "ts-outside-window": (inner("ts", lambda d: d["e2ee"]["ts"] - 3600), "e2ee_invalid_timestamp"),
    "moved-to-another-route": (lambda t, body: (t.others["to"], body, {}, True), "e2ee_decryption_failed"),
    "req-truncated-before-enc-ends": (req(lambda raw: raw[:HDR + ENC - 1]), "invalid_e2ee_request"),
    "req-ct-shorter-than-tag": (req(lambda raw: raw[:HDR + ENC + 15]), "e2ee_decryption_failed"),
    "req-last-byte-cut": (req(lambda raw: raw[:-1]), "e2ee_decryption_failed"),
    "req-ct-byte-flipped": (req(lambda raw: flip(raw, len(raw) - 20)), "e2ee_decryption_failed"),
    "req-enc-byte-flipped": (req(lambda raw: flip(raw, HDR + 5)), "e2ee_decryption_failed"),
    "req-bytes-appended": (req(lambda raw: raw + b"more"), "e2ee_decryption_failed"),
    "hdr-unknown-key-id": (hdr(7, 0x0020, 2), "invalid_e2ee_request"),
    "hdr-suite-not-offered": (hdr(0, 0x647A, 2), "invalid_e2ee_request"),
    "hdr-other-offered-aead": (hdr(0, 0x0020, 3), "e2ee_decryption_failed"),
    "req-not-base64": (inner("req", lambda d: d["e2ee"]["req"][:-4] + "!!!!"), "invalid_e2ee_request"),
    "unknown-kc": (inner("kc", lambda d: "0" * 32), "e2ee_key_unknown"),
    "extra-clear-member": (clear("messages", lambda d: [{"role": "user", "content": "x"}]), "invalid_e2ee_request"),
    "extra-e2ee-member": (inner("pk", lambda d: "00"), "invalid_e2ee_request"),
    "ts-a-string": (inner("ts", lambda d: str(d["e2ee"]["ts"])), "invalid_e2ee_request"),
    "v-2": (inner("v", lambda d: 2), "invalid_e2ee_request"),
    "with-X-Signing-Algo": (header("X-Signing-Algo", "ecdsa"), "invalid_e2ee_request"),
    "with-X-Client-Pub-Key": (header("X-Client-Pub-Key", "04" + "11" * 64), "invalid_e2ee_request"),
    "with-X-Model-Pub-Key": (header("X-Model-Pub-Key", "22" * 64), "invalid_e2ee_request"),
    "with-X-E2EE-Nonce": (header("X-E2EE-Nonce", "n" * 32), "invalid_e2ee_request"),
    "with-X-E2EE-Timestamp": (header("X-E2EE-Timestamp", str(int(time.time()))), "invalid_e2ee_request"),
    "without-X-E2EE-Version": (lambda t, body: (t.route, body, {}, False), "invalid_e2ee_request"),
    "version-header-on-a-plain-body": (
        lambda t, body: (t.route, json.dumps(body_for(t.route, "plain", model=t.model,
                                                      stream=json.loads(body)["stream"])).encode(), {}, True),
        "invalid_e2ee_request"),
    "sealed-model-differs": (mismatched(lambda p: p.__setitem__("model", "stub-sealed-other")),
                             "invalid_e2ee_request"),
    "sealed-stream-differs": (mismatched(lambda p: p.__setitem__("stream", not p.get("stream", False))),
                              "invalid_e2ee_request"),
    "sealed-body-not-an-object": (
        lambda t, body: (t.route, seal_mismatched(t.att, t.route, b"[1, 2]", json.loads(body)["model"],
                                                  json.loads(body)["stream"]), {}, True),
        "invalid_e2ee_request"),
}


def vllm_calls(stub) -> int:
    return len(upstream_posts(stub))


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("target", ["vllm-chat", "vllm-text", "chutes", "chutes-e2ee"])
def test_edited_request_is_refused_nothing_sent_nothing_claimed(targets, stub, target, stream, case):
    targets["_reset"]()
    t: Target = targets[target]
    make, error_type = CASES[case]
    secret = secret_text()
    original = seal(t.att, t.route, body_for(t.route, secret, model=t.model, stream=stream))

    def upstream_total():
        return vllm_calls(stub) + (t.upstream_count() if t.upstream_count else 0)

    route, body, headers, v3_header = make(t, original.body)
    r, raw = send(t.proxy, route, body, stream=stream, headers=headers, v3_header=v3_header)
    refused(r, raw, 400, error_type)
    assert secret not in raw.decode("latin-1")
    assert upstream_total() == 0, "a refused request reached an upstream"

    r, raw = send(t.proxy, t.route, original.body, stream=stream)
    assert r.status_code == 200, raw[:300]
    assert secret in open_answer(original, r, raw).decode()
    assert upstream_total() == 1

    r, raw = send(t.proxy, t.route, original.body, stream=stream)
    refused(r, raw, 400, "e2ee_replay_detected")
    assert upstream_total() == 1


@pytest.mark.parametrize("target", ["vllm-chat", "chutes"])
def test_a_replay_on_another_route_of_the_same_proxy_is_refused(targets, stub, target):
    """The claim is made once per enc: a spent envelope moved elsewhere still does not reach any upstream."""
    targets["_reset"]()
    t: Target = targets[target]
    original = seal(t.att, t.route, body_for(t.route, "once", model=t.model))
    r, raw = send(t.proxy, t.route, original.body, stream=False)
    assert r.status_code == 200
    r, raw = send(t.proxy, t.others["to"], original.body, stream=False)
    refused(r, raw, 400, "e2ee_decryption_failed")


# ---------------------------------------------------------------- answer side: the gateway edits the proxy's answers


@pytest.fixture(scope="module")
def answers(proxy, stack):
    """Real answers of the real proxy: two streams and two JSON answers, each with the request it answers."""
    att = attest(proxy, stack)
    out = {}
    for name, stream in (("stream", True), ("json", False)):
        for which in ("a", "b"):
            # stub-pause-N sends its first event, waits, then the rest: two upstream reads, two sealed chunks.
            model = "stub-pause-150" if stream else "stub-model"
            sealed = seal(att, CHAT, body_for(CHAT, f"answer {which} with a few words", model=model, stream=stream))
            r, raw = send(proxy, CHAT, sealed.body, stream=stream)
            assert r.status_code == 200, raw[:300]
            open_answer(sealed, r, raw)  # untouched, it opens
            out[f"{name}-{which}"] = (sealed, raw)
    return out


def chunk_positions(events) -> list[int]:
    return [i for i, e in enumerate(events) if isinstance(e, dict) and "c" in e.get("e2ee", {})]


def final_position(events) -> int:
    return next(i for i, e in enumerate(events) if isinstance(e, dict) and "f" in e.get("e2ee", {}))


def usage_position(events) -> int:
    return next(i for i, e in enumerate(events) if isinstance(e, dict) and e.get("object") == "e2ee.v3.usage")


def swap(events, i, j):
    events[i], events[j] = events[j], events[i]
    return events


def edit_usage(events):
    events[usage_position(events)]["usage"]["total_tokens"] += 1
    return events


def relabel_chunk_as_final(events):
    first = chunk_positions(events)[0]
    events[first] = {"e2ee": {"f": events[first]["e2ee"]["c"]}}
    return events


def flip_chunk(events):
    position = chunk_positions(events)[1]
    raw = base64.b64decode(events[position]["e2ee"]["c"])
    events[position]["e2ee"]["c"] = base64.b64encode(flip(raw, 3)).decode()
    return events


STREAM_EDITS = {
    "chunks-reordered": lambda e, o: swap(e, *chunk_positions(e)[0:2]),
    "chunk-dropped": lambda e, o: [x for i, x in enumerate(e) if i != chunk_positions(e)[1]],
    "chunk-repeated": lambda e, o: e[:chunk_positions(e)[1] + 1] + [e[chunk_positions(e)[1]]] + e[chunk_positions(e)[1] + 1:],
    "chunk-byte-flipped": lambda e, o: flip_chunk(e),
    "chunk-relabelled-final": lambda e, o: relabel_chunk_as_final(e),
    "final-chunk-removed": lambda e, o: [x for i, x in enumerate(e) if i != final_position(e)],
    "truncated-after-a-chunk": lambda e, o: e[:chunk_positions(e)[1] + 1],
    "truncated-before-done": lambda e, o: e[:-1],
    "final-then-a-chunk": lambda e, o: e[:final_position(e) + 1] + [e[chunk_positions(e)[0]]] + e[final_position(e) + 1:],
    "clear-usage-edited": lambda e, o: edit_usage(e),
    "clear-usage-removed": lambda e, o: [x for i, x in enumerate(e) if i != usage_position(e)],
    "response-nonce-of-another-answer": lambda e, o: [o[0]] + e[1:],
    "spliced-onto-another-opener": lambda e, o: [o[0]] + e[1:final_position(e)] + o[final_position(o):],
    "chunks-of-another-answer": lambda e, o: e[:1] + o[1:],
}


@pytest.mark.parametrize("edit", list(STREAM_EDITS))
def test_edited_stream_answer_is_rejected_by_the_client(answers, edit):
    sealed, raw = answers["stream-a"]
    _, other = answers["stream-b"]
    events, other_events = stream_events(raw), stream_events(other)
    assert len(chunk_positions(events)) >= 2, "the stub's stream should give several sealed chunks"
    edited = STREAM_EDITS[edit](copy.deepcopy(events), copy.deepcopy(other_events))
    with pytest.raises(E2EEVerificationError):
        open_stream(sealed, join_events(edited))


def test_stream_cut_inside_an_event_is_rejected(answers):
    sealed, raw = answers["stream-a"]
    for cut in (len(raw) // 3, len(raw) // 2, len(raw) - 3):
        with pytest.raises(E2EEVerificationError):
            open_stream(sealed, raw[:cut])


def test_whole_answer_of_another_request_is_rejected(answers):
    """The exporter ties an answer to its request: b's untouched answer does not open as a's."""
    for kind in ("stream", "json"):
        sealed_a, _ = answers[f"{kind}-a"]
        _, raw_b = answers[f"{kind}-b"]
        with pytest.raises(E2EEVerificationError):
            (open_stream if kind == "stream" else open_json_envelope)(sealed_a, raw_b)


def json_edit(change):
    def apply(document, other):
        change(document, other)
        return document
    return apply


JSON_EDITS = {
    "clear-usage-edited": json_edit(lambda d, o: d["usage"].__setitem__("completion_tokens", 1)),
    "clear-usage-removed": json_edit(lambda d, o: d.pop("usage")),
    "clear-usage-added-member": json_edit(lambda d, o: d["usage"].__setitem__("cached_tokens", 0)),
    "final-chunk-of-another-answer": json_edit(lambda d, o: d["e2ee"].__setitem__("f", o["e2ee"]["f"])),
    "response-nonce-of-another-answer": json_edit(lambda d, o: d["e2ee"].__setitem__("n", o["e2ee"]["n"])),
    "final-chunk-byte-flipped": json_edit(lambda d, o: d["e2ee"].__setitem__(
        "f", base64.b64encode(flip(base64.b64decode(d["e2ee"]["f"]), 0)).decode())),
    "final-chunk-truncated": json_edit(lambda d, o: d["e2ee"].__setitem__(
        "f", base64.b64encode(base64.b64decode(d["e2ee"]["f"])[:-1]).decode())),
    "relabelled-as-non-final": json_edit(lambda d, o: d["e2ee"].__setitem__("c", d["e2ee"].pop("f"))),
    "extra-clear-member": json_edit(lambda d, o: d.__setitem__("choices", [])),
}


@pytest.mark.parametrize("edit", list(JSON_EDITS))
def test_edited_json_answer_is_rejected_by_the_client(answers, edit):
    sealed, raw = answers["json-a"]
    _, other = answers["json-b"]
    edited = JSON_EDITS[edit](json.loads(raw), json.loads(other))
    with pytest.raises(E2EEVerificationError):
        open_json_envelope(sealed, json.dumps(edited).encode())


def test_the_sdk_never_sees_an_edited_answer(proxy, stack):
    att = attest(proxy, stack)

    def drop_second_chunk(raw: bytes) -> bytes:
        events = stream_events(raw)
        return join_events([e for i, e in enumerate(events) if i != chunk_positions(events)[1]])

    def edit_usage_json(raw: bytes) -> bytes:
        document = json.loads(raw)
        document["usage"]["total_tokens"] += 100
        return json.dumps(document).encode()

    for tamper, stream in ((edit_usage_json, False), (drop_second_chunk, True)):
        transport = E2EETransport(att, inner=Gateway(tamper_response=tamper))
        client = openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=proxy.token, max_retries=0,
                               http_client=httpx.Client(transport=transport, timeout=TIMEOUT))
        messages = [{"role": "user", "content": "several words for several chunks"}]
        # The openai SDK wraps what the transport raises while it sends (APIConnectionError, ours as __cause__);
        # this gateway hands the stream on in one piece, so even the stream's error is found during the send.
        with pytest.raises((E2EEVerificationError, openai.APIConnectionError)) as caught:
            if stream:
                list(client.chat.completions.create(model="stub-pause-150", messages=messages, stream=True))
            else:
                client.chat.completions.create(model="stub-model", messages=messages)
        error = caught.value
        assert isinstance(error, E2EEVerificationError) or isinstance(error.__cause__, E2EEVerificationError)
        assert not transport.last_exchange.complete  # no receipt hashes for an answer that did not verify


def test_gateway_editing_the_request_under_the_sdk_gets_a_clear_refusal_only(proxy, stack, stub):
    """The SDK's request, edited on the way (clear model changed), is refused; the client sees the protocol error
    (E2EEServerError under APIConnectionError) and nothing reached vLLM."""
    att = attest(proxy, stack)
    gateway = Gateway(tamper_request=lambda body: with_envelope(body, lambda d: d.__setitem__("model", "other")))
    client = openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=proxy.token, max_retries=0,
                           http_client=httpx.Client(transport=E2EETransport(att, inner=gateway), timeout=TIMEOUT))
    with pytest.raises(openai.APIConnectionError) as caught:
        client.chat.completions.create(model="stub-model", messages=[{"role": "user", "content": "x"}])
    assert getattr(caught.value.__cause__, "error_type", None) == "e2ee_decryption_failed"
    assert upstream_posts(stub) == []

