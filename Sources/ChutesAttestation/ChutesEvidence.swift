import Foundation
import JSON

/// Chutes' answer to `GET /chutes/{chute_id}/evidence?nonce=` (SPEC §7.2), decoded but not yet trusted:
/// `{"evidence": [{"instance_id", "quote", "gpu_evidence", "certificate"}], "failed_instance_ids": […]}`.
public struct ChutesEvidence: Sendable {
    /// One instance's evidence. Entries that cannot be decoded keep their id and the reason.
    public struct Instance: Sendable {
        public let instanceID: String
        public let content: Result<Content, Malformed>
    }

    /// The decoded parts of one entry.
    public struct Content: Sendable {
        public let quote: [UInt8]
        /// `[{"certificate", "evidence", "arch"}]` as sent (NVIDIA's evidence_list items).
        public let gpuEvidence: [JSONValue]
        /// DER of the instance's certificate, whose public key the quote's report_data[32:64] binds.
        public let certificate: [UInt8]
    }

    /// Why one entry could not be decoded (a stable reason, for metrics and the chain route).
    public struct Malformed: Error, Sendable, Equatable {
        public let reason: String
    }

    public let instances: [Instance]
    public let failedInstanceIDs: [String]
    /// The document exactly as parsed (key order and number literals kept), for `verify_mode=passthrough`.
    public let document: JSONValue

    /// Bounds on what one answer may put in memory or cost to verify.
    public static let maxBytes = 16 << 20
    public static let maxInstances = 64
    public static let maxQuoteBytes = 64 << 10
    public static let maxCertificateBytes = 64 << 10
    public static let maxGPUs = 16

    /// Throws `Malformed` when the document is not the shape above; a bad entry fails alone.
    public init(parsing bytes: some Collection<UInt8>) throws(Malformed) {
        guard bytes.count <= Self.maxBytes else { throw Malformed(reason: "evidence_too_large") }
        guard let document = try? JSONValue(parsing: bytes), let entries = document["evidence"]?.arrayValue else {
            throw Malformed(reason: "evidence_malformed")
        }
        guard entries.count <= Self.maxInstances else { throw Malformed(reason: "evidence_too_many_instances") }
        self.document = document
        self.failedInstanceIDs = (document["failed_instance_ids"]?.arrayValue ?? []).prefix(Self.maxInstances)
            .compactMap(\.stringValue).map { String($0.prefix(128)) }
        self.instances = entries.enumerated().map { index, entry in
            let id = entry["instance_id"]?.stringValue.map { String($0.prefix(128)) } ?? "#\(index)"
            return Instance(instanceID: id, content: Self.content(of: entry))
        }
    }

    private static func content(of entry: JSONValue) -> Result<Content, Malformed> {
        guard entry["instance_id"]?.stringValue?.isEmpty == false else {
            return .failure(Malformed(reason: "instance_id_missing"))
        }
        guard let quoteText = entry["quote"]?.stringValue, quoteText.utf8.count <= maxQuoteBytes * 4 / 3 + 4,
            let quote = Data(base64Encoded: quoteText)
        else { return .failure(Malformed(reason: "quote_not_base64")) }
        guard let certificateText = entry["certificate"]?.stringValue,
            certificateText.utf8.count <= maxCertificateBytes * 4 / 3 + 4,
            let certificate = Data(base64Encoded: certificateText)
        else { return .failure(Malformed(reason: "certificate_not_base64")) }
        let gpu: [JSONValue]
        switch entry["gpu_evidence"] {
        case nil, .null?: gpu = []
        case .array(let items)?:
            guard items.count <= maxGPUs else { return .failure(Malformed(reason: "gpu_too_many")) }
            gpu = items
        default: return .failure(Malformed(reason: "gpu_evidence_malformed"))
        }
        return .success(Content(quote: Array(quote), gpuEvidence: gpu, certificate: Array(certificate)))
    }
}
