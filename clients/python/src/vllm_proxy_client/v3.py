"""E2EE v3 (SPEC §4.3): sealing a request body with HPKE and opening the sealed answer.

Everything here is sans-IO: bytes in, bytes out, so the transports (transport.py), tests and vector generators
share one implementation of the wire format.

Request: hdr = key_id(1) ‖ kem_id(2) ‖ kdf_id(2) ‖ aead_id(2); info = "vllm-proxy e2ee v3 request" ‖ 0x00 ‖
hdr ‖ LV(route) ‖ LV(model) ‖ u8(stream) ‖ u64(ts); ct = single-shot HPKE base-mode Seal (AAD empty) of the
JSON request; the body is `{"model","stream","e2ee":{"v":3,"kc","ts","req": b64(hdr ‖ enc ‖ ct)}}`.

Response (RFC 9458 §4.4 keys, chunked-OHTTP counter nonces): secret = Export("vllm-proxy e2ee v3 response",
32); prk = HKDF-Extract(salt = enc ‖ response_nonce, secret); key/nonce = HKDF-Expand(prk, "key"/"nonce");
chunk i uses nonce XOR i, AAD empty, except the final chunk whose AAD is "final".
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import json
import re
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from pyhpke import AEADId, CipherSuite, KDFId, KEMId

from .errors import E2EEError, E2EEVerificationError

REQUEST_LABEL = b"vllm-proxy e2ee v3 request"
RESPONSE_EXPORT_LABEL = b"vllm-proxy e2ee v3 response"
FINAL_AAD = b"final"
RESPONSE_NONCE_LEN = 32

# The JSON-bodied POST routes of SPEC §2 that v3 seals (not the multipart audio routes).
SEALED_ROUTES = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/chutes/chat/completions",
    "/v1/responses",
    "/v1/embeddings",
    "/v1/rerank",
    "/v1/score",
    "/v1/tokenize",
    "/v1/detokenize",
    "/v1/images/generations",
)

KEM_X25519 = 0x0020
KEM_XWING = 0x647A
KDF_HKDF_SHA256 = 0x0001
AEAD_AES256GCM = 0x0002
AEAD_CHACHA20POLY1305 = 0x0003

# Public key sizes of the KEMs a key list may name; a config with another KEM is skipped (a newer server may
# offer more than this client knows), one with a known KEM but the wrong size is malformed.
_PUBLIC_KEY_LEN = {KEM_X25519: 32, KEM_XWING: 1216}


class Suite(enum.Enum):
    """An HPKE suite this protocol defines, with the `X-E2EE-Algo` name the server reports for it."""

    X25519_AES256GCM = ("hpke-x25519-aes256gcm", KEM_X25519, KDF_HKDF_SHA256, AEAD_AES256GCM)
    X25519_CHACHA20POLY1305 = ("hpke-x25519-chacha20poly1305", KEM_X25519, KDF_HKDF_SHA256, AEAD_CHACHA20POLY1305)
    XWING_AES256GCM = ("hpke-xwing-aes256gcm", KEM_XWING, KDF_HKDF_SHA256, AEAD_AES256GCM)

    @property
    def algo_name(self) -> str:
        return self.value[0]

    @property
    def kem_id(self) -> int:
        return self.value[1]

    @property
    def kdf_id(self) -> int:
        return self.value[2]

    @property
    def aead_id(self) -> int:
        return self.value[3]

    @property
    def supported(self) -> bool:
        # pyhpke 0.6.5 has no X-Wing (draft-connolly-cfrg-xwing-kem); sealing to it is refused, not faked.
        return self.kem_id == KEM_X25519

    def cipher_suite(self) -> CipherSuite:
        if not self.supported:
            raise E2EEError(
                f"{self.algo_name}: X-Wing (KEM 0x647a) is not implemented by pyhpke 0.6.5, so this client "
                "cannot seal to it; use an X25519 suite"
            )
        return CipherSuite.new(KEMId(self.kem_id), KDFId(self.kdf_id), AEADId(self.aead_id))


@dataclass(frozen=True)
class KeyConfig:
    """One RFC 9458 §3 key config from the attested key list `K`."""

    key_id: int
    kem_id: int
    public_key: bytes
    algorithms: tuple[tuple[int, int], ...]  # (kdf_id, aead_id) pairs

    def offers(self, suite: Suite) -> bool:
        return self.kem_id == suite.kem_id and (suite.kdf_id, suite.aead_id) in self.algorithms


def parse_key_configs(key_list: bytes) -> tuple[KeyConfig, ...]:
    """Parses `application/ohttp-keys`: key configs, each behind a 2-byte big-endian length."""
    configs: list[KeyConfig] = []
    offset = 0
    while offset < len(key_list):
        if offset + 2 > len(key_list):
            raise E2EEError("key list: truncated length prefix")
        (length,) = struct.unpack_from(">H", key_list, offset)
        offset += 2
        config = key_list[offset : offset + length]
        if len(config) != length or length < 3:
            raise E2EEError("key list: truncated key config")
        offset += length
        key_id = config[0]
        (kem_id,) = struct.unpack_from(">H", config, 1)
        pk_len = _PUBLIC_KEY_LEN.get(kem_id)
        if pk_len is None:
            continue
        rest = config[3 + pk_len :]
        if len(config) < 3 + pk_len + 2:
            raise E2EEError(f"key list: key config {key_id} too short for KEM {kem_id:#06x}")
        (algs_len,) = struct.unpack_from(">H", rest, 0)
        algs = rest[2:]
        if algs_len != len(algs) or algs_len == 0 or algs_len % 4:
            raise E2EEError(f"key list: key config {key_id} has a malformed algorithm list")
        pairs = tuple(struct.unpack_from(">HH", algs, i) for i in range(0, algs_len, 4))
        configs.append(KeyConfig(key_id, kem_id, bytes(config[3 : 3 + pk_len]), pairs))
    if len({c.key_id for c in configs}) != len(configs):
        raise E2EEError("key list: a key_id appears twice")
    return tuple(configs)


def key_config_id(key_list: bytes) -> str:
    """`kc`: lowercase hex of the first 16 bytes of SHA-256(K)."""
    return hashlib.sha256(key_list).digest()[:16].hex()


def choose_key_config(configs: tuple[KeyConfig, ...], suite: Suite) -> KeyConfig:
    for config in configs:
        if config.offers(suite):
            return config
    raise E2EEError(f"the attested key list offers no key for {suite.algo_name}")


def request_header(key_id: int, suite: Suite) -> bytes:
    return struct.pack(">BHHH", key_id, suite.kem_id, suite.kdf_id, suite.aead_id)


def _lv(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise E2EEError("route or model longer than 65535 bytes")
    return struct.pack(">H", len(data)) + data


def request_info(hdr: bytes, route: str, model: str, stream: bool, ts: int) -> bytes:
    """The HPKE `info`: route, model, stream flag and time are in the key schedule, so none can be edited."""
    return (
        REQUEST_LABEL
        + b"\x00"
        + hdr
        + _lv(route.encode())
        + _lv(model.encode())
        + (b"\x01" if stream else b"\x00")
        + struct.pack(">Q", ts)
    )


def route_for_path(path: str) -> str | None:
    """The sealed route a URL path addresses (a base URL may carry a prefix before `/v1/...`), or None.

    Every route starts with "/", so a suffix match cannot cut a path segment in two.
    """
    path = path.rstrip("/")
    return next((route for route in SEALED_ROUTES if path.endswith(route)), None)


def strict_json_loads(data: bytes | str) -> Any:
    """json.loads that refuses a key repeated in one object: two parsers could read two different values."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for key, value in pairs:
            if key in obj:
                raise ValueError(f"repeated key {key!r}")
            obj[key] = value
        return obj

    return json.loads(data, object_pairs_hook=no_duplicates)


def b64decode(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise E2EEVerificationError(f"{what}: not a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise E2EEVerificationError(f"{what}: not base64") from error


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode()


class ResponseOpener:
    """Opens the chunks of one sealed answer, in order, exactly once each.

    The counter nonce makes a reordered, dropped or repeated chunk fail to open; the exporter-derived key
    makes a chunk from any other request's answer fail; the "final" AAD makes a cut-off answer detectable
    (no final chunk) and anything after the final chunk a violation.
    """

    def __init__(self, suite: Suite, exported_secret: bytes, enc: bytes, response_nonce: bytes) -> None:
        if len(response_nonce) != RESPONSE_NONCE_LEN:
            raise E2EEVerificationError(f"response nonce is {len(response_nonce)} bytes, not {RESPONSE_NONCE_LEN}")
        nk, nn = 32, 12  # AES-256-GCM and ChaCha20-Poly1305 both
        prk = hmac.new(enc + response_nonce, exported_secret, hashlib.sha256).digest()
        self.key = HKDFExpand(hashes.SHA256(), nk, b"key").derive(prk)
        self.nonce_base = HKDFExpand(hashes.SHA256(), nn, b"nonce").derive(prk)
        self._aead = AESGCM(self.key) if suite.aead_id == AEAD_AES256GCM else ChaCha20Poly1305(self.key)
        self.counter = 0
        self.finished = False

    def chunk_nonce(self, index: int) -> bytes:
        counter = index.to_bytes(len(self.nonce_base), "big")
        return bytes(a ^ b for a, b in zip(self.nonce_base, counter))

    def open(self, chunk: bytes, final: bool) -> bytes:
        if self.finished:
            raise E2EEVerificationError("data after the final chunk")
        try:
            plaintext = self._aead.decrypt(self.chunk_nonce(self.counter), chunk, FINAL_AAD if final else b"")
        except InvalidTag as error:
            raise E2EEVerificationError(
                f"response chunk {self.counter} does not open: reordered, dropped, repeated, edited or spliced "
                "from another answer"
            ) from error
        if not final and not plaintext:
            raise E2EEVerificationError(f"response chunk {self.counter} is empty but not final")
        self.counter += 1
        self.finished = final
        return plaintext


@dataclass
class SealedRequest:
    """One sealed request: the exact body to send, and what is needed to open its answer."""

    body: bytes
    route: str
    model: str
    stream: bool
    ts: int
    suite: Suite
    kc: str
    hdr: bytes
    info: bytes
    enc: bytes
    ct: bytes
    exported_secret: bytes = field(repr=False)

    @property
    def request_hash(self) -> str:
        """Receipt request hash (SPEC §5): SHA-256 of the exact envelope bytes."""
        return hashlib.sha256(self.body).hexdigest()

    def response_opener(self, response_nonce: bytes) -> ResponseOpener:
        return ResponseOpener(self.suite, self.exported_secret, self.enc, response_nonce)


def _envelope_model_and_stream(request: Any) -> tuple[str, bool]:
    """M and S as the server will compare them with the opened object (absent = "" and false)."""
    if not isinstance(request, dict):
        raise E2EEError("a v3 request body must be a JSON object")
    model = request.get("model")
    stream = request.get("stream")
    # null is treated as absent, as a plain request treats `stream: null`.
    if model is None:
        model = ""
    if stream is None:
        stream = False
    if not isinstance(model, str):
        raise E2EEError("`model` must be a string to be sealed with E2EE v3")
    if not isinstance(stream, bool):
        raise E2EEError("`stream` must be a boolean to be sealed with E2EE v3")
    return model, stream


def seal_request(
    plaintext: bytes,
    *,
    route: str,
    key_configs: tuple[KeyConfig, ...],
    kc: str,
    suite: Suite = Suite.X25519_AES256GCM,
    ts: int | None = None,
    ephemeral_ikm: bytes | None = None,
) -> SealedRequest:
    """Seals a JSON request body (bytes, sent exactly as given) for `route`.

    `ephemeral_ikm` fixes the ephemeral key through DeriveKeyPair; only for known-answer vectors.
    """
    if route not in SEALED_ROUTES:
        raise E2EEError(f"{route} is not an E2EE v3 route")
    try:
        request = strict_json_loads(plaintext)
    except ValueError as error:
        raise E2EEError(f"the request body is not valid JSON: {error}") from error
    model, stream = _envelope_model_and_stream(request)
    ts = int(time.time()) if ts is None else ts
    cipher_suite = suite.cipher_suite()
    config = choose_key_config(key_configs, suite)
    hdr = request_header(config.key_id, suite)
    info = request_info(hdr, route, model, stream, ts)
    recipient = cipher_suite.kem.deserialize_public_key(config.public_key)
    ephemeral = cipher_suite.kem.derive_key_pair(ephemeral_ikm) if ephemeral_ikm is not None else None
    enc, context = cipher_suite.create_sender_context(recipient, info, eks=ephemeral)
    ct = context.seal(plaintext, b"")
    envelope = {
        "model": model,
        "stream": stream,
        "e2ee": {"v": 3, "kc": kc, "ts": ts, "req": b64encode(hdr + enc + ct)},
    }
    return SealedRequest(
        body=json.dumps(envelope, separators=(",", ":")).encode(),
        route=route,
        model=model,
        stream=stream,
        ts=ts,
        suite=suite,
        kc=kc,
        hdr=hdr,
        info=info,
        enc=enc,
        ct=ct,
        exported_secret=context.export(RESPONSE_EXPORT_LABEL, 32),
    )


# ----------------------------------------------------------------------------------------------- usage and ids


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def sealed_usage(document: Any) -> dict[str, Any] | None:
    """The usage a sealed JSON document reports: `usage`, or `response.usage` (/v1/responses stream events)."""
    if not isinstance(document, dict):
        return None
    usage = document.get("usage")
    if not isinstance(usage, dict):
        response = document.get("response")
        usage = response.get("usage") if isinstance(response, dict) else None
    return usage if isinstance(usage, dict) else None


def check_clear_usage(clear: Any, sealed: dict[str, Any] | None) -> None:
    """The clear `U` must be exactly the numeric top-level members of the sealed usage (absent when none)."""
    expected = None if sealed is None else {k: v for k, v in sealed.items() if _is_number(v)}
    if clear is None and not expected:
        return
    if not isinstance(clear, dict) or clear != expected or not all(_is_number(v) for v in clear.values()):
        raise E2EEVerificationError(f"clear usage {clear!r} is not the sealed usage {expected!r}")


def chat_id_of(document: Any) -> str | None:
    """The receipt id of a sealed document: its `id`, or `response.id` (/v1/responses stream events)."""
    if not isinstance(document, dict):
        return None
    if isinstance(document.get("id"), str):
        return document["id"]
    response = document.get("response")
    if isinstance(response, dict) and isinstance(response.get("id"), str):
        return response["id"]
    return None


# ----------------------------------------------------------------------------------------------- JSON envelope


@dataclass
class OpenedJSON:
    body: bytes  # the upstream's body, padding removed
    chat_id: str | None
    usage: dict[str, Any] | None  # the clear U (checked against the sealed usage)


def _exact_keys(obj: Any, keys: set[str], optional: set[str] = frozenset(), what: str = "envelope") -> dict:
    if not isinstance(obj, dict) or not keys <= set(obj) or not set(obj) <= keys | optional:
        raise E2EEVerificationError(f"{what} does not have the v3 shape: {obj!r:.200}")
    return obj


def open_json_envelope(sealed: SealedRequest, body: bytes) -> OpenedJSON:
    """Opens `{"object":"e2ee.v3","e2ee":{"v":3,"n","f"},"usage":U}` (U absent when the answer had none)."""
    try:
        envelope = strict_json_loads(body)
    except ValueError as error:
        raise E2EEVerificationError("the JSON envelope is not valid JSON") from error
    _exact_keys(envelope, {"object", "e2ee"}, {"usage"})
    inner = _exact_keys(envelope["e2ee"], {"v", "n", "f"}, what="e2ee member")
    if envelope["object"] != "e2ee.v3" or inner["v"] != 3 or isinstance(inner["v"], bool):
        raise E2EEVerificationError("not an e2ee.v3 envelope")
    opener = sealed.response_opener(b64decode(inner["n"], "response nonce"))
    plaintext = opener.open(b64decode(inner["f"], "final chunk"), final=True)
    # E2EE_V3_PAD_BYTES pads a JSON body with trailing spaces; JSON ignores them, the caller needn't see them.
    plaintext = plaintext.rstrip(b" ")
    try:
        document = json.loads(plaintext)
    except ValueError:
        document = None  # a non-JSON error body from upstream: it has no usage
    clear = envelope.get("usage")
    if "usage" in envelope and clear is None:
        raise E2EEVerificationError("clear usage is null")
    check_clear_usage(clear, sealed_usage(document))
    return OpenedJSON(plaintext, chat_id_of(document), clear)


# ------------------------------------------------------------------------------------------------------ streams

_LINE = re.compile(rb"(.*?)(\r\n|\r|\n)", re.S)
_PADDING_LINE = re.compile(rb": *")


def _split_lines(buffer: bytearray, final: bool) -> list[tuple[bytes, bytes]]:
    """Takes the complete lines (content, terminator) off the front of `buffer`.

    A trailing "\\r" stays until more data comes (it may be the first half of "\\r\\n"), unless `final`.
    """
    lines: list[tuple[bytes, bytes]] = []
    position = 0
    for match in _LINE.finditer(buffer):
        if match.group(2) == b"\r" and match.end() == len(buffer) and not final:
            break
        lines.append((match.group(1), match.group(2)))
        position = match.end()
    del buffer[:position]
    return lines


def _sse_data(lines: list[bytes], strict: bool) -> str | None:
    """The `data` of one event from its field lines; None if it has none.

    `strict` (the envelope, which the proxy writes) refuses any other field; the opened stream is the upstream's
    and may carry `event:` or `id:` lines (vLLM's /v1/responses does), which are skipped.
    """
    data: list[bytes] = []
    for line in lines:
        if line.startswith(b":"):
            continue
        name, _, value = line.partition(b":")
        if name != b"data":
            if strict:
                raise E2EEVerificationError(f"unexpected SSE field {name[:40]!r} in a v3 stream")
            continue
        data.append(value[1:] if value.startswith(b" ") else value)
    try:
        return b"\n".join(data).decode() if data else None
    except UnicodeDecodeError as error:
        raise E2EEVerificationError("an SSE event is not UTF-8") from error


class _PlainStream:
    """The opened event stream, as the caller gets it: padding lines removed, complete events only.

    From a `data: [DONE]` event on, output is held back until the sealed stream has been fully verified, so a
    caller that stops reading at [DONE] (the openai SDK does) still only ever finishes on a verified answer.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._event = bytearray()
        self._event_lines: list[bytes] = []
        self._held = bytearray()
        self._holding = False
        self.chat_id: str | None = None
        self.usage: dict[str, Any] | None = None

    def feed(self, plaintext: bytes, final: bool = False) -> bytes:
        self._buffer += plaintext
        out = bytearray()
        for content, terminator in _split_lines(self._buffer, final):
            if content and _PADDING_LINE.fullmatch(content):
                continue
            self._event += content + terminator
            if content:
                self._event_lines.append(content)
                continue
            self._dispatch()
            (self._held if self._holding else out).extend(self._event)
            self._event.clear()
            self._event_lines.clear()
        return bytes(out)

    def _dispatch(self) -> None:
        try:
            data = _sse_data(self._event_lines, strict=False)
        except E2EEVerificationError:
            return  # not text: nothing to learn from it, passed on as it is
        if data is None:
            return
        if data == "[DONE]":
            self._holding = True
            return
        try:
            document = json.loads(data)
        except ValueError:
            return
        if self.chat_id is None:
            self.chat_id = chat_id_of(document)
        self.usage = sealed_usage(document) or self.usage

    def drain(self) -> bytes:
        """Everything left (held events, an unterminated last event), once the stream has been verified."""
        rest = bytes(self._held + self._event + self._buffer)
        self._held.clear()
        self._event.clear()
        self._buffer.clear()
        return rest


class StreamEnvelopeReader:
    """Reads a v3 stream envelope incrementally and yields the opened event stream.

    Wire events, strictly in order: `{"object":"e2ee.v3","e2ee":{"v":3,"n"}}`, `{"e2ee":{"c"}}`…,
    `{"e2ee":{"f"}}`, optionally `{"object":"e2ee.v3.usage","choices":[],"usage":U}`, `[DONE]`, end.
    Comment lines on the wire (a gateway's keep-alives) are ignored.
    """

    def __init__(self, sealed: SealedRequest) -> None:
        self._sealed = sealed
        self._wire = bytearray()
        self._lines: list[bytes] = []
        self._opener: ResponseOpener | None = None
        self._plain = _PlainStream()
        self._clear_usage: Any = None
        self._state = "start"  # start → chunks → after_final → after_usage → done

    @property
    def started(self) -> bool:
        """The stream header has been read: what follows can only be sealed chunks."""
        return self._state != "start"

    @property
    def chat_id(self) -> str | None:
        return self._plain.chat_id

    @property
    def clear_usage(self) -> dict[str, Any] | None:
        return self._clear_usage

    def feed(self, data: bytes) -> bytes:
        """Wire bytes in; the opened bytes that may be given to the caller now out."""
        self._wire += data
        out = bytearray()
        for content, _ in _split_lines(self._wire, final=False):
            if content:
                self._lines.append(content)
            elif self._lines:
                event, self._lines = self._lines, []
                out += self._event(_sse_data(event, strict=True))
        return bytes(out)

    def finish(self) -> bytes:
        """End of the wire stream: verifies completeness and clear usage, returns what was held back."""
        for content, _ in _split_lines(self._wire, final=True):
            if content:
                self._lines.append(content)
        if self._lines or self._wire:
            raise E2EEVerificationError("the stream ends inside an event")
        if self._state in ("start", "chunks"):
            raise E2EEVerificationError("the stream ended before its final chunk (truncated)")
        if self._state != "done":
            raise E2EEVerificationError("the stream ended without data: [DONE]")
        last = self._plain.feed(b"", final=True)
        check_clear_usage(self._clear_usage, self._plain.usage)
        return last + self._plain.drain()

    def _event(self, data: str | None) -> bytes:
        if data is None:
            return b""  # an event of comments only
        if self._state == "done":
            raise E2EEVerificationError("data after data: [DONE]")
        if data == "[DONE]":
            if self._state not in ("after_final", "after_usage"):
                raise E2EEVerificationError("data: [DONE] before the final chunk (truncated)")
            self._state = "done"
            return b""
        try:
            event = strict_json_loads(data)
        except ValueError as error:
            raise E2EEVerificationError("a v3 stream event is not JSON") from error
        if self._state == "start":
            _exact_keys(event, {"object", "e2ee"}, what="stream header")
            inner = _exact_keys(event["e2ee"], {"v", "n"}, what="stream header")
            if event["object"] != "e2ee.v3" or inner["v"] != 3 or isinstance(inner["v"], bool):
                raise E2EEVerificationError("the stream does not start with an e2ee.v3 header")
            self._opener = self._sealed.response_opener(b64decode(inner["n"], "response nonce"))
            self._state = "chunks"
            return b""
        if self._state == "chunks":
            inner = _exact_keys(_exact_keys(event, {"e2ee"}, what="chunk event")["e2ee"], set(), {"c", "f"})
            if len(inner) != 1:
                raise E2EEVerificationError("a chunk event must carry exactly one of c, f")
            final = "f" in inner
            assert self._opener is not None
            plaintext = self._opener.open(b64decode(inner["f" if final else "c"], "chunk"), final)
            if final:
                self._state = "after_final"
            return self._plain.feed(plaintext)
        if self._state == "after_final" and not (isinstance(event, dict) and "e2ee" in event):
            _exact_keys(event, {"object", "choices", "usage"}, what="usage event")
            if event["object"] != "e2ee.v3.usage" or event["choices"] != [] or event["usage"] is None:
                raise E2EEVerificationError("malformed clear usage event")
            self._clear_usage = event["usage"]
            self._state = "after_usage"
            return b""
        raise E2EEVerificationError("data after the final chunk")
