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
        func limb(_ index: Int) -> UInt64 {
            (0..<8).reduce(0) { $0 | UInt64(bytes[index * 8 + $1]) << (8 * UInt64($1)) }
        }
        let value = Field25519(limb(0), limb(1), limb(2), limb(3))
        guard value.isLess(than: Self.p) else { return nil }
        self = value
    }

    var littleEndianBytes: [UInt8] {
        [l0, l1, l2, l3].flatMap { limb in (0..<8).map { UInt8(truncatingIfNeeded: limb >> (8 * UInt64($0))) } }
    }

    /// Whether this is a square in the field (zero counts as a square).
    var isSquare: Bool {
        let symbol = power(Self.eulerExponent)
        return symbol == .zero || symbol == .one
    }

    /// The multiplicative inverse; zero maps to zero.
    var inverse: Field25519 { power(Self.inverseExponent) }

    static func + (a: Field25519, b: Field25519) -> Field25519 {
        // Both < p < 2²⁵⁵, so the sum fits in 256 bits and one conditional subtraction reduces it.
        let (r0, c0) = a.l0.addingCarry(b.l0, false)
        let (r1, c1) = a.l1.addingCarry(b.l1, c0)
        let (r2, c2) = a.l2.addingCarry(b.l2, c1)
        let (r3, _) = a.l3.addingCarry(b.l3, c2)
        let sum = Field25519(r0, r1, r2, r3)
        return sum.isLess(than: p) ? sum : sum.wrappingSubtract(p).value
    }

    static func - (a: Field25519, b: Field25519) -> Field25519 {
        let (difference, borrow) = a.wrappingSubtract(b)
        // On borrow the limbs hold a − b + 2²⁵⁶; adding p and dropping the carry leaves a − b + p ∈ [0, p).
        return borrow ? difference.wrappingAdd(p).value : difference
    }

    static func * (a: Field25519, b: Field25519) -> Field25519 {
        // Schoolbook 4×4 limbs into t0…t7, one row per limb of a.
        var c: UInt64
        var t0: UInt64, t1: UInt64, t2: UInt64, t3: UInt64, t4: UInt64, t5: UInt64, t6: UInt64, t7: UInt64
        (t0, c) = mac(a.l0, b.l0, 0, 0)
        (t1, c) = mac(a.l0, b.l1, 0, c)
        (t2, c) = mac(a.l0, b.l2, 0, c)
        (t3, c) = mac(a.l0, b.l3, 0, c)
        t4 = c
        (t1, c) = mac(a.l1, b.l0, t1, 0)
        (t2, c) = mac(a.l1, b.l1, t2, c)
        (t3, c) = mac(a.l1, b.l2, t3, c)
        (t4, c) = mac(a.l1, b.l3, t4, c)
        t5 = c
        (t2, c) = mac(a.l2, b.l0, t2, 0)
        (t3, c) = mac(a.l2, b.l1, t3, c)
        (t4, c) = mac(a.l2, b.l2, t4, c)
        (t5, c) = mac(a.l2, b.l3, t5, c)
        t6 = c
        (t3, c) = mac(a.l3, b.l0, t3, 0)
        (t4, c) = mac(a.l3, b.l1, t4, c)
        (t5, c) = mac(a.l3, b.l2, t5, c)
        (t6, c) = mac(a.l3, b.l3, t6, c)
        t7 = c
        // 2²⁵⁶ ≡ 38 (mod p): fold the high half onto the low half.
        var r0: UInt64, r1: UInt64, r2: UInt64, r3: UInt64
        (r0, c) = mac(t4, 38, t0, 0)
        (r1, c) = mac(t5, 38, t1, c)
        (r2, c) = mac(t6, 38, t2, c)
        (r3, c) = mac(t7, 38, t3, c)
        // c ≤ 38, so c·38 fits a limb; adding it can carry out of 2²⁵⁶ at most once more.
        var value = Field25519(r0, r1, r2, r3)
        var fold = c &* 38
        while fold != 0 {
            let (sum, overflow) = value.wrappingAdd(Field25519(fold))
            value = sum
            fold = overflow ? 38 : 0
        }
        // value < 2²⁵⁶ = 2p + 38, so at most two subtractions of p.
        while !value.isLess(than: p) {
            value = value.wrappingSubtract(p).value
        }
        return value
    }

    /// x·y + t + carry as (low limb, high limb); at most (2⁶⁴−1)² + 2(2⁶⁴−1) = 2¹²⁸ − 1, so it never overflows.
    @inline(__always)
    private static func mac(_ x: UInt64, _ y: UInt64, _ t: UInt64, _ carry: UInt64) -> (UInt64, UInt64) {
        let (high, low) = x.multipliedFullWidth(by: y)
        let (sum1, o1) = low.addingReportingOverflow(t)
        let (sum2, o2) = sum1.addingReportingOverflow(carry)
        return (sum2, high &+ (o1 ? 1 : 0) &+ (o2 ? 1 : 0))
    }

    private func wrappingAdd(_ other: Field25519) -> (value: Field25519, overflow: Bool) {
        let (r0, c0) = l0.addingCarry(other.l0, false)
        let (r1, c1) = l1.addingCarry(other.l1, c0)
        let (r2, c2) = l2.addingCarry(other.l2, c1)
        let (r3, c3) = l3.addingCarry(other.l3, c2)
        return (Field25519(r0, r1, r2, r3), c3)
    }

    private func wrappingSubtract(_ other: Field25519) -> (value: Field25519, borrow: Bool) {
        let (r0, b0) = l0.subtractingBorrow(other.l0, false)
        let (r1, b1) = l1.subtractingBorrow(other.l1, b0)
        let (r2, b2) = l2.subtractingBorrow(other.l2, b1)
        let (r3, b3) = l3.subtractingBorrow(other.l3, b2)
        return (Field25519(r0, r1, r2, r3), b3)
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
    @inline(__always)
    fileprivate func addingCarry(_ other: UInt64, _ carry: Bool) -> (UInt64, Bool) {
        let (sum, o1) = addingReportingOverflow(other)
        let (total, o2) = sum.addingReportingOverflow(carry ? 1 : 0)
        return (total, o1 || o2)
    }

    @inline(__always)
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
        // On the curve iff x² = (y² − 1) / (d·y² + 1) has a solution. The denominator is never zero
        // (−1/d is not a square), and num/den = num·den/den², so testing num·den saves an inversion.
        let y2 = y * y
        guard ((y2 - .one) * (d * y2 + .one)).isSquare else { return nil }
        let u = (Field25519.one + y) * (Field25519.one - y).inverse
        return u.littleEndianBytes
    }
}
