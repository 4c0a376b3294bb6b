"""SPEC §6.2 collateral from a PCCS: the stand-in (interop/pccs_standin.py) serves the sample collateral in the
PCCS v4 wire format; dcap-qvl 0.7.0's own `get_collateral` fetches from it collateral identical to the file and
that `dcap_qvl.verify` accepts (so the stand-in speaks the protocol dcap-qvl speaks); then `vllm-proxy
verify-quote --pccs` gives the same verdict as with `--collateral` over the same four requests. (The cache is
tested in Tests/TDXCollateralTests: each CLI run is a new process.)"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import dcap_qvl
import pytest
import requests

from conftest import bin_dir

HERE = Path(__file__).resolve().parent
TDX = HERE.parent / "Tests" / "TDX"
# dcap-qvl's real sample (platform CA, Intel's root) where scripts/samples put it in place — third-party data, not
# committed — else the synthetic default variant (processor CA, its own test root).
if (TDX / "samples" / "tdx_quote").exists():
    QUOTE, COLLATERAL = TDX / "samples" / "tdx_quote", TDX / "samples" / "tdx_quote_collateral.json"
    NOW, CA, ROOT = 1751328000, "platform", None  # 2025-07-01, inside the sample's window
else:
    QUOTE, COLLATERAL = TDX / "synthetic" / "default" / "quote.bin", TDX / "synthetic" / "default" / "collateral.json"
    NOW, CA, ROOT = 1767225600, "processor", TDX / "synthetic" / "default" / "root.pem"
EXPECTED_PATHS = [
    f"/sgx/certification/v4/pckcrl?ca={CA}&encoding=der",
    "/tdx/certification/v4/tcb?fmspc=B0C06F000000&update=standard",
    "/tdx/certification/v4/qe/identity?update=standard",
    "/sgx/certification/v4/rootcacrl",
]

@pytest.fixture()
def standin():
    process = subprocess.Popen([sys.executable, str(HERE / "pccs_standin.py"), "--collateral", str(COLLATERAL)],
                               stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        line = process.stdout.readline()
        assert line.strip().isdigit(), f"stand-in did not print its port: {line!r}"
        yield f"http://127.0.0.1:{int(line)}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def requests_seen(url: str) -> list[str]:
    return requests.get(url + "/_requests", timeout=(5, 30)).json()["paths"]


def verify_quote(*args: str) -> tuple[int, dict, str]:
    argv = [str(bin_dir() / "vllm-proxy"), "verify-quote", "--quote", str(QUOTE), "--now", str(NOW), *args]
    if ROOT is not None:
        argv += ["--root-ca", str(ROOT)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env={})
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else {}, done.stderr


def test_dcap_qvl_get_collateral_from_the_standin(standin):
    quote = QUOTE.read_bytes()

    async def fetch():
        return await dcap_qvl.get_collateral(standin, quote)

    collateral = asyncio.run(fetch())
    fetched = json.loads(collateral.to_json())
    fetched.pop("pck_certificate_chain", None)  # dcap-qvl adds the quote's own PCK chain
    assert fetched == json.loads(COLLATERAL.read_text())
    report = (dcap_qvl.verify(quote, collateral, NOW) if ROOT is None else
              dcap_qvl.verify_with_root_ca(quote, collateral, (ROOT.parent / "root.der").read_bytes(), NOW))
    assert report.status == "UpToDate"
    assert requests_seen(standin) == EXPECTED_PATHS


def test_verify_quote_with_pccs_matches_the_file(standin):
    code_file, from_file, _ = verify_quote("--collateral", str(COLLATERAL))
    code_pccs, from_pccs, stderr = verify_quote("--pccs", standin)
    assert code_file == 0 and from_file["verified"], from_file
    assert (code_pccs, from_pccs) == (code_file, from_file), stderr
    assert requests_seen(standin) == EXPECTED_PATHS  # the same requests as dcap-qvl, in its order


def test_verify_quote_pccs_down_is_collateral_unavailable(standin):
    # Nothing listens on the stand-in's port once it is stopped: take a fresh port and close it.
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    code, verdict, _ = verify_quote("--pccs", dead)
    assert code == 1
    assert verdict["verified"] is False and verdict["error"] == "collateral_unavailable"
    # A PCCS that answers 404 for everything likewise.
    code, verdict, _ = verify_quote("--pccs", standin + "/nowhere")
    assert code == 1 and verdict["error"] == "collateral_unavailable"


def test_verify_quote_arguments(standin):
    # Exactly one of --collateral and --pccs; plain http only on loopback.
    assert verify_quote()[0] == 2
    assert verify_quote("--collateral", str(COLLATERAL), "--pccs", standin)[0] == 2
    assert verify_quote("--pccs", "http://pccs.example.com")[0] == 2
    assert requests_seen(standin) == []
