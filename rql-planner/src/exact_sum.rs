//! Exact sums of i64 and f64 values, for SUM and AVG (SPEC §3.3, §6).
//!
//! SPEC asks for the *exact* total (SUM of ints overflows only if the exact total leaves i64;
//! SUM with floats and AVG are the exact value correctly rounded, independent of input order).
//! Floating-point accumulation cannot give that, so [`ExactSum`] is a fixed-point
//! superaccumulator: every finite f64 and every i64 is an integer multiple of 2^-1074, so the
//! running total is kept as one big integer in units of 2^-1074, wide enough for the whole f64
//! range plus a lot of headroom. Adding and removing a value touch at most three limbs, so a
//! caller can maintain a SUM incrementally in O(1) per change, and removal is exact (adding
//! then subtracting the same values returns exactly to zero).

/// Bit position of 2^0: bit `p` of the accumulator has weight 2^(p - 1074), 2^-1074 being the
/// smallest subnormal f64.
const BIAS: usize = 1074;

/// Bits per limb digit. Digits are 32 bits wide but stored in i64 limbs so that many additions
/// (of either sign) can pile up in a limb before carries have to be propagated.
const DIGIT_BITS: usize = 32;
const DIGIT_MASK: i64 = (1 << DIGIT_BITS) - 1;

/// Number of limbs: 68 * 32 = 2176 bits, i.e. up to 2^1102 before the top limb (which is a
/// full signed i64 after normalization) even starts to fill, against 2^1024 for the largest
/// f64: room for far more than 2^40 maximal additions. The largest f64 ends below bit 2098,
/// and with the shift into a 32-bit digit an addition reaches limb 65 at most.
const LIMBS: usize = 68;

/// Carries are propagated after this many additions. Each addition changes a limb by less than
/// 2^32 in magnitude and a normalized limb is below 2^32, so between normalizations a limb stays
/// below 2^32 * (2^30 + 1) < 2^63: no i64 overflow.
const NORMALIZE_EVERY: u32 = 1 << 30;

const F64_FRAC_BITS: u32 = 52;
const F64_FRAC_MASK: u64 = (1 << F64_FRAC_BITS) - 1;
/// Significand width including the implicit bit.
const F64_PRECISION: usize = 53;
/// Biased exponent of infinity/NaN.
const F64_EXP_INF: u64 = 0x7ff;

/// An exact running sum of i64 and finite f64 values.
///
/// Not `Copy` on purpose (it is 560 bytes); additions never allocate.
#[derive(Clone, Debug)]
pub struct ExactSum {
    /// Little-endian limbs in units of 2^-1074; limb `i` has weight 2^(32 i - 1074). Between
    /// normalizations the limbs may be any i64 within the bound of [`NORMALIZE_EVERY`].
    limbs: [i64; LIMBS],
    /// Additions since the last in-place normalization.
    pending: u32,
    /// Non-finite f64 inputs added minus those removed. They have no exact value; while any is
    /// in the sum every result is `None`. Counting them (rather than rejecting them) keeps
    /// add/sub symmetric so removal stays exact.
    non_finite: i64,
}

impl Default for ExactSum {
    fn default() -> ExactSum {
        ExactSum::new()
    }
}

impl ExactSum {
    pub fn new() -> ExactSum {
        ExactSum {
            limbs: [0; LIMBS],
            pending: 0,
            non_finite: 0,
        }
    }

    pub fn add_i64(&mut self, x: i64) {
        self.add_parts(x < 0, x.unsigned_abs(), BIAS);
    }

    pub fn sub_i64(&mut self, x: i64) {
        // Negating through the sign flag, not `-x`, so i64::MIN needs no special case.
        self.add_parts(x >= 0, x.unsigned_abs(), BIAS);
    }

    /// Adds `x`. A non-finite `x` makes every result `None` until it is removed again with
    /// [`ExactSum::sub_f64`].
    pub fn add_f64(&mut self, x: f64) {
        match decode_f64(x) {
            Some((negative, mantissa, pos)) => self.add_parts(negative, mantissa, pos),
            None => self.non_finite = self.non_finite.wrapping_add(1),
        }
    }

    pub fn sub_f64(&mut self, x: f64) {
        match decode_f64(x) {
            Some((negative, mantissa, pos)) => self.add_parts(!negative, mantissa, pos),
            None => self.non_finite = self.non_finite.wrapping_sub(1),
        }
    }

    /// Whether the exact sum is zero (and no non-finite value is in it).
    pub fn is_zero(&self) -> bool {
        if self.non_finite != 0 {
            return false;
        }
        let mut limbs = self.limbs;
        normalize(&mut limbs);
        limbs.iter().all(|&l| l == 0)
    }

    /// The exact sum rounded to the nearest f64 (ties to even); `None` if that rounding
    /// overflows to infinity or a non-finite value is in the sum. An exactly zero sum is `+0.0`.
    pub fn to_f64(&self) -> Option<f64> {
        if self.non_finite != 0 {
            return None;
        }
        let mag = self.magnitude();
        round_to_f64(&mag, Fraction::Zero)
    }

    /// The exact sum if it is an integer within i64.
    pub fn to_i64(&self) -> Option<i64> {
        if self.non_finite != 0 {
            return None;
        }
        let mag = self.magnitude();
        if mag.any_below(BIAS) || mag.bit_len() > BIAS + 64 {
            return None;
        }
        let m = mag.bits(BIAS, 64);
        if mag.negative {
            // m == 2^63 wraps to i64::MIN, which is the right answer.
            (m <= 1 << 63).then(|| (m as i64).wrapping_neg())
        } else {
            i64::try_from(m).ok()
        }
    }

    /// The exact sum divided by `count`, correctly rounded (ties to even); `None` for a zero
    /// count or a non-finite value in the sum. Dividing the big integer (with a sticky
    /// remainder) instead of the rounded sum avoids double rounding and intermediate overflow:
    /// the mean of `[f64::MAX, f64::MAX]` is `f64::MAX`.
    pub fn mean(&self, count: u64) -> Option<f64> {
        if count == 0 || self.non_finite != 0 {
            return None;
        }
        let mut mag = self.magnitude();
        let divisor = u128::from(count);
        let mut rem: u128 = 0;
        for d in mag.digits.iter_mut().rev() {
            // rem < count, so cur < count * 2^32 and the quotient digit fits in 32 bits.
            let cur = (rem << DIGIT_BITS) | u128::from(*d);
            *d = (cur / divisor) as u32;
            rem = cur % divisor;
        }
        let twice = rem * 2;
        let frac = if rem == 0 {
            Fraction::Zero
        } else if twice < divisor {
            Fraction::BelowHalf
        } else if twice == divisor {
            Fraction::Half
        } else {
            Fraction::AboveHalf
        };
        round_to_f64(&mag, frac)
    }

    /// Adds `±mantissa * 2^(pos - 1074)`.
    fn add_parts(&mut self, negative: bool, mantissa: u64, pos: usize) {
        if mantissa == 0 {
            return;
        }
        let idx = pos / DIGIT_BITS;
        // At most 64 + 31 bits: three digits.
        let wide = u128::from(mantissa) << (pos % DIGIT_BITS);
        for k in 0..3 {
            let chunk = ((wide >> (DIGIT_BITS * k)) as i64) & DIGIT_MASK;
            if chunk == 0 {
                continue;
            }
            // Always in range (the largest f64 reaches limb 65); `get_mut` keeps a wrong
            // position from ever panicking.
            if let Some(limb) = self.limbs.get_mut(idx + k) {
                if negative {
                    *limb -= chunk;
                } else {
                    *limb += chunk;
                }
            }
        }
        self.pending += 1;
        if self.pending >= NORMALIZE_EVERY {
            normalize(&mut self.limbs);
            self.pending = 0;
        }
    }

    /// Sign and absolute value of the sum as plain 32-bit digits.
    fn magnitude(&self) -> Magnitude {
        let mut limbs = self.limbs;
        normalize(&mut limbs);
        // Normalized: every limb but the top one is a digit in [0, 2^32), so the sign is the
        // top limb's.
        let negative = limbs[LIMBS - 1] < 0;
        if negative {
            for l in limbs.iter_mut() {
                *l = l.wrapping_neg();
            }
            normalize(&mut limbs);
        }
        let mut digits = [0u32; LIMBS + 1];
        for (d, l) in digits.iter_mut().zip(limbs.iter()) {
            *d = *l as u32;
        }
        // The top limb may exceed one digit; it is non-negative here.
        let top = limbs[LIMBS - 1] as u64;
        digits[LIMBS - 1] = top as u32;
        digits[LIMBS] = (top >> DIGIT_BITS) as u32;
        Magnitude { negative, digits }
    }
}

/// `(negative, mantissa, position)` with `x = ±mantissa * 2^(position - 1074)`, or `None` for
/// infinities and NaN.
fn decode_f64(x: f64) -> Option<(bool, u64, usize)> {
    let bits = x.to_bits();
    let negative = bits >> 63 == 1;
    let exp = (bits >> F64_FRAC_BITS) & F64_EXP_INF;
    let frac = bits & F64_FRAC_MASK;
    match exp {
        F64_EXP_INF => None,
        // Subnormal (or zero): frac * 2^-1074.
        0 => Some((negative, frac, 0)),
        // Normal: (2^52 + frac) * 2^(exp - 1075), i.e. position exp - 1.
        _ => Some((negative, frac | (1 << F64_FRAC_BITS), exp as usize - 1)),
    }
}

/// Propagates carries so every limb but the top one is a digit in [0, 2^32); the value is
/// unchanged and the top limb carries the sign.
fn normalize(limbs: &mut [i64; LIMBS]) {
    let mut carry: i64 = 0;
    for l in limbs.iter_mut().take(LIMBS - 1) {
        // |*l| < 2^62 + 2^32 and |carry| < 2^31: no overflow.
        let v = *l + carry;
        *l = v & DIGIT_MASK;
        // Arithmetic shift: floor division, so the digit above is non-negative.
        carry = v >> DIGIT_BITS;
    }
    // The top limb holds multiples of 2^1070; it cannot realistically overflow, and wrapping
    // keeps even an absurd input from panicking.
    limbs[LIMBS - 1] = limbs[LIMBS - 1].wrapping_add(carry);
}

/// The part of an exact value below the last digit of a [`Magnitude`] (used by `mean`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fraction {
    Zero,
    BelowHalf,
    Half,
    AboveHalf,
}

/// A sign and an unsigned big integer in units of 2^-1074.
struct Magnitude {
    negative: bool,
    /// Little-endian 32-bit digits.
    digits: [u32; LIMBS + 1],
}

impl Magnitude {
    /// Number of significant bits (0 for zero).
    fn bit_len(&self) -> usize {
        match self.digits.iter().rposition(|&d| d != 0) {
            Some(i) => i * DIGIT_BITS + (32 - self.digits[i].leading_zeros() as usize),
            None => 0,
        }
    }

    /// Bits `lo .. lo + len` as an integer (`len <= 64`).
    fn bits(&self, lo: usize, len: usize) -> u64 {
        let idx = lo / DIGIT_BITS;
        let mut wide: u128 = 0;
        for k in 0..3 {
            if let Some(&d) = self.digits.get(idx + k) {
                wide |= u128::from(d) << (DIGIT_BITS * k);
            }
        }
        let v = (wide >> (lo % DIGIT_BITS)) as u64;
        if len >= 64 {
            v
        } else {
            v & ((1 << len) - 1)
        }
    }

    /// Whether any bit below position `pos` is set.
    fn any_below(&self, pos: usize) -> bool {
        let whole = pos / DIGIT_BITS;
        let part = pos % DIGIT_BITS;
        self.digits.iter().take(whole).any(|&d| d != 0)
            || (part > 0
                && self
                    .digits
                    .get(whole)
                    .is_some_and(|&d| d & ((1 << part) - 1) != 0))
    }
}

/// Rounds `±(mag + frac) * 2^-1074` to the nearest f64, ties to even; `None` on overflow.
fn round_to_f64(mag: &Magnitude, frac: Fraction) -> Option<f64> {
    let p = mag.bit_len();
    let bits = if p <= F64_PRECISION {
        // Below 2^-1021: the spacing of f64 there is exactly 2^-1074, our unit, and the
        // integer itself is the bit pattern (subnormal, or biased exponent 1 or 2 when
        // rounding carries into the next binade).
        let m = mag.bits(0, F64_PRECISION);
        let up = match frac {
            Fraction::Zero | Fraction::BelowHalf => false,
            Fraction::Half => m & 1 == 1,
            Fraction::AboveHalf => true,
        };
        m + u64::from(up)
    } else {
        let mut shift = p - F64_PRECISION;
        let mut m = mag.bits(shift, F64_PRECISION);
        let round = mag.bits(shift - 1, 1) == 1;
        let sticky = mag.any_below(shift - 1) || frac != Fraction::Zero;
        if round && (sticky || m & 1 == 1) {
            m += 1;
            if m == 1 << F64_PRECISION {
                m >>= 1;
                shift += 1;
            }
        }
        // m in [2^52, 2^53) and value m * 2^(shift - 1074) = 1.f * 2^(shift - 1022): biased
        // exponent shift + 1.
        let biased = shift as u64 + 1;
        if biased >= F64_EXP_INF {
            return None;
        }
        (biased << F64_FRAC_BITS) | (m & F64_FRAC_MASK)
    };
    let f = f64::from_bits(bits);
    Some(if mag.negative { -f } else { f })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum_f(xs: &[f64]) -> ExactSum {
        let mut s = ExactSum::new();
        for &x in xs {
            s.add_f64(x);
        }
        s
    }

    #[test]
    fn empty_is_zero() {
        let s = ExactSum::new();
        assert!(s.is_zero());
        assert_eq!(s.to_f64(), Some(0.0));
        assert_eq!(s.to_i64(), Some(0));
        assert_eq!(s.mean(0), None);
        assert_eq!(s.mean(3), Some(0.0));
        assert!(ExactSum::default().is_zero());
    }

    #[test]
    fn cancellation() {
        let s = sum_f(&[1e308, 1e308, -1e308]);
        assert_eq!(s.to_f64(), Some(1e308));
        let s = sum_f(&[1e16, 1.0, -1e16]);
        assert_eq!(s.to_f64(), Some(1.0));
        let mut s = sum_f(&[1e308, 1e308]);
        assert_eq!(s.to_f64(), None);
        s.sub_f64(1e308);
        assert_eq!(s.to_f64(), Some(1e308));
        // The mean of two maxima does not overflow even though their sum does.
        assert_eq!(sum_f(&[f64::MAX, f64::MAX]).mean(2), Some(f64::MAX));
    }

    #[test]
    fn point_one_two_three() {
        // 0.1 + 0.2 + 0.3 exactly is 0.6000000000000000055511151231257827 (the sum of the
        // three binary values), which rounds to 0.6; naive left-to-right gives
        // 0.6000000000000001.
        assert_eq!(sum_f(&[0.1, 0.2, 0.3]).to_f64(), Some(0.6));
        assert_eq!(sum_f(&[0.3, 0.2, 0.1]).to_f64(), Some(0.6));
        assert_eq!(sum_f(&[0.1, 0.2]).to_f64(), Some(0.30000000000000004));
    }

    #[test]
    fn subnormals() {
        let tiny = f64::from_bits(1);
        let s = sum_f(&[tiny, tiny, tiny]);
        assert_eq!(s.to_f64(), Some(f64::from_bits(3)));
        assert_eq!(s.mean(3), Some(tiny));
        // 3 units / 2 = 1.5 units: tie, to even (2 units).
        assert_eq!(s.mean(2), Some(f64::from_bits(2)));
        // 1 unit / 2: tie between 0 and 1 unit, to even (0).
        assert_eq!(sum_f(&[tiny]).mean(2), Some(0.0));
        // 1 unit / 3 rounds to zero, keeping the sign.
        let m = sum_f(&[-tiny]).mean(3);
        assert_eq!(m, Some(0.0));
        assert!(m.is_some_and(|m| m.is_sign_negative()));
        // Largest subnormal plus smallest subnormal is the smallest normal.
        let big_sub = f64::from_bits(F64_FRAC_MASK);
        assert_eq!(sum_f(&[big_sub, tiny]).to_f64(), Some(f64::MIN_POSITIVE));
        assert_eq!(
            sum_f(&[f64::MIN_POSITIVE, -tiny]).to_f64(),
            Some(f64::from_bits(F64_FRAC_MASK))
        );
        assert!(!sum_f(&[tiny]).is_zero());
        assert_eq!(sum_f(&[tiny]).to_i64(), None);
    }

    #[test]
    fn rounding_ties_to_even() {
        // 2^53 + 1 is halfway between 2^53 and 2^53 + 2: to even (2^53).
        let mut s = ExactSum::new();
        s.add_f64(9007199254740992.0);
        s.add_f64(1.0);
        assert_eq!(s.to_f64(), Some(9007199254740992.0));
        // 2^53 + 3 is halfway between 2^53 + 2 and 2^53 + 4: to even (2^53 + 4).
        s.add_f64(2.0);
        assert_eq!(s.to_f64(), Some(9007199254740996.0));
        // Just above halfway rounds up.
        let mut s = ExactSum::new();
        s.add_f64(9007199254740992.0);
        s.add_f64(1.0);
        s.add_f64(f64::from_bits(1));
        assert_eq!(s.to_f64(), Some(9007199254740994.0));
        // The overflow threshold: MAX + half an ulp rounds (to even) to infinity, just below
        // it stays MAX.
        let half_ulp = 2f64.powi(970);
        let s = sum_f(&[f64::MAX, half_ulp]);
        assert_eq!(s.to_f64(), None);
        let s = sum_f(&[f64::MAX, half_ulp, -f64::from_bits(1)]);
        assert_eq!(s.to_f64(), Some(f64::MAX));
        let s = sum_f(&[-f64::MAX, -half_ulp]);
        assert_eq!(s.to_f64(), None);
    }

    #[test]
    fn integers() {
        let mut s = ExactSum::new();
        s.add_i64(i64::MAX);
        s.add_i64(i64::MAX);
        assert_eq!(s.to_i64(), None);
        s.sub_i64(i64::MAX);
        assert_eq!(s.to_i64(), Some(i64::MAX));
        let mut s = ExactSum::new();
        s.add_i64(i64::MIN);
        assert_eq!(s.to_i64(), Some(i64::MIN));
        s.add_i64(-1);
        assert_eq!(s.to_i64(), None);
        s.sub_i64(-1);
        s.sub_i64(i64::MIN);
        assert!(s.is_zero());
        // Integers mixed with integral floats are still integers.
        let mut s = ExactSum::new();
        s.add_i64(3);
        s.add_f64(2.0);
        s.add_f64(-0.5);
        assert_eq!(s.to_i64(), None);
        s.add_f64(0.5);
        assert_eq!(s.to_i64(), Some(5));
        assert_eq!(s.to_f64(), Some(5.0));
        // 2^53 + 1 is exact as an integer and rounds as a float.
        let mut s = ExactSum::new();
        s.add_i64(9007199254740993);
        assert_eq!(s.to_i64(), Some(9007199254740993));
        assert_eq!(s.to_f64(), Some(9007199254740992.0));
        let mut s = ExactSum::new();
        s.add_i64(1);
        s.add_i64(2);
        assert_eq!(s.mean(2), Some(1.5));
        // Needs more than 64 bits: (2^64 - 1) / 2 = 2^63 - 0.5 rounds to 2^63.
        let mut s = ExactSum::new();
        s.add_i64(i64::MAX);
        s.add_i64(i64::MAX);
        s.add_i64(1);
        assert_eq!(s.mean(2), Some(9223372036854775808.0));
    }

    #[test]
    fn add_then_sub_returns_to_zero() {
        let xs = [
            1e308,
            -3.5,
            f64::from_bits(1),
            0.1,
            -f64::MAX,
            123456789.0,
            -0.0,
        ];
        let mut s = ExactSum::new();
        for &x in &xs {
            s.add_f64(x);
        }
        s.add_i64(i64::MIN);
        s.add_i64(42);
        assert!(!s.is_zero());
        for &x in xs.iter().rev() {
            s.sub_f64(x);
        }
        s.sub_i64(42);
        s.sub_i64(i64::MIN);
        assert!(s.is_zero());
        assert_eq!(s.to_f64(), Some(0.0));
        assert!(s.to_f64().is_some_and(|f| f.is_sign_positive()));
    }

    #[test]
    fn non_finite_inputs_poison_until_removed() {
        let mut s = ExactSum::new();
        s.add_f64(1.0);
        s.add_f64(f64::INFINITY);
        assert_eq!(s.to_f64(), None);
        assert_eq!(s.to_i64(), None);
        assert_eq!(s.mean(1), None);
        assert!(!s.is_zero());
        s.sub_f64(f64::INFINITY);
        assert_eq!(s.to_f64(), Some(1.0));
        s.add_f64(f64::NAN);
        assert_eq!(s.to_f64(), None);
        s.sub_f64(f64::NAN);
        assert_eq!(s.to_i64(), Some(1));
    }

    #[test]
    fn lazy_carry_normalizes_in_place() {
        // Force many in-place normalizations cheaply by starting near the threshold.
        let mut s = ExactSum::new();
        s.pending = NORMALIZE_EVERY - 3;
        for _ in 0..10 {
            s.add_f64(f64::MAX);
            s.add_f64(-1.5);
        }
        assert!(s.pending < 20);
        for _ in 0..10 {
            s.sub_f64(f64::MAX);
        }
        assert_eq!(s.to_f64(), Some(-15.0));
    }

    #[test]
    fn many_maxima_stay_exact() {
        let mut s = ExactSum::new();
        for _ in 0..100_000 {
            s.add_f64(f64::MAX);
        }
        assert_eq!(s.to_f64(), None);
        assert_eq!(s.mean(100_000), Some(f64::MAX));
        s.add_f64(-f64::MAX);
        assert_eq!(s.mean(99_999), Some(f64::MAX));
        for _ in 0..99_999 {
            s.sub_f64(f64::MAX);
        }
        assert!(s.is_zero());
    }

    /// Exact oracle: big rationals, and a rounding that is correct by construction (binary
    /// search over the ordered bit patterns of positive f64, then the nearer neighbour).
    mod oracle {
        use super::*;
        use num_bigint::BigInt;
        use num_rational::BigRational;
        use num_traits::{One, Signed, Zero};
        use proptest::prelude::*;

        #[derive(Clone, Copy, Debug)]
        pub(super) enum Input {
            I(i64),
            F(f64),
        }

        fn rational(x: f64) -> BigRational {
            BigRational::from_float(x).unwrap_or_else(BigRational::zero)
        }

        fn input_value(x: Input) -> BigRational {
            match x {
                Input::I(i) => BigRational::from_integer(BigInt::from(i)),
                Input::F(f) => rational(f),
            }
        }

        /// The exact value of a positive f64 bit pattern, with the infinity pattern standing
        /// for 2^1024 (where the next binade would start).
        fn pattern_value(bits: u64) -> BigRational {
            if bits == f64::INFINITY.to_bits() {
                BigRational::from_integer(BigInt::one() << 1024)
            } else {
                rational(f64::from_bits(bits))
            }
        }

        pub(super) fn round(x: &BigRational) -> Option<f64> {
            if x.is_zero() {
                return Some(0.0);
            }
            let a = x.abs();
            let (mut lo, mut hi) = (0u64, f64::INFINITY.to_bits());
            if a >= pattern_value(hi) {
                return None;
            }
            // value(lo) <= a < value(hi)
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if pattern_value(mid) <= a {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            let below = &a - pattern_value(lo);
            let above = pattern_value(hi) - &a;
            let bits = match below.cmp(&above) {
                std::cmp::Ordering::Less => lo,
                std::cmp::Ordering::Greater => hi,
                std::cmp::Ordering::Equal if lo % 2 == 0 => lo,
                std::cmp::Ordering::Equal => hi,
            };
            if bits == f64::INFINITY.to_bits() {
                return None;
            }
            let f = f64::from_bits(bits);
            Some(if x.is_negative() { -f } else { f })
        }

        pub(super) fn exact_total(xs: &[Input]) -> BigRational {
            xs.iter()
                .fold(BigRational::zero(), |acc, &x| acc + input_value(x))
        }

        pub(super) fn to_i64(x: &BigRational) -> Option<i64> {
            if !x.is_integer() {
                return None;
            }
            i64::try_from(x.to_integer()).ok()
        }

        pub(super) fn accumulate(xs: &[Input]) -> ExactSum {
            let mut s = ExactSum::new();
            for &x in xs {
                match x {
                    Input::I(i) => s.add_i64(i),
                    Input::F(f) => s.add_f64(f),
                }
            }
            s
        }

        fn finite_float() -> impl Strategy<Value = f64> {
            prop_oneof![
                // Any finite bit pattern: every binade, subnormals, both zeros.
                any::<u64>()
                    .prop_map(f64::from_bits)
                    .prop_filter("finite", |f| f.is_finite()),
                // Subnormals and the smallest normals.
                (any::<bool>(), 0u64..(1 << 53)).prop_map(|(neg, m)| {
                    let f = f64::from_bits(m);
                    if neg {
                        -f
                    } else {
                        f
                    }
                }),
                // A narrow exponent band, so sums cancel and carry.
                (any::<bool>(), 1u64 << 52..1 << 53, 1060u64..1090).prop_map(|(neg, m, e)| {
                    let f = f64::from_bits((e << 52) | (m & F64_FRAC_MASK));
                    if neg {
                        -f
                    } else {
                        f
                    }
                }),
                -1e6f64..1e6,
                Just(f64::MAX),
                Just(-f64::MAX),
                Just(0.1),
            ]
        }

        pub(super) fn input() -> impl Strategy<Value = Input> {
            prop_oneof![
                3 => finite_float().prop_map(Input::F),
                1 => any::<i64>().prop_map(Input::I),
                1 => (-1000i64..1000).prop_map(Input::I),
                1 => prop_oneof![Just(i64::MIN), Just(i64::MAX)].prop_map(Input::I),
            ]
        }
    }

    mod props {
        use super::oracle::{self, Input};
        use super::*;
        use num_bigint::BigInt;
        use num_rational::BigRational;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn matches_exact_oracle(
                xs in prop::collection::vec(oracle::input(), 0..12),
                extra in 1u64..1000,
            ) {
                let s = oracle::accumulate(&xs);
                let exact = oracle::exact_total(&xs);
                prop_assert_eq!(
                    s.to_f64().map(f64::to_bits),
                    oracle::round(&exact).map(f64::to_bits)
                );
                prop_assert_eq!(s.to_i64(), oracle::to_i64(&exact));
                prop_assert_eq!(s.is_zero(), exact == BigRational::from_integer(BigInt::from(0)));
                for count in [xs.len() as u64, extra] {
                    if count == 0 {
                        prop_assert_eq!(s.mean(count), None);
                        continue;
                    }
                    let m = &exact / BigRational::from_integer(BigInt::from(count));
                    prop_assert_eq!(
                        s.mean(count).map(f64::to_bits),
                        oracle::round(&m).map(f64::to_bits)
                    );
                }
            }

            #[test]
            fn order_independent(
                (xs, shuffled) in prop::collection::vec(oracle::input(), 0..16)
                    .prop_flat_map(|xs| (Just(xs.clone()), Just(xs).prop_shuffle())),
            ) {
                let a = oracle::accumulate(&xs);
                let b = oracle::accumulate(&shuffled);
                prop_assert_eq!(a.to_f64().map(f64::to_bits), b.to_f64().map(f64::to_bits));
                prop_assert_eq!(a.to_i64(), b.to_i64());
                prop_assert_eq!(a.mean(3).map(f64::to_bits), b.mean(3).map(f64::to_bits));
            }

            #[test]
            fn removal_is_exact(
                (xs, shuffled) in prop::collection::vec(oracle::input(), 0..16)
                    .prop_flat_map(|xs| (Just(xs.clone()), Just(xs).prop_shuffle())),
                keep in prop::collection::vec(oracle::input(), 0..4),
            ) {
                let mut s = oracle::accumulate(&keep);
                for &x in &xs {
                    match x {
                        Input::I(i) => s.add_i64(i),
                        Input::F(f) => s.add_f64(f),
                    }
                }
                for &x in &shuffled {
                    match x {
                        Input::I(i) => s.sub_i64(i),
                        Input::F(f) => s.sub_f64(f),
                    }
                }
                let k = oracle::accumulate(&keep);
                prop_assert_eq!(s.to_f64().map(f64::to_bits), k.to_f64().map(f64::to_bits));
                prop_assert_eq!(s.to_i64(), k.to_i64());
                prop_assert_eq!(s.is_zero(), k.is_zero());
                if keep.is_empty() {
                    prop_assert!(s.is_zero());
                }
            }

            /// Means that land on or right next to a rounding tie, in the integer range and
            /// (scaled down to units of 2^-1074) in the subnormal range, where random inputs
            /// almost never go.
            #[test]
            fn mean_near_ties(
                q in prop_oneof![
                    0u64..1 << 55,
                    // A 53-bit m followed by a single 1 bit: exactly halfway at 54/55 bits.
                    (1u64 << 52..1 << 53, 1u32..3).prop_map(|(m, k)| (m << k) | (1 << (k - 1))),
                ],
                (c, r) in (2u64..1000).prop_flat_map(|c| {
                    (Just(c), prop_oneof![Just(0), Just(c / 2), 0..c])
                }),
                subnormal in any::<bool>(),
                negative in any::<bool>(),
            ) {
                // total / c = q + r / c: a tie inside q when r = 0, a tie of the fraction when
                // r / c = 1/2, and near ties otherwise.
                let total = u128::from(q) * u128::from(c) + u128::from(r);
                let mut s = ExactSum::new();
                let mut left = total;
                while left > 0 {
                    let chunk = if subnormal {
                        left.min(F64_FRAC_MASK as u128) as u64
                    } else {
                        left.min(i64::MAX as u128) as u64
                    };
                    left -= u128::from(chunk);
                    if subnormal {
                        let f = f64::from_bits(chunk);
                        s.add_f64(if negative { -f } else { f });
                    } else {
                        let i = chunk as i64;
                        s.add_i64(if negative { -i } else { i });
                    }
                }
                let mut exact = BigRational::from_integer(BigInt::from(total));
                if subnormal {
                    exact /= BigRational::from_integer(BigInt::from(1) << 1074);
                }
                if negative {
                    exact = -exact;
                }
                let mean = exact / BigRational::from_integer(BigInt::from(c));
                prop_assert_eq!(
                    s.mean(c).map(f64::to_bits),
                    oracle::round(&mean).map(f64::to_bits)
                );
            }

            #[test]
            fn integer_sums_match_i128(xs in prop::collection::vec(any::<i64>(), 0..20)) {
                let mut s = ExactSum::new();
                let mut total: i128 = 0;
                for &x in &xs {
                    s.add_i64(x);
                    total += i128::from(x);
                }
                prop_assert_eq!(s.to_i64(), i64::try_from(total).ok());
                prop_assert_eq!(s.to_f64(), Some(total as f64));
            }
        }

        #[test]
        fn oracle_sanity() {
            // The oracle itself on known roundings.
            let r = |x: f64| BigRational::from_float(x).unwrap_or_default();
            assert_eq!(oracle::round(&r(0.1)), Some(0.1));
            assert_eq!(oracle::round(&r(f64::MAX)), Some(f64::MAX));
            assert_eq!(oracle::round(&(r(f64::MAX) + r(2f64.powi(970)))), None);
            assert_eq!(oracle::round(&-r(5e-324)), Some(-5e-324));
            assert_eq!(oracle::round(&(r(5e-324) / r(2.0))), Some(0.0));
            assert_eq!(
                oracle::round(&(r(9007199254740992.0) + r(1.0))),
                Some(9007199254740992.0)
            );
        }
    }
}
