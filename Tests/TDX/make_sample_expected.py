#!/usr/bin/env python3
"""Regenerates samples/expected.json: dcap-qvl 0.7.0's verdict on each real sample at a fixed time.

For every (quote, collateral) pair it computes the validity window of the whole input -- every
certificate (the quote's PCK chain and the three collateral chains), both CRLs, the TCB info and the
QE identity -- using dcap-qvl's own boundary rules (certificates and JSON dates inclusive, CRL
nextUpdate exclusive), checks the chosen fixed time lies inside it, and records the verdict in the
SPEC's verify-quote shape (via dcap_verdict.py) plus the parsed report fields.
"""
from __future__ import annotations

import calendar
import json
import os
import sys
import time

from cryptography import x509

import dcap_qvl

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import dcap_verdict  # noqa: E402

SAMPLES = os.path.join(HERE, "samples")


def utc(s: str) -> int:
    return calendar.timegm(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ"))


# quote file, collateral file, fixed time, note
PAIRS = [
    ("tdx_quote", "tdx_quote_collateral.json", utc("2025-07-01T00:00:00Z"), "TDX v4, FMSPC B0C06F000000"),
    ("tdx_quote_outdated", "tdx_quote_outdated_collateral.json", utc("2026-03-01T00:00:00Z"),
     "TDX v4, FMSPC 90C06F000000; the platform is below every TCB level of its own collateral"),
    ("tdx-quote.hex", "tdx_quote_collateral.json", utc("2025-07-01T00:00:00Z"),
     "TDX v4 (hex text), older platform, same FMSPC as tdx_quote; no collateral of its own upstream, "
     "checked against tdx_quote's: every check passes up to TCB level matching"),
    ("quote-from-tappd.hex", "tdx_quote_collateral.json", utc("2025-07-01T00:00:00Z"),
     "TDX v4 (hex text) from dstack tappd, same FMSPC; checked against tdx_quote's collateral as above"),
    ("sgx_quote", "sgx_quote_collateral.json", utc("2025-07-01T00:00:00Z"),
     "SGX v3 quote (outside the SPEC's scope: a TDX-only verifier must reject it)"),
]


def window(raw: bytes, col: dict) -> tuple[int, int, list]:
    lo, hi, why = 0, 2 ** 63, []

    def bound(nb, na, what, na_exclusive=False):
        nonlocal lo, hi
        if nb is not None and nb > lo:
            lo = nb
            why.append(("from", what))
        na_eff = na - 1 if (na is not None and na_exclusive) else na
        if na_eff is not None and na_eff < hi:
            hi = na_eff
            why.append(("until", what))

    pem = dcap_qvl.parse_quote(raw).cert_chain_pem_bytes()
    chains = [("quote PCK chain", pem)] + [(k, col[k].encode()) for k in
                                           ("pck_crl_issuer_chain", "tcb_info_issuer_chain", "qe_identity_issuer_chain")]
    for label, data in chains:
        for c in x509.load_pem_x509_certificates(data):
            bound(int(c.not_valid_before_utc.timestamp()), int(c.not_valid_after_utc.timestamp()),
                  f"{label}: {c.subject.rfc4514_string()}")
    for k in ("root_ca_crl", "pck_crl"):
        crl = x509.load_der_x509_crl(bytes.fromhex(col[k]))
        bound(int(crl.last_update_utc.timestamp()), int(crl.next_update_utc.timestamp()), k, na_exclusive=True)
    for k in ("tcb_info", "qe_identity"):
        j = json.loads(col[k])
        bound(utc(j["issueDate"]), utc(j["nextUpdate"]), k)
    return lo, hi


def iso(t: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def read_quote(path):
    return dcap_verdict.read_quote(path)


def parsed_fields(raw: bytes) -> dict:
    q = dcap_qvl.parse_quote(raw)
    h = q.header
    out = {"quote_type": q.quote_type(), "version": h.version, "attestation_key_type": h.attestation_key_type,
           "tee_type": h.tee_type, "qe_vendor_id": bytes(h.qe_vendor_id).hex(), "fmspc": q.fmspc().lower(),
           "pck_ca": q.ca(), "length": len(raw)}
    ext = q.pck_extension()
    out["pck_extension"] = {"cpu_svn": bytes(ext.cpu_svn).hex(), "pce_svn": ext.pce_svn,
                            "pce_id": bytes(ext.pce_id).hex(), "ppid": bytes(ext.ppid).hex(), "sgx_type": ext.sgx_type}
    r = q.report
    if q.is_tdx():
        names = ["tee_tcb_svn", "mr_seam", "mr_signer_seam", "seam_attributes", "td_attributes", "xfam", "mr_td",
                 "mr_config_id", "mr_owner", "mr_owner_config", "rt_mr0", "rt_mr1", "rt_mr2", "rt_mr3", "report_data"]
    else:
        names = ["cpu_svn", "attributes", "mr_enclave", "mr_signer", "report_data"]
    out["report"] = {n: bytes(getattr(r, n)).hex() for n in names}
    return out


def main() -> int:
    samples = []
    for qf, cf, now, note in PAIRS:
        raw = read_quote(os.path.join(SAMPLES, qf))
        with open(os.path.join(SAMPLES, cf)) as f:
            col = json.load(f)
        lo, hi = window(raw, col)
        assert lo <= now <= hi, (qf, iso(lo), iso(now), iso(hi))
        v = dcap_verdict.verdict(os.path.join(SAMPLES, qf), os.path.join(SAMPLES, cf), now)
        samples.append({
            "quote": qf, "collateral": cf, "note": note,
            "now": now, "now_iso": iso(now),
            "valid_from": lo, "valid_from_iso": iso(lo), "valid_until": hi, "valid_until_iso": iso(hi),
            "expected": v, "parsed": parsed_fields(raw),
        })
    doc = {
        "generator": "Tests/TDX/make_sample_expected.py",
        "verifier": f"dcap-qvl {dcap_qvl.__version__} (PyPI), dcap_qvl.verify with Intel's root",
        "fields": "expected = dcap_verdict.py output (SPEC 6.2 verify-quote shape); valid_from/valid_until = "
                  "the inclusive window of unix times at which every certificate, CRL, TCB info and QE identity "
                  "of the pair is valid (CRL nextUpdate exclusive); parsed = dcap_qvl.parse_quote fields",
        "samples": samples,
    }
    with open(os.path.join(SAMPLES, "expected.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    for s in samples:
        e = s["expected"]
        print(s["quote"], s["now_iso"], e.get("status") if e["verified"] else "ERROR " + e["error"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
