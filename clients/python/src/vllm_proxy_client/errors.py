"""Exceptions. Every check failure raises one of these; nothing is ever retried in a weaker mode."""

from __future__ import annotations


class E2EEError(Exception):
    """Base class of everything this package raises on purpose."""


class AttestationError(E2EEError):
    """The attestation report does not prove what the client relies on (quote, report data, K, versions)."""


class DowngradeError(E2EEError):
    """Something would make the client use less than it has already seen this proxy offer (SPEC §4.3)."""


class E2EEVerificationError(E2EEError):
    """A sealed answer failed a check: tampering, truncation, reordering, a splice or a clear usage that lies.

    Whatever the plaintext so far said, the answer as a whole is not authentic; callers must discard it.
    """


class E2EEServerError(E2EEError):
    """The server (or whoever is in between) answered a v3 request with something that is not a sealed envelope.

    These bodies are in clear, so a gateway can fake them; they are reported, never acted on by weakening
    the protocol. `error_type` is the SPEC error `type` when the body had one (for example
    `e2ee_key_unknown`: attest again and use the new key list).
    """

    def __init__(self, status_code: int, error_type: str | None, message: str, body: bytes) -> None:
        super().__init__(f"{status_code} {error_type or 'unsealed answer'}: {message}")
        self.status_code = status_code
        self.error_type = error_type
        self.message = message
        self.body = body


class ReceiptError(E2EEError):
    """A signature record does not match the exchange the client saw, or its signature does not verify."""
