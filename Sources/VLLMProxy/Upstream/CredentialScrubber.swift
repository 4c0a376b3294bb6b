import JSON

/// Decides whether text from an upstream that holds our credential may reach a client (SPEC §1: a secret
/// never appears, not even partially).
///
/// Text is refused when any `window` consecutive characters of the secret appear in it, looking at every
/// form an upstream could have echoed: the raw bytes, the JSON-unescaped strings, their URL-decoded form,
/// and each of those reduced to letters and digits, lowercased (which also catches a key split by
/// separators, or masked as `cpk_abcdef…wxyz`). The window (8) is stricter than the 12 the issue names.
struct CredentialScrubber: Sendable {
    static let window = 8
    /// Longest message relayed; longer ones are cut (an error message is for people).
    static let maximumMessageCharacters = 300
    /// Larger error bodies are not inspected at all: the client gets the generic message.
    static let maximumInspectedBytes = 64 << 10

    /// Every `length`-byte window of the secret, packed into an integer, in raw and skeleton form.
    private let length: Int
    private let rawWindows: Set<UInt64>
    private let skeletonWindows: Set<UInt64>

    init(secret: String) {
        let raw = Array(secret.utf8)
        let skeleton = Self.skeleton(raw)
        length = max(1, min(Self.window, skeleton.count))
        rawWindows = Self.windows(raw, length: length)
        skeletonWindows = Self.windows(skeleton, length: length)
    }

    /// The upstream's own error message (`detail`, `error.message`, `error` or `message`, a string), if
    /// the body is small JSON, nothing in it resembles the secret, and the message is printable; else nil.
    func safeMessage(fromErrorBody body: [UInt8]) -> String? {
        guard body.count <= Self.maximumInspectedBytes, !resembles(body),
            let json = try? JSONValue(parsing: body), !resembles(Self.allText(json, keys: true)),
            !resembles(Self.allText(json, keys: false))
        else { return nil }
        let candidates = [json["detail"], json["error"]?["message"], json["error"], json["message"]]
        guard let message = candidates.lazy.compactMap({ $0?.stringValue }).first(where: { !$0.isEmpty }) else {
            return nil
        }
        let printable = message.unicodeScalars.allSatisfy {
            $0.value >= 0x20 && !$0.properties.isDefaultIgnorableCodePoint
        }
        guard printable else { return nil }
        return message.count > Self.maximumMessageCharacters
            ? String(message.prefix(Self.maximumMessageCharacters)) + "…" : message
    }

    /// True when `text` holds a window of the secret as is, URL-decoded, or in skeleton form.
    func resembles(_ text: [UInt8]) -> Bool {
        if contains(rawWindows, in: text) || contains(skeletonWindows, in: Self.skeleton(text)) { return true }
        guard let decoded = Self.percentDecoded(text) else { return false }
        return contains(rawWindows, in: decoded) || contains(skeletonWindows, in: Self.skeleton(decoded))
    }

    /// Every string and number of the document (and every key, with `keys`), unescaped and concatenated in
    /// order, so that a secret split across fields is still found.
    static func allText(_ value: JSONValue, keys: Bool) -> [UInt8] {
        var out: [UInt8] = []
        func walk(_ value: JSONValue) {
            switch value {
            case .string(let text): out += Array(text.utf8)
            case .number(let literal): out += Array(literal.utf8)
            case .array(let items): items.forEach(walk)
            case .object(let object):
                for member in object.members {
                    if keys { out += Array(member.key.utf8) }
                    walk(member.value)
                }
            case .null, .bool: break
            }
        }
        walk(value)
        return out
    }

    private func contains(_ windows: Set<UInt64>, in text: [UInt8]) -> Bool {
        guard text.count >= length else { return false }
        var packed: UInt64 = 0
        let mask: UInt64 = length == 8 ? .max : (1 << (8 * UInt64(length))) - 1
        for (index, byte) in text.enumerated() {
            packed = (packed << 8 | UInt64(byte)) & mask
            if index >= length - 1, windows.contains(packed) { return true }
        }
        return false
    }

    private static func windows(_ bytes: [UInt8], length: Int) -> Set<UInt64> {
        guard bytes.count >= length else { return [] }
        return Set(
            (0...(bytes.count - length)).map { start in
                bytes[start..<(start + length)].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            })
    }

    /// Letters and digits only, lowercased: what survives masking, separators and case changes.
    static func skeleton(_ bytes: [UInt8]) -> [UInt8] {
        bytes.compactMap { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"): byte
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): byte | 0x20
            default: nil
            }
        }
    }

    /// `%XX` and `+` decoded (repeatedly, for double encoding); nil when there was nothing to decode.
    static func percentDecoded(_ bytes: [UInt8]) -> [UInt8]? {
        var current = bytes
        var changed = false
        for _ in 0..<3 {
            guard current.contains(UInt8(ascii: "%")) || current.contains(UInt8(ascii: "+")) else { break }
            var out: [UInt8] = []
            out.reserveCapacity(current.count)
            var index = 0
            while index < current.count {
                let byte = current[index]
                if byte == UInt8(ascii: "%"), index + 2 < current.count,
                    let high = hexValue(current[index + 1]), let low = hexValue(current[index + 2])
                {
                    out.append(high << 4 | low)
                    index += 3
                } else {
                    out.append(byte == UInt8(ascii: "+") ? UInt8(ascii: " ") : byte)
                    index += 1
                }
            }
            if out == current { break }
            current = out
            changed = true
        }
        return changed ? current : nil
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
