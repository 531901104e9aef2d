//! Reading the fields of a bank-transactions row as real exports write them.
//!
//! Each parser accepts the quirks found in real copies of the data set (stray apostrophes,
//! `5-Jul-17`, quoted thousands separators, accounting-format padding, Indian digit grouping)
//! and refuses anything it would have to guess at.

use chrono::NaiveDate;

use crate::money::{AMOUNT_SCALE, PRECISION};

/// Days from 0001-01-01 (CE day 1) to 1970-01-01, for Arrow's `Date32`.
const UNIX_EPOCH_FROM_CE: i32 = 719_163;

/// An account number: trimmed, without the Excel apostrophe (`409000611074'`).
pub fn account(text: &str) -> Option<&str> {
    let cleaned = text.trim().trim_matches('\'').trim();
    (!cleaned.is_empty()).then_some(cleaned)
}

/// A date as days since 1970-01-01. Accepts `29-Jun-17`, `5-Jul-17`, `29-Jun-2017`,
/// `2017-06-29` and `2017-06-29 00:00:00`. Two-digit years 00–69 are 20xx, 70–99 are 19xx.
pub fn date(text: &str) -> Option<i32> {
    let s = text.trim();
    let parsed = if s.len() >= 10 && s.as_bytes()[4] == b'-' {
        iso_date(s)
    } else {
        day_month_year(s)
    }?;
    Some(parsed.num_days_from_ce_i32() - UNIX_EPOCH_FROM_CE)
}

trait DaysFromCe {
    fn num_days_from_ce_i32(&self) -> i32;
}

impl DaysFromCe for NaiveDate {
    fn num_days_from_ce_i32(&self) -> i32 {
        chrono::Datelike::num_days_from_ce(self)
    }
}

fn iso_date(s: &str) -> Option<NaiveDate> {
    let (day_part, time_part) = match s.split_once([' ', 'T']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    if let Some(time) = time_part {
        chrono::NaiveTime::parse_from_str(time.trim(), "%H:%M:%S").ok()?;
    }
    let mut parts = day_part.splitn(3, '-');
    let year = number(parts.next()?, 4)?;
    let month = number(parts.next()?, 2)?;
    let day = number(parts.next()?, 2)?;
    NaiveDate::from_ymd_opt(year as i32, month, day)
}

fn day_month_year(s: &str) -> Option<NaiveDate> {
    let mut parts = s.splitn(3, ['-', ' ', '/']);
    let day = number(parts.next()?, 2)?;
    let month = month_abbreviation(parts.next()?)?;
    let year_text = parts.next()?;
    let year = match year_text.len() {
        2 => {
            let yy = number(year_text, 2)? as i32;
            if yy < 70 {
                2000 + yy
            } else {
                1900 + yy
            }
        }
        4 => number(year_text, 4)? as i32,
        _ => return None,
    };
    NaiveDate::from_ymd_opt(year, month, day)
}

fn number(text: &str, max_digits: usize) -> Option<u32> {
    if text.is_empty() || text.len() > max_digits || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn month_abbreviation(text: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    if text.len() != 3 {
        return None;
    }
    let lower = text.to_ascii_lowercase();
    MONTHS
        .iter()
        .position(|m| *m == lower)
        .map(|i| i as u32 + 1)
}

/// Why an amount could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("{0:?} is not an amount")]
    NotANumber(String),
    #[error("{0:?} has misplaced thousands separators")]
    Grouping(String),
    #[error("{0:?} has more than 4 decimal places")]
    TooPrecise(String),
    #[error("{0:?} is too large")]
    TooLarge(String),
}

/// An amount scaled by 10^4, or `None` when the cell is blank (or the accounting format's lone
/// `-`). Accepts `"1,000,000"`, `"  1,200,000.00 "`, `10,00,000.00` and `(56.18)` (negative).
pub fn amount(text: &str) -> Result<Option<i128>, AmountError> {
    // Hot path of every load: one pass over the bytes, no allocation unless the cell is bad.
    let s = text.trim();
    if s.is_empty() || s == "-" {
        return Ok(None);
    }
    let not_a_number = || AmountError::NotANumber(text.to_string());
    let (mut negative, mut body) = match s.strip_prefix('(').and_then(|b| b.strip_suffix(')')) {
        Some(inner) => (true, inner.trim()),
        None => (false, s),
    };
    if let Some(rest) = body.strip_prefix('-') {
        if negative {
            return Err(not_a_number());
        }
        negative = true;
        body = rest;
    }
    let bytes = body.as_bytes();
    let too_large = || AmountError::TooLarge(text.to_string());
    let grouping = || AmountError::Grouping(text.to_string());
    let mut value: i128 = 0;
    let (mut int_digits, mut group_len, mut groups) = (0usize, 0usize, 0usize);
    let mut i = 0;
    // Integer part, with Western (1,000,000) or Indian (10,00,000) grouping.
    while i < bytes.len() {
        match bytes[i] {
            d @ b'0'..=b'9' => {
                value = value * 10 + (d - b'0') as i128;
                int_digits += 1;
                group_len += 1;
                if int_digits > (PRECISION as usize - AMOUNT_SCALE as usize) {
                    return Err(too_large());
                }
            }
            b',' => {
                let ok = if groups == 0 {
                    (1..=3).contains(&group_len)
                } else {
                    group_len == 2 || group_len == 3
                };
                if !ok {
                    return Err(grouping());
                }
                groups += 1;
                group_len = 0;
            }
            b'.' => break,
            _ => return Err(not_a_number()),
        }
        i += 1;
    }
    if groups > 0 && group_len != 3 {
        return Err(grouping());
    }
    // Fraction: up to 4 digits kept; further digits must be zeros (never rounded).
    let mut frac_digits = 0u32;
    let mut has_point = false;
    if i < bytes.len() {
        has_point = true;
        for &b in &bytes[i + 1..] {
            match b {
                b'0'..=b'9' if frac_digits < AMOUNT_SCALE as u32 => {
                    value = value * 10 + (b - b'0') as i128;
                    frac_digits += 1;
                }
                b'0' => {}
                b'1'..=b'9' => return Err(AmountError::TooPrecise(text.to_string())),
                _ => return Err(not_a_number()),
            }
        }
    }
    if int_digits == 0 && (frac_digits == 0 || !has_point) {
        return Err(not_a_number());
    }
    let value = value * 10i128.pow(AMOUNT_SCALE as u32 - frac_digits);
    Ok(Some(if negative { -value } else { value }))
}

/// A currency cell that is not a three-letter code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a three-letter currency code")]
pub struct BadCurrency;

/// A currency code: trimmed, upper-cased, three ASCII letters; `Ok(None)` when blank.
pub fn currency(text: &str) -> Result<Option<String>, BadCurrency> {
    let s = text.trim();
    if s.is_empty() {
        return Ok(None);
    }
    if s.len() == 3 && s.bytes().all(|b| b.is_ascii_alphabetic()) {
        Ok(Some(s.to_ascii_uppercase()))
    } else {
        Err(BadCurrency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ymd(y: i32, m: u32, d: u32) -> i32 {
        NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .num_days_from_ce_i32()
            - UNIX_EPOCH_FROM_CE
    }

    #[test]
    fn dates_in_every_real_shape() {
        assert_eq!(date("29-Jun-17"), Some(ymd(2017, 6, 29)));
        assert_eq!(date(" 5-Jul-17 "), Some(ymd(2017, 7, 5)));
        assert_eq!(date("05-JUL-2017"), Some(ymd(2017, 7, 5)));
        assert_eq!(date("2017-06-29 00:00:00"), Some(ymd(2017, 6, 29)));
        assert_eq!(date("2017-06-29"), Some(ymd(2017, 6, 29)));
        assert_eq!(date("1-Jan-99"), Some(ymd(1999, 1, 1)));
        assert_eq!(date("1970-01-01"), Some(0));
        assert_eq!(date("31-Feb-17"), None);
        assert_eq!(date("29-Jux-17"), None);
        assert_eq!(date("06/29/2017"), None);
        assert_eq!(date(""), None);
    }

    #[test]
    fn amounts_in_every_real_shape() {
        assert_eq!(amount("1,000,000"), Ok(Some(10_000_000_000)));
        assert_eq!(amount("  1,200,000.00 "), Ok(Some(12_000_000_000)));
        assert_eq!(amount("10,00,000.00"), Ok(Some(10_000_000_000)));
        assert_eq!(amount("  56.18 "), Ok(Some(56_1800)));
        assert_eq!(amount("(56.18)"), Ok(Some(-56_1800)));
        assert_eq!(amount("1.234"), Ok(Some(1_2340)));
        assert_eq!(amount(""), Ok(None));
        assert_eq!(amount(" - "), Ok(None));
        assert!(matches!(amount("1,00"), Err(AmountError::Grouping(_))));
        assert!(matches!(amount("12.3.4"), Err(AmountError::NotANumber(_))));
        assert!(matches!(amount("1e5"), Err(AmountError::NotANumber(_))));
        assert!(matches!(amount("1.00001"), Err(AmountError::TooPrecise(_))));
        assert!(matches!(amount("abc"), Err(AmountError::NotANumber(_))));
        assert!(matches!(amount("(-5)"), Err(AmountError::NotANumber(_))));
        assert!(matches!(amount("."), Err(AmountError::NotANumber(_))));
        assert!(matches!(
            amount("1,000.5.5"),
            Err(AmountError::NotANumber(_))
        ));
        assert!(matches!(
            amount("1.234,56"),
            Err(AmountError::NotANumber(_))
        ));
        assert!(matches!(
            amount("99999999999999999999999999999999999"),
            Err(AmountError::TooLarge(_))
        ));
        assert_eq!(amount("1.00000"), Ok(Some(1_0000)));
        assert_eq!(amount(".5"), Ok(Some(5000)));
        assert_eq!(amount("-0.01"), Ok(Some(-100)));
    }

    #[test]
    fn accounts_and_currencies() {
        assert_eq!(account(" 409000611074' "), Some("409000611074"));
        assert_eq!(account("''"), None);
        assert_eq!(currency(" inr "), Ok(Some("INR".to_string())));
        assert_eq!(currency(""), Ok(None));
        assert_eq!(currency("US$"), Err(BadCurrency));
    }
}
