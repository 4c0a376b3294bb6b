"""SPEC §2: the unauthenticated routes (liveness, models and metrics pass-through)."""

from __future__ import annotations

import requests

from conftest import TIMEOUT


def test_liveness(proxy):
    r = proxy.get("/", auth=False)
    assert r.status_code == 200 and r.json() == {}


def test_models_pass_through_unchanged(proxy, stack):
    r = proxy.get("/v1/models", auth=False)
    direct = requests.get(stack.stub_url + "/v1/models", timeout=TIMEOUT)
    assert r.status_code == direct.status_code == 200
    assert r.content == direct.content


def test_metrics_are_ours_then_separator_then_vllm(proxy, stack):
    r = proxy.get("/v1/metrics", auth=False)
    assert r.status_code == 200
    ours, separator, theirs = r.text.partition("# --- vLLM Backend Metrics ---\n")
    assert separator, r.text[:1000]
    assert theirs == requests.get(stack.stub_url + "/metrics", timeout=TIMEOUT).text
