//! `fxpipe gen transactions`: bank-transaction CSV exports as real ones look.
//!
//! Clean rows carry the real-world quirks the loader must accept (apostrophe account numbers,
//! `5-Jul-17` dates, quoted thousands separators, accounting padding, Indian grouping, ragged
//! rows); `--dirty` mixes in malformed rows of many kinds, each of which the loader must reject
//! with its reason (or, for unknown currencies, leave unconverted and count).

use std::path::Path;

use chrono::{Duration, NaiveDate};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::GenError;

/// What to generate.
#[derive(Debug, Clone)]
pub struct TransactionSpec {
    pub rows: u64,
    pub seed: u64,
    pub accounts: u32,
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// Fraction of rows (0..=1) made malformed.
    pub dirty: f64,
}

const HEADER: &str = "account_no,date,transaction_details,chq_no,value_date,withdrawal_amt,withdrawal_currency,deposit_amt,deposit_currency,balance_amt";

const DETAILS: &[&str] = &[
    "TRF FROM  Indiaforensic SERVICES",
    "FDRL/INTERNAL FUND TRANSFE",
    "NEFT/INDIAFORENSIC SERVICES/UTIB00",
    "INDO GIBL Indiaforensic STL01071",
    "CASH DEPOSIT  SELF",
    "RTGS/ICICR420170630",
    "IMPS 718014219932 FROM  SMART",
    "TRF TO  1196711/UPI/PAYMENT",
    "INTEREST CREDIT",
    "Indfor SERVICE CHARGES  GST",
];

/// Currencies transactions use, with the decimals their amounts carry.
const TXN_CURRENCIES: &[(&str, usize)] = &[
    ("USD", 2),
    ("EUR", 2),
    ("GBP", 2),
    ("SGD", 2),
    ("JPY", 0),
    ("KWD", 3),
    ("AED", 2),
    ("CNY", 2),
    ("HKD", 2),
    ("AUD", 2),
    ("CHF", 2),
];

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn bank_date(date: NaiveDate, iso: bool) -> String {
    use chrono::Datelike;
    if iso {
        format!("{} 00:00:00", date.format("%Y-%m-%d"))
    } else {
        format!(
            "{}-{}-{:02}",
            date.day(),
            MONTHS[date.month0() as usize],
            date.year() % 100
        )
    }
}

/// Groups an integer's digits Western (1,000,000) or Indian (10,00,000) style.
fn group(int_part: &str, indian: bool) -> String {
    let digits: Vec<char> = int_part.chars().collect();
    let mut out = Vec::new();
    let mut count = 0;
    let mut group_size = 3;
    for c in digits.iter().rev() {
        if count == group_size {
            out.push(',');
            count = 0;
            if indian {
                group_size = 2;
            }
        }
        out.push(*c);
        count += 1;
    }
    out.iter().rev().collect()
}

/// An amount in one of the shapes bank exports use.
fn amount_text(rng: &mut ChaCha8Rng, minor_units: u64, decimals: usize) -> String {
    let scale = 10u64.pow(decimals as u32);
    let int_part = (minor_units / scale).to_string();
    let frac = minor_units % scale;
    let frac_text = if decimals == 0 {
        String::new()
    } else {
        format!(".{frac:0decimals$}")
    };
    match rng.random_range(0..10) {
        0..=4 => format!("{}{}", group(&int_part, false), frac_text),
        5 => format!("  {}{} ", group(&int_part, false), frac_text),
        6 => format!("{}{}", group(&int_part, true), frac_text),
        _ => format!("{int_part}{frac_text}"),
    }
}

/// One generated transaction, before it is spoiled (or not).
struct Row<'a> {
    account: &'a str,
    date: NaiveDate,
    value_date: NaiveDate,
    /// Dates as `2017-06-29 00:00:00` (some exports) instead of `29-Jun-17`.
    iso: bool,
    details: &'a str,
    chq: &'a str,
    deposit: bool,
    amount: &'a str,
    currency: &'a str,
    balance: &'a str,
}

impl Row<'_> {
    /// The row's CSV cells, in the export's column order, into `fields` (cleared first).
    fn fill(&self, fields: &mut Vec<Vec<u8>>) {
        fields.clear();
        let mut push = |s: &str| fields.push(s.as_bytes().to_vec());
        push(self.account);
        push(&bank_date(self.date, self.iso));
        push(self.details);
        push(self.chq);
        push(&bank_date(self.value_date, self.iso));
        if self.deposit {
            push("");
            push("");
            push(self.amount);
            push(self.currency);
        } else {
            push(self.amount);
            push(self.currency);
            push("");
            push("");
        }
        push(self.balance);
    }
}

/// Makes one row malformed, in one of the ways real exports are (and load must reject or
/// read): a bad date, amount or currency, cells missing or extra, a blank account, a byte
/// that is not UTF-8.
fn spoil(fields: &mut Vec<Vec<u8>>, rng: &mut ChaCha8Rng, deposit: bool) {
    let amount_at = if deposit { 7 } else { 5 };
    match rng.random_range(0..13) {
        0 => fields[1] = b"31-Foo-17".to_vec(),
        1 => fields[4] = b"2017-13-45".to_vec(),
        2 => fields[amount_at] = b"12.3.4".to_vec(),
        3 => fields[amount_at + 1] = Vec::new(),
        4 => fields[amount_at] = Vec::new(),
        5 => {
            for field in &mut fields[5..=8] {
                field.clear();
            }
        }
        6 => fields[amount_at + 1] = b"US$".to_vec(),
        7 => fields.extend([b"extra".to_vec(), b"cells".to_vec()]),
        8 => fields[0] = b"  ".to_vec(),
        9 => fields[amount_at] = b"-500.00".to_vec(),
        10 => fields[amount_at] = b"10.12345".to_vec(),
        11 => fields[amount_at + 1] = b"XYZ".to_vec(),
        _ => fields[2] = b"CAF\xC9 PAYMENT".to_vec(),
    }
}

impl TransactionSpec {
    /// Refuses an empty range, a `dirty` that is not a fraction and no accounts.
    fn check(&self) -> Result<(), GenError> {
        if self.from > self.to {
            return Err(GenError::EmptyRange {
                from: self.from,
                to: self.to,
            });
        }
        if !(0.0..=1.0).contains(&self.dirty) {
            return Err(GenError::Invalid(format!(
                "--dirty {} is not a fraction between 0 and 1",
                self.dirty
            )));
        }
        if self.accounts == 0 {
            return Err(GenError::Invalid(
                "--accounts must be at least 1".to_string(),
            ));
        }
        Ok(())
    }
}

/// Cents as the bank writes the balance: `1234.05`, `-0.50`.
fn cents_text(cents: i64) -> String {
    let text = format!("{}.{:02}", cents / 100, (cents % 100).abs());
    if cents < 0 && cents > -100 {
        format!("-{text}")
    } else {
        text
    }
}

/// The output file (and its folder), as a CSV writer that takes rows of any length.
fn create_csv(out: &Path) -> Result<csv::Writer<std::io::BufWriter<std::fs::File>>, GenError> {
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| GenError::Io {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    let file = std::fs::File::create(out).map_err(|source| GenError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    Ok(csv::WriterBuilder::new()
        .flexible(true)
        .from_writer(std::io::BufWriter::with_capacity(1 << 20, file)))
}

/// Writes the CSV file. Returns the number of data rows.
pub fn generate(out: &Path, spec: &TransactionSpec) -> Result<u64, GenError> {
    spec.check()?;
    let mut writer = create_csv(out)?;
    let io = |source| GenError::Io {
        path: out.to_path_buf(),
        source,
    };
    let csv_error = |e: csv::Error| GenError::Io {
        path: out.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    };

    writer.write_record(HEADER.split(',')).map_err(csv_error)?;
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let span_days = (spec.to - spec.from).num_days().max(0) as u64;
    let per_account = spec.rows.div_ceil(spec.accounts as u64).max(1);
    let mut balance: i64 = 0;
    let mut fields: Vec<Vec<u8>> = Vec::with_capacity(12);
    for row in 0..spec.rows {
        let account_index = row / per_account;
        let position = row % per_account;
        if position == 0 {
            balance = rng.random_range(1_000_000..100_000_000);
        }
        let account = format!("{}'", 409_000_611_074u64 + account_index * 1_000_003);
        let date = spec.from + Duration::days((position * (span_days + 1) / per_account) as i64);
        let value_date = if rng.random_bool(0.1) {
            date + Duration::days(rng.random_range(1..3))
        } else {
            date
        };
        let iso = rng.random_bool(0.05);
        let (currency, decimals) = if rng.random_bool(0.8) {
            ("INR", 2)
        } else {
            TXN_CURRENCIES[rng.random_range(0..TXN_CURRENCIES.len())]
        };
        let magnitude = rng.random_range(1..7);
        let minor =
            rng.random_range(1..10u64.pow(magnitude)) * 10u64.pow(decimals as u32) / 100 + 1;
        let amount = amount_text(&mut rng, minor, decimals);
        let deposit = rng.random_bool(0.5);
        balance += if deposit {
            minor as i64
        } else {
            -(minor as i64)
        };
        let details = DETAILS[rng.random_range(0..DETAILS.len())];
        let chq = if rng.random_bool(0.05) {
            rng.random_range(100_000..999_999).to_string()
        } else {
            String::new()
        };
        let balance_text = cents_text(balance);

        Row {
            account: &account,
            date,
            value_date,
            iso,
            details,
            chq: &chq,
            deposit,
            amount: &amount,
            currency,
            balance: &balance_text,
        }
        .fill(&mut fields);

        if spec.dirty > 0.0 && rng.random_bool(spec.dirty) {
            spoil(&mut fields, &mut rng, deposit);
        } else if rng.random_bool(0.03) {
            // Excel drops trailing empty cells.
            fields[9] = Vec::new();
            while fields.last().is_some_and(|f| f.is_empty()) {
                fields.pop();
            }
        }
        writer.write_record(&fields).map_err(csv_error)?;
    }
    writer.flush().map_err(io)?;
    Ok(spec.rows)
}
