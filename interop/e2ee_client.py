"""An independent E2EE client written from SPEC §4, with `cryptography` only (no code shared with the proxy).

Key agreement:
- ecdsa: secp256k1 ECDH; the shared secret is the x-coordinate of the shared point (what `ECDH` returns).
- ed25519: Ed25519 keys mapped to X25519 — public u = (1 + y)/(1 − y) mod 2^255 − 19 (plain ints here),
  private = first 32 bytes of SHA-512(seed), clamped.
AES key = HKDF-SHA256(secret, salt=None, info=b"{algo}_encryption", 32); AES-256-GCM, 12-byte nonce, 16-byte tag.
A field is hex(ephemeral public ‖ nonce ‖ ciphertext ‖ tag); the ephemeral key is 65 bytes (04‖x‖y) for ecdsa
and 32 bytes (X25519) for ed25519.
"""

from __future__ import annotations

import copy
import hashlib
import os
import secrets
import time
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

ALGOS = ("ecdsa", "ed25519")
P25519 = 2**255 - 19
ED25519_D = (-121665 * pow(121666, P25519 - 2, P25519)) % P25519
SECP256K1_P = 2**256 - 2**32 - 977
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
NONCE_LEN, TAG_LEN = 12, 16
EPHEMERAL_LEN = {"ecdsa": 65, "ed25519": 32}
RESPONSE_FIELDS = ("content", "reasoning_content", "reasoning")


class E2EEError(Exception):
    pass


# ---------------------------------------------------------------- Ed25519 → X25519


def ed25519_public_to_x25519(public: bytes) -> bytes:
    """u = (1 + y) / (1 − y) mod p, y = the key read little-endian with its top (sign) bit cleared."""
    if len(public) != 32:
        raise E2EEError("Ed25519 public key must be 32 bytes")
    y = int.from_bytes(public, "little") & ((1 << 255) - 1)
    denominator = (1 - y) % P25519
    if denominator == 0:
        raise E2EEError("y = 1 has no Montgomery u")
    u = (1 + y) * pow(denominator, P25519 - 2, P25519) % P25519
    return u.to_bytes(32, "little")


def ed25519_seed_to_x25519_private(seed: bytes) -> bytes:
    """The first 32 bytes of SHA-512(seed), clamped as X25519 requires."""
    if len(seed) != 32:
        raise E2EEError("Ed25519 seed must be 32 bytes")
    h = bytearray(hashlib.sha512(seed).digest()[:32])
    h[0] &= 248
    h[31] &= 127
    h[31] |= 64
    return bytes(h)


def ed25519_is_point(public: bytes) -> bool:
    """Whether 32 bytes decode to a point on edwards25519 (x² = (y² − 1)/(d·y² + 1) has a root)."""
    y = int.from_bytes(public, "little") & ((1 << 255) - 1)
    if y >= P25519:
        return False
    x2 = (y * y - 1) * pow(ED25519_D * y * y + 1, P25519 - 2, P25519) % P25519
    return x2 == 0 or pow(x2, (P25519 - 1) // 2, P25519) == 1


def ed25519_non_point() -> bytes:
    """The smallest y whose x² is not a square: 32 bytes that are no Ed25519 public key."""
    y = 2
    while ed25519_is_point(y.to_bytes(32, "little")):
        y += 1
    return y.to_bytes(32, "little")


def secp256k1_off_curve() -> bytes:
    """64 bytes x‖y with y² ≠ x³ + 7: not a secp256k1 point."""
    x = 1
    y = 1
    assert (y * y - (x**3 + 7)) % SECP256K1_P != 0
    return x.to_bytes(32, "big") + y.to_bytes(32, "big")


# ---------------------------------------------------------------- primitives


def hkdf_key(secret: bytes, algo: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=f"{algo}_encryption".encode()).derive(secret)


def secp256k1_public_from_wire(public: bytes) -> ec.EllipticCurvePublicKey:
    """64-byte x‖y, or 65-byte 04‖x‖y."""
    if len(public) == 64:
        public = b"\x04" + public
    if len(public) != 65 or public[0] != 4:
        raise E2EEError("secp256k1 public key must be 64 bytes x‖y or 65 bytes 04‖x‖y")
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), public)


def secp256k1_uncompressed(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def secp256k1_private(scalar: bytes) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int.from_bytes(scalar, "big"), ec.SECP256K1())


def shared_secret(algo: str, private: bytes, peer_public: bytes) -> bytes:
    """ecdsa: private = 32-byte scalar, peer = 64/65-byte point; ed25519: private = X25519 scalar, peer = X25519 u."""
    if algo == "ecdsa":
        return secp256k1_private(private).exchange(ec.ECDH(), secp256k1_public_from_wire(peer_public))
    if algo == "ed25519":
        return X25519PrivateKey.from_private_bytes(private).exchange(X25519PublicKey.from_public_bytes(peer_public))
    raise E2EEError(f"unknown algorithm {algo!r}")


def x25519_public(private: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


def encrypt_field(
    algo: str,
    recipient_public: bytes,
    plaintext: str | bytes,
    aad: str | None,
    *,
    ephemeral_private: bytes | None = None,
    nonce: bytes | None = None,
) -> str:
    """Seals plaintext to a recipient's wire public key (ecdsa: 64/65-byte point; ed25519: the Ed25519 key).

    `ephemeral_private` and `nonce` are for known-answer tests; by default both are fresh and random.
    """
    data = plaintext.encode() if isinstance(plaintext, str) else plaintext
    nonce = os.urandom(NONCE_LEN) if nonce is None else nonce
    if algo == "ecdsa":
        if ephemeral_private is None:
            ephemeral = ec.generate_private_key(ec.SECP256K1())
        else:
            ephemeral = secp256k1_private(ephemeral_private)
        secret = ephemeral.exchange(ec.ECDH(), secp256k1_public_from_wire(recipient_public))
        ephemeral_public = secp256k1_uncompressed(ephemeral.public_key())
    elif algo == "ed25519":
        ephemeral_private = os.urandom(32) if ephemeral_private is None else ephemeral_private
        secret = shared_secret(algo, ephemeral_private, ed25519_public_to_x25519(recipient_public))
        ephemeral_public = x25519_public(ephemeral_private)
    else:
        raise E2EEError(f"unknown algorithm {algo!r}")
    sealed = AESGCM(hkdf_key(secret, algo)).encrypt(nonce, data, None if aad is None else aad.encode())
    return (ephemeral_public + nonce + sealed).hex()


def decrypt_field(algo: str, own_private: bytes, field_hex: str, aad: str | None) -> bytes:
    """Opens a field sealed to us; own_private is the secp256k1 scalar (ecdsa) or the Ed25519 seed (ed25519)."""
    raw = bytes.fromhex(field_hex)
    ephemeral_len = EPHEMERAL_LEN[algo]
    if len(raw) < ephemeral_len + NONCE_LEN + TAG_LEN:
        raise E2EEError("field too short")
    ephemeral, nonce, sealed = raw[:ephemeral_len], raw[ephemeral_len:ephemeral_len + NONCE_LEN], raw[ephemeral_len + NONCE_LEN:]
    if algo == "ecdsa":
        if ephemeral[0] != 4:
            raise E2EEError("ecdsa ephemeral key must be 04‖x‖y")
        secret = shared_secret(algo, own_private, ephemeral)
    else:
        secret = shared_secret(algo, ed25519_seed_to_x25519_private(own_private), ephemeral)
    return AESGCM(hkdf_key(secret, algo)).decrypt(nonce, sealed, None if aad is None else aad.encode())


def split_field(algo: str, field_hex: str) -> tuple[bytes, bytes, bytes]:
    """(ephemeral public, nonce, ciphertext‖tag)."""
    raw = bytes.fromhex(field_hex)
    n = EPHEMERAL_LEN[algo]
    return raw[:n], raw[n:n + NONCE_LEN], raw[n + NONCE_LEN:]


# ---------------------------------------------------------------- AAD


def request_aad(algo: str, model: str, message: int, item: int | None, nonce: str, timestamp: str) -> str:
    c = "-" if item is None else str(item)
    return f"v2|req|algo={algo}|model={model}|m={message}|c={c}|n={nonce}|ts={timestamp}"


def response_aad(algo: str, model: str, chat_id: str, choice: int, field_name: str, nonce: str, timestamp: str) -> str:
    return f"v2|resp|algo={algo}|model={model}|id={chat_id}|choice={choice}|field={field_name}|n={nonce}|ts={timestamp}"


# ---------------------------------------------------------------- a client session


@dataclass
class E2EEClient:
    """One client key pair, talking to one proxy key, in protocol version 1 or 2.

    `model_public` is the proxy's key as it goes in X-Model-Pub-Key: the ecdsa `signing_public_key`
    (64-byte x‖y) or the Ed25519 public key (the ed25519 signing address).
    """

    algo: str
    version: int
    model_public: bytes
    private: bytes = field(default=b"")  # secp256k1 scalar, or Ed25519 seed
    nonce: str = ""
    timestamp: str = ""

    def __post_init__(self) -> None:
        if not self.private:
            if self.algo == "ecdsa":
                self.private = ec.generate_private_key(ec.SECP256K1()).private_numbers().private_value.to_bytes(32, "big")
            else:
                self.private = secrets.token_bytes(32)
        self.fresh_nonce()

    def fresh_nonce(self) -> None:
        """A new (nonce, timestamp) pair for the next v2 request."""
        self.nonce = secrets.token_hex(16)
        self.timestamp = str(int(time.time()))

    @property
    def public(self) -> bytes:
        """Our public key as it goes in X-Client-Pub-Key (ecdsa: 64-byte x‖y; ed25519: the Ed25519 key)."""
        if self.algo == "ecdsa":
            return secp256k1_uncompressed(secp256k1_private(self.private).public_key())[1:]
        return Ed25519PrivateKey.from_private_bytes(self.private).public_key().public_bytes_raw()

    def headers(self) -> dict[str, str]:
        h = {
            "X-Signing-Algo": self.algo,
            "X-Client-Pub-Key": self.public.hex(),
            "X-Model-Pub-Key": self.model_public.hex(),
        }
        if self.version == 2:
            h.update({"X-E2EE-Version": "2", "X-E2EE-Nonce": self.nonce, "X-E2EE-Timestamp": self.timestamp})
        return h

    # -- requests

    def req_aad(self, model: str, message: int, item: int | None) -> str | None:
        if self.version != 2:
            return None
        return request_aad(self.algo, model, message, item, self.nonce, self.timestamp)

    def seal(self, plaintext: str, model: str, message: int, item: int | None) -> str:
        return encrypt_field(self.algo, self.model_public, plaintext, self.req_aad(model, message, item))

    def encrypt_body(self, body: dict) -> dict:
        """Encrypts every string content, and the `text` of every text item of an array content."""
        out = copy.deepcopy(body)
        model = out.get("model")
        for i, message in enumerate(out.get("messages", [])):
            if not isinstance(message, dict):
                continue
            content = message.get("content")
            if isinstance(content, str):
                message["content"] = self.seal(content, model, i, None)
            elif isinstance(content, list):
                for j, item in enumerate(content):
                    if isinstance(item, dict) and item.get("type") == "text" and isinstance(item.get("text"), str):
                        item["text"] = self.seal(item["text"], model, i, j)
        return out

    # -- responses

    def resp_aad(self, model: str, chat_id: str, choice: int, field_name: str) -> str | None:
        if self.version != 2:
            return None
        return response_aad(self.algo, model, chat_id, choice, field_name, self.nonce, self.timestamp)

    def open(self, field_hex: str, aad: str | None) -> str:
        return decrypt_field(self.algo, self.private, field_hex, aad).decode()

    def open_choices(self, response: dict, container: str) -> list[tuple[int, str, str, str]]:
        """Decrypts the sealed fields of a JSON response (container `message`) or stream chunk (`delta`).

        Returns (choice index, field name, ciphertext hex, plaintext) for every string field.
        """
        opened = []
        for position, choice in enumerate(response.get("choices", [])):
            index = choice.get("index", position)
            part = choice.get(container) or {}
            for name in RESPONSE_FIELDS:
                value = part.get(name)
                if isinstance(value, str):
                    aad = self.resp_aad(response["model"], response["id"], index, name)
                    opened.append((index, name, value, self.open(value, aad)))
        return opened
