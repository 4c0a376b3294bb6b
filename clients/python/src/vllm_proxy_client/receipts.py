"""Receipts (SPEC §5) for v3 exchanges: the proxy signs "{request hash}:{response hash}", where the request hash
is SHA-256 of the exact envelope bytes it received and the response hash SHA-256 of every byte it sent. The
client computed both over what it sent and received (transport.Exchange), so a matching signed text proves the
proxy saw exactly this exchange — a gateway that changed a byte either way cannot produce it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .attestation import proxy_origin
from .errors import ReceiptError
from .transport import Exchange


@dataclass(frozen=True)
class Receipt:
    text: str
    signature: str
    signing_algo: str
    signing_address: str
    # True: checked against signing_address. None: an ecdsa signature and eth-account is not installed
    # (`pip install vllm-proxy-client[eth]`); the text still matched.
    signature_verified: bool | None
    record: dict[str, Any]
    # What the record says besides the two hashes (`upstream`, and for Chutes `chutes_transport`,
    # `chutes_instance_id`, `chutes_attestation`), as covered by `record_signature` (SPEC §5). None: the record
    # has no record signature (written by the Python implementation), so nothing beyond `text` is authenticated.
    signed_record: dict[str, Any] | None = None
    # True: record_signature checked against signing_address. None: no record signature, or an ecdsa one without
    # eth-account installed.
    record_verified: bool | None = None


# The record fields a `/v1/signature` answer repeats at its top level; only the signed `record`'s count.
RECORD_FIELDS = ("upstream", "chutes_transport", "chutes_instance_id", "chutes_attestation")


def canonical_json(value: Any) -> str:
    """SPEC §7.2's canonical JSON, what `record_signature` signs: sorted keys, compact, ASCII escapes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _verify_signature(algo: str, text: str, signature: str, address: str) -> bool | None:
    if algo == "ed25519":
        try:
            Ed25519PublicKey.from_public_bytes(bytes.fromhex(address)).verify(bytes.fromhex(signature), text.encode())
        except (ValueError, InvalidSignature) as error:
            raise ReceiptError("the ed25519 receipt signature does not verify") from error
        return True
    try:
        from eth_account import Account
        from eth_account.messages import encode_defunct
    except ImportError:
        return None
    try:
        signer = Account.recover_message(encode_defunct(text=text), signature=signature)
    except Exception as error:  # eth-account raises several unrelated types for a malformed signature
        raise ReceiptError("the ecdsa receipt signature is malformed") from error
    if signer.lower() != address.lower():
        raise ReceiptError(f"the ecdsa receipt was signed by {signer}, not {address}")
    return True


def check_receipt(
    record: Any, exchange: Exchange, *, signing_algo: str = "ecdsa", signing_address: str | None = None
) -> Receipt:
    """Checks a `/v1/signature/{id}` answer against a completed exchange (and the attested address, if given)."""
    if not exchange.complete:
        raise ReceiptError("the exchange is not complete: read the whole answer before checking its receipt")
    if not isinstance(record, dict) or not all(isinstance(record.get(k), str) for k in ("text", "signature", "signing_address")):
        raise ReceiptError("malformed signature record")
    expected = f"{exchange.request_hash}:{exchange.response_hash}"
    if record["text"] != expected:
        raise ReceiptError(f"the receipt covers {record['text']!r}, this exchange is {expected!r}")
    if record.get("signing_algo", signing_algo) != signing_algo:
        raise ReceiptError(f"receipt for {record.get('signing_algo')!r}, asked for {signing_algo!r}")
    address = record["signing_address"]
    if signing_address is not None and address.lower() != signing_address.lower():
        raise ReceiptError(f"the receipt names signer {address}, the attested one is {signing_address}")
    verified = _verify_signature(signing_algo, record["text"], record["signature"], address)
    signed, record_verified = _check_record_signature(record, signing_algo, address)
    return Receipt(record["text"], record["signature"], signing_algo, address, verified, record, signed, record_verified)


def _check_record_signature(answer: dict[str, Any], algo: str, address: str) -> tuple[dict[str, Any] | None, bool | None]:
    """The signed record and whether its signature verified; a record whose fields disagree with the answer's, or
    whose signature does not verify, is refused: a relay could rewrite the unsigned copies (say `upstream`)."""
    signature = answer.get("record_signature")
    if signature is None:
        return None, None
    record = answer.get("record")
    if not isinstance(signature, str) or not isinstance(record, dict):
        raise ReceiptError("malformed record or record_signature")
    if record.get("text") != answer["text"] or record.get(f"signature_{algo}") != answer["signature"]:
        raise ReceiptError("the signed record is not the record of this receipt")
    if record.get(f"signing_address_{algo}", address) != address:
        raise ReceiptError("the signed record names another signer")
    for field in RECORD_FIELDS:
        if field in answer and answer[field] != record.get(field):
            raise ReceiptError(f"the answer's {field} is not the signed record's")
    verified = _verify_signature(algo, canonical_json(record), signature, address)
    return record, verified


def _signature_url(base_url: str, exchange: Exchange) -> str:
    if exchange.chat_id is None:
        raise ReceiptError(f"no chat id in the answer on {exchange.route}: it has no receipt")
    return f"{proxy_origin(base_url)}/v1/signature/{exchange.chat_id}"


def _record(response: httpx.Response) -> Any:
    if response.status_code != 200:
        raise ReceiptError(f"signature record: {response.status_code} {response.text[:200]}")
    return response.json()


def fetch_receipt(
    base_url: str,
    token: str,
    exchange: Exchange,
    *,
    client: httpx.Client | None = None,
    signing_algo: str = "ecdsa",
    signing_address: str | None = None,
) -> Receipt:
    """GETs `/v1/signature/{chat id}` for a completed exchange and checks it (`check_receipt`)."""
    url = _signature_url(base_url, exchange)
    owned = client is None
    client = client or httpx.Client(timeout=60)
    try:
        response = client.get(
            url, params={"signing_algo": signing_algo}, headers={"Authorization": f"Bearer {token}"}
        )
    finally:
        if owned:
            client.close()
    return check_receipt(_record(response), exchange, signing_algo=signing_algo, signing_address=signing_address)


async def fetch_receipt_async(
    base_url: str,
    token: str,
    exchange: Exchange,
    *,
    client: httpx.AsyncClient | None = None,
    signing_algo: str = "ecdsa",
    signing_address: str | None = None,
) -> Receipt:
    """`fetch_receipt` for asyncio."""
    url = _signature_url(base_url, exchange)
    owned = client is None
    client = client or httpx.AsyncClient(timeout=60)
    try:
        response = await client.get(
            url, params={"signing_algo": signing_algo}, headers={"Authorization": f"Bearer {token}"}
        )
    finally:
        if owned:
            await client.aclose()
    return check_receipt(_record(response), exchange, signing_algo=signing_algo, signing_address=signing_address)
