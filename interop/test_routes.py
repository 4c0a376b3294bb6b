"""SPEC §2: the unauthenticated routes (liveness, models and metrics pass-through)."""

from __future__ import annotations

import re

import pytest
import requests

from conftest import TIMEOUT
from helpers import assert_error, chat_body


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


def test_our_metrics_are_valid_prometheus_text(proxy, stub):
    assert proxy.post("/v1/chat/completions", chat_body("count me")).status_code == 200
    ours = proxy.get("/v1/metrics", auth=False).text.partition("# --- vLLM Backend Metrics ---\n")[0]
    sample = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*",?)*\})? -?[0-9.eE+-]+$')
    samples = [line for line in ours.splitlines() if line and not line.startswith("#")]
    assert samples, ours
    assert all(sample.match(line) for line in samples), [line for line in samples if not sample.match(line)]


@pytest.mark.parametrize("method,path", [("GET", "/v1/nope"), ("GET", "/v1/chat/completions"), ("PUT", "/v1/completions")])
def test_unknown_route_is_an_error_object(proxy, method, path):
    r = proxy.request(method, path)
    assert r.status_code in (404, 405)
    assert_error(r, r.status_code)

