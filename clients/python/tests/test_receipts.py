"""Receipt checks (SPEC §5) against records signed here with `cryptography`, independently of any proxy: the text
signature, and the record signature that covers `upstream` and the Chutes fields."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from vllm_proxy_client.errors import ReceiptError
from vllm_proxy_client.receipts import canonical_json, check_receipt
from vllm_proxy_client.transport import Exchange

KEY = Ed25519PrivateKey.generate()
ADDRESS = KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
EXCHANGE = Exchange(route="/v1/chat/completions", request_hash="a" * 64, response_hash="b" * 64, chat_id="chatcmpl-1")
TEXT = f"{'a' * 64}:{'b' * 64}"


def answer(**fields) -> dict:
    """A `/v1/signature?signing_algo=ed25519` answer as the proxy builds it, signed with KEY."""
    stored = {
        "text": TEXT,
        "signature_ed25519": KEY.sign(TEXT.encode()).hex(),
        "signing_address_ed25519": ADDRESS,
        "upstream": "chutes",
        "chutes_transport": "e2ee",
        "chutes_instance_id": "inst-é",
        **fields,
    }
    return {
        "text": TEXT, "signature": stored["signature_ed25519"], "signing_address": ADDRESS, "signing_algo": "ed25519",
        **{k: stored[k] for k in ("upstream", "chutes_transport", "chutes_instance_id")},
        "record": stored,
        "record_signature": KEY.sign(canonical_json(stored).encode()).hex(),
    }


def test_a_signed_record_verifies_and_is_what_counts():
    receipt = check_receipt(answer(), EXCHANGE, signing_algo="ed25519", signing_address=ADDRESS)
    assert receipt.signature_verified is True and receipt.record_verified is True
    assert receipt.signed_record["upstream"] == "chutes" and receipt.signed_record["chutes_instance_id"] == "inst-é"
    # Canonical JSON escapes non-ASCII, as the proxy signs it.
    assert '"inst-\\u00e9"' in canonical_json(receipt.signed_record)


def test_a_relay_rewriting_an_unsigned_copy_is_caught():
    forged = answer()
    forged["upstream"] = "vllm"
    with pytest.raises(ReceiptError, match="upstream"):
        check_receipt(forged, EXCHANGE, signing_algo="ed25519")


def test_a_rewritten_record_does_not_verify():
    forged = answer()
    forged["record"] = {**forged["record"], "chutes_transport": "tls"}
    forged["chutes_transport"] = "tls"
    with pytest.raises(ReceiptError, match="does not verify"):
        check_receipt(forged, EXCHANGE, signing_algo="ed25519")


def test_a_record_of_another_receipt_is_refused():
    other = answer()
    other["record"] = {**other["record"], "text": "c" * 64 + ":" + "d" * 64}
    with pytest.raises(ReceiptError, match="not the record"):
        check_receipt(other, EXCHANGE, signing_algo="ed25519")


def test_a_python_written_record_has_no_record_signature():
    legacy = answer()
    del legacy["record_signature"]
    receipt = check_receipt(legacy, EXCHANGE, signing_algo="ed25519")
    assert receipt.signature_verified is True and receipt.record_verified is None and receipt.signed_record is None


def test_the_canonical_form_is_sorted_compact_ascii():
    assert canonical_json({"b": 1, "a": ["é", None]}) == json.dumps({"a": ["\u00e9", None], "b": 1}, separators=(",", ":"))
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"\\u00e9","b":1}'
