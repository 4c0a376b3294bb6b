"""A tiny E2EE v3 server side, written from SPEC §4.3 and §6 only (no code shared with the client).

pyhpke's recipient context opens requests; `cryptography`'s AEADs seal the answers. Tests use it to play the
proxy, and to play a hostile gateway by editing what it produces.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct

from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from cryptography.hazmat.primitives import hashes
from pyhpke import AEADId, CipherSuite, KDFId, KEMId


def tdx_v4_quote(report_data: bytes) -> bytes:
    """A quote with the real TDX v4 layout (48-byte header, then the 584-byte TD report whose bytes [520:584] are
    the report data, then the signature data length) and no valid signature: only `allow_unverified_quotes`
    takes it, as a dev or test verifier would."""
    assert len(report_data) == 64
    header = struct.pack("<HHI", 4, 2, 0x81) + bytes(4) + bytes(16) + bytes(20)  # reserved, QE vendor id, user data
    td_report = bytes(520) + report_data
    assert len(header) == 48 and len(td_report) == 584
    return header + td_report + struct.pack("<I", 0)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Opened:
    """One opened request and the keys to answer it."""

    def __init__(self, body: dict, enc: bytes, aead_id: int, secret: bytes) -> None:
        self.body, self.enc, self.aead_id, self.secret = body, enc, aead_id, secret

    def seal_chunks(self, plaintexts: list[bytes], response_nonce: bytes) -> list[bytes]:
        prk = hmac.new(self.enc + response_nonce, self.secret, hashlib.sha256).digest()
        key = HKDFExpand(hashes.SHA256(), 32, b"key").derive(prk)
        base = int.from_bytes(HKDFExpand(hashes.SHA256(), 12, b"nonce").derive(prk), "big")
        aead = AESGCM(key) if self.aead_id == 2 else ChaCha20Poly1305(key)
        last = len(plaintexts) - 1
        return [
            aead.encrypt((base ^ i).to_bytes(12, "big"), p, b"final" if i == last else b"")
            for i, p in enumerate(plaintexts)
        ]


class ReferenceServer:
    def __init__(self, ikm: bytes = b"reference server x25519") -> None:
        self.suites = {
            aead: CipherSuite.new(KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId(aead)) for aead in (2, 3)
        }
        pair = self.suites[2].kem.derive_key_pair(ikm)
        self.sk = pair.private_key
        pk = pair.public_key.to_public_bytes()
        config = bytes([0]) + struct.pack(">H", 0x0020) + pk + struct.pack(">HHHHH", 8, 1, 2, 1, 3)
        self.K = struct.pack(">H", len(config)) + config
        self.kc = hashlib.sha256(self.K).digest()[:16].hex()

    def open_request(self, route: str, raw: bytes) -> Opened:
        envelope = json.loads(raw)
        assert set(envelope) <= {"model", "stream", "e2ee"} and set(envelope["e2ee"]) == {"v", "kc", "ts", "req"}
        e2ee = envelope["e2ee"]
        assert e2ee["v"] == 3 and e2ee["kc"] == self.kc
        model, stream = envelope.get("model", ""), envelope.get("stream", False)
        req = base64.b64decode(e2ee["req"], validate=True)
        hdr, enc, ct = req[:7], req[7:39], req[39:]
        key_id, kem, kdf, aead = struct.unpack(">BHHH", hdr)
        assert (key_id, kem, kdf) == (0, 0x0020, 1) and aead in (2, 3)
        info = (
            b"vllm-proxy e2ee v3 request\x00"
            + hdr
            + struct.pack(">H", len(route)) + route.encode()
            + struct.pack(">H", len(model.encode())) + model.encode()
            + bytes([1 if stream else 0])
            + struct.pack(">Q", e2ee["ts"])
        )
        context = self.suites[aead].create_recipient_context(enc, self.sk, info)
        body = json.loads(context.open(ct, b""))
        assert body.get("model", "") == model and bool(body.get("stream", False)) == stream
        return Opened(body, enc, aead, context.export(b"vllm-proxy e2ee v3 response", 32))

    # --------------------------------------------------------------------------------------------- answers

    @staticmethod
    def numeric_usage(usage: dict | None) -> dict | None:
        if usage is None:
            return None
        return {k: v for k, v in usage.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}

    def json_answer(self, opened: Opened, body: bytes, *, nonce: bytes = b"\x07" * 32) -> bytes:
        try:
            document = json.loads(body)
        except ValueError:
            document = None
        usage = self.numeric_usage(document.get("usage") if isinstance(document, dict) else None)
        (final,) = opened.seal_chunks([body], nonce)
        envelope = {"object": "e2ee.v3", "e2ee": {"v": 3, "n": b64(nonce), "f": b64(final)}}
        if usage is not None:
            envelope["usage"] = usage
        return json.dumps(envelope).encode()

    def stream_events(self, opened: Opened, reads: list[bytes], usage: dict | None, *, nonce: bytes = b"\x09" * 32,
                      final: bytes = b"") -> list[dict | str]:
        """The stream envelope's events: header, one chunk per upstream read, final, usage, [DONE]."""
        sealed = opened.seal_chunks(reads + [final], nonce)
        events: list[dict | str] = [{"object": "e2ee.v3", "e2ee": {"v": 3, "n": b64(nonce)}}]
        events += [{"e2ee": {"c": b64(c)}} for c in sealed[:-1]]
        events.append({"e2ee": {"f": b64(sealed[-1])}})
        if usage is not None:
            events.append({"object": "e2ee.v3.usage", "choices": [], "usage": self.numeric_usage(usage)})
        events.append("[DONE]")
        return events

    @staticmethod
    def wire(events: list[dict | str]) -> bytes:
        return b"".join(
            b"data: " + (e.encode() if isinstance(e, str) else json.dumps(e).encode()) + b"\n\n" for e in events
        )

    # ----------------------------------------------------------------------------------------- attestation

    def report(self, nonce: bytes, *, address: str = "0x" + "ab" * 20, nvidia_payload: str = '{"evidence_list": []}',
               spki_sha256: bytes | None = None, version: int = 3, versions=(1, 2, 3)) -> dict:
        """A version 3 report with an unsigned TDX v4 quote, identity computed here from SPEC §6."""
        tls = spki_sha256 or b""
        gpu = hashlib.sha256(nvidia_payload.encode()).digest()
        addr = bytes.fromhex(address[2:])
        identity = hashlib.sha256(
            b"vllm-proxy/report-data/v3\x00" + bytes([len(addr)]) + addr + bytes([len(tls)]) + tls
            + struct.pack(">H", len(self.K)) + self.K + bytes([len(gpu)]) + gpu
        ).digest()
        quote = tdx_v4_quote(identity + nonce).hex()
        report = {
            "signing_address": address,
            "signing_algo": "ecdsa",
            "request_nonce": nonce.hex(),
            "intel_quote": quote,
            "quote": quote,
            "nvidia_payload": nvidia_payload,
            "version": version,
            "e2ee_v3_key_config": b64(self.K),
            "e2ee_v3_key_config_id": self.kc,
            "e2ee_versions": list(versions),
        }
        if spki_sha256 is not None:
            report["tls_cert_fingerprint"] = spki_sha256.hex()
        return report
