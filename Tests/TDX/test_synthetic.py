"""Proves make_synthetic.py against dcap-qvl 0.7.0 (and checks the real samples).

Run:  /work/main/.venv-tdx/bin/python -m pytest -q Tests/TDX
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import dcap_qvl

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_synthetic as ms  # noqa: E402
import dcap_verdict  # noqa: E402

SEED, NOW = ms.DEFAULT_SEED, ms.DEFAULT_NOW


def dcap(art: dict, now: int = NOW, root_der: bytes | None = None):
    col = dcap_qvl.QuoteCollateralV3.from_json(json.dumps(art["collateral"]))
    try:
        r = dcap_qvl.verify_with_root_ca(art["quote"], col, root_der or art["root_der"], now)
    except ValueError as e:
        return ("error", str(e))
    return ("ok", r.status, list(r.advisory_ids), json.loads(r.to_json()))


@pytest.fixture(scope="module")
def default_art():
    return ms.build(SEED, NOW)


def test_deterministic(default_art):
    again = ms.build(SEED, NOW)
    assert again["quote"] == default_art["quote"]
    assert again["collateral"] == default_art["collateral"]
    assert again["root_der"] == default_art["root_der"]
    other = ms.build(SEED + "x", NOW)
    assert other["quote"] != default_art["quote"]


def test_default_up_to_date_and_fields(default_art):
    got = dcap(default_art)
    assert got[:3] == ("ok", "UpToDate", [])
    td = got[3]["report"]["TD10"]
    exp = default_art["expected"]
    for k_dcap, k_exp in [("mr_td", "mr_td"), ("rt_mr0", "rtmr0"), ("rt_mr1", "rtmr1"), ("rt_mr2", "rtmr2"),
                          ("rt_mr3", "rtmr3"), ("mr_config_id", "mr_config_id"), ("mr_owner", "mr_owner"),
                          ("mr_owner_config", "mr_owner_config"), ("report_data", "report_data"),
                          ("td_attributes", "td_attributes")]:
        assert td[k_dcap] == exp["td"][k_exp], k_dcap
    assert td["tee_tcb_svn"] == exp["tee_tcb_svn"]
    assert td["mr_seam"] == exp["mr_seam"]
    q = dcap_qvl.parse_quote(default_art["quote"])
    assert q.fmspc().lower() == exp["fmspc"]
    assert q.ca() == "processor"
    assert q.pck_extension().pce_svn == ms.PLATFORM_PCESVN


def test_intel_root_rejects_synthetic(default_art):
    col = dcap_qvl.QuoteCollateralV3.from_json(json.dumps(default_art["collateral"]))
    with pytest.raises(ValueError):
        dcap_qvl.verify(default_art["quote"], col, NOW)


def test_other_root_rejects_synthetic(default_art):
    other = ms.build("another-seed", NOW)
    assert dcap(default_art, root_der=other["root_der"])[0] == "error"


@pytest.mark.parametrize("variant", list(ms.VARIANTS))
def test_variant(variant):
    art = ms.build(SEED, NOW, variant)
    _, expect, _ = ms.VARIANTS[variant]
    got = dcap(art)
    if expect[0] == "ok":
        assert got[:3] == ("ok", expect[1], expect[2]), got[:3]
    else:
        assert got[0] == "error", got[:3]
        assert expect[1] in got[1], got[1]
    # expected.json written for the Swift side agrees with the table
    e = art["expected"]["dcap_qvl"]
    assert e["verified"] == (expect[0] == "ok")


def test_variant_time_window(default_art):
    """At the edges of the default collateral's validity window."""
    p = ms.default_params(SEED, NOW)
    assert dcap(default_art, now=p["pckcrl_next"] - 1)[0] == "ok"
    assert dcap(default_art, now=p["pckcrl_next"])[0] == "error"      # CRL nextUpdate exclusive
    assert dcap(default_art, now=p["tcb_issue"])[0] == "ok"           # issueDate inclusive
    assert dcap(default_art, now=p["tcb_issue"] - 1)[0] == "error"


def test_written_directory_and_driver(tmp_path):
    out = tmp_path / "default"
    ms.main([str(out)])
    for f in ("quote.bin", "collateral.json", "root.der", "root.pem", "expected.json"):
        assert (out / f).exists()
    exp = json.loads((out / "expected.json").read_text())
    v = dcap_verdict.verdict(str(out / "quote.bin"), str(out / "collateral.json"), NOW, str(out / "root.der"))
    assert v["verified"] is True and v["status"] == "UpToDate" and v["advisory_ids"] == []
    assert v["td"] == exp["td"] and v["fmspc"] == exp["fmspc"] and v["root_ca"] == exp["root_ca"]
    # CLI, PEM root, hex quote
    (out / "quote.hex").write_text("0x" + (out / "quote.bin").read_bytes().hex())
    r = subprocess.run([sys.executable, os.path.join(HERE, "dcap_verdict.py"), str(out / "quote.hex"),
                        str(out / "collateral.json"), str(NOW), str(out / "root.pem")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == v
    bad = ms.build(SEED, NOW, "td_debug")
    ms.write(str(tmp_path / "bad"), bad)
    r = subprocess.run([sys.executable, os.path.join(HERE, "dcap_verdict.py"), str(tmp_path / "bad" / "quote.bin"),
                        str(tmp_path / "bad" / "collateral.json"), str(NOW), str(tmp_path / "bad" / "root.der")],
                       capture_output=True, text=True)
    assert r.returncode == 1
    j = json.loads(r.stdout)
    assert j["verified"] is False and "Debug mode" in j["error"] and j["root_ca"].startswith("override:")


SAMPLES = os.path.join(HERE, "samples")


def _samples():
    with open(os.path.join(SAMPLES, "expected.json")) as f:
        return json.load(f)["samples"]


def _require(sample):
    """The real samples are third-party data, not committed: scripts/samples copies them from local snapshots."""
    if not os.path.exists(os.path.join(SAMPLES, sample["quote"])):
        pytest.skip("scripts/samples found no snapshot of Phala-Network/dcap-qvl")


@pytest.mark.parametrize("name", [s["quote"] for s in _samples()])
def test_real_samples(name):
    s = next(x for x in _samples() if x["quote"] == name)
    _require(s)
    v = dcap_verdict.verdict(os.path.join(SAMPLES, s["quote"]), os.path.join(SAMPLES, s["collateral"]), s["now"])
    exp = s["expected"]
    assert v["verified"] == exp["verified"]
    if v["verified"]:
        assert v == exp
    else:
        assert v["root_ca"] == "intel"
        assert exp["error"] == v["error"]


@pytest.mark.parametrize("name", [s["quote"] for s in _samples() if s["expected"]["verified"]])
def test_real_sample_window_edges(name):
    """The recorded window is exact: verified at both ends, rejected one second outside."""
    s = next(x for x in _samples() if x["quote"] == name)
    _require(s)
    q, c = os.path.join(SAMPLES, s["quote"]), os.path.join(SAMPLES, s["collateral"])
    assert dcap_verdict.verdict(q, c, s["valid_from"])["verified"]
    assert dcap_verdict.verdict(q, c, s["valid_until"])["verified"]
    assert not dcap_verdict.verdict(q, c, s["valid_from"] - 1)["verified"]
    assert not dcap_verdict.verdict(q, c, s["valid_until"] + 1)["verified"]


def test_committed_synthetic_tree_is_current(tmp_path):
    """synthetic/ (the fixtures the Swift tests read) equals a fresh `make_synthetic.py synthetic --all`."""
    committed = os.path.join(HERE, "synthetic")
    if not os.path.isdir(committed):
        pytest.skip("synthetic/ not generated")
    assert sorted(os.listdir(committed)) == sorted(ms.VARIANTS)
    ms.main([str(tmp_path), "--all"])
    for v in ms.VARIANTS:
        for f in ("quote.bin", "collateral.json", "root.der", "root.pem", "expected.json"):
            with open(os.path.join(committed, v, f), "rb") as a, open(tmp_path / v / f, "rb") as b:
                assert a.read() == b.read(), f"{v}/{f} is stale: rerun make_synthetic.py synthetic --all"
