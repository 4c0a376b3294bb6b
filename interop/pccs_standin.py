#!/usr/bin/env python3
"""A PCCS stand-in for tests (SPEC §6.2): serves one collateral object (dcap-qvl's QuoteCollateralV3 JSON shape,
default Tests/TDX/synthetic/default/collateral.json) in the PCCS v4 wire format that dcap-qvl's
`get_collateral` and `vllm-proxy verify-quote --pccs` read:

  GET /sgx/certification/v4/pckcrl?ca=processor|platform&encoding=der  DER body, SGX-PCK-CRL-Issuer-Chain
  GET /tdx/certification/v4/tcb?fmspc=<FMSPC>                          {"tcbInfo": …, "signature": hex},
                                                                        TCB-Info-Issuer-Chain
  GET /tdx/certification/v4/qe/identity                                {"enclaveIdentity": …, "signature": hex},
                                                                        SGX-Enclave-Identity-Issuer-Chain
  GET /sgx/certification/v4/rootcacrl                                  hex of the DER
  (`update=standard` in a query is accepted and ignored: it is the PCCS default)
  GET /_requests                                                       {"count": n, "paths": [...]} (not counted)

Issuer chains are URL-encoded PEM. The JSON bodies are assembled around the collateral's `tcb_info` /
`qe_identity` text verbatim, so the inner object is byte-identical to the signed text. Only the collateral's
own CA (the PCK CRL issuer's "Platform"/"Processor") and FMSPC (from the TCB info) are served; others get 404.

    pccs_standin.py [--collateral FILE]   listens on 127.0.0.1, port 0; prints the port on the first line
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

DEFAULT = Path(__file__).resolve().parent.parent / "Tests" / "TDX" / "synthetic" / "default" / "collateral.json"


def wire(collateral: dict) -> dict[str, tuple[dict[str, str], bytes]]:
    """Path (with query) → (headers, body)."""
    enc = lambda pem: urllib.parse.quote(pem, safe="")  # noqa: E731
    fmspc = json.loads(collateral["tcb_info"])["fmspc"].upper()
    # The PCK CRL's issuer is the CA that issued the PCK certificates it covers.
    from cryptography import x509  # the interop venv has it
    issuer = x509.load_der_x509_crl(bytes.fromhex(collateral["pck_crl"])).issuer.rfc4514_string()
    ca = "platform" if "Platform" in issuer else "processor"
    tcb = ('{"tcbInfo":' + collateral["tcb_info"] + ',"signature":"' + collateral["tcb_info_signature"] + '"}')
    qe = ('{"enclaveIdentity":' + collateral["qe_identity"] + ',"signature":"'
          + collateral["qe_identity_signature"] + '"}')
    return {
        f"/sgx/certification/v4/pckcrl?ca={ca}&encoding=der":
            ({"SGX-PCK-CRL-Issuer-Chain": enc(collateral["pck_crl_issuer_chain"]),
              "Content-Type": "application/pkix-crl"}, bytes.fromhex(collateral["pck_crl"])),
        f"/tdx/certification/v4/tcb?fmspc={fmspc}":
            ({"TCB-Info-Issuer-Chain": enc(collateral["tcb_info_issuer_chain"]),
              "Content-Type": "application/json"}, tcb.encode()),
        "/tdx/certification/v4/qe/identity":
            ({"SGX-Enclave-Identity-Issuer-Chain": enc(collateral["qe_identity_issuer_chain"]),
              "Content-Type": "application/json"}, qe.encode()),
        "/sgx/certification/v4/rootcacrl":
            ({"Content-Type": "text/plain"}, collateral["root_ca_crl"].encode()),
    }


def serve(collateral: dict, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    routes = wire(collateral)
    lock = threading.Lock()
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def send(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/_requests":
                with lock:
                    body = json.dumps({"count": len(seen), "paths": list(seen)}).encode()
                return self.send(200, {"Content-Type": "application/json"}, body)
            with lock:
                seen.append(self.path)
            # dcap-qvl 0.7.0 asks for `update=standard` (the PCCS default) on the TCB info and QE identity.
            path, _, query = self.path.partition("?")
            params = [p for p in query.split("&") if p and p != "update=standard"]
            key = path + ("?" + "&".join(params) if params else "")
            if key in routes:
                return self.send(200, *routes[key])
            self.send(404, {"Content-Type": "text/plain"}, b"not found\n")

    return ThreadingHTTPServer((host, port), Handler)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collateral", type=Path, default=DEFAULT)
    args = parser.parse_args()
    server = serve(json.loads(args.collateral.read_text()))
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.stdin.close()
    main()
