"""Seal → open round trips against the reference server, and every tampering the client must detect."""

from __future__ import annotations

import json

import pytest
from reference_server import ReferenceServer, b64

from vllm_proxy_client import (
    E2EEError,
    E2EEVerificationError,
    StreamEnvelopeReader,
    Suite,
    open_json_envelope,
    parse_key_configs,
    seal_request,
)

SERVER = ReferenceServer()
CHAT = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function"}]}'
STREAM_CHAT = b'{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}'
USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5, "prompt_tokens_details": {"cached_tokens": 0}}
READS = [
    b'data: {"id":"c1","choices":[{"delta":{"content":"He"}}]}\n\n',
    b'data: {"id":"c1","choices":[{"delta":{"content":"llo"}}]}\n\n',
    b'data: {"id":"c1","choices":[],"usage":' + json.dumps(USAGE).encode() + b"}\n\n",
    b"data: [DONE]\n\n",
]


def seal(body: bytes, route: str = "/v1/chat/completions", suite: Suite = Suite.X25519_AES256GCM):
    sealed = seal_request(body, route=route, key_configs=parse_key_configs(SERVER.K), kc=SERVER.kc, suite=suite)
    return sealed, SERVER.open_request(route, sealed.body)


def read(sealed, wire: bytes, split: int | None = None) -> bytes:
    reader = StreamEnvelopeReader(sealed)
    step = split or len(wire) or 1
    out = b"".join(reader.feed(wire[i : i + step]) for i in range(0, len(wire), step))
    return out + reader.finish()


# ---------------------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("suite", [Suite.X25519_AES256GCM, Suite.X25519_CHACHA20POLY1305])
def test_json_round_trip(suite):
    sealed, opened = seal(CHAT, suite=suite)
    assert opened.body == json.loads(CHAT)
    answer = json.dumps({"id": "chatcmpl-1", "choices": [], "usage": USAGE}).encode()
    result = open_json_envelope(sealed, SERVER.json_answer(opened, answer))
    assert result.body == answer and result.chat_id == "chatcmpl-1"
    assert result.usage == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


@pytest.mark.parametrize("split", [None, 1, 7])
@pytest.mark.parametrize("suite", [Suite.X25519_AES256GCM, Suite.X25519_CHACHA20POLY1305])
def test_stream_round_trip_in_any_pieces(suite, split):
    sealed, opened = seal(STREAM_CHAT, suite=suite)
    wire = SERVER.wire(SERVER.stream_events(opened, READS, USAGE))
    assert read(sealed, wire, split) == b"".join(READS)


def test_stream_round_trip_with_crlf_and_wire_comments():
    sealed, opened = seal(STREAM_CHAT)
    wire = SERVER.wire(SERVER.stream_events(opened, READS, USAGE)).replace(b"\n", b"\r\n")
    assert read(sealed, b": keep-alive\r\n\r\n" + wire, 5) == b"".join(READS)


def test_every_sealed_route_and_a_prefix_before_v1():
    for route in ("/v1/completions", "/v1/embeddings", "/v1/responses", "/v1/tokenize", "/v1/images/generations"):
        sealed, opened = seal(b'{"model":"m","input":"x"}', route=route)
        assert opened.body["input"] == "x"


def test_edited_route_model_stream_or_time_does_not_open():
    sealed, _ = seal(CHAT)
    with pytest.raises(Exception):
        SERVER.open_request("/v1/completions", sealed.body)
    for edit in ({"model": "other"}, {"stream": True}):
        envelope = json.loads(sealed.body) | edit
        with pytest.raises(Exception):
            SERVER.open_request("/v1/chat/completions", json.dumps(envelope).encode())
    envelope = json.loads(sealed.body)
    envelope["e2ee"]["ts"] += 1
    with pytest.raises(Exception):
        SERVER.open_request("/v1/chat/completions", json.dumps(envelope).encode())


def test_request_needs_a_json_object_with_string_model_and_boolean_stream():
    for body in (b"[1]", b"not json", b'{"model":1}', b'{"stream":"true"}', b'{"a":1,"a":2}'):
        with pytest.raises(E2EEError):
            seal(body)


def test_x_wing_is_refused_clearly():
    with pytest.raises(E2EEError, match="X-Wing"):
        seal(CHAT, suite=Suite.XWING_AES256GCM)


# ------------------------------------------------------------------------------------------------ streams


def stream_case():
    sealed, opened = seal(STREAM_CHAT)
    return sealed, opened, SERVER.stream_events(opened, READS, USAGE)


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda e: [e[0], e[2], e[1], *e[3:]], id="reorder"),
        pytest.param(lambda e: [e[0], e[1], *e[3:]], id="drop"),
        pytest.param(lambda e: [e[0], e[1], e[1], *e[2:]], id="duplicate"),
        pytest.param(lambda e: e[:-3], id="truncate-before-final"),
        pytest.param(lambda e: e[:3], id="truncate-mid-stream"),
        pytest.param(lambda e: e[:-3] + ["[DONE]"], id="done-without-final"),
        pytest.param(lambda e: e[:-1], id="no-done"),
        pytest.param(lambda e: [e[0], *e[2:]], id="drop-first-chunk"),
        pytest.param(lambda e: e + [{"e2ee": {"c": e[1]["e2ee"]["c"]}}], id="data-after-done"),
        pytest.param(lambda e: e[:-2] + [{"e2ee": {"c": e[1]["e2ee"]["c"]}}] + e[-2:], id="chunk-after-final"),
        pytest.param(lambda e: e[:-2] + [e[-2], e[-2], e[-1]], id="usage-twice"),
        pytest.param(lambda e: e[1:], id="no-header"),
        pytest.param(lambda e: [e[0], {"e2ee": {"f": e[1]["e2ee"]["c"]}}, *e[2:]], id="chunk-relabelled-final"),
        pytest.param(lambda e: [*e[:-3], {"e2ee": {"c": e[-3]["e2ee"]["f"]}}, *e[-2:]], id="final-relabelled-chunk"),
        pytest.param(lambda e: [e[0] | {"extra": 1}, *e[1:]], id="header-extra-member"),
        pytest.param(lambda e: [e[0], {"e2ee": {"c": e[1]["e2ee"]["c"], "f": e[2]["e2ee"]["c"]}}, *e[3:]], id="c-and-f"),
    ],
)
def test_stream_tampering_is_detected(edit):
    sealed, _, events = stream_case()
    with pytest.raises(E2EEVerificationError):
        read(sealed, SERVER.wire(edit(events)))


def test_stream_flipped_ciphertext_bit_is_detected():
    sealed, _, events = stream_case()
    chunk = bytearray(__import__("base64").b64decode(events[2]["e2ee"]["c"]))
    chunk[0] ^= 1
    events[2] = {"e2ee": {"c": b64(bytes(chunk))}}
    with pytest.raises(E2EEVerificationError):
        read(sealed, SERVER.wire(events))


def test_stream_spliced_from_another_request_is_detected():
    sealed, _, _ = stream_case()
    _, _, other_events = stream_case()  # the same plaintext, another request: another exporter secret
    with pytest.raises(E2EEVerificationError):
        read(sealed, SERVER.wire(other_events))


@pytest.mark.parametrize(
    "usage",
    [
        pytest.param({"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}, id="edited"),
        pytest.param({"prompt_tokens": 3, "completion_tokens": 2}, id="member-dropped"),
        pytest.param({"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5, "x": 1}, id="member-added"),
        pytest.param(None, id="usage-event-removed"),
    ],
)
def test_stream_clear_usage_must_equal_the_sealed_usage(usage):
    sealed, _, events = stream_case()
    events = [e for e in events if not (isinstance(e, dict) and e.get("object") == "e2ee.v3.usage")]
    if usage is not None:
        events.insert(-1, {"object": "e2ee.v3.usage", "choices": [], "usage": usage})
    with pytest.raises(E2EEVerificationError, match="usage"):
        read(sealed, SERVER.wire(events))


def test_stream_clear_usage_added_when_sealed_has_none():
    sealed, opened = seal(STREAM_CHAT)
    events = SERVER.stream_events(opened, READS[:2] + READS[3:], None)
    assert read(sealed, SERVER.wire(events)) == READS[0] + READS[1] + READS[3]
    events.insert(-1, {"object": "e2ee.v3.usage", "choices": [], "usage": {"total_tokens": 1}})
    with pytest.raises(E2EEVerificationError, match="usage"):
        read(sealed, SERVER.wire(events))


def test_empty_non_final_chunk_is_refused_but_empty_final_is_fine():
    sealed, opened = seal(STREAM_CHAT)
    events = SERVER.stream_events(opened, [READS[0], b"", READS[3]], None)
    with pytest.raises(E2EEVerificationError, match="empty"):
        read(sealed, SERVER.wire(events))
    sealed, opened = seal(STREAM_CHAT)
    assert read(sealed, SERVER.wire(SERVER.stream_events(opened, [READS[0], READS[3]], None))) == READS[0] + READS[3]


def test_stream_padding_lines_are_removed_for_the_caller():
    sealed, opened = seal(STREAM_CHAT)
    padded = [r + b":" + b" " * 40 + b"\n" for r in READS[:3]]
    padded[1] = b":    \n" + padded[1]
    events = SERVER.stream_events(opened, padded, USAGE, final=READS[3] + b":       \n")
    assert read(sealed, SERVER.wire(events), 3) == b"".join(READS)


def test_stream_done_is_held_back_until_the_stream_is_verified():
    """A caller that stops at [DONE] (the openai SDK) must never see it before the whole stream checked out."""
    sealed, _, events = stream_case()
    reader = StreamEnvelopeReader(sealed)
    seen = reader.feed(SERVER.wire(events[:-1]))  # everything but the wire's own [DONE]
    assert b"[DONE]" not in seen and seen == b"".join(READS[:3])
    reader.feed(b"data: [DONE]\n\n")
    assert reader.finish() == READS[3]


def test_responses_stream_usage_and_id_come_from_response_members():
    sealed, opened = seal(b'{"model":"m","stream":true,"input":"hi"}', route="/v1/responses")
    usage = {"input_tokens": 2, "output_tokens": 1, "total_tokens": 3, "output_tokens_details": {"reasoning_tokens": 0}}
    reads = [
        b'event: response.created\ndata: {"type":"response.created","response":{"id":"resp_1","usage":null}}\n\n',
        b'event: response.completed\ndata: {"type":"response.completed","response":{"id":"resp_1","usage":'
        + json.dumps(usage).encode() + b"}}\n\n",
    ]
    reader = StreamEnvelopeReader(sealed)
    wire = SERVER.wire(SERVER.stream_events(opened, reads, usage))
    assert reader.feed(wire) + reader.finish() == b"".join(reads)
    assert reader.chat_id == "resp_1" and reader.clear_usage == SERVER.numeric_usage(usage)


# --------------------------------------------------------------------------------------------------- JSON


def json_case(answer: bytes = json.dumps({"id": "c9", "usage": {"prompt_tokens": 1, "total_tokens": 1}}).encode()):
    sealed, opened = seal(CHAT)
    return sealed, opened, json.loads(SERVER.json_answer(opened, answer))


def test_json_padding_is_removed_for_the_caller():
    sealed, opened = seal(CHAT)
    answer = b'{"id":"c9"}'
    assert open_json_envelope(sealed, SERVER.json_answer(opened, answer + b" " * 50)).body == answer


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda e: e | {"usage": {"prompt_tokens": 2, "total_tokens": 2}}, id="usage-edited"),
        pytest.param(lambda e: {k: v for k, v in e.items() if k != "usage"}, id="usage-removed"),
        pytest.param(lambda e: e | {"usage": None}, id="usage-null"),
        pytest.param(lambda e: e | {"extra": 1}, id="extra-member"),
        pytest.param(lambda e: e | {"object": "chat.completion"}, id="object"),
        pytest.param(lambda e: e | {"e2ee": e["e2ee"] | {"v": 2}}, id="version"),
        pytest.param(lambda e: e | {"e2ee": e["e2ee"] | {"n": b64(b"\0" * 32)}}, id="nonce-swapped"),
        pytest.param(lambda e: e | {"e2ee": e["e2ee"] | {"n": b64(b"\0" * 31)}}, id="nonce-short"),
        pytest.param(lambda e: e | {"e2ee": e["e2ee"] | {"f": "!!"}}, id="not-base64"),
        pytest.param(lambda e: e | {"e2ee": {"v": 3, "n": e["e2ee"]["n"], "c": e["e2ee"]["f"]}}, id="c-not-f"),
    ],
)
def test_json_tampering_is_detected(edit):
    sealed, _, envelope = json_case()
    with pytest.raises(E2EEVerificationError):
        open_json_envelope(sealed, json.dumps(edit(envelope)).encode())


def test_json_spliced_from_another_request_is_detected():
    sealed, _, _ = json_case()
    _, _, other = json_case()
    with pytest.raises(E2EEVerificationError):
        open_json_envelope(sealed, json.dumps(other).encode())


def test_json_clear_usage_added_when_sealed_has_none():
    sealed, opened = seal(CHAT)
    envelope = json.loads(SERVER.json_answer(opened, b'{"id":"x"}'))
    assert "usage" not in envelope
    with pytest.raises(E2EEVerificationError, match="usage"):
        open_json_envelope(sealed, json.dumps(envelope | {"usage": {"total_tokens": 0}}).encode())


def test_json_non_json_upstream_error_body_opens():
    sealed, opened = seal(CHAT)
    assert open_json_envelope(sealed, SERVER.json_answer(opened, b"Internal Server Error")).body == b"Internal Server Error"
