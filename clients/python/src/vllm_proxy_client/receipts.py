"""Receipts (SPEC §5) for v3 exchanges: the proxy signs "{request hash}:{response hash}", where the request hash
is SHA-256 of the exact envelope bytes it received and the response hash SHA-256 of every byte it sent. The
client computed both over what it sent and received (transport.Exchange), so a matching signed text proves the
proxy saw exactly this exchange — a gateway that changed a byte either way cannot produce it.
"""

from __future__ import annotations

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
    return Receipt(record["text"], record["signature"], signing_algo, address, verified, record)


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
