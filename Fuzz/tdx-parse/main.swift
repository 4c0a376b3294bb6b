// libFuzzer target: every parser of attestation evidence on hostile input, without the signature checks that make
// `Fuzz/tdx` slow (SPEC §6.2) — so it reaches tens of millions of inputs. The first byte picks (modulo 5):
//   0: a TDX quote (layout, PCK chain PEM, the leaf's SGX extensions);
//   1: collateral JSON (the object, the signed TCB info and QE identity, both CRLs);
//   2: a CRL in DER;
//   3: a dstack event log (JSON, hex fields, the RTMR3 replay);
//   4: an NVIDIA payload (JSON, base64, each chain's PEM, each SPDM report).
// Any input must be accepted or refused with an error: no crash, no hang.
import FuzzSupport
import TDXVerifier

func test(_ bytes: UnsafeBufferPointer<UInt8>) {
    guard let mode = bytes.first else { return }
    let rest = Array(bytes.dropFirst())
    switch mode % 5 {
    case 0: _ = TDXFuzzing.parseQuote(rest)
    case 1: _ = TDXFuzzing.parseCollateral(rest)
    case 2: _ = TDXFuzzing.parseCRL(rest)
    case 3: _ = try? DstackEventLog(parsing: rest)
    default: _ = TDXFuzzing.parseGPUPayload(String(decoding: rest, as: UTF8.self))
    }
}

fuzz(test)
