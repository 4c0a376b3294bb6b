#!/usr/bin/env python3
"""Synthetic Intel-DCAP-shaped PKI + TDX v4 quote generator (test data only).

Everything is derived deterministically from --seed: private keys are
SHA-256(seed|label) mod n, ECDSA signatures (certificates, CRLs, JSON, QE
report, quote) are RFC 6979 deterministic, and all times are fixed offsets
from --now.  The same arguments therefore always produce the same bytes.

Output directory (one per variant):
    quote.bin        raw TDX quote (v4, or v5 with --variant v5_*)
    collateral.json  dcap-qvl QuoteCollateralV3 shape (PEM chains, hex DER CRLs,
                     tcb_info / qe_identity signed JSON text, hex r||s signatures)
    root.der / root.pem   the synthetic root CA (pass to verify_with_root_ca)
    expected.json    what the variant is meant to produce (see VARIANTS below)

Usage:
    make_synthetic.py OUTDIR [--seed S] [--now UNIX] [--variant NAME]
    make_synthetic.py OUTDIR --all        # one sub-directory per variant
    make_synthetic.py --list

Only the Python `cryptography` package is used.
"""
from __future__ import annotations

import argparse
import copy
import datetime as dt
import hashlib
import json
import os
import struct
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

DEFAULT_SEED = "vllm-proxy-tdx-synthetic-v1"
DEFAULT_NOW = 1767225600  # 2026-01-01T00:00:00Z
DAY = 86400

P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
INTEL_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")

SGX_EXT = "1.2.840.113741.1.13.1"

# ---------------------------------------------------------------------------
# Minimal DER encoder (for the SGX extension)
# ---------------------------------------------------------------------------


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def der(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _der_len(len(value)) + value


def der_oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    out = bytearray([40 * parts[0] + parts[1]])
    for p in parts[2:]:
        enc = [p & 0x7F]
        p >>= 7
        while p:
            enc.append(0x80 | (p & 0x7F))
            p >>= 7
        out += bytes(reversed(enc))
    return der(0x06, bytes(out))


def der_int(v: int) -> bytes:
    b = v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big")  # keeps a leading 0 when needed
    return der(0x02, b)


def der_seq(*items: bytes) -> bytes:
    return der(0x30, b"".join(items))


def der_octets(b: bytes) -> bytes:
    return der(0x04, b)


def der_enum(v: int) -> bytes:
    return der(0x0A, der_int(v)[2:])


def der_bool(v: bool) -> bytes:
    return der(0x01, b"\xff" if v else b"\x00")


def sgx_extension(p: dict) -> bytes:
    """Same layout as a real (platform-CA) PCK certificate's SGX extension."""
    cpusvn = bytes(p["cpu_svn"])
    tcb = [der_seq(der_oid(f"{SGX_EXT}.2.{i + 1}"), der_int(cpusvn[i])) for i in range(16)]
    tcb.append(der_seq(der_oid(f"{SGX_EXT}.2.17"), der_int(p["pce_svn"])))
    tcb.append(der_seq(der_oid(f"{SGX_EXT}.2.18"), der_octets(cpusvn)))
    items = [
        der_seq(der_oid(f"{SGX_EXT}.1"), der_octets(p["ppid"])),
        der_seq(der_oid(f"{SGX_EXT}.2"), der_seq(*tcb)),
        der_seq(der_oid(f"{SGX_EXT}.3"), der_octets(p["pce_id"])),
        der_seq(der_oid(f"{SGX_EXT}.4"), der_octets(p["fmspc"])),
        der_seq(der_oid(f"{SGX_EXT}.5"), der_enum(p["sgx_type"])),
    ]
    if p["sgx_type"] == 1:  # "Scalable": platform instance id + configuration
        items.append(der_seq(der_oid(f"{SGX_EXT}.6"), der_octets(p["platform_instance_id"])))
        items.append(der_seq(der_oid(f"{SGX_EXT}.7"), der_seq(
            der_seq(der_oid(f"{SGX_EXT}.7.1"), der_bool(True)),
            der_seq(der_oid(f"{SGX_EXT}.7.2"), der_bool(True)),
            der_seq(der_oid(f"{SGX_EXT}.7.3"), der_bool(True)),
        )))
    return der_seq(*items)


# ---------------------------------------------------------------------------
# Keys, signatures, certificates
# ---------------------------------------------------------------------------


def derive_key(seed: str, label: str) -> ec.EllipticCurvePrivateKey:
    h = int.from_bytes(hashlib.sha256(f"{seed}|{label}".encode()).digest(), "big")
    return ec.derive_private_key(h % (P256_N - 1) + 1, ec.SECP256R1())


def sign_raw(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """ECDSA-P256-SHA256, raw r||s (64 bytes), deterministic."""
    sig = key.sign(data, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    r, s = decode_dss_signature(sig)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def raw_pub(key: ec.EllipticCurvePrivateKey) -> bytes:
    pt = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return pt[1:]  # x||y, 64 bytes


def ts(t: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc)


def iso(t: int) -> str:
    return ts(t).strftime("%Y-%m-%dT%H:%M:%SZ")


def name(cn: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "vllm-proxy Test PKI"),
        x509.NameAttribute(NameOID.LOCALITY_NAME, "Santa Clara"),
        x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "CA"),
        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
    ])


def serial_for(seed: str, label: str) -> int:
    # 20-byte positive serial like Intel's
    return int.from_bytes(hashlib.sha256(f"{seed}|serial|{label}".encode()).digest()[:20], "big") >> 1 | 1


def make_cert(*, subject, issuer, pub_key, issuer_key, serial, not_before, not_after, ca, path_len=None,
              crl_url, extra_ext=None, leaf_ku=True, sign_key=None):
    ski = x509.SubjectKeyIdentifier.from_public_key(pub_key)
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key())
    b = (x509.CertificateBuilder()
         .subject_name(subject).issuer_name(issuer).public_key(pub_key)
         .serial_number(serial).not_valid_before(ts(not_before)).not_valid_after(ts(not_after))
         .add_extension(aki, False)
         .add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
             [x509.UniformResourceIdentifier(crl_url)], None, None, None)]), False)
         .add_extension(ski, False))
    if ca:
        b = b.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), True)
        b = b.add_extension(x509.BasicConstraints(True, path_len), True)
    else:
        b = b.add_extension(x509.KeyUsage(True, True, False, False, False, False, False, False, False), True)
        b = b.add_extension(x509.BasicConstraints(False, None), True)
    if extra_ext is not None:
        b = b.add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier(SGX_EXT), extra_ext), False)
    return b.sign(sign_key or issuer_key, hashes.SHA256(), ecdsa_deterministic=True)


def make_crl(*, issuer_name, issuer_key, this_update, next_update, revoked_serials, revocation_time):
    b = (x509.CertificateRevocationListBuilder()
         .issuer_name(issuer_name).last_update(ts(this_update)).next_update(ts(next_update))
         .add_extension(x509.CRLNumber(1), False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False))
    for s in revoked_serials:
        b = b.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(s).revocation_date(ts(revocation_time))
            .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), False).build())
    return b.sign(issuer_key, hashes.SHA256(), ecdsa_deterministic=True)


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


# ---------------------------------------------------------------------------
# Default parameters (the "UpToDate" platform) and TCB info / QE identity
# ---------------------------------------------------------------------------

ADV_SWH = "INTEL-SA-90001"
ADV_CONF = "INTEL-SA-90002"
ADV_OOD = "INTEL-SA-90003"
ADV_REV = "INTEL-SA-90004"
ADV_QE = "INTEL-SA-90005"
ADV_MOD = "INTEL-SA-90006"

PLATFORM_SGX = [3, 3, 2, 2, 4, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0]
PLATFORM_PCESVN = 11
# tee_tcb_svn: [0] TDX module ISVSVN, [1] TDX module version (-> "TDX_03"),
# [2] selects the platform TCB level in the synthetic TCB info (7 = UpToDate)
PLATFORM_TEE_TCB_SVN = [5, 3, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]

# tdx component [2] of each TCB level -> status and advisories (shuffled on
# purpose: dcap-qvl sorts levels itself, the JSON order must not matter)
TCB_LEVEL_TABLE = [
    (3, "ConfigurationAndSWHardeningNeeded", [ADV_SWH, ADV_CONF]),
    (7, "UpToDate", []),
    (5, "ConfigurationNeeded", [ADV_CONF]),
    (6, "SWHardeningNeeded", [ADV_SWH]),
    (4, "OutOfDate", [ADV_OOD]),
    (2, "OutOfDateConfigurationNeeded", [ADV_OOD, ADV_CONF]),
    (1, "Revoked", [ADV_REV]),
]

# TD attributes: only SEPT_VE_DISABLE (bit 28) set, as in real dstack TDs
TD_ATTRIBUTES = bytes.fromhex("0000001000000000")


def sgx_components_json(svns):
    return [{"svn": v} for v in svns]


def build_tcb_info(p: dict) -> dict:
    levels = []
    for tdx2, status, adv in p["tcb_level_table"]:
        tdx = [2, 0, tdx2] + [0] * 13
        lvl = {"tcb": {"sgxtcbcomponents": sgx_components_json(PLATFORM_SGX), "pcesvn": PLATFORM_PCESVN,
                       "tdxtcbcomponents": sgx_components_json(tdx)},
               "tcbDate": "2025-01-01T00:00:00Z", "tcbStatus": status}
        if adv:
            lvl["advisoryIDs"] = adv
        levels.append(lvl)
    zero48 = "00" * 48
    info = {
        "id": p["tcb_info_id"], "version": p["tcb_info_version"],
        "issueDate": iso(p["tcb_issue"]), "nextUpdate": iso(p["tcb_next"]),
        "fmspc": p["tcb_fmspc"].hex().upper(), "pceId": p["tcb_pce_id"].hex().upper(),
        "tcbType": 0, "tcbEvaluationDataNumber": 17,
        "tdxModule": {"mrsigner": zero48, "attributes": "0000000000000000", "attributesMask": "FFFFFFFFFFFFFFFF"},
        "tdxModuleIdentities": [
            {"id": "TDX_03", "mrsigner": p["module_mrsigner"].hex().upper(), "attributes": "0000000000000000",
             "attributesMask": "FFFFFFFFFFFFFFFF",
             "tcbLevels": [{"tcb": {"isvsvn": 5}, "tcbDate": "2025-01-01T00:00:00Z", "tcbStatus": "UpToDate"},
                           {"tcb": {"isvsvn": 3}, "tcbDate": "2024-01-01T00:00:00Z", "tcbStatus": "OutOfDate",
                            "advisoryIDs": [ADV_MOD]}]},
            {"id": "TDX_01", "mrsigner": zero48, "attributes": "0000000000000000", "attributesMask": "FFFFFFFFFFFFFFFF",
             "tcbLevels": [{"tcb": {"isvsvn": 4}, "tcbDate": "2025-01-01T00:00:00Z", "tcbStatus": "UpToDate"}]},
        ],
        "tcbLevels": levels,
    }
    return info


QE_MRSIGNER = bytes.fromhex("DC9E2A7C6F948F17474E34A7FC43ED030F7C1563F1BABDDF6340C82E0E54A8C5")


def build_qe_identity(p: dict) -> dict:
    return {
        "id": p["qe_id_id"], "version": p["qe_id_version"],
        "issueDate": iso(p["qe_issue"]), "nextUpdate": iso(p["qe_next"]),
        "tcbEvaluationDataNumber": 17,
        "miscselect": "00000000", "miscselectMask": "FFFFFFFF",
        "attributes": "11000000000000000000000000000000", "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
        "mrsigner": QE_MRSIGNER.hex().upper(), "isvprodid": 2,
        "tcbLevels": [
            {"tcb": {"isvsvn": 4}, "tcbDate": "2025-01-01T00:00:00Z", "tcbStatus": "UpToDate"},
            {"tcb": {"isvsvn": 2}, "tcbDate": "2024-01-01T00:00:00Z", "tcbStatus": "OutOfDate",
             "advisoryIDs": [ADV_QE]},
        ],
    }


def compact(obj) -> str:
    # Intel serves compact JSON; the signature covers these exact bytes
    return json.dumps(obj, separators=(",", ":"))


# ---------------------------------------------------------------------------
# Quote
# ---------------------------------------------------------------------------


def enclave_report(*, cpu_svn, misc_select, attributes, mr_enclave, mr_signer, isv_prod_id, isv_svn, report_data):
    b = (bytes(cpu_svn) + struct.pack("<I", misc_select) + bytes(28) + attributes + mr_enclave + bytes(32)
         + mr_signer + bytes(96) + struct.pack("<HH", isv_prod_id, isv_svn) + bytes(60) + report_data)
    assert len(b) == 384
    return b


def td_report(p: dict) -> bytes:
    b = (bytes(p["tee_tcb_svn"]) + p["mr_seam"] + p["mr_signer_seam"] + p["seam_attributes"] + p["td_attributes"]
         + p["xfam"] + p["mr_td"] + p["mr_config_id"] + p["mr_owner"] + p["mr_owner_config"]
         + p["rtmr0"] + p["rtmr1"] + p["rtmr2"] + p["rtmr3"] + p["report_data"])
    assert len(b) == 584
    if p["quote_version"] == 5 and p["v5_body_type"] == 3:
        tee_tcb_svn2 = p["tee_tcb_svn2"] if p["tee_tcb_svn2"] is not None else p["tee_tcb_svn"]
        b += bytes(tee_tcb_svn2) + p["mr_service_td"]
        assert len(b) == 648
    return b


def fill(seed: str, label: str, n: int) -> bytes:
    out = b""
    i = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}|{label}|{i}".encode()).digest()
        i += 1
    return out[:n]


# ---------------------------------------------------------------------------
# Variants
# ---------------------------------------------------------------------------

# name -> (description, parameter overrides applied by apply_variant, expectation)
# expectation: ("ok", status, advisory_ids) or ("error", substring of dcap-qvl's error text)
VARIANTS: dict[str, tuple] = {
    # name: (description, dcap-qvl 0.7.0 outcome, SPEC divergence or None)
    #   outcome: ("ok", status, advisory_ids) or ("error", substring of dcap-qvl's error text)
    #   divergence: text saying why SPEC section 6.2 wants verified=false although dcap-qvl accepts
    "default": ("UpToDate platform, QE and TDX module", ("ok", "UpToDate", []), None),
    "tcb_swhardening": ("platform TCB level SWHardeningNeeded", ("ok", "SWHardeningNeeded", [ADV_SWH]), None),
    "tcb_confneeded": ("platform TCB level ConfigurationNeeded", ("ok", "ConfigurationNeeded", [ADV_CONF]), None),
    "tcb_conf_swh": ("platform TCB level ConfigurationAndSWHardeningNeeded",
                     ("ok", "ConfigurationAndSWHardeningNeeded", [ADV_SWH, ADV_CONF]), None),
    "tcb_outofdate": ("platform TCB level OutOfDate", ("ok", "OutOfDate", [ADV_OOD]), None),
    "tcb_outofdate_conf": ("platform TCB level OutOfDateConfigurationNeeded",
                           ("ok", "OutOfDateConfigurationNeeded", [ADV_OOD, ADV_CONF]), None),
    "tcb_revoked": ("platform TCB level Revoked -> always an error", ("error", "TCB status is invalid: Revoked"), None),
    "tcb_no_level": ("platform below every TCB level (PCESVN 10 < 11)", ("error", "No matching TCB level found"), None),
    "tcb_between_levels": ("tdx component between two levels picks the lower level (SWHardeningNeeded)",
                           ("ok", "SWHardeningNeeded", [ADV_SWH]), None),
    "qe_outofdate": ("QE ISVSVN 3 -> QE identity level OutOfDate", ("ok", "OutOfDate", [ADV_QE]), None),
    "qe_below_min": ("QE ISVSVN 1, below every QE identity level", ("error", "QE ISVSVN 1 is below minimum"), None),
    "module_outofdate": ("TDX module ISVSVN 4 -> module identity level OutOfDate", ("ok", "OutOfDate", [ADV_MOD]), None),
    "module_below_min": ("TDX module ISVSVN 2, below every module level", ("error", "TDX module ISVSVN 2 is below"), None),
    "module_unknown_version": ("tee_tcb_svn[1]=2: no TDX_02 module identity",
                               ("error", "No TDX module identity with id TDX_02"), None),
    "module_mrsigner_mismatch": ("mr_signer_seam differs from the module identity's",
                                 ("error", "TDX module MRSIGNER mismatch"), None),
    "seam_attributes_nonzero": ("SEAM attributes differ under the mask", ("error", "SEAMATTRIBUTES mismatch"), None),
    "combined_swh_qe_module": ("SWHardeningNeeded platform + OutOfDate QE + OutOfDate module: worst wins, "
                               "advisories platform, module, QE", ("ok", "OutOfDate", [ADV_SWH, ADV_MOD, ADV_QE]), None),
    "td_debug": ("TD attributes bit 0 DEBUG", ("error", "Debug mode is enabled"), None),
    "td_no_sept_ve_disable": ("TD attributes without SEPT_VE_DISABLE (bit 28)", ("error", "SEPT_VE_DISABLE is not enabled"), None),
    "td_reserved_bit": ("TD attributes reserved bit 1", ("error", "Reserved bits in TD attributes are set"), None),
    "td_reserved_bit_other": ("TD attributes reserved bit 32", ("error", "Reserved bits in TD attributes are set"), None),
    "td_profiling": ("TD attributes bit 4 (HGS+ profiling)", ("error", "TD profiling is enabled"), None),
    "td_servtd_ext": ("TD attributes bit 17 (SERVTD_EXT)", ("error", "SERVTD_EXT is enabled"), None),
    "td_migratable": ("TD attributes bit 29 (MIGRATABLE)", ("error", "TD migration is enabled"), None),
    "td_allowed_bits": ("TD attributes bits 16,18-22,27,28,30,31,62,63 all set (all allowed)", ("ok", "UpToDate", []), None),
    "pck_revoked": ("PCK leaf serial listed in the PCK CRL", ("error", "CertRevoked"), None),
    "pck_ca_revoked": ("PCK CA serial listed in the root CA CRL", ("error", "CertRevoked"), None),
    "tcb_signing_revoked": ("TCB signing cert serial listed in the root CA CRL", ("error", "CertRevoked"), None),
    "root_revoked": ("root CA serial listed in its own CRL", ("error", "CertRevoked"), None),
    "pck_expired": ("PCK leaf notAfter = now - 1 day", ("error", "CertExpired"), None),
    "pck_not_after_eq_now": ("PCK leaf notAfter = now (inclusive)", ("ok", "UpToDate", []), None),
    "pck_not_yet_valid": ("PCK leaf notBefore = now + 1 day", ("error", "CertNotValidYet"), None),
    "pck_ca_expired": ("PCK CA notAfter = now - 1 day", ("error", "CertExpired"), None),
    "tcb_signing_expired": ("TCB signing cert notAfter = now - 1 day", ("error", "CertExpired"), None),
    "root_expired": ("root CA notAfter = now - 1 day", ("ok", "UpToDate", []),
                     "every certificate within its validity: dcap-qvl never checks the trust anchor's own dates"),
    "root_not_yet_valid": ("root CA notBefore = now + 1 day", ("ok", "UpToDate", []),
                           "every certificate within its validity: dcap-qvl never checks the trust anchor's own dates"),
    "pck_crl_expired": ("PCK CRL nextUpdate = now - 1 day", ("error", "CrlExpired"), None),
    "pck_crl_next_eq_now": ("PCK CRL nextUpdate = now (exclusive: expired)", ("error", "CrlExpired"), None),
    "pck_crl_this_update_future": ("PCK CRL thisUpdate = now + 1 day (not checked)", ("ok", "UpToDate", []),
                                   "every CRL within its validity: dcap-qvl ignores thisUpdate"),
    "root_crl_expired": ("root CA CRL nextUpdate = now - 1 day", ("error", "CrlExpired"), None),
    "pck_crl_wrong_signer": ("PCK CRL signed by another key (same issuer name)",
                             ("error", "InvalidCrlSignatureForPublicKey"), None),
    "tcb_info_expired": ("TCB info nextUpdate = now - 1 day", ("error", "TCBInfo expired"), None),
    "tcb_info_next_eq_now": ("TCB info nextUpdate = now (inclusive)", ("ok", "UpToDate", []), None),
    "tcb_info_future": ("TCB info issueDate = now + 1 day", ("error", "TCBInfo issue date is in the future"), None),
    "qe_identity_expired": ("QE identity nextUpdate = now - 1 day", ("error", "QE Identity expired"), None),
    "bad_quote_signature": ("quote signature over other bytes", ("error", "ISV enclave report signature is invalid"), None),
    "bad_qe_report_signature": ("QE report signature by another key", ("error", "Signature is invalid for qe_report"), None),
    "bad_tcb_info_signature": ("TCB info signature over other bytes", ("error", "Signature is invalid for tcb_info"), None),
    "bad_qe_identity_signature": ("QE identity signature over other bytes",
                                  ("error", "Signature is invalid for qe_identity"), None),
    "tcb_info_reformatted": ("TCB info re-serialised with spaces after signing",
                             ("error", "Signature is invalid for tcb_info"), None),
    "qe_report_data_mismatch": ("QE report data not bound to the attestation key", ("error", "QE report hash mismatch"), None),
    "qe_auth_data_16": ("16-byte QE authentication data (hash computed over it)", ("error", "Invalid QE auth data length"), None),
    "qe_vendor_id": ("all-zero QE vendor id in the header", ("error", "Unknown QE vendor ID"), None),
    "qe_mrsigner": ("QE report MRSIGNER differs from QE identity", ("error", "QE MRSIGNER mismatch"), None),
    "qe_isvprodid": ("QE report ISVPRODID 1 (identity says 2)", ("error", "QE ISVPRODID mismatch"), None),
    "qe_debug": ("QE report attributes with DEBUG bit", ("error", "Debug mode is enabled"), None),
    "qe_attributes_masked": ("QE attributes differ only in a masked-out bit", ("ok", "UpToDate", []), None),
    "fmspc_mismatch": ("TCB info for another FMSPC", ("error", "Fmspc mismatch"), None),
    "pceid_mismatch": ("TCB info pceId 0100, PCK certificate PCEID 0000", ("ok", "UpToDate", []),
                       "PCE id equal to the PCK certificate's: dcap-qvl never compares pceId"),
    "tcb_info_sgx_id": ("TCB info id \"SGX\" for a TDX quote", ("error", "TDX quote with non-TDX TCB info"), None),
    "tcb_info_v2": ("TCB info version 2 for a TDX quote", ("error", "TDX quote with non-TDX TCB info"), None),
    "qe_identity_sgx_id": ("QE identity id \"QE\" for a TDX quote", ("error", "Unsupported QE Identity id/version"), None),
    "qe_identity_v3": ("QE identity version 3 (accepted for TD_QE)", ("ok", "UpToDate", []), None),
    "chain_wrong_order": ("PCK chain in the quote with the PCK CA first", ("error", "CaUsedAsEndEntity"), None),
    "tcb_signed_by_pck": ("TCB info signed by the PCK key, tcb_info_issuer_chain = PCK chain", ("ok", "UpToDate", []),
                          "TCB info signed by the TCB signing chain: dcap-qvl accepts any leaf chaining to the root"),
    "trailing_bytes": ("70 zero bytes after the quote (real quotes are padded)", ("ok", "UpToDate", []), None),
    "outer_cert_type_5": ("outer certification data type 5 (body still a type-6 QE report structure)",
                          ("ok", "UpToDate", []), "certification data type 6: dcap-qvl ignores the outer type"),
    "attestation_key_type_3": ("header attestation key type 3", ("error", "Unsupported DCAP attestation key type"), None),
    "v5_td10": ("quote v5, body type 2 (TD report 1.0)", ("ok", "UpToDate", []), None),
    "v5_td15_service_td_zero": ("quote v5, body type 3 (TD report 1.5), MRSERVICETD zero, TEE_TCB_SVN2 = TEE_TCB_SVN",
                                ("ok", "UpToDate", []), None),
    "v5_td15_service_td_nonzero": ("quote v5, body type 3, MRSERVICETD non-zero", ("error", "Invalid MR service TD"), None),
    "v5_td15_relaunch": ("quote v5, body type 3, TEE_TCB_SVN at the OutOfDate level, TEE_TCB_SVN2 UpToDate",
                         ("ok", "TDRelaunchAdvised", [ADV_OOD]), None),
}


def default_params(seed: str, now: int) -> dict:
    return {
        "seed": seed, "now": now,
        # certificate validity
        "root_nb": now - 3650 * DAY, "root_na": now + 3650 * DAY,
        "pckca_nb": now - 3000 * DAY, "pckca_na": now + 3000 * DAY,
        "pck_nb": now - 300 * DAY, "pck_na": now + 2000 * DAY,
        "tcbsign_nb": now - 200 * DAY, "tcbsign_na": now + 2000 * DAY,
        # CRLs / JSON validity (like Intel's: ~30 days)
        "rootcrl_this": now - 100 * DAY, "rootcrl_next": now + 265 * DAY,
        "pckcrl_this": now - 10 * DAY, "pckcrl_next": now + 20 * DAY,
        "tcb_issue": now - 10 * DAY, "tcb_next": now + 20 * DAY,
        "qe_issue": now - 10 * DAY, "qe_next": now + 20 * DAY,
        "root_crl_revoked": [], "pck_crl_revoked_extra": [], "pck_crl_revoke_leaf": False,
        "pck_crl_wrong_signer": False,
        # PCK leaf SGX extension
        "cpu_svn": list(PLATFORM_SGX), "pce_svn": PLATFORM_PCESVN, "pce_id": bytes(2),
        "fmspc": bytes.fromhex("B0C06F000000"), "ppid": fill(seed, "ppid", 16), "sgx_type": 1,
        "platform_instance_id": fill(seed, "piid", 16),
        # TCB info / QE identity
        "tcb_info_id": "TDX", "tcb_info_version": 3, "tcb_fmspc": bytes.fromhex("B0C06F000000"),
        "tcb_pce_id": bytes(2), "tcb_level_table": list(TCB_LEVEL_TABLE), "module_mrsigner": bytes(48),
        "qe_id_id": "TD_QE", "qe_id_version": 2,
        # QE report
        "qe_mrsigner": QE_MRSIGNER, "qe_isvprodid": 2, "qe_isvsvn": 4,
        "qe_attributes": bytes.fromhex("11000000000000000000000000000000"),
        "qe_mr_enclave": fill(seed, "qe_mrenclave", 32), "qe_auth_data": fill(seed, "qe_auth", 32),
        "qe_hash_override": None,
        # quote header + TD report
        "quote_version": 4, "v5_body_type": 2, "att_key_type": 2, "qe_vendor_id": INTEL_QE_VENDOR_ID,
        "user_data": fill(seed, "qeid", 16) + bytes(4),
        "outer_cert_type": 6, "inner_cert_type": 5,
        "tee_tcb_svn": list(PLATFORM_TEE_TCB_SVN), "mr_seam": fill(seed, "mr_seam", 48),
        "mr_signer_seam": bytes(48), "seam_attributes": bytes(8), "td_attributes": TD_ATTRIBUTES,
        "xfam": bytes.fromhex("e702060000000000"), "mr_td": fill(seed, "mr_td", 48),
        "mr_config_id": bytes(48), "mr_owner": bytes(48), "mr_owner_config": bytes(48),
        "rtmr0": fill(seed, "rtmr0", 48), "rtmr1": fill(seed, "rtmr1", 48), "rtmr2": fill(seed, "rtmr2", 48),
        "rtmr3": fill(seed, "rtmr3", 48), "report_data": fill(seed, "report_data", 64),
        "mr_service_td": bytes(48), "tee_tcb_svn2": None,  # None: same as tee_tcb_svn
        # signature faults
        "bad_quote_sig": False, "bad_qe_report_sig": False, "bad_tcb_sig": False, "bad_qe_id_sig": False,
        "tcb_reformat": False, "chain_wrong_order": False, "tcb_signed_by_pck": False, "trailing": 0,
    }


def apply_variant(p: dict, v: str) -> None:
    now = p["now"]
    sets = {
        "tcb_swhardening": {"tee_tcb_svn": [5, 3, 6] + [0] * 13},
        "tcb_confneeded": {"tee_tcb_svn": [5, 3, 5] + [0] * 13},
        "tcb_conf_swh": {"tee_tcb_svn": [5, 3, 3] + [0] * 13},
        "tcb_outofdate": {"tee_tcb_svn": [5, 3, 4] + [0] * 13},
        "tcb_outofdate_conf": {"tee_tcb_svn": [5, 3, 2] + [0] * 13},
        "tcb_revoked": {"tee_tcb_svn": [5, 3, 1] + [0] * 13},
        "tcb_no_level": {"pce_svn": 10},
        "qe_outofdate": {"qe_isvsvn": 3},
        "qe_below_min": {"qe_isvsvn": 1},
        "module_outofdate": {"tee_tcb_svn": [4, 3, 7] + [0] * 13},
        "module_below_min": {"tee_tcb_svn": [2, 3, 7] + [0] * 13},
        "module_unknown_version": {"tee_tcb_svn": [5, 2, 7] + [0] * 13},
        "module_mrsigner_mismatch": {"mr_signer_seam": b"\x01" * 48},
        "seam_attributes_nonzero": {"seam_attributes": bytes.fromhex("0100000000000000")},
        "combined_swh_qe_module": {"tee_tcb_svn": [4, 3, 6] + [0] * 13, "qe_isvsvn": 3},
        "td_debug": {"td_attributes": bytes.fromhex("0100001000000000")},
        "td_no_sept_ve_disable": {"td_attributes": bytes(8)},
        "td_reserved_bit": {"td_attributes": bytes.fromhex("0200001000000000")},
        "td_reserved_bit_other": {"td_attributes": bytes.fromhex("0000001001000000")},
        "td_profiling": {"td_attributes": bytes.fromhex("1000001000000000")},
        "td_servtd_ext": {"td_attributes": bytes.fromhex("0000021000000000")},
        "td_migratable": {"td_attributes": bytes.fromhex("0000003000000000")},
        "td_allowed_bits": {"td_attributes": bytes.fromhex("00007dd8000000c0")},
        "pck_not_after_eq_now": {"pck_na": now},
        "root_not_yet_valid": {"root_nb": now + DAY},
        "pck_crl_next_eq_now": {"pckcrl_next": now},
        "pck_crl_this_update_future": {"pckcrl_this": now + DAY},
        "tcb_info_next_eq_now": {"tcb_next": now},
        "v5_td15_relaunch": {"quote_version": 5, "v5_body_type": 3, "tee_tcb_svn": [5, 3, 4] + [0] * 13,
                             "tee_tcb_svn2": [5, 3, 7] + [0] * 13},
        "pck_revoked": {"pck_crl_revoke_leaf": True},
        "pck_expired": {"pck_na": now - DAY},
        "pck_not_yet_valid": {"pck_nb": now + DAY},
        "pck_ca_expired": {"pckca_na": now - DAY},
        "tcb_signing_expired": {"tcbsign_na": now - DAY},
        "root_expired": {"root_na": now - DAY},
        "pck_crl_expired": {"pckcrl_this": now - 40 * DAY, "pckcrl_next": now - DAY},
        "root_crl_expired": {"rootcrl_this": now - 400 * DAY, "rootcrl_next": now - DAY},
        "pck_crl_wrong_signer": {"pck_crl_wrong_signer": True},
        "tcb_info_expired": {"tcb_issue": now - 40 * DAY, "tcb_next": now - DAY},
        "tcb_info_future": {"tcb_issue": now + DAY, "tcb_next": now + 30 * DAY},
        "qe_identity_expired": {"qe_issue": now - 40 * DAY, "qe_next": now - DAY},
        "bad_quote_signature": {"bad_quote_sig": True},
        "bad_qe_report_signature": {"bad_qe_report_sig": True},
        "bad_tcb_info_signature": {"bad_tcb_sig": True},
        "bad_qe_identity_signature": {"bad_qe_id_sig": True},
        "tcb_info_reformatted": {"tcb_reformat": True},
        "qe_report_data_mismatch": {"qe_hash_override": bytes(32)},
        "qe_auth_data_16": {"qe_auth_data": fill(p["seed"], "qe_auth16", 16)},
        "qe_vendor_id": {"qe_vendor_id": bytes(16)},
        "qe_mrsigner": {"qe_mrsigner": b"\x11" * 32},
        "qe_isvprodid": {"qe_isvprodid": 1},
        "qe_debug": {"qe_attributes": bytes.fromhex("13000000000000000000000000000000")},
        "qe_attributes_masked": {"qe_attributes": bytes.fromhex("15000000000000000000000000000000")},
        "fmspc_mismatch": {"tcb_fmspc": bytes.fromhex("00906ED50000")},
        "pceid_mismatch": {"tcb_pce_id": bytes.fromhex("0100")},
        "tcb_info_sgx_id": {"tcb_info_id": "SGX"},
        "tcb_info_v2": {"tcb_info_version": 2},
        "qe_identity_sgx_id": {"qe_id_id": "QE"},
        "qe_identity_v3": {"qe_id_version": 3},
        "chain_wrong_order": {"chain_wrong_order": True},
        "tcb_signed_by_pck": {"tcb_signed_by_pck": True},
        "trailing_bytes": {"trailing": 70},
        "outer_cert_type_5": {"outer_cert_type": 5},
        "attestation_key_type_3": {"att_key_type": 3},
        "v5_td10": {"quote_version": 5, "v5_body_type": 2},
        "v5_td15_service_td_zero": {"quote_version": 5, "v5_body_type": 3},
        "v5_td15_service_td_nonzero": {"quote_version": 5, "v5_body_type": 3, "mr_service_td": b"\x01" * 48},
    }
    if v == "tcb_between_levels":
        # remove the SWHardeningNeeded level at 6 and put one at 5.5 -> platform tdx[2]=6 matches level 5
        p["tee_tcb_svn"] = [5, 3, 6] + [0] * 13
        p["tcb_level_table"] = [(7, "UpToDate", []), (5, "SWHardeningNeeded", [ADV_SWH]),
                                (4, "OutOfDate", [ADV_OOD])]
    elif v in ("pck_ca_revoked", "tcb_signing_revoked", "root_revoked"):
        p["root_crl_revoked"] = [{"pck_ca_revoked": "pckca", "tcb_signing_revoked": "tcbsign",
                                  "root_revoked": "root"}[v]]
    elif v != "default":
        p.update(sets[v])


# ---------------------------------------------------------------------------
# Build everything
# ---------------------------------------------------------------------------


def build(seed: str, now: int, variant: str = "default", overrides: dict | None = None) -> dict:
    """overrides: raw parameter overrides applied after the variant (see default_params)."""
    p = default_params(seed, now)
    apply_variant(p, variant)
    p.update(overrides or {})

    k_root = derive_key(seed, "root")
    k_pckca = derive_key(seed, "pckca")
    k_pck = derive_key(seed, "pck")
    k_tcb = derive_key(seed, "tcbsign")
    k_att = derive_key(seed, "attestation")
    k_other = derive_key(seed, "other")

    n_root, n_pckca = name("Test SGX Root CA"), name("Test SGX PCK Processor CA")
    serials = {lbl: serial_for(seed, lbl) for lbl in ("root", "pckca", "pck", "tcbsign")}
    root_crl_url = "https://pccs.invalid/sgx/certification/v4/rootcacrl"
    pck_crl_url = "https://pccs.invalid/sgx/certification/v4/pckcrl?ca=processor&encoding=der"

    root = make_cert(subject=n_root, issuer=n_root, pub_key=k_root.public_key(), issuer_key=k_root,
                     serial=serials["root"], not_before=p["root_nb"], not_after=p["root_na"], ca=True, path_len=1,
                     crl_url=root_crl_url)
    pckca = make_cert(subject=n_pckca, issuer=n_root, pub_key=k_pckca.public_key(), issuer_key=k_root,
                      serial=serials["pckca"], not_before=p["pckca_nb"], not_after=p["pckca_na"], ca=True,
                      path_len=0, crl_url=root_crl_url)
    pck = make_cert(subject=name("Test SGX PCK Certificate"), issuer=n_pckca, pub_key=k_pck.public_key(),
                    issuer_key=k_pckca, serial=serials["pck"], not_before=p["pck_nb"], not_after=p["pck_na"],
                    ca=False, crl_url=pck_crl_url, extra_ext=sgx_extension(p))
    tcbsign = make_cert(subject=name("Test SGX TCB Signing"), issuer=n_root, pub_key=k_tcb.public_key(),
                        issuer_key=k_root, serial=serials["tcbsign"], not_before=p["tcbsign_nb"],
                        not_after=p["tcbsign_na"], ca=False, crl_url=root_crl_url)

    root_crl = make_crl(issuer_name=n_root, issuer_key=k_root, this_update=p["rootcrl_this"],
                        next_update=p["rootcrl_next"], revoked_serials=[serials[l] for l in p["root_crl_revoked"]],
                        revocation_time=p["rootcrl_this"])
    pck_revoked = [serial_for(seed, "unrelated-1"), serial_for(seed, "unrelated-2")]
    if p["pck_crl_revoke_leaf"]:
        pck_revoked.append(serials["pck"])
    pck_crl = make_crl(issuer_name=n_pckca, issuer_key=k_other if p["pck_crl_wrong_signer"] else k_pckca,
                       this_update=p["pckcrl_this"], next_update=p["pckcrl_next"], revoked_serials=pck_revoked,
                       revocation_time=p["pckcrl_this"])

    # TCB info / QE identity: signed over the exact JSON text
    tcb_text = compact(build_tcb_info(p))
    tcb_key = k_pck if p["tcb_signed_by_pck"] else k_tcb
    tcb_sig = sign_raw(tcb_key, tcb_text.encode() + (b" " if p["bad_tcb_sig"] else b""))
    if p["tcb_reformat"]:
        tcb_text = json.dumps(json.loads(tcb_text), separators=(", ", ": "))
    qe_text = compact(build_qe_identity(p))
    qe_sig = sign_raw(k_tcb, qe_text.encode() + (b" " if p["bad_qe_id_sig"] else b""))

    # QE report binds the attestation key
    att_pub = raw_pub(k_att)
    qe_hash = p["qe_hash_override"] or hashlib.sha256(att_pub + p["qe_auth_data"]).digest()
    qe_report = enclave_report(cpu_svn=p["cpu_svn"], misc_select=0, attributes=p["qe_attributes"],
                               mr_enclave=p["qe_mr_enclave"], mr_signer=p["qe_mrsigner"],
                               isv_prod_id=p["qe_isvprodid"], isv_svn=p["qe_isvsvn"],
                               report_data=qe_hash + bytes(32))
    qe_report_sig = sign_raw(k_other if p["bad_qe_report_sig"] else k_pck, qe_report)

    chain_certs = [pck, pckca, root]
    if p["chain_wrong_order"]:
        chain_certs = [pckca, pck, root]
    pem_chain = "".join(pem(c) for c in chain_certs).encode() + b"\x00"  # real quotes end the PEM with NUL

    # header (48) + [v5 body descriptor] + TD report
    header = struct.pack("<HHIHH", p["quote_version"], p["att_key_type"], 0x81, 0, 0) + p["qe_vendor_id"] + p["user_data"]
    assert len(header) == 48
    body = td_report(p)
    if p["quote_version"] == 5:
        body = struct.pack("<HI", p["v5_body_type"], len(body)) + body
    signed = header + body
    quote_sig = sign_raw(k_att, signed + (b"x" if p["bad_quote_sig"] else b""))

    inner = (qe_report + qe_report_sig + struct.pack("<H", len(p["qe_auth_data"])) + p["qe_auth_data"]
             + struct.pack("<HI", p["inner_cert_type"], len(pem_chain)) + pem_chain)
    auth = quote_sig + att_pub + struct.pack("<HI", p["outer_cert_type"], len(inner)) + inner
    quote = signed + struct.pack("<I", len(auth)) + auth + bytes(p["trailing"])

    pem_ = lambda cs: "".join(pem(c) for c in cs)
    issuer_chain = pem_([tcbsign, root]) if not p["tcb_signed_by_pck"] else pem_([pck, pckca, root])
    collateral = {
        "pck_crl_issuer_chain": pem_([pckca, root]),
        "root_ca_crl": root_crl.public_bytes(serialization.Encoding.DER).hex(),
        "pck_crl": pck_crl.public_bytes(serialization.Encoding.DER).hex(),
        "tcb_info_issuer_chain": issuer_chain,
        "tcb_info": tcb_text,
        "tcb_info_signature": tcb_sig.hex(),
        "qe_identity_issuer_chain": pem_([tcbsign, root]),
        "qe_identity": qe_text,
        "qe_identity_signature": qe_sig.hex(),
    }

    desc, expect, divergence = VARIANTS[variant]
    root_der = root.public_bytes(serialization.Encoding.DER)
    td = {
        "mr_td": p["mr_td"].hex(), "rtmr0": p["rtmr0"].hex(), "rtmr1": p["rtmr1"].hex(),
        "rtmr2": p["rtmr2"].hex(), "rtmr3": p["rtmr3"].hex(), "mr_config_id": p["mr_config_id"].hex(),
        "mr_owner": p["mr_owner"].hex(), "mr_owner_config": p["mr_owner_config"].hex(),
        "report_data": p["report_data"].hex(), "td_attributes": p["td_attributes"].hex(),
    }
    expected = {
        "variant": variant, "description": desc, "seed": seed, "now": now,
        "root_ca": "override:" + hashlib.sha256(root_der).hexdigest(),
        "fmspc": p["fmspc"].hex(), "td": td,
        "tee_tcb_svn": bytes(p["tee_tcb_svn"]).hex(), "mr_seam": p["mr_seam"].hex(),
        "pck_serial": format(serials["pck"], "x"),
    }
    # "dcap_qvl": what dcap-qvl 0.7.0 verify_with_root_ca returns (proved by test_synthetic.py)
    if expect[0] == "ok":
        expected["dcap_qvl"] = {"verified": True, "status": expect[1], "advisory_ids": expect[2]}
    else:
        expected["dcap_qvl"] = {"verified": False, "error_contains": expect[1]}
    # "spec": what SPEC 6.2 asks of the Swift verifier (same as dcap-qvl unless a divergence is noted)
    if divergence:
        expected["spec"] = {"verified": False, "divergence": divergence}
    else:
        expected["spec"] = dict(expected["dcap_qvl"])
    return {"quote": quote, "collateral": collateral, "root_der": root_der,
            "root_pem": pem(root), "expected": expected}


def write(out: str, art: dict) -> None:
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "quote.bin"), "wb") as f:
        f.write(art["quote"])
    with open(os.path.join(out, "collateral.json"), "w") as f:
        json.dump(art["collateral"], f, indent=1)
        f.write("\n")
    with open(os.path.join(out, "root.der"), "wb") as f:
        f.write(art["root_der"])
    with open(os.path.join(out, "root.pem"), "w") as f:
        f.write(art["root_pem"])
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(art["expected"], f, indent=1)
        f.write("\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir", nargs="?")
    ap.add_argument("--seed", default=DEFAULT_SEED)
    ap.add_argument("--now", type=int, default=DEFAULT_NOW, help="verification time (unix seconds)")
    ap.add_argument("--variant", default="default", choices=sorted(VARIANTS))
    ap.add_argument("--all", action="store_true", help="write every variant into OUTDIR/<variant>/")
    ap.add_argument("--list", action="store_true")
    a = ap.parse_args(argv)
    if a.list:
        for k, (d, e, _) in VARIANTS.items():
            print(f"{k:28s} {d}")
        return 0
    if not a.outdir:
        ap.error("OUTDIR required")
    if a.all:
        for v in VARIANTS:
            write(os.path.join(a.outdir, v), build(a.seed, a.now, v))
    else:
        write(a.outdir, build(a.seed, a.now, a.variant))
    return 0


if __name__ == "__main__":
    sys.exit(main())
