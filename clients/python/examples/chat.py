"""One E2EE v3 chat completion through the openai SDK, then its receipt: the example `scripts/dev` prints.

    pip install './clients/python[openai,dcap]'
    VLLM_PROXY_URL=http://127.0.0.1:8000 VLLM_PROXY_TOKEN=… python clients/python/examples/chat.py "hello"

The quote is always verified with dcap-qvl. With `VLLM_PROXY_DEV_PKI=DIR` (the dev attestation agent's
`--dev-pki-dir`) it is checked against that throwaway dev root and collateral: development only, it proves
nothing about hardware. Without it the quote must verify against Intel's SGX Root CA, with collateral from
Phala's PCCS — what a real proxy needs.
"""

import os
import sys

import httpx
import openai

from vllm_proxy_client import DcapQuoteVerifier, E2EETransport, fetch_attestation, fetch_receipt

base, token = os.environ["VLLM_PROXY_URL"], os.environ["VLLM_PROXY_TOKEN"]
message = " ".join(sys.argv[1:]) or "hello, sealed world"

dev_pki = os.environ.get("VLLM_PROXY_DEV_PKI")
verifier = DcapQuoteVerifier.from_dev_pki_dir(dev_pki) if dev_pki else DcapQuoteVerifier()
att = fetch_attestation(base, token, quote_verifier=verifier)
print(f"quote verified ({'DEV PKI, proves nothing about hardware' if dev_pki else 'Intel root'}): "
      f"TCB {verifier.last_status}")
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
