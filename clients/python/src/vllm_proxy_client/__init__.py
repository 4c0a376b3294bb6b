"""Client for vllm-proxy's E2EE v3: attestation version 3, HPKE-sealed requests and answers, receipts.

Typical use (see README.md):

    att = fetch_attestation(BASE, TOKEN, quote_verifier=DcapQuoteVerifier())   # the `dcap` extra
    http_client = httpx.Client(transport=E2EETransport(att))
    client = openai.OpenAI(base_url=f"{BASE}/v1", api_key=TOKEN, http_client=http_client)
"""

from .attestation import (
    DEFAULT_POLICY,
    Attestation,
    NoDowngradePolicy,
    QuoteVerifier,
    fetch_attestation,
    fetch_attestation_async,
    identity_v3,
    proxy_origin,
    quote_report_data,
    signing_address_bytes,
    spki_der_of_certificate,
    verify_report,
)
from .dcap import DcapQuoteVerifier
from .errors import (
    AttestationError,
    DowngradeError,
    E2EEError,
    E2EEServerError,
    E2EEVerificationError,
    ReceiptError,
)
from .receipts import Receipt, check_receipt, fetch_receipt, fetch_receipt_async
from .transport import EXTENSION, AsyncE2EETransport, E2EETransport, Exchange
from .v3 import (
    SEALED_ROUTES,
    KeyConfig,
    OpenedJSON,
    ResponseOpener,
    SealedRequest,
    StreamEnvelopeReader,
    Suite,
    key_config_id,
    open_json_envelope,
    parse_key_configs,
    request_info,
    route_for_path,
    seal_request,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_POLICY",
    "EXTENSION",
    "SEALED_ROUTES",
    "AsyncE2EETransport",
    "Attestation",
    "AttestationError",
    "DcapQuoteVerifier",
    "DowngradeError",
    "E2EEError",
    "E2EEServerError",
    "E2EETransport",
    "E2EEVerificationError",
    "Exchange",
    "KeyConfig",
    "NoDowngradePolicy",
    "OpenedJSON",
    "QuoteVerifier",
    "Receipt",
    "ReceiptError",
    "ResponseOpener",
    "SealedRequest",
    "StreamEnvelopeReader",
    "Suite",
    "check_receipt",
    "fetch_attestation",
    "fetch_attestation_async",
    "fetch_receipt",
    "fetch_receipt_async",
    "identity_v3",
    "key_config_id",
    "open_json_envelope",
    "parse_key_configs",
    "proxy_origin",
    "quote_report_data",
    "request_info",
    "route_for_path",
    "seal_request",
    "signing_address_bytes",
    "spki_der_of_certificate",
    "verify_report",
]
