"""DcapQuoteVerifier: quotes verified by dcap-qvl (PyPI) as `fetch_attestation`'s quote_verifier hook, on the
synthetic TDX fixtures of Tests/TDX (a test PKI dcap-qvl accepts with that root)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from vllm_proxy_client import AttestationError, DcapQuoteVerifier, quote_report_data

pytest.importorskip("dcap_qvl")

SYNTHETIC = Path(__file__).resolve().parents[3] / "Tests" / "TDX" / "synthetic"


def fixture(variant: str) -> tuple[bytes, dict, bytes, dict]:
    folder = SYNTHETIC / variant
    return ((folder / "quote.bin").read_bytes(), json.loads((folder / "collateral.json").read_text()),
            (folder / "root.der").read_bytes(), json.loads((folder / "expected.json").read_text()))


def test_a_genuine_quote_passes_and_its_report_data_is_read():
    quote, collateral, root, expected = fixture("default")
    verifier = DcapQuoteVerifier(collateral=collateral, root_ca_der=root, now=expected["now"])
    report_data, kind = quote_report_data(quote, quote_verifier=verifier)
    assert kind == "tdx" and report_data.hex() == expected["td"]["report_data"]
    assert verifier.last_status == "UpToDate"


def test_a_status_outside_the_accepted_ones_is_refused():
    quote, collateral, root, expected = fixture("tcb_outofdate")
    verifier = DcapQuoteVerifier(collateral=collateral, root_ca_der=root, now=expected["now"])
    with pytest.raises(AttestationError, match="OutOfDate"):
        quote_report_data(quote, quote_verifier=verifier)
    relaxed = DcapQuoteVerifier(collateral=collateral, root_ca_der=root, now=expected["now"],
                                accepted_statuses=("UpToDate", "OutOfDate"))
    quote_report_data(quote, quote_verifier=relaxed)


@pytest.mark.parametrize("variant", ["bad_quote_signature", "td_debug", "pck_revoked"])
def test_a_bad_quote_is_refused(variant):
    quote, collateral, root, expected = fixture(variant)
    verifier = DcapQuoteVerifier(collateral=collateral, root_ca_der=root, now=expected["now"])
    with pytest.raises(AttestationError, match="did not verify"):
        quote_report_data(quote, quote_verifier=verifier)


def test_intels_root_does_not_accept_the_test_pki():
    quote, collateral, _, expected = fixture("default")
    verifier = DcapQuoteVerifier(collateral=collateral, now=expected["now"])
    with pytest.raises(AttestationError):
        quote_report_data(quote, quote_verifier=verifier)


def test_collateral_unavailable_is_an_attestation_error():
    quote, _, root, expected = fixture("default")
    verifier = DcapQuoteVerifier(pccs_url="http://127.0.0.1:9", root_ca_der=root, now=expected["now"])
    with pytest.raises(AttestationError, match="collateral unavailable"):
        quote_report_data(quote, quote_verifier=verifier)


def test_from_dev_pki_dir_trusts_the_dev_root(tmp_path):
    # The dev attestation agent's --dev-pki-dir layout: tdx-root.pem and collateral.json (and compose-hash).
    folder = SYNTHETIC / "default"
    shutil.copyfile(folder / "root.pem", tmp_path / "tdx-root.pem")
    shutil.copyfile(folder / "collateral.json", tmp_path / "collateral.json")
    quote, _, _, expected = fixture("default")
    assert expected["now"] == 1767225600
    verifier = DcapQuoteVerifier.from_dev_pki_dir(tmp_path, now=expected["now"])
    report_data, kind = quote_report_data(quote, quote_verifier=verifier)
    assert kind == "tdx" and report_data.hex() == expected["td"]["report_data"]
    assert verifier.last_status == "UpToDate"
    # Trusting the dev root does not make a badly signed quote pass.
    with pytest.raises(AttestationError, match="did not verify"):
        quote_report_data(fixture("bad_quote_signature")[0], quote_verifier=verifier)


def test_from_dev_pki_dir_without_the_files_is_an_attestation_error(tmp_path):
    with pytest.raises(AttestationError, match="dev PKI directory"):
        DcapQuoteVerifier.from_dev_pki_dir(tmp_path)
    (tmp_path / "tdx-root.pem").write_text("not a certificate")
    (tmp_path / "collateral.json").write_text("{}")
    with pytest.raises(AttestationError, match="not a PEM certificate"):
        DcapQuoteVerifier.from_dev_pki_dir(tmp_path)
