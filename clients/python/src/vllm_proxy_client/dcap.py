"""TDX quote verification with dcap-qvl (PyPI), Phala's DCAP verifier: a `quote_verifier` for `fetch_attestation`.

    from vllm_proxy_client import DcapQuoteVerifier, fetch_attestation
    att = fetch_attestation(BASE, TOKEN, quote_verifier=DcapQuoteVerifier())   # collateral from Phala's PCCS

The quote is verified against Intel's SGX Root CA (compiled into dcap-qvl) or `root_ca_der`, with collateral
given or fetched from `pccs_url`; its TCB status must be one of `accepted_statuses` (the proxy's own default,
`UpToDate` and `SWHardeningNeeded`). The report data binding is checked by `fetch_attestation` itself. Needs the
`dcap` extra (`pip install './clients/python[dcap]'`).

Development: the dev attestation agent (`--dev-pki-dir DIR`) signs real-format TDX quotes with a throwaway PKI and
writes its root and collateral to DIR; `DcapQuoteVerifier.from_dev_pki_dir(DIR)` trusts that root. It proves
nothing about hardware.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import time
from collections.abc import Callable
from typing import Any

from .errors import AttestationError

PHALA_PCCS_URL = "https://pccs.phala.network"
DEFAULT_ACCEPTED_STATUSES = ("UpToDate", "SWHardeningNeeded")


class DcapQuoteVerifier:
    """Callable `quote_verifier`: raises `AttestationError` unless the quote verifies with dcap-qvl."""

    def __init__(
        self,
        *,
        collateral: dict[str, Any] | str | None = None,
        pccs_url: str = PHALA_PCCS_URL,
        root_ca_der: bytes | None = None,
        accepted_statuses: tuple[str, ...] = DEFAULT_ACCEPTED_STATUSES,
        now: Callable[[], int] | int | None = None,
    ):
        self._collateral = json.dumps(collateral) if isinstance(collateral, dict) else collateral
        self._pccs_url = pccs_url
        self._root = root_ca_der
        self._accepted = tuple(accepted_statuses)
        self._now = now
        #: The last verified report's status and advisory ids, for callers that want to show them.
        self.last_status: str | None = None
        self.last_advisory_ids: list[str] = []

    @classmethod
    def from_dev_pki_dir(
        cls,
        path: str | os.PathLike[str],
        *,
        accepted_statuses: tuple[str, ...] = DEFAULT_ACCEPTED_STATUSES,
        now: Callable[[], int] | int | None = None,
    ) -> DcapQuoteVerifier:
        """A verifier for the dev attestation agent's quotes: DEVELOPMENT ONLY, it proves nothing about hardware.

        `path` is the agent's `--dev-pki-dir`: `tdx-root.pem` (the dev root CA, trusted here instead of Intel's
        SGX Root CA) and `collateral.json` (QuoteCollateralV3 JSON, used as given; nothing is fetched). That
        root is a throwaway key anyone can hold, so a quote it accepts says nothing about TDX hardware or the
        code running: it only exercises the real verification path (quote format, signatures, report data
        binding) in development and tests. Never use it against a proxy you need to trust.
        """
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding

        folder = os.fspath(path)
        try:
            with open(os.path.join(folder, "tdx-root.pem"), "rb") as file:
                root_pem = file.read()
            with open(os.path.join(folder, "collateral.json"), encoding="utf-8") as file:
                collateral = file.read()
        except OSError as error:
            raise AttestationError(f"dev PKI directory {folder!r} is unusable: {error}") from error
        try:
            root_der = x509.load_pem_x509_certificate(root_pem).public_bytes(Encoding.DER)
        except ValueError as error:
            raise AttestationError(f"{folder}/tdx-root.pem is not a PEM certificate: {error}") from error
        return cls(collateral=collateral, root_ca_der=root_der, accepted_statuses=accepted_statuses, now=now)

    def __call__(self, quote: bytes) -> None:
        try:
            import dcap_qvl
        except ImportError as error:  # an optional dependency
            raise AttestationError("dcap-qvl is not installed: pip install './clients/python[dcap]'") from error
        collateral = (
            dcap_qvl.QuoteCollateralV3.from_json(self._collateral)
            if self._collateral is not None
            else self._fetch(dcap_qvl, quote)
        )
        now = self._now() if callable(self._now) else (self._now if self._now is not None else int(time.time()))
        try:
            if self._root is not None:
                report = dcap_qvl.verify_with_root_ca(quote, collateral, self._root, now)
            else:
                report = dcap_qvl.verify(quote, collateral, now)
        except ValueError as error:
            raise AttestationError(f"the TDX quote did not verify: {error}") from error
        if report.status not in self._accepted:
            raise AttestationError(
                f"the TDX quote's TCB status {report.status} is not accepted ({', '.join(self._accepted)})"
            )
        self.last_status, self.last_advisory_ids = report.status, list(report.advisory_ids)

    def _fetch(self, dcap_qvl: Any, quote: bytes) -> Any:
        # dcap-qvl's fetch is a coroutine; run it on a thread of its own so this works inside an event loop too.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            try:
                return pool.submit(asyncio.run, dcap_qvl.get_collateral(self._pccs_url, quote)).result(timeout=60)
            except Exception as error:
                raise AttestationError(f"collateral unavailable from {self._pccs_url}: {error}") from error
