import Crypto

/// Just enough secp256k1 for the dev KMS to sign its chains: public keys and recoverable ECDSA signatures, in plain
/// Swift. DEVELOPMENT ONLY, NOT SECURE: not constant-time, a home-made deterministic nonce, no hardening.
///
/// It lives here, not in the `Signing` module's libsecp256k1 wrapper, because the dev agent's module does not link
/// the proxy's signing code; the tests check both agree (keys, signatures recovered by libsecp256k1).
enum DevSecp256k1 {
    /// The field prime p = 2²⁵⁶ − 2³² − 977 and the group order n, as little-endian 64-bit words.
    static let field = DevModulus(bigEndianHex: "fffffffffffffffffffffffffffffffffffffffffffffffffffffffefffffc2f")
    static let order = DevModulus(bigEndianHex: "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141")
    static let generator = DevPoint(
        x: DevWords(bigEndianHex: "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"),
        y: DevWords(bigEndianHex: "483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8"))

    /// Why a secret is refused: zero or not below n.
    struct InvalidSecret: Error {}

    /// The 33-byte compressed public key of a 32-byte big-endian secret.
    static func publicKey(secret: [UInt8]) throws(InvalidSecret) -> [UInt8] {
        let scalar = try Self.scalar(secret)
        return compressed(multiply(generator, by: scalar))
    }

    /// 65 bytes r‖s‖recovery id (0 or 1; dstack's form, not Ethereum's 27/28) over a 32-byte digest, low-s.
    static func sign(digest: [UInt8], secret: [UInt8]) throws(InvalidSecret) -> [UInt8] {
        let d = try scalar(secret)
        let z = order.reduce(DevWords(bigEndian: digest).words)
        let halfOrder = DevWords(words: shiftRight1(order.modulus.words))
        var counter: UInt8 = 0
        while true {
            // Deterministic, so the dev chains are the same on every run; RFC 6979 is not needed for a dev key.
            let nonce = HMAC<SHA256>.authenticationCode(for: digest + [counter], using: SymmetricKey(data: secret))
            counter &+= 1
            let k = order.reduce(DevWords(bigEndian: Array(nonce)).words)
            guard !k.isZero else { continue }
            let point = multiply(generator, by: k)
            guard case let (x, y)? = affine(point) else { continue }
            let r = order.reduce(x.words)
            guard !r.isZero else { continue }
            var recoveryID: UInt8 = (y.words[0] & 1 == 1 ? 1 : 0) | (x.isLess(than: order.modulus) ? 0 : 2)
            var s = order.multiply(order.inverse(k), order.add(z, order.multiply(r, d)))
            guard !s.isZero else { continue }
            if halfOrder.isLess(than: s) {
                s = order.subtract(DevWords.zero, s)
                recoveryID ^= 1
            }
            return r.bigEndianBytes + s.bigEndianBytes + [recoveryID]
        }
    }

    private static func scalar(_ secret: [UInt8]) throws(InvalidSecret) -> DevWords {
        guard secret.count == 32 else { throw InvalidSecret() }
        let value = DevWords(bigEndian: secret)
        guard !value.isZero, value.isLess(than: order.modulus) else { throw InvalidSecret() }
        return value
    }

    private static func compressed(_ point: DevPoint?) -> [UInt8] {
        // A valid scalar times the generator is never the point at infinity.
        guard case let (x, y)? = affine(point) else { preconditionFailure("k·G at infinity for 0 < k < n") }
        return [0x02 | UInt8(y.words[0] & 1)] + x.bigEndianBytes
    }

    // MARK: Points, in Jacobian coordinates (x = X/Z², y = Y/Z³); nil is the point at infinity.

    private static func affine(_ point: DevPoint?) -> (DevWords, DevWords)? {
        guard let point else { return nil }
        let zInverse = field.inverse(point.z)
        let zInverse2 = field.multiply(zInverse, zInverse)
        return (field.multiply(point.x, zInverse2), field.multiply(point.y, field.multiply(zInverse2, zInverse)))
    }

    /// Left-to-right double-and-add (timing depends on the scalar: dev only).
    private static func multiply(_ point: DevPoint, by scalar: DevWords) -> DevPoint? {
        var result: DevPoint? = nil
        for bit in (0..<256).reversed() {
            result = double(result)
            if scalar.bit(bit) { result = add(result, point) }
        }
        return result
    }

    /// "dbl-2009-l" for a = 0.
    private static func double(_ point: DevPoint?) -> DevPoint? {
        guard let p = point, !p.y.isZero else { return nil }
        let f = field
        let a = f.multiply(p.x, p.x)
        let b = f.multiply(p.y, p.y)
        let c = f.multiply(b, b)
        let xb = f.add(p.x, b)
        var d = f.subtract(f.subtract(f.multiply(xb, xb), a), c)
        d = f.add(d, d)
        let e = f.add(f.add(a, a), a)
        let x3 = f.subtract(f.multiply(e, e), f.add(d, d))
        let c8 = f.add(f.add(f.add(c, c), f.add(c, c)), f.add(f.add(c, c), f.add(c, c)))
        let y3 = f.subtract(f.multiply(e, f.subtract(d, x3)), c8)
        let yz = f.multiply(p.y, p.z)
        return DevPoint(x: x3, y: y3, z: f.add(yz, yz))
    }

    /// "add-2007-bl".
    private static func add(_ lhs: DevPoint?, _ rhs: DevPoint) -> DevPoint? {
        guard let p = lhs else { return rhs }
        let f = field
        let z1z1 = f.multiply(p.z, p.z)
        let z2z2 = f.multiply(rhs.z, rhs.z)
        let u1 = f.multiply(p.x, z2z2)
        let u2 = f.multiply(rhs.x, z1z1)
        let s1 = f.multiply(f.multiply(p.y, rhs.z), z2z2)
        let s2 = f.multiply(f.multiply(rhs.y, p.z), z1z1)
        if u1 == u2 { return s1 == s2 ? double(p) : nil }
        let h = f.subtract(u2, u1)
        let h2 = f.add(h, h)
        let i = f.multiply(h2, h2)
        let j = f.multiply(h, i)
        let sd = f.subtract(s2, s1)
        let r = f.add(sd, sd)
        let v = f.multiply(u1, i)
        let x3 = f.subtract(f.subtract(f.multiply(r, r), j), f.add(v, v))
        let s1j = f.multiply(s1, j)
        let y3 = f.subtract(f.multiply(r, f.subtract(v, x3)), f.add(s1j, s1j))
        let zs = f.add(p.z, rhs.z)
        let z3 = f.multiply(f.subtract(f.subtract(f.multiply(zs, zs), z1z1), z2z2), h)
        return DevPoint(x: x3, y: y3, z: z3)
    }

    private static func shiftRight1(_ words: [UInt64]) -> [UInt64] {
        (0..<4).map { index in
            (words[index] >> 1) | (index < 3 ? words[index + 1] << 63 : 0)
        }
    }
}

/// A secp256k1 point in Jacobian coordinates.
struct DevPoint {
    var x: DevWords
    var y: DevWords
    var z: DevWords

    /// The affine point (x, y), z = 1.
    init(x: DevWords, y: DevWords) {
        self.init(x: x, y: y, z: DevWords(words: [1, 0, 0, 0]))
    }

    init(x: DevWords, y: DevWords, z: DevWords) {
        self.x = x
        self.y = y
        self.z = z
    }
}

/// A 256-bit unsigned integer as four little-endian 64-bit words.
struct DevWords: Equatable {
    var words: [UInt64]

    static let zero = DevWords(words: [0, 0, 0, 0])

    init(words: [UInt64]) {
        precondition(words.count == 4)
        self.words = words
    }

    /// 32 big-endian bytes.
    init(bigEndian bytes: [UInt8]) {
        precondition(bytes.count == 32)
        words = (0..<4).map { index in
            bytes[(24 - index * 8)..<(32 - index * 8)].reduce(0) { $0 << 8 | UInt64($1) }
        }
    }

    init(bigEndianHex hex: String) {
        let digits = Array(hex.utf8)
        self.init(
            bigEndian: stride(from: 0, to: 64, by: 2).map {
                UInt8(String(decoding: digits[$0..<$0 + 2], as: UTF8.self), radix: 16)!
            })
    }

    var bigEndianBytes: [UInt8] {
        words.reversed().flatMap { word in (0..<8).reversed().map { UInt8(truncatingIfNeeded: word >> ($0 * 8)) } }
    }

    var isZero: Bool { words.allSatisfy { $0 == 0 } }

    func bit(_ index: Int) -> Bool { words[index / 64] >> (index % 64) & 1 == 1 }

    func isLess(than other: DevWords) -> Bool {
        for index in (0..<4).reversed() where words[index] != other.words[index] {
            return words[index] < other.words[index]
        }
        return false
    }
}

/// Arithmetic modulo a 256-bit m close to 2²⁵⁶ (both of secp256k1's are): a product is folded with
/// 2²⁵⁶ ≡ c = 2²⁵⁶ − m until it fits, then m is subtracted at most once.
struct DevModulus {
    let modulus: DevWords
    /// 2²⁵⁶ − m, without its zero high words.
    private let fold: [UInt64]

    init(bigEndianHex hex: String) {
        modulus = DevWords(bigEndianHex: hex)
        var c = Self.subtract(DevWords.zero.words, modulus.words).difference
        while c.count > 1, c.last == 0 { c.removeLast() }
        fold = c
    }

    func add(_ a: DevWords, _ b: DevWords) -> DevWords { reduce(Self.add(a.words, b.words)) }

    func subtract(_ a: DevWords, _ b: DevWords) -> DevWords {
        let (difference, borrowed) = Self.subtract(a.words, b.words)
        return borrowed ? DevWords(words: Self.subtract(difference, fold4).difference) : DevWords(words: difference)
    }

    func multiply(_ a: DevWords, _ b: DevWords) -> DevWords { reduce(Self.multiply(a.words, b.words)) }

    /// a^(m−2): the inverse for a prime m (Fermat).
    func inverse(_ a: DevWords) -> DevWords {
        let exponent = DevWords(words: Self.subtract(modulus.words, [2, 0, 0, 0]).difference)
        var result = DevWords(words: [1, 0, 0, 0])
        for bit in (0..<256).reversed() {
            result = multiply(result, result)
            if exponent.bit(bit) { result = multiply(result, a) }
        }
        return result
    }

    /// Any number of little-endian words, reduced below m.
    func reduce(_ value: [UInt64]) -> DevWords {
        var x = value
        while x.count > 4 {
            let high = Array(x[4...])
            if high.allSatisfy({ $0 == 0 }) {
                x.removeLast(x.count - 4)
                break
            }
            x = Self.add(Array(x[0..<4]), Self.multiply(high, fold))
            while x.count > 4, x.last == 0 { x.removeLast() }
        }
        while x.count < 4 { x.append(0) }
        var result = DevWords(words: x)
        if !result.isLess(than: modulus) { result = DevWords(words: Self.subtract(x, modulus.words).difference) }
        return result
    }

    /// c as four words, for the borrow case of subtraction (a − b + 2²⁵⁶ − c = a − b + m).
    private var fold4: [UInt64] { fold + [UInt64](repeating: 0, count: 4 - fold.count) }

    private static func add(_ a: [UInt64], _ b: [UInt64]) -> [UInt64] {
        let count = max(a.count, b.count)
        var out: [UInt64] = []
        var carry: UInt64 = 0
        for index in 0..<count {
            let (s1, o1) = (index < a.count ? a[index] : 0).addingReportingOverflow(index < b.count ? b[index] : 0)
            let (s2, o2) = s1.addingReportingOverflow(carry)
            out.append(s2)
            carry = (o1 ? 1 : 0) + (o2 ? 1 : 0)
        }
        out.append(carry)
        return out
    }

    private static func subtract(_ a: [UInt64], _ b: [UInt64]) -> (difference: [UInt64], borrowed: Bool) {
        var out: [UInt64] = []
        var borrow: UInt64 = 0
        for index in 0..<4 {
            let (d1, o1) = a[index].subtractingReportingOverflow(b[index])
            let (d2, o2) = d1.subtractingReportingOverflow(borrow)
            out.append(d2)
            borrow = (o1 || o2) ? 1 : 0
        }
        return (out, borrow == 1)
    }

    private static func multiply(_ a: [UInt64], _ b: [UInt64]) -> [UInt64] {
        var out = [UInt64](repeating: 0, count: a.count + b.count)
        for i in a.indices {
            var carry: UInt64 = 0
            for j in b.indices {
                let (high, low) = a[i].multipliedFullWidth(by: b[j])
                let (s1, o1) = out[i + j].addingReportingOverflow(low)
                let (s2, o2) = s1.addingReportingOverflow(carry)
                out[i + j] = s2
                carry = high &+ (o1 ? 1 : 0) &+ (o2 ? 1 : 0)
            }
            out[i + b.count] = carry
        }
        return out
    }
}
