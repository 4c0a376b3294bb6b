"""One E2EE v3 chat completion through the openai SDK, then its receipt: the example `scripts/dev` prints.

    VLLM_PROXY_URL=http://127.0.0.1:8000 VLLM_PROXY_TOKEN=… python clients/python/examples/chat.py "hello"

Dev mode only as written: `allow_dev_quotes=True` accepts the dev agent's fake quotes, which prove nothing.
Against a real proxy pass a `quote_verifier` instead (see the package README).
"""

import os
import sys

import httpx
import openai

from vllm_proxy_client import E2EETransport, fetch_attestation, fetch_receipt

base, token = os.environ["VLLM_PROXY_URL"], os.environ["VLLM_PROXY_TOKEN"]
message = " ".join(sys.argv[1:]) or "hello, sealed world"

att = fetch_attestation(base, token, allow_dev_quotes=True)
print(f"attested key list kc={att.kc}, versions {att.e2ee_versions}, signer {att.signing_address}")
transport = E2EETransport(att)
client = openai.OpenAI(base_url=f"{base}/v1", api_key=token, http_client=httpx.Client(transport=transport),
                       max_retries=0)

print("streamed:", end=" ", flush=True)
for chunk in client.chat.completions.create(
        model=os.environ.get("MODEL", "stub-model"), messages=[{"role": "user", "content": message}], stream=True):
    if chunk.choices and chunk.choices[0].delta.content:
        print(chunk.choices[0].delta.content, end="", flush=True)
print()
receipt = fetch_receipt(base, token, transport.last_exchange, signing_address=att.signing_address)
print(f"receipt for {transport.last_exchange.chat_id}: {receipt.text}")
