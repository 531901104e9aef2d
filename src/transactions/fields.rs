//! Reading the fields of a bank-transactions row as real exports write them.
//!
//! Each parser accepts the quirks found in real copies of the data set (stray apostrophes,
//! `5-Jul-17`, quoted thousands separators, accounting-format padding, Indian digit grouping)
//! and refuses anything it would have to guess at.

use chrono::NaiveDate;

use crate::money::AMOUNT_SCALE;

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

/// The character that separates an amount's decimals; the other one (and, with a comma, a
/// space) groups thousands.
///
/// European exports (`;`-delimited Excel) write `1.234,56` and `12,50`; reading those with
/// point decimals would misread them, so the loader is told which convention a file uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DecimalMark {
    /// `1,234.56`, and Indian grouping `10,00,000.00`.
    #[default]
    Point,
    /// `1.234,56` or `1 234,56` (Western grouping only).
    Comma,
}

/// The `--decimal-separator` setting of a load: a [`DecimalMark`], or `auto`, which reads comma
/// decimals in `;`-delimited files (European Excel writes those) and point decimals otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DecimalSeparator {
    #[default]
    Auto,
    Point,
    Comma,
}

impl DecimalSeparator {
    /// The mark for a file with this field delimiter.
    pub fn resolve(self, delimiter: u8) -> DecimalMark {
        match self {
            DecimalSeparator::Point => DecimalMark::Point,
            DecimalSeparator::Comma => DecimalMark::Comma,
            DecimalSeparator::Auto if delimiter == b';' => DecimalMark::Comma,
            DecimalSeparator::Auto => DecimalMark::Point,
        }
    }
}

impl std::str::FromStr for DecimalSeparator {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "auto" => Ok(DecimalSeparator::Auto),
            "." | "point" => Ok(DecimalSeparator::Point),
            "," | "comma" => Ok(DecimalSeparator::Comma),
            other => Err(format!(
                "{other:?} is not a decimal separator: use auto, . or ,"
            )),
        }
    }
}

impl std::fmt::Display for DecimalSeparator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DecimalSeparator::Auto => "auto",
            DecimalSeparator::Point => ".",
            DecimalSeparator::Comma => ",",
        })
    }
}

/// Amounts must be below this many units of their currency (10^18), whatever the currency:
/// far above any real balance, and low enough that every sum and conversion of loaded amounts
/// stays far from the limits of `Decimal(38, _)`. Larger values are input faults, rejected at
/// the row instead of failing a later job.
pub const AMOUNT_LIMIT_UNITS: i128 = 1_000_000_000_000_000_000;

/// At most this many characters of a bad cell are quoted in an error (a reject's detail stays
/// small whatever the cell).
const QUOTED_CHARS: usize = 64;

/// A cell's text for an error message, cut short if long.
pub fn quoted(text: &str) -> String {
    match text.char_indices().nth(QUOTED_CHARS) {
        Some((end, _)) => format!("{:?}… ({} bytes)", &text[..end], text.len()),
        None => format!("{text:?}"),
    }
}

/// Why an amount could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("{} is not an amount", quoted(.0))]
    NotANumber(String),
    #[error("{} has misplaced thousands separators (with {} decimals)", quoted(.0), .1.describe())]
    Grouping(String, DecimalMark),
    #[error("{} has more than 4 decimal places", quoted(.0))]
    TooPrecise(String),
    #[error("{} is too large (amounts must be below 10^18)", quoted(.0))]
    TooLarge(String),
}

impl DecimalMark {
    fn describe(self) -> &'static str {
        match self {
            DecimalMark::Point => "point",
            DecimalMark::Comma => "comma",
        }
    }

    /// The decimal separator's byte.
    fn decimal(self) -> u8 {
        match self {
            DecimalMark::Point => b'.',
            DecimalMark::Comma => b',',
        }
    }

    fn groups_with(self, byte: u8) -> bool {
        match self {
            DecimalMark::Point => byte == b',',
            DecimalMark::Comma => byte == b'.' || byte == b' ',
        }
    }
}

/// Digit groups seen in an amount's integer part, checked once the part ends.
#[derive(Debug, Default)]
struct Grouping {
    separator: Option<u8>,
    /// Separators seen so far (groups closed).
    closed: usize,
    first: usize,
    /// Every group between the first and the last has 3 digits (Western) or 2 (Indian).
    middle_all_3: bool,
    middle_all_2: bool,
}

impl Grouping {
    fn new() -> Self {
        Self {
            middle_all_3: true,
            middle_all_2: true,
            ..Self::default()
        }
    }

    /// Closes a group of `len` digits at a separator; `false` if separators are mixed.
    fn close(&mut self, len: usize, separator: u8) -> bool {
        if *self.separator.get_or_insert(separator) != separator {
            return false;
        }
        if self.closed == 0 {
            self.first = len;
        } else {
            self.middle_all_3 &= len == 3;
            self.middle_all_2 &= len == 2;
        }
        self.closed += 1;
        true
    }

    /// Western grouping (`1,234,567`: 1–3 digits, then groups of 3), or with point decimals
    /// Indian grouping (`12,34,567`: 1–2 digits, groups of 2, a last group of 3).
    fn is_valid(&self, last: usize, mark: DecimalMark) -> bool {
        if self.closed == 0 {
            return true;
        }
        let western = (1..=3).contains(&self.first) && self.middle_all_3;
        let indian =
            mark == DecimalMark::Point && (1..=2).contains(&self.first) && self.middle_all_2;
        last == 3 && (western || indian)
    }
}

/// An amount scaled by 10^4, or `None` when the cell is blank (or the accounting format's lone
/// `-`).
///
/// With [`DecimalMark::Point`] it accepts `"1,000,000"`, `"  1,200,000.00 "`, `10,00,000.00`
/// and `(56.18)` (negative); with [`DecimalMark::Comma`], `1.234,56`, `12,50`, `1 000 000` and
/// `1.234` (one thousand two hundred and thirty-four). Anything that the convention in force
/// would have to guess at is refused, never read another way: `12,50` with point decimals,
/// `1.23` or `1,234,56` with comma decimals, groups that are neither Western nor Indian
/// (`1,000,00,000`), and values of 10^18 units or more.
pub fn amount(text: &str, mark: DecimalMark) -> Result<Option<i128>, AmountError> {
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
    let mut value: i128 = 0;
    let (mut int_digits, mut group_len) = (0usize, 0usize);
    let mut grouping = Grouping::new();
    let mut i = 0;
    // Integer part, with the grouping the decimal mark allows.
    while i < bytes.len() {
        match bytes[i] {
            d @ b'0'..=b'9' => {
                value = value * 10 + (d - b'0') as i128;
                if value >= AMOUNT_LIMIT_UNITS {
                    return Err(AmountError::TooLarge(text.to_string()));
                }
                int_digits += 1;
                group_len += 1;
            }
            b if b == mark.decimal() => break,
            b if mark.groups_with(b) => {
                if !grouping.close(group_len, b) {
                    return Err(AmountError::Grouping(text.to_string(), mark));
                }
                group_len = 0;
            }
            _ => return Err(not_a_number()),
        }
        i += 1;
    }
    if !grouping.is_valid(group_len, mark) {
        return Err(AmountError::Grouping(text.to_string(), mark));
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

/// `1.234` or `12.500`: one `.` followed by exactly three digits and nothing else. With comma
/// decimals that is a thousands group; with point decimals, three decimals (KWD, BHD, OMR have
/// three). When the comma convention was only guessed (`auto` on a `;` file) it is ambiguous.
pub fn point_thousands_only(text: &str) -> bool {
    let s = text
        .trim()
        .trim_start_matches(['(', '-'])
        .trim_end_matches(')');
    match s.split_once('.') {
        Some((int, frac)) => {
            !int.is_empty()
                && int.len() <= 3
                && int.bytes().all(|b| b.is_ascii_digit())
                && frac.len() == 3
                && frac.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
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

    fn point(text: &str) -> Result<Option<i128>, AmountError> {
        amount(text, DecimalMark::Point)
    }

    fn comma(text: &str) -> Result<Option<i128>, AmountError> {
        amount(text, DecimalMark::Comma)
    }

    #[test]
    fn amounts_in_every_real_shape() {
        assert_eq!(point("1,000,000"), Ok(Some(10_000_000_000)));
        assert_eq!(point("  1,200,000.00 "), Ok(Some(12_000_000_000)));
        assert_eq!(point("10,00,000.00"), Ok(Some(10_000_000_000)));
        assert_eq!(point("1,00,000"), Ok(Some(1_000_000_000)));
        assert_eq!(point("  56.18 "), Ok(Some(56_1800)));
        assert_eq!(point("(56.18)"), Ok(Some(-56_1800)));
        assert_eq!(point("1.234"), Ok(Some(1_2340)));
        assert_eq!(point(""), Ok(None));
        assert_eq!(point(" - "), Ok(None));
        assert!(matches!(point("1,00"), Err(AmountError::Grouping(..))));
        assert!(matches!(point("12.3.4"), Err(AmountError::NotANumber(_))));
        assert!(matches!(point("1e5"), Err(AmountError::NotANumber(_))));
        assert!(matches!(point("1.00001"), Err(AmountError::TooPrecise(_))));
        assert!(matches!(point("abc"), Err(AmountError::NotANumber(_))));
        assert!(matches!(point("(-5)"), Err(AmountError::NotANumber(_))));
        assert!(matches!(point("."), Err(AmountError::NotANumber(_))));
        assert!(matches!(
            point("1,000.5.5"),
            Err(AmountError::NotANumber(_))
        ));
        assert!(matches!(point("1.234,56"), Err(AmountError::NotANumber(_))));
        assert_eq!(point("1.00000"), Ok(Some(1_0000)));
        assert_eq!(point(".5"), Ok(Some(5000)));
        assert_eq!(point("-0.01"), Ok(Some(-100)));
    }

    #[test]
    fn point_decimals_refuse_what_they_would_have_to_guess() {
        // A European `12,50` is not a grouping: never read as 1250.
        assert!(matches!(point("12,50"), Err(AmountError::Grouping(..))));
        assert!(matches!(point("1,234,56"), Err(AmountError::Grouping(..))));
        // Neither Western nor Indian: a 3-digit group before a 2-digit one, or 2 before 3 in
        // the middle of Western groups.
        assert!(matches!(
            point("1,000,00,000"),
            Err(AmountError::Grouping(..))
        ));
        assert!(matches!(
            point("123,45,678"),
            Err(AmountError::Grouping(..))
        ));
        assert!(matches!(point("1,2345"), Err(AmountError::Grouping(..))));
        assert!(matches!(point("1,,000"), Err(AmountError::Grouping(..))));
        assert!(matches!(point(",000"), Err(AmountError::Grouping(..))));
        assert!(matches!(point("1,000,"), Err(AmountError::Grouping(..))));
        // Spaces group thousands only with comma decimals.
        assert!(matches!(point("1 000"), Err(AmountError::NotANumber(_))));
        assert_eq!(point("12,34,56,789.5"), Ok(Some(1_234_567_895_000)));
        assert_eq!(point("123,456,789"), Ok(Some(1_234_567_890_000)));
    }

    #[test]
    fn comma_decimals_read_european_exports() {
        assert_eq!(comma("12,50"), Ok(Some(12_5000)));
        assert_eq!(comma("1.234,56"), Ok(Some(1234_5600)));
        assert_eq!(comma(" 1.000.000 "), Ok(Some(10_000_000_000)));
        assert_eq!(comma("1 234 567,8"), Ok(Some(12_345_678_000)));
        assert_eq!(comma("(56,18)"), Ok(Some(-56_1800)));
        assert_eq!(comma("-0,01"), Ok(Some(-100)));
        assert_eq!(comma(",5"), Ok(Some(5000)));
        assert_eq!(comma("7"), Ok(Some(7_0000)));
        // A lone thousands group is valid grouping under the rule: 1.234 is one thousand two
        // hundred and thirty-four, never 1.234.
        assert_eq!(comma("1.234"), Ok(Some(1234_0000)));
        assert!(matches!(comma("1.23"), Err(AmountError::Grouping(..))));
        assert!(matches!(comma("1.2345"), Err(AmountError::Grouping(..))));
        assert!(matches!(comma("1,234,56"), Err(AmountError::NotANumber(_))));
        assert!(matches!(comma("1,234.56"), Err(AmountError::NotANumber(_))));
        // Indian grouping is a point-decimals convention.
        assert!(matches!(comma("10.00.000"), Err(AmountError::Grouping(..))));
        // One separator kind per number.
        assert!(matches!(comma("1.234 567"), Err(AmountError::Grouping(..))));
        assert!(matches!(comma("1,00001"), Err(AmountError::TooPrecise(_))));
        assert_eq!(comma(""), Ok(None));
        assert_eq!(comma(" - "), Ok(None));
    }

    #[test]
    fn auto_reads_comma_decimals_in_semicolon_files_only() {
        let auto: DecimalSeparator = "auto".parse().unwrap();
        assert_eq!(auto.resolve(b';'), DecimalMark::Comma);
        assert_eq!(auto.resolve(b','), DecimalMark::Point);
        assert_eq!(auto.resolve(b'\t'), DecimalMark::Point);
        assert_eq!(auto.resolve(b'|'), DecimalMark::Point);
        let point: DecimalSeparator = ".".parse().unwrap();
        assert_eq!(point.resolve(b';'), DecimalMark::Point);
        let comma: DecimalSeparator = ",".parse().unwrap();
        assert_eq!(comma.resolve(b','), DecimalMark::Comma);
        assert!("'".parse::<DecimalSeparator>().is_err());
    }

    #[test]
    fn absurd_amounts_are_refused_below_the_decimal_limits() {
        // The largest accepted amount: 10^18 − 0.0001 units.
        assert_eq!(
            point("999,999,999,999,999,999.9999"),
            Ok(Some(AMOUNT_LIMIT_UNITS * 10_000 - 1))
        );
        assert_eq!(
            comma("-999999999999999999,9999"),
            Ok(Some(-(AMOUNT_LIMIT_UNITS * 10_000 - 1)))
        );
        for text in [
            "1000000000000000000",
            "1,000,000,000,000,000,000.00",
            "-1000000000000000000",
            "(1000000000000000000)",
            "99999999999999999999999999999999999",
            "99999999999999999999999999999999999999999999999999999999999",
        ] {
            assert!(
                matches!(point(text), Err(AmountError::TooLarge(_))),
                "{text}"
            );
        }
        assert!(matches!(
            comma("1.000.000.000.000.000.000,00"),
            Err(AmountError::TooLarge(_))
        ));
        // Leading zeros are not magnitude.
        assert_eq!(point("0000000000000000000000001.5"), Ok(Some(1_5000)));
        // The detail quotes a long cell only in part.
        let long = "9".repeat(1 << 20);
        let message = point(&long).unwrap_err().to_string();
        assert!(message.contains("too large"), "{message}");
        assert!(message.len() < 200, "{}", message.len());
    }

    #[test]
    fn a_lone_group_of_three_after_a_point_is_flagged() {
        for ambiguous in ["1.234", " 12.500 ", "(1.250)", "-999.000"] {
            assert!(point_thousands_only(ambiguous), "{ambiguous}");
        }
        for clear in [
            "1.234,56",
            "1.234.567",
            "12.50",
            "1234.567",
            "1 234",
            "12,500",
            "5",
        ] {
            assert!(!point_thousands_only(clear), "{clear}");
        }
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
