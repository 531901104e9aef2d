//! Streaming a bank-transactions CSV export into Arrow batches, row faults into rejects.
//!
//! Arrow's CSV reader fails a whole batch on one bad row and cannot say which line it was, so
//! rows are tokenised by csv-core (the tokenizer arrow uses) through [`super::records`], which
//! gives each record's line and gives up runaway records one line at a time, and appended to
//! Arrow builders a batch at a time. Memory is one batch of rows plus one batch of rejects,
//! whatever the file size; both go out as Arrow batches. A batch is also cut when its strings
//! pass [`BATCH_STRING_BYTES`], so no input can overflow Arrow's 32-bit string offsets.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::fields::{self, DecimalMark, DecimalSeparator};
use super::records::{self, GivenUp, Limits, Next, Record, RecordReader, Runaway};
use super::{rejects_schema, schema, RejectReason};
use crate::money::{AMOUNT_SCALE, PRECISION};
use arrow::array::{
    ArrayRef, Date32Builder, Decimal128Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};

/// Rows per Arrow batch.
pub const BATCH_ROWS: usize = 65_536;
/// A batch is cut early once its string columns hold this many bytes (256 MiB): Arrow's
/// `StringBuilder` panics past 2 GiB (`i32` offsets), which 65,536 rows of up to 1 MiB each
/// could otherwise reach.
pub const BATCH_STRING_BYTES: usize = 256 << 20;

/// A file that cannot be read at all (row faults are rejects, not errors).
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: the header line cannot be read: {detail}")]
    BadHeader { path: PathBuf, detail: String },
    #[error("{path}: the header has no column {column:?} (found: {found})")]
    MissingColumn {
        path: PathBuf,
        column: &'static str,
        found: String,
    },
    #[error("{path}: lines end with a lone carriage return (classic Mac CSV); convert the file to LF or CRLF line ends first (e.g. `tr '\\r' '\\n'`)")]
    CrLineEnds { path: PathBuf },
    #[error("{path}: the file is empty (no header line)")]
    NoHeader { path: PathBuf },
    #[error("{path}: building a batch: {source}")]
    Arrow {
        path: PathBuf,
        source: arrow::error::ArrowError,
    },
}

/// What happened to the rows of one file. `rows_read == rows_loaded + rows_rejected` always.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LoadCounts {
    pub rows_read: u64,
    pub rows_loaded: u64,
    pub rows_rejected: u64,
    pub rejected_by_reason: BTreeMap<RejectReason, u64>,
}

/// Column positions found in the header (names compared trimmed, case-insensitively, with
/// spaces as underscores: ` WITHDRAWAL AMT ` is `withdrawal_amt`).
#[derive(Debug, Clone)]
struct Columns {
    account_no: usize,
    date: usize,
    transaction_details: Option<usize>,
    chq_no: Option<usize>,
    value_date: usize,
    withdrawal_amt: usize,
    withdrawal_currency: usize,
    deposit_amt: usize,
    deposit_currency: usize,
    balance_amt: Option<usize>,
    width: usize,
}

fn normalise_header(name: &[u8]) -> String {
    let text = String::from_utf8_lossy(name);
    let text = text
        .trim_start_matches('\u{feff}')
        .trim()
        .to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let c = if c == ' ' || c == '-' || c == '.' && !out.is_empty() {
            '_'
        } else {
            c
        };
        if !(c == '_' && out.ends_with('_')) {
            out.push(c);
        }
    }
    out.trim_matches('_').to_string()
}

impl Columns {
    fn from_header(header: &Record, path: &Path) -> Result<Self, CsvError> {
        let names: Vec<String> = header.iter().map(normalise_header).collect();
        let find = |column: &'static str| names.iter().position(|n| n == column);
        let require = |column: &'static str| {
            find(column).ok_or_else(|| CsvError::MissingColumn {
                path: path.to_path_buf(),
                column,
                found: names.join(","),
            })
        };
        Ok(Self {
            account_no: require("account_no")?,
            date: require("date")?,
            transaction_details: find("transaction_details"),
            chq_no: find("chq_no"),
            value_date: require("value_date")?,
            withdrawal_amt: require("withdrawal_amt")?,
            withdrawal_currency: require("withdrawal_currency")?,
            deposit_amt: require("deposit_amt")?,
            deposit_currency: require("deposit_currency")?,
            balance_amt: find("balance_amt"),
            width: header.len(),
        })
    }
}

/// A row fault: which field, which kind, and what was wrong.
struct Fault {
    field: Option<&'static str>,
    reason: RejectReason,
    detail: String,
}

impl Fault {
    fn new(field: &'static str, reason: RejectReason, detail: impl Into<String>) -> Self {
        Self {
            field: Some(field),
            reason,
            detail: detail.into(),
        }
    }
}

/// Builders for one batch of loaded rows.
struct RowBuilders {
    account_no: StringBuilder,
    date: Date32Builder,
    details: StringBuilder,
    chq_no: StringBuilder,
    value_date: Date32Builder,
    withdrawal_amt: Decimal128Builder,
    withdrawal_currency: StringBuilder,
    deposit_amt: Decimal128Builder,
    deposit_currency: StringBuilder,
    balance_amt: Decimal128Builder,
    source_line: Int64Builder,
    rows: usize,
}

fn amount_builder() -> Decimal128Builder {
    Decimal128Builder::with_capacity(BATCH_ROWS)
        .with_precision_and_scale(PRECISION, AMOUNT_SCALE)
        .unwrap_or_else(|_| Decimal128Builder::new())
}

impl RowBuilders {
    fn new() -> Self {
        Self {
            account_no: StringBuilder::new(),
            date: Date32Builder::with_capacity(BATCH_ROWS),
            details: StringBuilder::new(),
            chq_no: StringBuilder::new(),
            value_date: Date32Builder::with_capacity(BATCH_ROWS),
            withdrawal_amt: amount_builder(),
            withdrawal_currency: StringBuilder::new(),
            deposit_amt: amount_builder(),
            deposit_currency: StringBuilder::new(),
            balance_amt: amount_builder(),
            source_line: Int64Builder::with_capacity(BATCH_ROWS),
            rows: 0,
        }
    }

    /// Bytes in this batch's string columns, `source_file` included.
    fn string_bytes(&self, source_file: &str) -> usize {
        [
            &self.account_no,
            &self.details,
            &self.chq_no,
            &self.withdrawal_currency,
            &self.deposit_currency,
        ]
        .iter()
        .map(|b| b.values_slice().len())
        .sum::<usize>()
            + self.rows * source_file.len()
    }

    fn is_full(&self, source_file: &str, string_bytes: usize) -> bool {
        self.rows >= BATCH_ROWS || self.string_bytes(source_file) >= string_bytes
    }

    fn finish(&mut self, source_file: &str) -> Result<RecordBatch, arrow::error::ArrowError> {
        let rows = std::mem::take(&mut self.rows);
        let source: ArrayRef = Arc::new(arrow::array::StringArray::from_iter_values(
            std::iter::repeat_n(source_file, rows),
        ));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.account_no.finish()),
            Arc::new(self.date.finish()),
            Arc::new(self.details.finish()),
            Arc::new(self.chq_no.finish()),
            Arc::new(self.value_date.finish()),
            Arc::new(self.withdrawal_amt.finish()),
            Arc::new(self.withdrawal_currency.finish()),
            Arc::new(self.deposit_amt.finish()),
            Arc::new(self.deposit_currency.finish()),
            Arc::new(self.balance_amt.finish()),
            source,
            Arc::new(self.source_line.finish()),
        ];
        RecordBatch::try_new(schema(), columns)
    }
}

/// Rejected rows, handed out as batches of the rejects table (written like the rows, so
/// nothing touches a local disk).
struct RejectBuilders {
    source_file: String,
    rejected_at: i64,
    line: Int64Builder,
    field: StringBuilder,
    reason: StringBuilder,
    detail: StringBuilder,
    raw: StringBuilder,
    rows: usize,
}

impl RejectBuilders {
    fn new(source_file: &str) -> Self {
        Self {
            source_file: source_file.to_string(),
            rejected_at: chrono::Utc::now().timestamp_micros(),
            line: Int64Builder::new(),
            field: StringBuilder::new(),
            reason: StringBuilder::new(),
            detail: StringBuilder::new(),
            raw: StringBuilder::new(),
            rows: 0,
        }
    }

    fn push(&mut self, line: u64, fault: &Fault, raw: &str) {
        self.line.append_value(line as i64);
        self.field.append_option(fault.field);
        self.reason.append_value(fault.reason.code());
        self.detail.append_value(&fault.detail);
        self.raw.append_value(raw);
        self.rows += 1;
    }

    fn is_full(&self, string_bytes: usize) -> bool {
        let bytes = [&self.field, &self.reason, &self.detail, &self.raw]
            .iter()
            .map(|b| b.values_slice().len())
            .sum::<usize>()
            + self.rows * self.source_file.len();
        self.rows >= BATCH_ROWS || bytes >= string_bytes
    }

    fn finish(&mut self) -> Result<RecordBatch, arrow::error::ArrowError> {
        let rows = std::mem::take(&mut self.rows);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(arrow::array::StringArray::from_iter_values(
                std::iter::repeat_n(self.source_file.as_str(), rows),
            )),
            Arc::new(self.line.finish()),
            Arc::new(self.field.finish()),
            Arc::new(self.reason.finish()),
            Arc::new(self.detail.finish()),
            Arc::new(self.raw.finish()),
            Arc::new(
                TimestampMicrosecondBuilder::new()
                    .with_timezone("UTC")
                    .finish_with_values(rows, self.rejected_at),
            ),
        ];
        RecordBatch::try_new(rejects_schema(), columns)
    }
}

trait FinishWithValues {
    fn finish_with_values(self, rows: usize, value: i64)
        -> arrow::array::TimestampMicrosecondArray;
}

impl FinishWithValues for TimestampMicrosecondBuilder {
    fn finish_with_values(
        mut self,
        rows: usize,
        value: i64,
    ) -> arrow::array::TimestampMicrosecondArray {
        self.append_slice(&vec![value; rows]);
        self.finish()
    }
}

/// The last date text seen and its value: exports are sorted by date, so most rows repeat it.
#[derive(Debug, Default)]
struct DateMemo {
    text: String,
    days: Option<i32>,
}

impl DateMemo {
    fn parse(&mut self, text: &str) -> Option<i32> {
        if self.text != text {
            self.text.clear();
            self.text.push_str(text);
            self.days = fields::date(text);
        }
        self.days
    }
}

/// Reads one CSV export batch by batch.
pub struct TransactionCsv {
    path: PathBuf,
    source_file: String,
    reader: RecordReader<Box<dyn Read + Send>>,
    columns: Columns,
    decimals: DecimalMark,
    /// The comma mark came from `auto` (a `;` file), not from the user: amounts it cannot
    /// tell from point-decimal ones are refused.
    decimals_guessed: bool,
    record: Record,
    builders: RowBuilders,
    rejects: RejectBuilders,
    counts: LoadCounts,
    dates: DateMemo,
    finished: bool,
    limits: Limits,
    /// Where a batch is cut by its string bytes ([`BATCH_STRING_BYTES`]; tests use less).
    batch_string_bytes: usize,
}

impl std::fmt::Debug for TransactionCsv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionCsv")
            .field("path", &self.path)
            .finish()
    }
}

/// What [`TransactionCsv::next_batch`] hands out: loaded rows for the transactions table, or
/// rejected rows for the rejects table.
#[derive(Debug)]
pub enum CsvBatch {
    Rows(RecordBatch),
    Rejects(RecordBatch),
}

impl TransactionCsv {
    /// Reads the header of an export from any byte stream (a local file, an object store
    /// download, a hashing wrapper). `path` names the input in errors; `source_file` is the
    /// identity recorded on each row. `decimals` says how amounts write their decimals.
    pub fn new(
        input: impl Read + Send + 'static,
        path: &Path,
        source_file: &str,
        decimals: DecimalSeparator,
    ) -> Result<Self, CsvError> {
        Self::with_limits(input, path, source_file, decimals, Limits::default())
    }

    /// [`TransactionCsv::new`] with other record limits (tests use small ones).
    pub fn with_limits(
        input: impl Read + Send + 'static,
        path: &Path,
        source_file: &str,
        decimals: DecimalSeparator,
        limits: Limits,
    ) -> Result<Self, CsvError> {
        let io = |source| CsvError::Io {
            path: path.to_path_buf(),
            source,
        };
        let input: Box<dyn Read + Send> = Box::new(input);
        let mut reader = RecordReader::new(input, limits);
        let head = reader.head().map_err(io)?;
        let delimiter = sniff_delimiter(head);
        // Lines ended by a lone CR (classic Mac "CSV (Macintosh)") would make every line
        // count, limit and resync of the reader wrong; refuse them instead of guessing.
        if head.contains(&b'\r') && !head.contains(&b'\n') {
            return Err(CsvError::CrLineEnds {
                path: path.to_path_buf(),
            });
        }
        reader.set_delimiter(delimiter);
        let mut header = Record::default();
        match reader.read(&mut header).map_err(io)? {
            Next::Record => {}
            Next::End => {
                return Err(CsvError::NoHeader {
                    path: path.to_path_buf(),
                })
            }
            Next::GivenUp(given_up) => {
                return Err(CsvError::BadHeader {
                    path: path.to_path_buf(),
                    detail: runaway_detail(&given_up, &limits),
                })
            }
        }
        let columns = Columns::from_header(&header, path)?;
        Ok(Self {
            path: path.to_path_buf(),
            source_file: source_file.to_string(),
            reader,
            columns,
            decimals: decimals.resolve(delimiter),
            decimals_guessed: decimals == DecimalSeparator::Auto
                && decimals.resolve(delimiter) == DecimalMark::Comma,
            record: Record::default(),
            builders: RowBuilders::new(),
            rejects: RejectBuilders::new(source_file),
            counts: LoadCounts::default(),
            dates: DateMemo::default(),
            finished: false,
            limits,
            batch_string_bytes: BATCH_STRING_BYTES,
        })
    }

    /// The next batch of loaded or rejected rows; `None` once the whole input was read (so a
    /// caller that sees `None` has consumed every byte of it).
    pub fn next_batch(&mut self) -> Result<Option<CsvBatch>, CsvError> {
        while !self.finished {
            let next = self
                .reader
                .read(&mut self.record)
                .map_err(|source| CsvError::Io {
                    path: self.path.clone(),
                    source,
                })?;
            match next {
                Next::End => {
                    self.finished = true;
                    break;
                }
                Next::Record => {
                    self.counts.rows_read += 1;
                    match self.append_row() {
                        Ok(()) => self.counts.rows_loaded += 1,
                        Err(fault) => {
                            let raw = raw_line(&self.record);
                            let raw = capped(&raw, raw.len() as u64);
                            self.reject(self.record.line(), &fault, &raw);
                        }
                    }
                }
                Next::GivenUp(given_up) => {
                    self.counts.rows_read += 1;
                    let fault = Fault {
                        field: None,
                        reason: match given_up.why {
                            Runaway::TooManyBytes | Runaway::TooManyLines => {
                                RejectReason::RecordTooLong
                            }
                            Runaway::QuoteNeverClosed | Runaway::QuoteClosedInsideAField => {
                                RejectReason::UnterminatedQuote
                            }
                        },
                        detail: runaway_detail(&given_up, &self.limits),
                    };
                    let raw = String::from_utf8_lossy(&given_up.raw);
                    let raw = capped(&raw, given_up.line_bytes);
                    self.reject(given_up.first_line, &fault, &raw);
                }
            }
            if self
                .builders
                .is_full(&self.source_file, self.batch_string_bytes)
            {
                return self.finish_rows().map(Some);
            }
            if self.rejects.is_full(self.batch_string_bytes) {
                return self.finish_rejects().map(Some);
            }
        }
        if self.builders.rows > 0 {
            return self.finish_rows().map(Some);
        }
        if self.rejects.rows > 0 {
            return self.finish_rejects().map(Some);
        }
        Ok(None)
    }

    fn reject(&mut self, line: u64, fault: &Fault, raw: &str) {
        self.counts.rows_rejected += 1;
        *self
            .counts
            .rejected_by_reason
            .entry(fault.reason)
            .or_default() += 1;
        self.rejects.push(line, fault, raw);
    }

    fn finish_rows(&mut self) -> Result<CsvBatch, CsvError> {
        self.builders
            .finish(&self.source_file)
            .map(CsvBatch::Rows)
            .map_err(|source| CsvError::Arrow {
                path: self.path.clone(),
                source,
            })
    }

    fn finish_rejects(&mut self) -> Result<CsvBatch, CsvError> {
        self.rejects
            .finish()
            .map(CsvBatch::Rejects)
            .map_err(|source| CsvError::Arrow {
                path: self.path.clone(),
                source,
            })
    }

    /// The decimal mark amounts are read with (resolved from `auto`): part of what a load of
    /// this content means, so a re-load with another mark is not "the same content".
    pub fn decimal_mark(&self) -> DecimalMark {
        self.decimals
    }

    /// Whether the comma mark was guessed by `auto` (see [`Self::decimal_mark`]).
    pub fn decimal_mark_guessed(&self) -> bool {
        self.decimals_guessed
    }

    /// The counts of the rows read so far (all of them once `next_batch` returned `None`).
    pub fn counts(&self) -> &LoadCounts {
        &self.counts
    }

    /// Validates the current record and appends it to the builders, or says why not. Nothing
    /// is appended unless every field is valid.
    fn append_row(&mut self) -> Result<(), Fault> {
        let record = &self.record;
        let cols = &self.columns;
        if record.len() > cols.width
            && record
                .iter()
                .skip(cols.width)
                .any(|f| !f.iter().all(u8::is_ascii_whitespace))
        {
            return Err(Fault {
                field: None,
                reason: RejectReason::MalformedRow,
                detail: format!(
                    "{} fields, the header has {} columns",
                    record.len(),
                    cols.width
                ),
            });
        }
        // One UTF-8 check for the whole row (the common case); per field only to name the
        // field of a row that fails it.
        let whole = std::str::from_utf8(record.as_slice()).ok();
        // Excel drops trailing empty cells: a missing field is an empty one.
        let text = |index: usize, name: &'static str| -> Result<&str, Fault> {
            if let (Some(whole), Some(range)) = (whole, record.range(index)) {
                return whole.get(range).ok_or_else(|| {
                    Fault::new(
                        name,
                        RejectReason::InvalidUtf8,
                        "the field is not valid UTF-8",
                    )
                });
            }
            let bytes = record.get(index).unwrap_or(b"");
            std::str::from_utf8(bytes).map_err(|_| {
                Fault::new(
                    name,
                    RejectReason::InvalidUtf8,
                    "the field is not valid UTF-8",
                )
            })
        };
        let optional = |index: Option<usize>, name: &'static str| -> Result<Option<&str>, Fault> {
            match index {
                Some(i) => text(i, name).map(|t| {
                    let t = t.trim();
                    (!t.is_empty()).then_some(t)
                }),
                None => Ok(None),
            }
        };
        let account_text = text(cols.account_no, "account_no")?;
        let account = fields::account(account_text).ok_or_else(|| {
            Fault::new(
                "account_no",
                RejectReason::MissingAccount,
                "no account number",
            )
        })?;
        let memo = &mut self.dates;
        let mut date_field = |index: usize, name: &'static str| -> Result<i32, Fault> {
            let t = text(index, name)?;
            memo.parse(t).ok_or_else(|| {
                Fault::new(
                    name,
                    RejectReason::BadDate,
                    format!(
                        "{} is not a date (expected 29-Jun-17 or 2017-06-29)",
                        fields::quoted(t)
                    ),
                )
            })
        };
        let date = date_field(cols.date, "date")?;
        let value_date = date_field(cols.value_date, "value_date")?;
        let decimals = self.decimals;
        let guessed = self.decimals_guessed;
        let money_field =
            |index: usize, name: &'static str, signed: bool| -> Result<Option<i128>, Fault> {
                let t = text(index, name)?;
                let value = fields::amount(t, decimals)
                    .map_err(|e| Fault::new(name, RejectReason::BadAmount, e.to_string()))?;
                if guessed && fields::point_thousands_only(t) {
                    return Err(Fault::new(
                        name,
                        RejectReason::BadAmount,
                        format!(
                            "{} is ambiguous: comma decimals were assumed for this ;-delimited \
                             file, but it could also be a point-decimal amount; load with \
                             --decimal-separator , or --decimal-separator .",
                            fields::quoted(t.trim())
                        ),
                    ));
                }
                if !signed && value.is_some_and(|v| v < 0) {
                    return Err(Fault::new(
                        name,
                        RejectReason::NegativeAmount,
                        format!("{} is negative", fields::quoted(t.trim())),
                    ));
                }
                Ok(value)
            };
        let currency_field = |index: usize, name: &'static str| -> Result<Option<String>, Fault> {
            let t = text(index, name)?;
            fields::currency(t).map_err(|_| {
                Fault::new(
                    name,
                    RejectReason::BadCurrency,
                    format!(
                        "{} is not a three-letter currency code",
                        fields::quoted(t.trim())
                    ),
                )
            })
        };
        let withdrawal = money_field(cols.withdrawal_amt, "withdrawal_amt", false)?;
        let withdrawal_currency = currency_field(cols.withdrawal_currency, "withdrawal_currency")?;
        let deposit = money_field(cols.deposit_amt, "deposit_amt", false)?;
        let deposit_currency = currency_field(cols.deposit_currency, "deposit_currency")?;
        let balance = match cols.balance_amt {
            Some(i) => money_field(i, "balance_amt", true)?,
            None => None,
        };
        pair_check(
            withdrawal,
            &withdrawal_currency,
            "withdrawal_amt",
            "withdrawal_currency",
        )?;
        pair_check(
            deposit,
            &deposit_currency,
            "deposit_amt",
            "deposit_currency",
        )?;
        if withdrawal.is_none() && deposit.is_none() {
            return Err(Fault {
                field: None,
                reason: RejectReason::NoAmount,
                detail: "neither a withdrawal nor a deposit".to_string(),
            });
        }
        let details = optional(cols.transaction_details, "transaction_details")?;
        let chq_no = optional(cols.chq_no, "chq_no")?;

        let b = &mut self.builders;
        b.account_no.append_value(account);
        b.date.append_value(date);
        b.details.append_option(details);
        b.chq_no.append_option(chq_no);
        b.value_date.append_value(value_date);
        b.withdrawal_amt.append_option(withdrawal);
        b.withdrawal_currency.append_option(withdrawal_currency);
        b.deposit_amt.append_option(deposit);
        b.deposit_currency.append_option(deposit_currency);
        b.balance_amt.append_option(balance);
        b.source_line.append_value(self.record.line() as i64);
        b.rows += 1;
        Ok(())
    }
}

fn pair_check(
    amount: Option<i128>,
    currency: &Option<String>,
    amount_name: &'static str,
    currency_name: &'static str,
) -> Result<(), Fault> {
    match (amount, currency) {
        (Some(_), None) => Err(Fault::new(
            currency_name,
            RejectReason::AmountWithoutCurrency,
            format!("{amount_name} has no currency"),
        )),
        (None, Some(code)) => Err(Fault::new(
            amount_name,
            RejectReason::CurrencyWithoutAmount,
            format!("{currency_name} is {code} but {amount_name} is blank"),
        )),
        _ => Ok(()),
    }
}

/// The header line's delimiter: European Excel exports use `;`, some banks tabs or `|`.
fn sniff_delimiter(head: &[u8]) -> u8 {
    let line = head.split(|b| *b == b'\n').next().unwrap_or(head);
    [b',', b';', b'\t', b'|']
        .into_iter()
        .max_by_key(|d| (line.iter().filter(|b| *b == d).count(), *d == b','))
        .unwrap_or(b',')
}

/// The record as CSV text (re-quoted where needed), for the rejects table.
fn raw_line(record: &Record) -> String {
    let mut writer = csv::WriterBuilder::new()
        .flexible(true)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    let bytes = match writer.write_record(record.iter()) {
        Ok(()) => writer.into_inner().unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    String::from_utf8_lossy(&bytes)
        .trim_end_matches('\n')
        .to_string()
}

/// At most [`records::RAW_BYTES`] of a reject's raw text (cut at a character boundary), with a
/// note of the full length when cut; `full_bytes` is the length of the text it came from.
fn capped(raw: &str, full_bytes: u64) -> String {
    if full_bytes <= records::RAW_BYTES as u64 && raw.len() <= records::RAW_BYTES {
        return raw.to_string();
    }
    let mut end = raw.len().min(records::RAW_BYTES);
    while !raw.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [cut: {full_bytes} bytes in all]", &raw[..end])
}

/// What a given-up record's reject says: the lines involved and where reading went on.
fn runaway_detail(given_up: &GivenUp, limits: &Limits) -> String {
    let GivenUp {
        first_line,
        last_line,
        ..
    } = given_up;
    let what = match given_up.why {
        Runaway::TooManyBytes => format!(
            "the record starting on line {first_line} is longer than {} bytes \
             (given up on line {last_line})",
            limits.max_bytes
        ),
        Runaway::TooManyLines => format!(
            "the record starting on line {first_line} runs past line {last_line} \
             (a record may span at most {} lines)",
            limits.max_lines
        ),
        Runaway::QuoteNeverClosed => format!(
            "a quote opened in the record starting on line {first_line} is never closed \
             (the file ends on line {last_line})"
        ),
        Runaway::QuoteClosedInsideAField => format!(
            "a quote opened in the record starting on line {first_line} closes on line \
             {last_line} in the middle of a field"
        ),
    };
    format!(
        "{what}; only line {first_line} is rejected, reading goes on at line {}",
        first_line + 1
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_the_header_delimiter() {
        assert_eq!(sniff_delimiter(b"account_no,date,value_date\n1;2"), b',');
        assert_eq!(sniff_delimiter(b"account_no;date;value_date\n"), b';');
        assert_eq!(sniff_delimiter(b"account_no\tdate\tvalue_date"), b'\t');
        assert_eq!(sniff_delimiter(b""), b',');
    }

    /// Every batch of a CSV read with batches cut at `string_bytes`: (rows or rejects, count).
    fn batches(csv: String, string_bytes: usize) -> Vec<(&'static str, usize)> {
        let mut reader = TransactionCsv::new(
            std::io::Cursor::new(csv.into_bytes()),
            Path::new("t.csv"),
            "t.csv",
            DecimalSeparator::Auto,
        )
        .unwrap();
        reader.batch_string_bytes = string_bytes;
        let mut out = Vec::new();
        while let Some(batch) = reader.next_batch().unwrap() {
            out.push(match batch {
                CsvBatch::Rows(b) => ("rows", b.num_rows()),
                CsvBatch::Rejects(b) => ("rejects", b.num_rows()),
            });
        }
        out
    }

    #[test]
    fn batches_are_cut_by_their_string_bytes() {
        let header = "account_no,date,transaction_details,chq_no,value_date,withdrawal_amt,withdrawal_currency,deposit_amt,deposit_currency,balance_amt\n";
        let details = "d".repeat(1000);
        let mut csv = header.to_string();
        for _ in 0..10 {
            csv.push_str(&format!("A,29-Jun-17,{details},,29-Jun-17,1,INR,,,\n"));
        }
        for _ in 0..10 {
            csv.push_str(&format!("A,29-Jun-17,{details},,bad date,1,INR,,,\n"));
        }
        // About 1 KB of strings per row or reject: cut at 3 KB, batches of 3 and a rest.
        let cut = batches(csv.clone(), 3000);
        let rows: Vec<usize> = cut.iter().filter(|b| b.0 == "rows").map(|b| b.1).collect();
        let rejects: Vec<usize> = cut
            .iter()
            .filter(|b| b.0 == "rejects")
            .map(|b| b.1)
            .collect();
        assert_eq!(rows, [3, 3, 3, 1]);
        assert_eq!(rejects, [3, 3, 3, 1]);
        // With the real threshold, one batch of each.
        assert_eq!(
            batches(csv, BATCH_STRING_BYTES),
            [("rows", 10), ("rejects", 10)]
        );
    }

    #[test]
    fn header_names_are_normalised() {
        assert_eq!(normalise_header(b" WITHDRAWAL AMT "), "withdrawal_amt");
        assert_eq!(
            normalise_header("\u{feff}Account No".as_bytes()),
            "account_no"
        );
        assert_eq!(normalise_header(b"BALANCE AMT."), "balance_amt");
        assert_eq!(normalise_header(b"."), ".");
    }
}
