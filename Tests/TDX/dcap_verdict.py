#!/usr/bin/env python3
"""Differential driver: dcap-qvl 0.7.0's verdict in the SPEC 6.2 `verify-quote` JSON shape.

    dcap_verdict.py QUOTE COLLATERAL NOW [ROOT]

QUOTE       raw quote bytes, or hex text (optional 0x prefix, whitespace ignored)
COLLATERAL  QuoteCollateralV3 JSON (the SPEC's collateral object)
NOW         verification time, unix seconds
ROOT        optional trust root replacing Intel's SGX Root CA (DER or PEM)

Prints exactly one JSON line:
  {"verified": true, "status", "advisory_ids", "td": {mr_td, rtmr0..3, mr_config_id, mr_owner,
   mr_owner_config, report_data, td_attributes}, "fmspc", "root_ca"}            exit 0
  {"verified": false, "error": "<dcap-qvl's error text>", "root_ca"}            exit 1
Unusable arguments / unreadable files: exit 2 (message on stderr).
Hex is lowercase without prefix; root_ca is "intel" or "override:<sha256 hex of the root DER>".
For an SGX quote (not in the SPEC's scope) "td" is null.
No status policy is applied here (dcap-qvl's own rule: only Revoked fails); compare the Swift
side's `tcb_status_not_accepted` outcomes using "status".
"""
from __future__ import annotations

import hashlib
import json
import re
import sys

import dcap_qvl

TD_FIELDS = [  # (SPEC name, dcap-qvl name)
    ("mr_td", "mr_td"), ("rtmr0", "rt_mr0"), ("rtmr1", "rt_mr1"), ("rtmr2", "rt_mr2"), ("rtmr3", "rt_mr3"),
    ("mr_config_id", "mr_config_id"), ("mr_owner", "mr_owner"), ("mr_owner_config", "mr_owner_config"),
    ("report_data", "report_data"), ("td_attributes", "td_attributes"),
]


class UsageError(Exception):
    pass


def read_quote(path: str) -> bytes:
    with open(path, "rb") as f:
        data = f.read()
    text = None
    try:
        text = re.sub(r"\s+", "", data.decode("ascii"))
    except UnicodeDecodeError:
        pass
    if text:
        if text[:2] in ("0x", "0X"):
            text = text[2:]
        if re.fullmatch(r"(?:[0-9a-fA-F]{2})+", text):
            return bytes.fromhex(text)
    return data


def read_root(path: str) -> bytes:
    with open(path, "rb") as f:
        data = f.read()
    if b"-----BEGIN CERTIFICATE-----" in data:
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding
        return x509.load_pem_x509_certificate(data).public_bytes(Encoding.DER)
    return data


def _find_td(obj):
    if isinstance(obj, dict):
        if "mr_td" in obj and "rt_mr0" in obj:
            return obj
        for v in obj.values():
            r = _find_td(v)
            if r is not None:
                return r
    return None


def verdict(quote_path: str, collateral_path: str, now: int, root_path: str | None = None) -> dict:
    try:
        raw = read_quote(quote_path)
        with open(collateral_path) as f:
            col_text = f.read()
        root_der = read_root(root_path) if root_path else None
    except OSError as e:
        raise UsageError(str(e))
    root_ca = "intel" if root_der is None else "override:" + hashlib.sha256(root_der).hexdigest()
    try:
        col = dcap_qvl.QuoteCollateralV3.from_json(col_text)
        if root_der is None:
            rep = dcap_qvl.verify(raw, col, now)
        else:
            rep = dcap_qvl.verify_with_root_ca(raw, col, root_der, now)
    except ValueError as e:
        return {"verified": False, "error": str(e), "root_ca": root_ca}
    full = json.loads(rep.to_json())
    td_src = _find_td(full["report"])
    td = None if td_src is None else {spec: td_src[name].lower() for spec, name in TD_FIELDS}
    fmspc = dcap_qvl.parse_quote(raw).fmspc().lower()
    return {"verified": True, "status": rep.status, "advisory_ids": list(rep.advisory_ids), "td": td,
            "fmspc": fmspc, "root_ca": root_ca}


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 4):
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    try:
        now = int(argv[2])
        if now < 0:
            raise ValueError
    except ValueError:
        print(f"NOW must be unix seconds, got {argv[2]!r}", file=sys.stderr)
        return 2
    try:
        v = verdict(argv[0], argv[1], now, argv[3] if len(argv) == 4 else None)
    except UsageError as e:
        print(e, file=sys.stderr)
        return 2
    print(json.dumps(v, separators=(",", ":")))
    return 0 if v["verified"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
