"""/v1/metrics' latency histograms (issue #12), read with the reference parser, prometheus_client."""

from __future__ import annotations

import math
import time
from collections import defaultdict

from prometheus_client.parser import text_string_to_metric_families

from helpers import chat_body

CHAT = "/v1/chat/completions"
HISTOGRAMS = {
    "vllm_proxy_request_duration_seconds": {"route", "status"},
    "vllm_proxy_upstream_ttfb_seconds": {"upstream"},
    "vllm_proxy_proxy_overhead_seconds": {"route"},
}


def our_families(proxy) -> dict:
    text = proxy.get("/v1/metrics", auth=False).text.partition("# --- vLLM Backend Metrics ---\n")[0]
    return {family.name: family for family in text_string_to_metric_families(text)}


def series(family) -> dict:
    """Histogram samples grouped by label set (without `le`): {labels: {"buckets": [(le, n)], "count": n, "sum": s}}."""
    out: dict = defaultdict(lambda: {"buckets": []})
    for sample in family.samples:
        labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
        if sample.name.endswith("_bucket"):
            out[labels]["buckets"].append((float(sample.labels["le"]), sample.value))
        elif sample.name.endswith("_count"):
            out[labels]["count"] = sample.value
        elif sample.name.endswith("_sum"):
            out[labels]["sum"] = sample.value
    return out


def chat_count(proxy, name: str, labels: dict) -> float:
    family = our_families(proxy).get(name)
    if family is None:
        return 0
    return series(family).get(tuple(sorted(labels.items())), {}).get("count", 0)


def test_latency_histograms_are_well_formed_prometheus(proxy, stub):
    overhead_before = chat_count(proxy, "vllm_proxy_proxy_overhead_seconds", {"route": CHAT})
    assert proxy.post(CHAT, chat_body("time me")).status_code == 200
    r, raw = proxy.post_stream(CHAT, chat_body("time me too", stream=True))
    assert r.status_code == 200 and raw.endswith(b"data: [DONE]\n\n")
    # Overheads are recorded once the body is written, possibly just after the client has read it.
    deadline = time.monotonic() + 10
    while chat_count(proxy, "vllm_proxy_proxy_overhead_seconds", {"route": CHAT}) < overhead_before + 2:
        assert time.monotonic() < deadline, "the two completions' overheads were never recorded"
        time.sleep(0.1)

    families = our_families(proxy)
    for name, label_names in HISTOGRAMS.items():
        family = families[name]
        assert family.type == "histogram", (name, family.type)
        assert family.documentation, f"{name} has no HELP"
        groups = series(family)
        assert groups, name
        for labels, group in groups.items():
            assert {k for k, _ in labels} == label_names, (name, labels)
            bounds = [le for le, _ in group["buckets"]]
            counts = [n for _, n in group["buckets"]]
            assert bounds == sorted(bounds) and len(set(bounds)) == len(bounds), (name, bounds)
            assert math.isinf(bounds[-1]), f"{name}{labels} has no +Inf bucket"
            assert all(a <= b for a, b in zip(counts, counts[1:])), f"{name}{labels} buckets not cumulative"
            assert counts[-1] == group["count"], f"{name}{labels}: +Inf {counts[-1]} != count {group['count']}"
            assert group["sum"] >= 0 and group["count"] >= 1, (name, labels, group)

    duration = series(families["vllm_proxy_request_duration_seconds"])
    assert (("route", CHAT), ("status", "200")) in duration
    assert (("upstream", "vllm"),) in series(families["vllm_proxy_upstream_ttfb_seconds"])
    overhead = series(families["vllm_proxy_proxy_overhead_seconds"])[(("route", CHAT),)]
    # Each overhead is part of its request's duration; every recorded overhead has a 200 duration beside it.
    assert overhead["sum"] <= duration[(("route", CHAT), ("status", "200"))]["sum"]
    assert overhead["count"] <= duration[(("route", CHAT), ("status", "200"))]["count"]
    # Overhead buckets start at 50 µs, so the benchmark can read sub-millisecond overheads.
    assert min(le for le, _ in overhead["buckets"]) <= 0.00005
