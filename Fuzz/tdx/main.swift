// libFuzzer target: the TDX quote verifier's parsers and checks on hostile input (SPEC §6.2). The first byte picks:
//   `Q`: the rest is a quote, verified against the synthetic default collateral and root (Tests/TDX) at their time;
//   `C`: the rest is collateral JSON, used to verify the synthetic default quote;
//   `R`: the rest is a CRL in DER.
// Any input must be accepted or refused with a `TDXVerificationError`: no crash, no hang.
import Foundation
import FuzzSupport
import TDXVerifier

let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Tests/TDX/synthetic/default")
func file(_ name: String) -> [UInt8] { Array(try! Data(contentsOf: folder.appendingPathComponent(name))) }
let quote = file("quote.bin")
let collateral = try! TDXCollateral(json: file("collateral.json"))
let root = try! TDXTrustRoot(der: file("root.der"))
let now: Int64 = 1_767_225_600

func test(_ bytes: UnsafeBufferPointer<UInt8>) {
    guard let mode = bytes.first else { return }
    let rest = Array(bytes.dropFirst())
    switch mode {
    case UInt8(ascii: "Q"):
        _ = try? TDXQuoteVerifier.verify(quote: rest, collateral: collateral, now: now, root: root)
    case UInt8(ascii: "C"):
        guard let fuzzed = try? TDXCollateral(json: rest) else { return }
        _ = try? TDXQuoteVerifier.verify(quote: quote, collateral: fuzzed, now: now, root: root)
    case UInt8(ascii: "R"):
        _ = TDXFuzzing.parseCRL(rest)
    default:
        return
    }
}

fuzz(test)
