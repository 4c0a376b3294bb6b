"""SPEC §1: the TOKEN never appears, not even partially, in a log line, a response header or a response body.

Named to run last: it checks the proxies' trace-level logs and every response the whole session received.
"""

from __future__ import annotations

from helpers import chat_body, text_body

MIN_LEAK = 8  # any 8 consecutive characters of the token count as a leak


def leaked_fragments(token: str, text: str) -> set[str]:
    """Every 8-character piece of the token found in text, as is or hex-encoded (trace logs dump bytes as hex)."""
    pieces = {token[i:i + MIN_LEAK] for i in range(len(token) - MIN_LEAK + 1)}
    lowered = text.lower()
    return {p for p in pieces if p in text or p.encode().hex() in lowered}


def test_leak_detector_sees_plain_and_hex_fragments():
    token = "tok-ghijklmnopqrstuvwxyz"
    assert leaked_fragments(token, "auth=" + token[5:14])
    assert leaked_fragments(token, "bytes=[" + token[3:12].encode().hex().upper() + "]")
    assert not leaked_fragments(token, token[:7] + " " + token[7:14])


def provoke_logging(proxy) -> None:
    """Requests that tempt a careless implementation to log or echo the credential."""
    for token in (proxy.token[:-1], proxy.token + "x", proxy.token.upper()):
        proxy.post("/v1/chat/completions", chat_body("hi"), auth=False, headers=proxy.auth(token))
    proxy.post("/v1/chat/completions", chat_body("hi", model="stub-error-500"))
    proxy.post("/v1/completions", text_body("hi", stream=True))
    proxy.post_stream("/v1/chat/completions", chat_body("hi", stream=True))
    proxy.get("/v1/metrics", auth=False)
    proxy.get("/v1/models", auth=False)
    proxy.get("/v1/attestation/report", params={"signing_algo": "ed25519", "version": "2"})


def test_token_never_leaks(stack, stub):
    for proxy in stack.proxies.values():
        if proxy.process.popen.poll() is None:
            provoke_logging(proxy)

    token = stack.token
    for name, proxy in stack.proxies.items():  # every instance the session started, stopped ones too
        log = proxy.log_path.read_text(errors="replace")
        assert "Server started" in log, f"{name}: no start-up line in the captured log"
        assert log.count("\n") > 20, f"{name}: trace logging produced too little to be a meaningful check"
        assert not leaked_fragments(token, log), f"{name}'s log contains part of TOKEN"

    assert stack.seen, "no responses were recorded"
    for seen in stack.seen:
        assert not leaked_fragments(token, seen.decode(errors="replace")), seen[:500]

    for entry in stub.requests():
        assert "authorization" not in {name.lower() for name in entry["headers"]}
