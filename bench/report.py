"""Turns bench/run's measurements (`key value` lines) into bench/RESULTS.md, with issue #12's targets and a
pass/miss mark next to each figure, and prints the same to stdout.

    python3 bench/report.py RESULTS_FILE OUT_MD
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def load(path: str) -> dict[str, str]:
    values = {}
    for line in Path(path).read_text().splitlines():
        key, _, value = line.partition(" ")
        values[key] = value
    return values


def main() -> None:
    r = load(sys.argv[1])
    out = Path(sys.argv[2])

    def num(key: str) -> float | None:
        value = r.get(key)
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None

    def us(v: float | None) -> str:
        if v is None:
            return "–"
        return f"{v:.1f} µs" if v < 100 else f"{v:.0f} µs"

    def ms(v: float | None) -> str:
        return "–" if v is None else f"{v:.2f} ms"

    def rps(v: float | None) -> str:
        return "–" if v is None else f"{v:,.0f} req/s".replace(",", " ")

    def ratio(a: float | None, b: float | None) -> str:
        if a is None or not b:
            return "–"
        x = a / b
        return f"{x:.1f}×" if x >= 1 else f"1/{1 / x:.1f}".replace(".0", "")

    def mark(ok: bool | None) -> str:
        return "–" if ok is None else ("**pass**" if ok else "**miss**")

    def at_most(v: float | None, limit: float) -> bool | None:
        return None if v is None else v <= limit

    rows = []

    def cpu_row(label: str, key: str, limit: float | None) -> None:
        n, p = num(f"{key}.nginx.cpu_us"), num(f"{key}.proxy.cpu_us")
        target = f"≤ {limit:.0f} µs" if limit else "–"
        rows.append((label, "–", us(n), us(p), ratio(p, n), target, mark(at_most(p, limit) if limit else None)))

    cpu_row("CPU per request, c=1", "plain_c1", 250)
    cpu_row("CPU per request, c=16 (both signatures)", "plain_c16", 120)
    cpu_row("CPU per request, c=64", "plain_c64", None)
    redis_proxy = num("plain_c16.proxy+redis.cpu_us")
    rows.append((
        "CPU per request, c=16, proxy with Redis",
        "–",
        "–",
        f"{us(redis_proxy)} (redis-server {us(num('redis_server_cpu_us'))})",
        "–",
        "–",
        "–",
    ))
    d, n, p = (num(f"plain_c64.{t}.rps") for t in ("direct", "nginx", "proxy"))
    rows.append(("throughput, c=64", rps(d), rps(n), rps(p), ratio(p, n), "≥ 10 000 req/s",
                 mark(None if p is None else p >= 10_000)))
    d, n, p = (num(f"plain_c1.{t}.p50_ms") for t in ("direct", "nginx", "proxy"))
    added_n = None if n is None or d is None else n - d
    added_p = None if p is None or d is None else p - d
    rows.append(("p50 latency, c=1", ms(d), ms(n), ms(p), "–", "–", "–"))
    rows.append(("added p50 latency over direct, c=1", "–", ms(added_n), ms(added_p), "–", "≤ 0.25 ms",
                 mark(at_most(added_p, 0.25))))
    n, p = num("stream_c16.nginx.cpu_us"), num("stream_c16.proxy.cpu_us")
    rows.append(("stream of 64 chunks, CPU per stream, c=16", "–", us(n), us(p), ratio(p, n), "≤ 6× nginx",
                 mark(None if p is None or not n else p / n <= 6)))
    e, plain = num("e2ee_c16.proxy.cpu_us"), num("plain_c16.proxy.cpu_us")
    extra = None if e is None or plain is None else e - plain
    rows.append((
        f"E2EE v2 ({r.get('e2ee_algo', '?')}, 2 encrypted messages), extra CPU per request, c=16",
        "–",
        "–",
        "–" if extra is None else f"{extra:+.0f} µs ({us(e)} in all)",
        "–",
        "≤ +200 µs",
        mark(at_most(extra, 200)),
    ))
    e3 = num("e2ee3_c16.proxy.cpu_us")
    extra3 = None if e3 is None or plain is None else e3 - plain
    rows.append((
        "E2EE v3 (X25519+AES-256-GCM), extra CPU per request over plain, c=16",
        "–",
        "–",
        "–" if extra3 is None else f"{extra3:+.0f} µs ({us(e3)} in all)",
        "–",
        "≤ +120 µs",
        mark(at_most(extra3, 120)),
    ))
    s3, plain_stream = num("e2ee3_stream_c16.proxy.cpu_us"), num("stream_c16.proxy.cpu_us")
    rows.append((
        "stream of 64 chunks under E2EE v3, CPU per stream, c=16",
        "–",
        "–",
        "–" if s3 is None or not plain_stream else f"{us(s3)} ({s3 / plain_stream:.2f}× plain {us(plain_stream)})",
        "–",
        "≤ 1.5× plain stream",
        mark(None if s3 is None or not plain_stream else s3 / plain_stream <= 1.5),
    ))
    tls, e2ee_chutes = num("chutes_tls_c4.proxy.cpu_us"), num("chutes_e2ee_c4.proxy.cpu_us")
    rows.append((
        "Chutes over TLS (stub over HTTPS), CPU per request, c=4",
        "–", "–", us(tls), "–", "–", "–",
    ))
    rows.append((
        "Chutes E2EE (ML-KEM-768 + ChaCha20-Poly1305 to an attested instance), CPU per request, c=4",
        "–", "–",
        "–" if e2ee_chutes is None or not tls else f"{us(e2ee_chutes)} ({e2ee_chutes - tls:+.0f} µs over TLS)",
        "–", "–", "–",
    ))
    overhead = r.get("overhead_c16_ms", "n/a")
    rows.append(("proxy overhead from /v1/metrics (mean), c=16", "–", "–",
                 overhead if overhead == "n/a" else f"{float(overhead):.3f} ms", "–", "–", "–"))

    only_v3 = r.get("only_v3") == "1"
    if only_v3:  # only the rows this mode measured
        rows = [row for row in rows if not row[3].startswith("–") and not row[0].startswith("proxy overhead")]
    lines = [
        "# bench/run results" + (" (ONLY_V3=1: the E2EE v3 cases and their plain proxy baselines)" if r.get("only_v3") == "1" else ""),
        "",
        f"- date: {r.get('date')}; git commit: {r.get('commit')}",
        f"- machine: {r.get('nproc')} cores, {r.get('cpu')}; load average at the end: {r.get('load')}",
        f"- {r.get('duration')} s per case after a warm-up; wrk with one thread on the same cores; loopback; "
        "static nginx upstream; release build",
        "",
        "CPU per request is the user+system time of the middle process only (nginx `proxy_pass`, or the "
        "proxy), from /proc; the upstream, wrk and everything else on the machine do not count. The proxy "
        "signs every response (secp256k1 and Ed25519) and keeps its receipt. Targets: issue #12.",
        "",
        "| case | direct | nginx `proxy_pass` | this proxy | proxy/nginx | target | |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    failed = [f"{k[: -len('.errors')]}: {v}" for k, v in r.items() if k.endswith(".errors") and v not in ("0", "")]
    if failed:
        lines += ["", "**Runs with failed requests** (non-2xx or socket errors; see below): " + ", ".join(failed) + "."]

    slow = {}
    for target in ("proxy", "nginx"):
        path = r.get(f"slow.{target}.json")
        if path and Path(path).exists():
            slow[target] = json.loads(Path(path).read_text())
    if slow:
        requested, ran = r.get("streams_requested"), r.get("streams_run")
        lines += [
            "",
            f"## {ran} concurrent slow streams",
            "",
            f"Each stream: {r.get('slow_chunks')} chunks, the first at once, then one a second (an asyncio upstream, "
            f"bench/slow_streams.py); all opened within {r.get('streams_ramp')} s, each on its own connection. "
            "Time to first token: from starting to connect until the first `data:` chunk arrives. Peak RSS: "
            "VmHWM of a proxy started fresh for this case (nginx: master + its one worker, whose worker_connections "
            "is the open-file limit; when those run out it resets connections still waiting for their request).",
        ]
        if requested != ran:
            lines += [
                "",
                f"Only {ran} of the {requested} streams asked for: the proxy holds two descriptors per stream "
                f"(client and upstream side) and this machine's hard limit on open files is {r.get('fd_limit')} "
                "(`ulimit -Hn`; raising it needs CAP_SYS_RESOURCE).",
            ]

        def cell(target: str, fn) -> str:
            return fn(slow[target]) if target in slow else "–"

        def ttft(s: dict) -> str:
            if s["ttft_p50"] is None:
                return "none"
            return f"{s['ttft_p50']:.2f} / {s['ttft_p99']:.2f} / {s['ttft_max']:.2f} s"

        p = slow.get("proxy")
        got_all = p is not None and p["ok"] == p["streams"]
        lines += [
            "",
            "| | nginx `proxy_pass` | this proxy | target | |",
            "|---|---|---|---|---|",
            "| streams completed / errors | "
            + " | ".join(cell(t, lambda s: f"{s['ok']} / {s['errors']}") for t in ("nginx", "proxy"))
            + f" | 0 errors | {mark(None if p is None else p['errors'] == 0 and got_all)} |",
            "| time to first token p50 / p99 / max | "
            + " | ".join(cell(t, ttft) for t in ("nginx", "proxy"))
            + f" | every one < 1 s | {mark(None if p is None else got_all and p['ttft_max'] is not None and p['ttft_max'] < 1)} |",
            "| first tokens later than 1 s | "
            + " | ".join(cell(t, lambda s: str(s["late_first_tokens"])) for t in ("nginx", "proxy"))
            + " | 0 | – |",
            "| connects taking ≥ 1 s (SYN retransmits: accept queue full) / slowest connect | "
            + " | ".join(cell(t, lambda s: f"{s['slow_connects']} / {s['connect_max']:.2f} s" if s["connect_max"] is not None else "–") for t in ("nginx", "proxy"))
            + " | – | – |",
            f"| peak RSS | {r.get('slow.nginx.rss_mb', '–')} MB | {r.get('slow.proxy.rss_mb', '–')} MB | ≤ 400 MB | "
            f"{mark(at_most(num('slow.proxy.rss_mb'), 400))} |",
            "| most streams open at the upstream at once | "
            f"{r.get('slow.nginx.upstream_max_concurrent', '–')} | {r.get('slow.proxy.upstream_max_concurrent', '–')} | – | – |",
        ]
        for target, s in slow.items():
            if s["error_kinds"]:
                kinds = ", ".join(f"{k}: {v}" for k, v in sorted(s["error_kinds"].items()))
                lines.append(f"\nErrors through {target}: {kinds}.")

    lines += [
        "",
        "## Every run",
        "",
        "| case | target | requests | errors | req/s | CPU per request | p50 | p99 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({k.rsplit(".", 1)[0] for k in r if k.endswith(".requests")},
                  key=lambda k: (["plain_c1", "plain_c16", "plain_c64", "stream_c16", "e2ee_c16", "e2ee3_c16", "e2ee3_stream_c16", "chutes_tls_c4", "chutes_e2ee_c4"].index(k.split(".")[0]), k))
    for key in keys:
        case, target = key.split(".", 1)
        lines.append(
            f"| {case} | {target} | {r[key + '.requests']} | {r.get(key + '.errors', '–')} | {rps(num(key + '.rps'))} | {us(num(key + '.cpu_us'))} | "
            f"{ms(num(key + '.p50_ms'))} | {ms(num(key + '.p99_ms'))} |"
        )
    lines += [
        "",
    ]
    if not only_v3:
        lines += [
            f"E2EE v2 requests were pre-generated ({r.get('e2ee_generated')}, each sent at most once; "
            "bench/e2ee_requests.py). Redis CPU counts the warm-up's requests too, so it is slightly overstated.",
            "",
        ]
    lines += [
        f"E2EE v3 envelopes were pre-generated with clients/python (bench/e2ee_v3_requests.py; one HPKE "
        f"encapsulation each, sent at most once, no warm-up): {r.get('e2ee3_c16.generated', '–')} for the JSON case, "
        f"{r.get('e2ee3_stream_c16.generated', '–')} for the stream case. One extra request per case was opened and "
        f"verified by the client first: {r.get('e2ee3_c16.check', '–')}; {r.get('e2ee3_stream_c16.check', '–')}. "
        "The proxy seals one chunk per upstream read, so the static upstream's 64 events arrive in the few "
        "chunks named there, not in 64.",
    ]
    text = "\n".join(lines) + "\n"
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
