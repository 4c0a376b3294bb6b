/// An element of GF(2²⁵⁵ − 19), always fully reduced, as four little-endian 64-bit limbs.
///
/// Only used to map Ed25519 public keys (public data) to X25519, so plain square-and-multiply is
/// fine and nothing here needs to be constant-time. swift-crypto exposes no field arithmetic.
struct Field25519: Equatable {
    private var l0: UInt64
    private var l1: UInt64
    private var l2: UInt64
    private var l3: UInt64

    static let zero = Field25519(0, 0, 0, 0)
    static let one = Field25519(1, 0, 0, 0)
    /// p = 2²⁵⁵ − 19.
    private static let p = Field25519(0xFFFF_FFFF_FFFF_FFED, .max, .max, 0x7FFF_FFFF_FFFF_FFFF)
    /// p − 2: x^(p−2) = x⁻¹ (Fermat).
    private static let inverseExponent = Field25519(0xFFFF_FFFF_FFFF_FFEB, .max, .max, 0x7FFF_FFFF_FFFF_FFFF)
    /// (p − 1) / 2: Euler's criterion, x^((p−1)/2) is 1 for non-zero squares and p − 1 otherwise.
    private static let eulerExponent = Field25519(0xFFFF_FFFF_FFFF_FFF6, .max, .max, 0x3FFF_FFFF_FFFF_FFFF)

    private init(_ l0: UInt64, _ l1: UInt64, _ l2: UInt64, _ l3: UInt64) {
        (self.l0, self.l1, self.l2, self.l3) = (l0, l1, l2, l3)
    }

    init(_ small: UInt64) {
        self.init(small, 0, 0, 0)
    }

    /// The canonical value of 32 little-endian bytes, or nil when they encode a number ≥ p.
    init?(canonicalLittleEndian bytes: [UInt8]) {
        precondition(bytes.count == 32)
        var limbs = [UInt64](repeating: 0, count: 4)
        for (index, byte) in bytes.enumerated() {
            limbs[index / 8] |= UInt64(byte) << (8 * UInt64(index % 8))
        }
        let value = Field25519(limbs[0], limbs[1], limbs[2], limbs[3])
        guard value.isLess(than: Self.p) else { return nil }
        self = value
    }

    var littleEndianBytes: [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(32)
        for limb in [l0, l1, l2, l3] {
            for shift in stride(from: 0, to: 64, by: 8) {
                out.append(UInt8(truncatingIfNeeded: limb >> UInt64(shift)))
            }
        }
        return out
    }

    var isZero: Bool { self == .zero }

    /// Whether this is a square in the field (zero counts as a square).
    var isSquare: Bool {
        let symbol = power(Self.eulerExponent)
        return symbol == .zero || symbol == .one
    }

    /// The multiplicative inverse; zero maps to zero.
    var inverse: Field25519 { power(Self.inverseExponent) }

    static func + (a: Field25519, b: Field25519) -> Field25519 {
        // Both < p < 2²⁵⁵, so the sum fits in 256 bits and one conditional subtraction reduces it.
        var (r0, c) = a.l0.addingReportingOverflow(b.l0)
        var (r1, c1) = a.l1.addingCarry(b.l1, c)
        var (r2, c2) = a.l2.addingCarry(b.l2, c1)
        let (r3, _) = a.l3.addingCarry(b.l3, c2)
        var sum = Field25519(r0, r1, r2, r3)
        if !sum.isLess(than: p) {
            (r0, c) = sum.l0.subtractingReportingOverflow(p.l0)
            (r1, c1) = sum.l1.subtractingBorrow(p.l1, c)
            (r2, c2) = sum.l2.subtractingBorrow(p.l2, c1)
            sum = Field25519(r0, r1, r2, sum.l3.subtractingBorrow(p.l3, c2).0)
        }
        return sum
    }

    static func - (a: Field25519, b: Field25519) -> Field25519 {
        let (r0, b0) = a.l0.subtractingReportingOverflow(b.l0)
        let (r1, b1) = a.l1.subtractingBorrow(b.l1, b0)
        let (r2, b2) = a.l2.subtractingBorrow(b.l2, b1)
        let (r3, b3) = a.l3.subtractingBorrow(b.l3, b2)
        let difference = Field25519(r0, r1, r2, r3)
        guard b3 else { return difference }
        // a − b wrapped to a − b + 2²⁵⁶; adding p and dropping the carry leaves a − b + p ∈ [0, p).
        let (s0, c0) = difference.l0.addingReportingOverflow(p.l0)
        let (s1, c1) = difference.l1.addingCarry(p.l1, c0)
        let (s2, c2) = difference.l2.addingCarry(p.l2, c1)
        return Field25519(s0, s1, s2, difference.l3.addingCarry(p.l3, c2).0)
    }

    static func * (a: Field25519, b: Field25519) -> Field25519 {
        let x = [a.l0, a.l1, a.l2, a.l3]
        let y = [b.l0, b.l1, b.l2, b.l3]
        var t = [UInt64](repeating: 0, count: 8)
        for i in 0..<4 {
            var carry: UInt64 = 0
            for j in 0..<4 {
                // x·y + t + carry ≤ (2⁶⁴−1)² + 2(2⁶⁴−1) = 2¹²⁸ − 1: never overflows 128 bits.
                var (high, low) = x[i].multipliedFullWidth(by: y[j])
                let (sum1, o1) = low.addingReportingOverflow(t[i + j])
                let (sum2, o2) = sum1.addingReportingOverflow(carry)
                low = sum2
                high &+= (o1 ? 1 : 0) &+ (o2 ? 1 : 0)
                t[i + j] = low
                carry = high
            }
            t[i + 4] = carry
        }
        return reduce(t)
    }

    /// Reduces a 512-bit product using 2²⁵⁶ ≡ 38 (mod p).
    private static func reduce(_ t: [UInt64]) -> Field25519 {
        var r = [UInt64](repeating: 0, count: 4)
        var carry: UInt64 = 0
        for k in 0..<4 {
            var (high, low) = t[k + 4].multipliedFullWidth(by: 38)
            let (sum1, o1) = low.addingReportingOverflow(t[k])
            let (sum2, o2) = sum1.addingReportingOverflow(carry)
            low = sum2
            high &+= (o1 ? 1 : 0) &+ (o2 ? 1 : 0)
            r[k] = low
            carry = high
        }
        // carry ≤ 38: fold carry · 2²⁵⁶ back in as carry · 38; that can overflow 2²⁵⁶ at most once more.
        var fold = carry &* 38
        while fold != 0 {
            var overflow = false
            (r[0], overflow) = r[0].addingReportingOverflow(fold)
            var k = 1
            while overflow && k < 4 {
                (r[k], overflow) = r[k].addingReportingOverflow(1)
                k += 1
            }
            fold = overflow ? 38 : 0
        }
        var value = Field25519(r[0], r[1], r[2], r[3])
        // value < 2²⁵⁶ = 2p + 38, so at most two subtractions of p.
        while !value.isLess(than: p) {
            value = value - p
        }
        return value
    }

    private func power(_ exponent: Field25519) -> Field25519 {
        var result = Field25519.one
        for limb in [exponent.l3, exponent.l2, exponent.l1, exponent.l0] {
            for bit in stride(from: 63, through: 0, by: -1) {
                result = result * result
                if (limb >> UInt64(bit)) & 1 == 1 {
                    result = result * self
                }
            }
        }
        return result
    }

    private func isLess(than other: Field25519) -> Bool {
        if l3 != other.l3 { return l3 < other.l3 }
        if l2 != other.l2 { return l2 < other.l2 }
        if l1 != other.l1 { return l1 < other.l1 }
        return l0 < other.l0
    }
}

extension UInt64 {
    fileprivate func addingCarry(_ other: UInt64, _ carry: Bool) -> (UInt64, Bool) {
        let (sum, o1) = addingReportingOverflow(other)
        let (total, o2) = sum.addingReportingOverflow(carry ? 1 : 0)
        return (total, o1 || o2)
    }

    fileprivate func subtractingBorrow(_ other: UInt64, _ borrow: Bool) -> (UInt64, Bool) {
        let (difference, b1) = subtractingReportingOverflow(other)
        let (total, b2) = difference.subtractingReportingOverflow(borrow ? 1 : 0)
        return (total, b1 || b2)
    }
}

/// The birational map from Edwards25519 to Curve25519 (RFC 7748 §4.1), applied to encoded keys.
enum Ed25519ToX25519 {
    /// d = −121665 / 121666, the Edwards curve constant.
    private static let d = Field25519.zero - Field25519(121_665) * Field25519(121_666).inverse

    /// The X25519 public key (u, 32 bytes little-endian) of a 32-byte Ed25519 public key, or nil when
    /// the bytes are not a point on Edwards25519 or the point has no u (y = 1, the identity).
    static func publicKey(ed25519 bytes: [UInt8]) -> [UInt8]? {
        guard bytes.count == 32 else { return nil }
        var yBytes = bytes
        // The top bit is the sign of x, which the Montgomery u-coordinate does not depend on.
        yBytes[31] &= 0x7F
        guard let y = Field25519(canonicalLittleEndian: yBytes) else { return nil }
        guard y != .one else { return nil }
        // On the curve iff x² = (y² − 1) / (d·y² + 1) has a solution; the denominator is never zero
        // because −1/d is not a square.
        let y2 = y * y
        let x2 = (y2 - .one) * (d * y2 + .one).inverse
        guard x2.isSquare else { return nil }
        let u = (Field25519.one + y) * (Field25519.one - y).inverse
        return u.littleEndianBytes
    }
}
