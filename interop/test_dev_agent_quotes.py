"""The dev attestation agent's quotes are real-format TDX v4 quotes from a throwaway dev PKI: dcap-qvl 0.7.0 (the
ecosystem's own verifier, independent of our Swift one) accepts them with the dev root the agent writes to
`--dev-pki-dir`, refuses them with Intel's root, and the RTMR3 in the quote is the replay of the agent's event log,
recomputed here with hashlib."""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import struct
import tempfile
import time
from pathlib import Path

import dcap_qvl
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from conftest import Process, bin_dir, stop_all

DSTACK_EVENT_TYPE = 0x08000001
RTMR3 = slice(48 + 472, 48 + 520)  # in a v4 quote: header 48, then RTMR3 at 472 in the TD report
REPORT_DATA = slice(48 + 520, 48 + 584)


@pytest.fixture(scope="module")
def agent():
    tmp = Path(tempfile.mkdtemp(prefix="vllm-proxy-dev-agent-"))
    pki = tmp / "pki"
    process = Process(
        "dev-attestation-agent",
        [str(bin_dir() / "dev-attestation-agent"), "--host", "127.0.0.1", "--port", "0", "--dev-pki-dir", str(pki)],
        tmp,
    )
    try:
        url = f"http://127.0.0.1:{process.listening_port()}"
        yield url, pki, process
    finally:
        stop_all([process])
        shutil.rmtree(tmp, ignore_errors=True)


def get_quote(url: str, report_data: bytes) -> dict:
    r = requests.post(url + "/GetQuote", json={"report_data": report_data.hex()}, timeout=(5, 30))
    assert r.status_code == 200, r.text
    return r.json()


def collateral(pki: Path):
    return dcap_qvl.QuoteCollateralV3.from_json((pki / "collateral.json").read_text())


def root_der(pki: Path) -> bytes:
    return x509.load_pem_x509_certificate((pki / "tdx-root.pem").read_bytes()).public_bytes(Encoding.DER)


def td_report(verified) -> dict:
    def find(obj):
        if isinstance(obj, dict):
            if "rt_mr3" in obj:
                return obj
            for value in obj.values():
                if (found := find(value)) is not None:
                    return found
        return None

    return find(json.loads(verified.to_json())["report"])


def test_dcap_qvl_accepts_with_the_dev_root(agent):
    url, pki, _ = agent
    report_data = secrets.token_bytes(64)
    answer = get_quote(url, report_data)
    quote = bytes.fromhex(answer["quote"])
    assert answer["report_data"] == report_data.hex()
    assert quote[REPORT_DATA] == report_data
    verified = dcap_qvl.verify_with_root_ca(quote, collateral(pki), root_der(pki), int(time.time()))
    assert verified.status == "UpToDate"
    assert list(verified.advisory_ids) == []
    td = td_report(verified)
    assert td["report_data"].lower() == report_data.hex()
    assert td["rt_mr3"].lower() == quote[RTMR3].hex()


def test_dcap_qvl_refuses_with_intels_root(agent):
    url, pki, _ = agent
    quote = bytes.fromhex(get_quote(url, bytes(64))["quote"])
    with pytest.raises(ValueError):
        dcap_qvl.verify(quote, collateral(pki), int(time.time()))


def test_event_log_replays_to_rtmr3(agent):
    url, pki, _ = agent
    answer = get_quote(url, b"\x01" * 32)  # short report data: zero-padded to 64 bytes, as dstack does
    assert answer["report_data"] == "01" * 32 + "00" * 32
    quote = bytes.fromhex(answer["quote"])
    events = json.loads(answer["event_log"])  # a JSON string of the event array, as dstack sends it
    rtmr = bytes(48)
    for event in events:
        assert event["imr"] == 3 and event["event_type"] == DSTACK_EVENT_TYPE
        payload = bytes.fromhex(event["event_payload"])
        digest = hashlib.sha384(
            struct.pack("<I", event["event_type"]) + b":" + event["event"].encode() + b":" + payload
        ).digest()
        assert event["digest"] == digest.hex()
        rtmr = hashlib.sha384(rtmr + digest).digest()
    assert rtmr == quote[RTMR3]

    names = [event["event"] for event in events]
    assert names[:5] == ["system-preparing", "app-id", "compose-hash", "instance-id", "boot-mr-done"]
    by_name = {event["event"]: bytes.fromhex(event["event_payload"]) for event in events}
    compose_hash = (pki / "compose-hash").read_text().strip()
    assert by_name["compose-hash"].hex() == compose_hash

    # /Info reports the same app, compose and measurements (tcb_info is a JSON-encoded string, as dstack's).
    info = requests.post(url + "/Info", json={}, timeout=(5, 30)).json()
    tcb_info = json.loads(info["tcb_info"])
    assert hashlib.sha256(tcb_info["app_compose"].encode()).hexdigest() == compose_hash
    assert tcb_info["compose_hash"] == compose_hash
    assert info["app_id"] == by_name["app-id"].hex()
    assert info["instance_id"] == by_name["instance-id"].hex()
    assert tcb_info["rtmr3"] == quote[RTMR3].hex()
    assert tcb_info["mrtd"] == quote[48 + 136:48 + 184].hex()
    assert tcb_info["event_log"] == events


def test_pki_files_are_written(agent):
    _, pki, process = agent
    assert (pki / "tdx-root.pem").read_text().startswith("-----BEGIN CERTIFICATE-----")
    fields = json.loads((pki / "collateral.json").read_text())
    assert set(fields) == {
        "pck_crl_issuer_chain", "root_ca_crl", "pck_crl", "tcb_info_issuer_chain", "tcb_info",
        "tcb_info_signature", "qe_identity_issuer_chain", "qe_identity", "qe_identity_signature",
    }
    assert len(bytes.fromhex((pki / "compose-hash").read_text().strip())) == 32
    assert "NOT SECURE" in process.log_tail()
