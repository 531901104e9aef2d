//! Exact money arithmetic.
//!
//! Amounts and rates are fixed-point decimals end to end: text is parsed straight into scaled
//! integers (never through a float), and the conversion `amount × rate_usd[base] / rate_usd[cur]`
//! is evaluated on 256-bit integers and rounded once, half away from zero, to the cent. This is
//! what makes every converted row equal to the same formula evaluated in exact arithmetic, which
//! DataFusion's decimal division (scale s1+4, overflow at Decimal(38,18)) cannot promise.

use arrow::datatypes::i256;

/// Scale of amounts in the transactions table: `Decimal(38,4)` holds every currency's minor
/// units (KWD, BHD, OMR have 3) with room to spare.
pub const AMOUNT_SCALE: i8 = 4;
/// Scale of rates in the rates table: `Decimal(38,18)` holds BTC-per-USD (1e-5) with 13 more
/// significant digits, and IRR-per-USD (4e4) with 16 integer digits to spare.
pub const RATE_SCALE: i8 = 18;
/// Scale of converted amounts: cents.
pub const MONEY_SCALE: i8 = 2;
/// Precision used for every decimal column (i128 storage either way).
pub const PRECISION: u8 = 38;

/// Why a decimal text could not be read exactly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    #[error("empty number")]
    Empty,
    #[error("not a number: {0:?}")]
    Invalid(String),
    #[error("{text:?} has more than {scale} decimal places")]
    TooPrecise { text: String, scale: i8 },
    #[error("{0:?} is too large")]
    TooLarge(String),
}

/// Parses a plain decimal (`-12.5`, `1e-5`, `0.000016386633`) into an integer scaled by
/// `10^scale`. Fails instead of rounding when digits beyond `scale` are not zero.
pub fn parse_scaled(text: &str, scale: i8) -> Result<i128, DecimalError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(DecimalError::Empty);
    }
    let invalid = || DecimalError::Invalid(text.to_string());
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => {
            let exp: i32 = s[i + 1..].parse().map_err(|_| invalid())?;
            (&s[..i], exp)
        }
        None => (s, 0),
    };
    let (negative, digits) = match mantissa.as_bytes().first() {
        Some(b'-') => (true, &mantissa[1..]),
        Some(b'+') => (false, &mantissa[1..]),
        _ => (false, mantissa),
    };
    let (int_part, frac_part) = match digits.split_once('.') {
        Some((i, f)) => (i, f),
        None => (digits, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(invalid());
    }
    if !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(invalid());
    }
    // value = 0.<digits> shifted: unscaled digits with `frac_len - exponent` decimals.
    let all_digits = format!("{int_part}{frac_part}");
    let all_digits = all_digits.trim_start_matches('0');
    let decimals = frac_part.len() as i64 - exponent as i64;
    let shift = scale as i64 - decimals;
    let too_large = || DecimalError::TooLarge(text.to_string());
    let value: i128 = if all_digits.is_empty() {
        0
    } else if shift >= 0 {
        let base: i128 = all_digits.parse().map_err(|_| too_large())?;
        let factor = 10i128.checked_pow(u32::try_from(shift).map_err(|_| too_large())?);
        factor
            .and_then(|f| base.checked_mul(f))
            .ok_or_else(too_large)?
    } else {
        // Digits beyond the scale must all be zeros, or the value is not representable.
        let cut = usize::try_from(-shift).map_err(|_| too_large())?;
        if cut > all_digits.len() {
            return Err(DecimalError::TooPrecise {
                text: text.to_string(),
                scale,
            });
        }
        let (kept, dropped) = all_digits.split_at(all_digits.len() - cut);
        if dropped.bytes().any(|b| b != b'0') {
            return Err(DecimalError::TooPrecise {
                text: text.to_string(),
                scale,
            });
        }
        if kept.is_empty() {
            0
        } else {
            kept.parse().map_err(|_| too_large())?
        }
    };
    if value.unsigned_abs() >= 10u128.pow(PRECISION as u32) {
        return Err(too_large());
    }
    Ok(if negative { -value } else { value })
}

/// `amount × to_per_usd / from_per_usd`, each given as (unscaled integer, scale), rounded half
/// away from zero to [`MONEY_SCALE`]. `None` when a rate is not positive or the result does not
/// fit `Decimal(38,2)`.
pub fn convert(
    amount: (i128, i8),
    to_per_usd: (i128, i8),
    from_per_usd: (i128, i8),
) -> Option<i128> {
    convert_to_scale(amount, to_per_usd, from_per_usd, MONEY_SCALE)
}

/// [`convert`] with the result at any scale (cross rates are kept at [`RATE_SCALE`]).
pub fn convert_to_scale(
    amount: (i128, i8),
    to_per_usd: (i128, i8),
    from_per_usd: (i128, i8),
    out_scale: i8,
) -> Option<i128> {
    if to_per_usd.0 <= 0 || from_per_usd.0 <= 0 {
        return None;
    }
    // amount/10^sa × to/10^st ÷ (from/10^sf) × 10^so  =  a·t·10^(sf+so) / (f·10^(sa+st))
    let num_exp = from_per_usd.1 as i32 + out_scale as i32;
    let den_exp = amount.1 as i32 + to_per_usd.1 as i32;
    let (num_exp, den_exp) = (
        num_exp - num_exp.min(den_exp),
        den_exp - num_exp.min(den_exp),
    );
    // Fast path: with the usual scales the terms fit 128 bits (same arithmetic, same result).
    let small = 10i128
        .checked_pow(num_exp as u32)
        .and_then(|p| amount.0.checked_mul(to_per_usd.0)?.checked_mul(p))
        .zip(
            10i128
                .checked_pow(den_exp as u32)
                .and_then(|p| from_per_usd.0.checked_mul(p)),
        );
    if let Some((numerator, denominator)) = small {
        let quotient = numerator / denominator;
        let remainder = numerator % denominator;
        // Half away from zero: compare 2·|r| with d (d > 0 here, |r| < d so 2·|r| fits).
        let rounded = if remainder.unsigned_abs() * 2 >= denominator.unsigned_abs() {
            quotient + numerator.signum()
        } else {
            quotient
        };
        return (rounded.unsigned_abs() < 10u128.pow(PRECISION as u32)).then_some(rounded);
    }
    let pow10 = |e: i32| i256::from_i128(10).checked_pow(e as u32);
    let numerator = i256::from_i128(amount.0)
        .checked_mul(i256::from_i128(to_per_usd.0))?
        .checked_mul(pow10(num_exp)?)?;
    let denominator = i256::from_i128(from_per_usd.0).checked_mul(pow10(den_exp)?)?;
    let quotient = numerator.checked_div(denominator)?;
    let remainder = numerator.checked_rem(denominator)?;
    // Half away from zero: compare 2·|r| with |d| (d > 0 here).
    let twice = remainder.checked_abs()?.checked_mul(i256::from_i128(2))?;
    let rounded = if twice >= denominator {
        if numerator.is_negative() {
            quotient.checked_sub(i256::ONE)?
        } else {
            quotient.checked_add(i256::ONE)?
        }
    } else {
        quotient
    };
    let cents = rounded.to_i128()?;
    (cents.unsigned_abs() < 10u128.pow(PRECISION as u32)).then_some(cents)
}

/// Formats an unscaled integer as decimal text (`-1234, 2` → `-12.34`).
pub fn format_scaled(value: i128, scale: i8) -> String {
    let negative = value < 0;
    let digits = value.unsigned_abs().to_string();
    let scale = scale.max(0) as usize;
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int_part, frac_part) = padded.split_at(padded.len() - scale);
    let sign = if negative { "-" } else { "" };
    if scale == 0 {
        format!("{sign}{int_part}")
    } else {
        format!("{sign}{int_part}.{frac_part}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exactly_or_refuses() {
        assert_eq!(parse_scaled("1.35", 18), Ok(1_350_000_000_000_000_000));
        assert_eq!(parse_scaled("0.000016386633", 18), Ok(16_386_633_000_000));
        assert_eq!(parse_scaled("1.6e-05", 18), Ok(16_000_000_000_000));
        assert_eq!(parse_scaled("-12.5", 4), Ok(-125_000));
        assert_eq!(parse_scaled("12.50000", 4), Ok(125_000));
        assert_eq!(parse_scaled(".5", 2), Ok(50));
        assert!(matches!(
            parse_scaled("1.00001", 4),
            Err(DecimalError::TooPrecise { .. })
        ));
        assert!(matches!(
            parse_scaled("1.2.3", 4),
            Err(DecimalError::Invalid(_))
        ));
        assert!(matches!(
            parse_scaled("abc", 4),
            Err(DecimalError::Invalid(_))
        ));
        assert!(matches!(
            parse_scaled("1e40", 4),
            Err(DecimalError::TooLarge(_))
        ));
        assert_eq!(parse_scaled("", 4), Err(DecimalError::Empty));
    }

    #[test]
    fn converts_to_the_cent_half_away_from_zero() {
        // 100 INR, INR 63.0 and SGD 1.35 per USD: 100 × 1.35 / 63 = 2.142857… → 2.14
        let amount = (100_0000, 4);
        let sgd = (135, 2);
        let inr = (630, 1);
        assert_eq!(convert(amount, sgd, inr), Some(214));
        // 2.145 exactly → 2.15; −2.145 → −2.15
        assert_eq!(convert((2145, 3), (1, 0), (1, 0)), Some(215));
        assert_eq!(convert((-2145, 3), (1, 0), (1, 0)), Some(-215));
        // 1 BTC at 0.000016386633 BTC per USD, SGD 1.35: 1.35 / 0.000016386633 = 82384.22...
        assert_eq!(convert((1_0000, 4), sgd, (16_386_633, 12)), Some(8_238_422));
        assert_eq!(convert((1, 4), (0, 2), inr), None);
    }

    #[test]
    fn terms_beyond_128_bits_take_the_wide_path() {
        // 10^30 × 1.35 / 63 at scale 18: the numerator needs more than 128 bits.
        let big = convert(
            (10i128.pow(34), 4),
            (135 * 10i128.pow(16), 18),
            (63 * 10i128.pow(18), 18),
        );
        assert_eq!(big, Some(2_142_857_142_857_142_857_142_857_142_857));
        assert_eq!(convert((-100_0000, 4), (135, 2), (630, 1)), Some(-214));
        assert_eq!(convert((-2145, 3), (1, 0), (1, 0)), Some(-215));
    }

    /// `convert_to_scale` evaluated in exact big-integer arithmetic, independently of the code
    /// under test: `a·t·10^(sf+so) / (f·10^(sa+st))`, rounded half away from zero, `None` when
    /// a rate is not positive or the result needs more than 38 digits.
    fn exact(amount: (i128, i8), to: (i128, i8), from: (i128, i8), out: i8) -> Option<i128> {
        use num_bigint::{BigInt, Sign};
        if to.0 <= 0 || from.0 <= 0 {
            return None;
        }
        let (numerator, denominator) = exact_terms(amount, to, from, out);
        let quotient = &numerator / &denominator;
        let remainder = &numerator % &denominator;
        let rounded = if remainder.magnitude() * 2u32 >= *denominator.magnitude() {
            match numerator.sign() {
                Sign::Minus => quotient - 1,
                _ => quotient + 1,
            }
        } else {
            quotient
        };
        let limit = BigInt::from(10).pow(PRECISION as u32);
        (rounded.magnitude() < limit.magnitude())
            .then(|| i128::try_from(&rounded).ok())
            .flatten()
    }

    /// The exact quotient's numerator and denominator.
    fn exact_terms(
        amount: (i128, i8),
        to: (i128, i8),
        from: (i128, i8),
        out: i8,
    ) -> (num_bigint::BigInt, num_bigint::BigInt) {
        use num_bigint::BigInt;
        let pow10 = |e: i8| BigInt::from(10).pow(e as u32);
        (
            BigInt::from(amount.0) * BigInt::from(to.0) * pow10(from.1) * pow10(out),
            BigInt::from(from.0) * pow10(amount.1) * pow10(to.1),
        )
    }

    /// Whether these terms fit the 128-bit fast path (the same test `convert_to_scale` makes).
    fn fits_fast_path(amount: (i128, i8), to: (i128, i8), from: (i128, i8), out: i8) -> bool {
        let num_exp = from.1 as i32 + out as i32;
        let den_exp = amount.1 as i32 + to.1 as i32;
        let common = num_exp.min(den_exp);
        let numerator = 10i128
            .checked_pow((num_exp - common) as u32)
            .and_then(|p| amount.0.checked_mul(to.0)?.checked_mul(p));
        let denominator = 10i128
            .checked_pow((den_exp - common) as u32)
            .and_then(|p| from.0.checked_mul(p));
        numerator.is_some() && denominator.is_some()
    }

    #[test]
    fn convert_equals_exact_rational_arithmetic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(20_171_231);
        // A value of 1 to 38 digits (uniform in length, so every magnitude is covered).
        let magnitude = |rng: &mut rand_chacha::ChaCha8Rng| -> i128 {
            let digits = rng.random_range(1..=38u32);
            rng.random_range(1..10i128.pow(digits))
        };
        // Per path (fast, wide): cases, negative results, exact ties, results in range.
        let mut seen = [[0u32; 4]; 2];
        for case in 0..200_000u32 {
            let out = if rng.random_bool(0.5) {
                MONEY_SCALE
            } else {
                RATE_SCALE
            };
            let sign = if rng.random_bool(0.5) { -1 } else { 1 };
            let (amount, to, from) = if case % 4 == 0 {
                // An exact .5 tie at the output scale: f = 2g, a = ±(2k+1)·g and t = 10^j at
                // scale st with 10^j·10^(sf+so) = 10^(sa+st): the exact result is ±(2k+1)/2.
                // A large j pushes a·t past 128 bits, onto the wide path.
                let sf = rng.random_range(0..=18i8);
                let sa = rng.random_range(0..=(sf + out).min(4));
                let j = rng.random_range(0..=30i8);
                let st = sf + out - sa + j;
                let g_digits = rng.random_range(1..=36u32);
                let g = rng.random_range(1..10i128.pow(g_digits));
                let k_digits = rng.random_range(0..=2u32);
                let k = rng.random_range(0..10i128.pow(k_digits));
                let a = (2 * k + 1).checked_mul(g).unwrap_or(g);
                ((sign * a, sa), (10i128.pow(j as u32), st), (2 * g, sf))
            } else {
                (
                    (sign * magnitude(&mut rng), rng.random_range(0..=18i8)),
                    (magnitude(&mut rng), rng.random_range(0..=18i8)),
                    (magnitude(&mut rng), rng.random_range(0..=18i8)),
                )
            };
            let expected = exact(amount, to, from, out);
            let got = convert_to_scale(amount, to, from, out);
            assert_eq!(
                got, expected,
                "{amount:?} × {to:?} / {from:?} at scale {out}"
            );
            if out == MONEY_SCALE {
                assert_eq!(convert(amount, to, from), expected);
            }
            let (n, d) = exact_terms(amount, to, from, out);
            let tie = (n % &d).magnitude() * 2u32 == *d.magnitude();
            let path = usize::from(!fits_fast_path(amount, to, from, out));
            let in_range = expected.is_some();
            seen[path][0] += 1;
            seen[path][1] += u32::from(amount.0 < 0 && in_range);
            seen[path][2] += u32::from(tie && in_range);
            seen[path][3] += u32::from(in_range);
        }
        // Both paths saw results in range, negative amounts and exact ties.
        for (path, counts) in ["fast", "wide"].iter().zip(seen) {
            assert!(counts.iter().all(|&c| c >= 500), "{path} path: {counts:?}");
        }
        // Rates that are not positive never convert.
        assert_eq!(convert_to_scale((1, 0), (0, 0), (1, 0), 2), None);
        assert_eq!(convert_to_scale((1, 0), (1, 0), (-1, 0), 2), None);
    }

    #[test]
    fn formats_scaled_integers() {
        assert_eq!(format_scaled(214, 2), "2.14");
        assert_eq!(format_scaled(-5, 2), "-0.05");
        assert_eq!(format_scaled(7, 0), "7");
    }
}
