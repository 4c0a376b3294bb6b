"""Attestation version 3 (SPEC §6): the report that binds the E2EE v3 key list `K` to the TEE.

The client asks for `version=3` with a fresh nonce and accepts nothing else (no downgrade to a report that does
not bind `K`). It recomputes

    identity = SHA-256("vllm-proxy/report-data/v3" ‖ 0x00 ‖ u8 len ‖ signing address bytes
                       ‖ u8 len ‖ SHA-256(DER SPKI of the TLS leaf) (or length 0)
                       ‖ u16 len ‖ K ‖ u8 len ‖ SHA-256(nvidia_payload text) (or length 0))

and requires the quote's 64 report-data bytes to be identity ‖ nonce. The quote is always read as a TDX quote
(v4 or v5); whether it is genuine is the job of `quote_verifier` (e.g. `DcapQuoteVerifier`, built on dcap-qvl).
Against the dev attestation agent, use `DcapQuoteVerifier.from_dev_pki_dir(...)`: its quotes are real-format TDX
quotes signed by a throwaway dev PKI.
"""

from __future__ import annotations

import hashlib
import secrets
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .errors import AttestationError, DowngradeError, E2EEError
from .v3 import KEM_X25519, KEM_XWING, KeyConfig, Suite, b64decode, key_config_id, parse_key_configs, strict_json_loads

REPORT_DATA_LABEL = b"vllm-proxy/report-data/v3"
TDX_TEE_TYPE = 0x81
# report_data inside a TDX TD report body: after TEE_TCB_SVN, MRSEAM, MRSIGNERSEAM, SEAMATTRIBUTES, TDATTRIBUTES,
# XFAM, MRTD, MRCONFIGID, MROWNER, MROWNERCONFIG and RTMR0–3 (520 bytes); the body follows a 48-byte header,
# and in a v5 quote a 6-byte body descriptor (type u16, size u32) as well.
_TD_REPORT_DATA_OFFSET = 520
_QUOTE_HEADER_LEN = 48

QuoteVerifier = Callable[[bytes], None]


def signing_address_bytes(signing_algo: str, address: str) -> bytes:
    """ecdsa: the 20 bytes of the `0x…` address; ed25519: the 32-byte public key (hex, no prefix)."""
    try:
        if signing_algo == "ecdsa":
            if not address.startswith("0x") or len(address) != 42:
                raise ValueError
            return bytes.fromhex(address[2:])
        if signing_algo == "ed25519":
            if len(address) != 64:
                raise ValueError
            return bytes.fromhex(address)
    except ValueError:
        raise AttestationError(f"malformed {signing_algo} signing address {address!r}") from None
    raise AttestationError(f"unknown signing algorithm {signing_algo!r}")


def identity_v3(address: bytes, spki_sha256: bytes | None, key_list: bytes, nvidia_payload: str | None) -> bytes:
    """The 32-byte version 3 identity; None for the TLS digest or the GPU payload encodes length 0."""
    tls = spki_sha256 or b""
    gpu = hashlib.sha256(nvidia_payload.encode()).digest() if nvidia_payload is not None else b""
    return hashlib.sha256(
        REPORT_DATA_LABEL
        + b"\x00"
        + bytes([len(address)])
        + address
        + bytes([len(tls)])
        + tls
        + struct.pack(">H", len(key_list))
        + key_list
        + bytes([len(gpu)])
        + gpu
    ).digest()


def spki_der_of_certificate(certificate: bytes) -> bytes:
    """The DER SubjectPublicKeyInfo of a certificate given as DER or PEM."""
    cert = (
        x509.load_pem_x509_certificate(certificate)
        if certificate.lstrip().startswith(b"-----")
        else x509.load_der_x509_certificate(certificate)
    )
    return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def quote_report_data(
    quote: bytes,
    *,
    quote_verifier: QuoteVerifier | None = None,
    allow_unverified_quotes: bool = False,
) -> tuple[bytes, str]:
    """The 64 report-data bytes of a TDX quote (v4 or v5) and its kind (always "tdx"), after the quote checks.

    The quote must pass `quote_verifier` (which raises to reject); without one it is accepted only with
    `allow_unverified_quotes` — then nothing proves it came from TDX hardware. The dev attestation agent's quotes
    are real-format TDX quotes signed by a throwaway dev PKI: verify them with
    `DcapQuoteVerifier.from_dev_pki_dir(...)` (development only; that proves nothing about hardware).
    """
    if len(quote) < _QUOTE_HEADER_LEN + 6:
        raise AttestationError("the quote is too short to be a TDX quote")
    version, _, tee_type = struct.unpack_from("<HHI", quote, 0)
    if tee_type != TDX_TEE_TYPE:
        raise AttestationError(f"the quote is not a TDX quote (TEE type {tee_type:#x})")
    if version == 4:
        offset = _QUOTE_HEADER_LEN + _TD_REPORT_DATA_OFFSET
    elif version == 5:
        (body_type,) = struct.unpack_from("<H", quote, _QUOTE_HEADER_LEN)
        if body_type not in (2, 3):  # TD report 1.0 / 1.5; 1 would be an SGX enclave report
            raise AttestationError(f"TDX quote v5 with body type {body_type}")
        offset = _QUOTE_HEADER_LEN + 6 + _TD_REPORT_DATA_OFFSET
    else:
        raise AttestationError(f"unsupported quote version {version}")
    if len(quote) < offset + 64:
        raise AttestationError("the quote is too short for its TD report")
    if quote_verifier is not None:
        try:
            quote_verifier(quote)
        except Exception as error:
            raise AttestationError(f"quote verification failed: {error}") from error
    elif not allow_unverified_quotes:
        raise AttestationError(
            "no quote_verifier given: pass one (a DCAP verifier) or, knowingly, allow_unverified_quotes=True"
        )
    return quote[offset : offset + 64], "tdx"


@dataclass(frozen=True)
class Attestation:
    """What a verified version 3 report established about one proxy."""

    origin: str
    signing_algo: str
    signing_address: str
    key_list: bytes  # K
    kc: str
    key_configs: tuple[KeyConfig, ...]
    e2ee_versions: tuple[int, ...]
    quote_kind: str  # "tdx" (the only kind since the dev agent issues real-format quotes)
    tls_spki_sha256: bytes | None
    report: dict[str, Any] = field(repr=False)


def _require(report: dict[str, Any], name: str, kind: type) -> Any:
    value = report.get(name)
    if not isinstance(value, kind):
        raise AttestationError(f"the report has no valid `{name}` (a version 3 report must)")
    return value


def verify_report(
    report: Any,
    *,
    nonce: bytes,
    signing_algo: str = "ecdsa",
    origin: str = "",
    tls_spki_der: bytes | None = None,
    accept_reported_tls_fingerprint: bool = False,
    quote_verifier: QuoteVerifier | None = None,
    allow_unverified_quotes: bool = False,
) -> Attestation:
    """Checks a version 3 report for `nonce`; returns the attested key list. Pure: no network.

    TLS binding: when `tls_spki_der` (the SPKI of the certificate the caller actually connected through) is
    given, its digest is what the identity must contain. Without it the identity is computed with length 0, as
    the server does without TLS_CERT_PATH — so a report that names a `tls_cert_fingerprint` fails, unless
    `accept_reported_tls_fingerprint` says to take the report's own value (right when a gateway terminates TLS
    and the client never sees the proxy's certificate: the quote still binds it, but nobody checked it).

    Quote: `quote_verifier` (e.g. `DcapQuoteVerifier()`) must accept it, or `allow_unverified_quotes=True` takes
    it unchecked (see `quote_report_data`).
    """
    if not isinstance(report, dict):
        raise AttestationError("the report is not a JSON object")
    if report.get("version") != 3 or isinstance(report.get("version"), bool):
        raise AttestationError(f"report version {report.get('version')!r}; only version 3 binds the E2EE v3 keys")
    if report.get("signing_algo") != signing_algo:
        raise AttestationError(f"report for {report.get('signing_algo')!r}, asked for {signing_algo!r}")
    if str(report.get("request_nonce", "")).lower() != nonce.hex():
        raise AttestationError("the report is not for this request's nonce")
    address = _require(report, "signing_address", str)
    key_list = b64decode(_require(report, "e2ee_v3_key_config", str), "e2ee_v3_key_config")
    kc = _require(report, "e2ee_v3_key_config_id", str)
    versions = _require(report, "e2ee_versions", list)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in versions) or versions != sorted(set(versions)):
        raise AttestationError(f"malformed e2ee_versions {versions!r}")
    if 3 not in versions:
        raise AttestationError(f"the proxy does not accept E2EE v3 (e2ee_versions {versions})")
    if kc != key_config_id(key_list):
        raise AttestationError("e2ee_v3_key_config_id is not the id of e2ee_v3_key_config")
    try:
        key_configs = parse_key_configs(key_list)
    except E2EEError as error:
        raise AttestationError(str(error)) from error
    if not any(config.kem_id == KEM_X25519 for config in key_configs):
        raise AttestationError("the attested key list has no X25519 key")

    reported_tls = report.get("tls_cert_fingerprint")
    if reported_tls is not None and not isinstance(reported_tls, str):
        raise AttestationError("malformed tls_cert_fingerprint")
    if tls_spki_der is not None:
        spki_digest: bytes | None = hashlib.sha256(tls_spki_der).digest()
        if reported_tls is not None and reported_tls.lower() != spki_digest.hex():
            raise AttestationError("the report binds another TLS key than the one this connection used")
    elif reported_tls is not None:
        if not accept_reported_tls_fingerprint:
            raise AttestationError(
                "the report binds a TLS key (tls_cert_fingerprint): pass tls_spki_der of the certificate you "
                "connected through, or accept_reported_tls_fingerprint=True behind a TLS-terminating gateway"
            )
        try:
            spki_digest = bytes.fromhex(reported_tls)
        except ValueError:
            raise AttestationError("malformed tls_cert_fingerprint") from None
    else:
        spki_digest = None

    nvidia_payload = report.get("nvidia_payload")
    if nvidia_payload is not None and not isinstance(nvidia_payload, str):
        raise AttestationError("nvidia_payload is not a string")
    quote_hex = _require(report, "quote", str)
    if "intel_quote" in report and report["intel_quote"] != quote_hex:
        raise AttestationError("intel_quote and quote differ")
    try:
        quote = bytes.fromhex(quote_hex.removeprefix("0x"))
    except ValueError:
        raise AttestationError("the quote is not hex") from None
    quoted, quote_kind = quote_report_data(
        quote,
        quote_verifier=quote_verifier,
        allow_unverified_quotes=allow_unverified_quotes,
    )
    expected = identity_v3(signing_address_bytes(signing_algo, address), spki_digest, key_list, nvidia_payload)
    if quoted != expected + nonce:
        raise AttestationError("the quote's report data is not identity_v3 ‖ nonce for this report")
    return Attestation(
        origin=origin,
        signing_algo=signing_algo,
        signing_address=address,
        key_list=key_list,
        kc=kc,
        key_configs=key_configs,
        e2ee_versions=tuple(versions),
        quote_kind=quote_kind,
        tls_spki_sha256=spki_digest,
        report=report,
    )


class NoDowngradePolicy:
    """SPEC §4.3's sticky rule, per proxy origin, for the life of this object.

    Once an attested report listed 3 in `e2ee_versions`, nothing but v3 may be used with that proxy, whatever
    errors come back (a gateway can fake any error to force a downgrade); once a client chose X-Wing it never
    goes back to X25519. This package only speaks v3; the policy is what other code (a v1/v2 client in the same
    program, a re-attestation after `e2ee_key_unknown`) must consult.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._v3: set[str] = set()
        self._kem: dict[str, int] = {}

    def record(self, attestation: Attestation) -> None:
        with self._lock:
            if 3 in attestation.e2ee_versions:
                self._v3.add(attestation.origin)

    def allows_version(self, origin: str, version: int) -> bool:
        with self._lock:
            return version >= 3 or origin not in self._v3

    def choose_suite(self, origin: str, suite: Suite, attestation: Attestation) -> None:
        """Pins the KEM of `suite` for `origin`; refuses a weaker KEM, or a key list that no longer offers it."""
        with self._lock:
            if self._kem.get(origin) == KEM_XWING and suite.kem_id != KEM_XWING:
                raise DowngradeError(f"{origin} was used with X-Wing; refusing to fall back to X25519")
            if not any(config.offers(suite) for config in attestation.key_configs):
                raise DowngradeError(f"{origin}'s attested key list no longer offers {suite.algo_name}")
            self._kem[origin] = suite.kem_id


DEFAULT_POLICY = NoDowngradePolicy()


def proxy_origin(base_url: str) -> str:
    """The proxy root a policy keys on: the base URL without a trailing `/v1` (the openai SDK's base)."""
    url = httpx.URL(base_url)
    path = url.path.rstrip("/").removesuffix("/v1")
    return str(url.copy_with(path=path or "/", query=None, fragment=None)).rstrip("/")


def _report_request(base_url: str, nonce: bytes, signing_algo: str) -> tuple[str, dict[str, str]]:
    return f"{proxy_origin(base_url)}/v1/attestation/report", {
        "version": "3",
        "nonce": nonce.hex(),
        "signing_algo": signing_algo,
    }


def _parse_report(response: httpx.Response, body: bytes) -> Any:
    if response.status_code != 200:
        raise AttestationError(f"attestation request failed: {response.status_code} {body[:200]!r}")
    try:
        return strict_json_loads(body)
    except ValueError as error:
        raise AttestationError("the attestation report is not JSON") from error


def _connection_spki(response: httpx.Response) -> bytes:
    stream = response.extensions.get("network_stream")
    ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
    certificate = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not certificate:
        raise AttestationError("bind_tls: the connection has no TLS peer certificate to bind")
    return spki_der_of_certificate(certificate)


def fetch_attestation(
    base_url: str,
    token: str,
    *,
    client: httpx.Client | None = None,
    signing_algo: str = "ecdsa",
    bind_tls: bool = False,
    policy: NoDowngradePolicy = DEFAULT_POLICY,
    **verify_options: Any,
) -> Attestation:
    """GETs `/v1/attestation/report?version=3` with a fresh nonce and verifies it (see `verify_report`).

    `bind_tls=True` takes the SPKI of the certificate this very connection was served (direct TLS to the
    proxy); otherwise pass `tls_spki_der=` or the options `verify_report` documents.
    """
    nonce = secrets.token_bytes(32)
    url, params = _report_request(base_url, nonce, signing_algo)
    owned = client is None
    client = client or httpx.Client(timeout=60)
    try:
        with client.stream("GET", url, params=params, headers={"Authorization": f"Bearer {token}"}) as response:
            if bind_tls:
                verify_options["tls_spki_der"] = _connection_spki(response)
            report = _parse_report(response, response.read())
    finally:
        if owned:
            client.close()
    attestation = verify_report(
        report, nonce=nonce, signing_algo=signing_algo, origin=proxy_origin(base_url), **verify_options
    )
    policy.record(attestation)
    return attestation


async def fetch_attestation_async(
    base_url: str,
    token: str,
    *,
    client: httpx.AsyncClient | None = None,
    signing_algo: str = "ecdsa",
    bind_tls: bool = False,
    policy: NoDowngradePolicy = DEFAULT_POLICY,
    **verify_options: Any,
) -> Attestation:
    """`fetch_attestation` for asyncio."""
    nonce = secrets.token_bytes(32)
    url, params = _report_request(base_url, nonce, signing_algo)
    owned = client is None
    client = client or httpx.AsyncClient(timeout=60)
    try:
        async with client.stream("GET", url, params=params, headers={"Authorization": f"Bearer {token}"}) as response:
            if bind_tls:
                verify_options["tls_spki_der"] = _connection_spki(response)
            report = _parse_report(response, await response.aread())
    finally:
        if owned:
            await client.aclose()
    attestation = verify_report(
        report, nonce=nonce, signing_algo=signing_algo, origin=proxy_origin(base_url), **verify_options
    )
    policy.record(attestation)
    return attestation

