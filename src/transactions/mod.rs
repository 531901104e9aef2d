//! Bank transactions: the typed table and reading raw CSV exports into it.

pub mod csv;
pub mod fields;
pub mod records;

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::money::{AMOUNT_SCALE, PRECISION};

fn amount_type() -> DataType {
    DataType::Decimal128(PRECISION, AMOUNT_SCALE)
}

/// Timestamps are UTC microseconds: Delta's plain `timestamp` type (no table feature needed).
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The typed transactions table (`banktxn/parquet`): the original CSV columns, typed, plus where
/// each row came from.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("account_no", DataType::Utf8, false),
        Field::new("date", DataType::Date32, false),
        Field::new("transaction_details", DataType::Utf8, true),
        Field::new("chq_no", DataType::Utf8, true),
        Field::new("value_date", DataType::Date32, false),
        Field::new("withdrawal_amt", amount_type(), true),
        Field::new("withdrawal_currency", DataType::Utf8, true),
        Field::new("deposit_amt", amount_type(), true),
        Field::new("deposit_currency", DataType::Utf8, true),
        Field::new("balance_amt", amount_type(), true),
        Field::new("source_file", DataType::Utf8, false),
        Field::new("source_line", DataType::Int64, false),
    ]))
}

/// The rejects table (`banktxn/rejects`): input rows that were not loaded, and why.
pub fn rejects_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("source_file", DataType::Utf8, false),
        Field::new("source_line", DataType::Int64, false),
        Field::new("field", DataType::Utf8, true),
        Field::new("reason", DataType::Utf8, false),
        Field::new("detail", DataType::Utf8, false),
        Field::new("raw", DataType::Utf8, false),
        Field::new("rejected_at", timestamp_type(), false),
    ]))
}

/// The loads table (`banktxn/loads`): one row per source file loaded.
pub fn loads_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("source_file", DataType::Utf8, false),
        Field::new("source_hash", DataType::Utf8, false),
        Field::new("rows_read", DataType::Int64, false),
        Field::new("rows_loaded", DataType::Int64, false),
        Field::new("rows_rejected", DataType::Int64, false),
        Field::new("loaded_at", timestamp_type(), false),
        // The decimal mark amounts were read with (`.`, `,`, or `auto(,)` when `auto` guessed
        // comma decimals and refused ambiguous amounts): with the hash, what makes two
        // loads "the same content" (a re-load with the other mark reads other amounts).
        Field::new("decimal_separator", DataType::Utf8, false),
        // What the file looked like when it was read, without reading it (size and
        // modification time, or size and ETag on S3, and the decimal option asked for): a
        // later load skips the path unread while it still looks the same. Null in rows of
        // lakes written before fxpipe recorded it.
        Field::new("source_stamp", DataType::Utf8, true),
    ]))
}

/// Why a row was rejected: a stable code (for SQL over the rejects table) per kind of fault.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// More non-empty fields than the header has columns, or unreadable CSV.
    MalformedRow,
    /// Text that is not UTF-8.
    InvalidUtf8,
    MissingAccount,
    BadDate,
    BadAmount,
    NegativeAmount,
    BadCurrency,
    AmountWithoutCurrency,
    CurrencyWithoutAmount,
    /// Neither a withdrawal nor a deposit.
    NoAmount,
    /// A record longer than the loader's limits (1 MiB, or 100 lines), usually a runaway
    /// quote: only its first line is rejected, the lines after it are read as rows of their own.
    RecordTooLong,
    /// A quote that never closes, or closes on a later line in the middle of a field: only the
    /// line it opened on is rejected, the lines after it are read as rows of their own.
    UnterminatedQuote,
}

impl RejectReason {
    pub fn code(self) -> &'static str {
        match self {
            RejectReason::MalformedRow => "malformed_row",
            RejectReason::InvalidUtf8 => "invalid_utf8",
            RejectReason::MissingAccount => "missing_account",
            RejectReason::BadDate => "bad_date",
            RejectReason::BadAmount => "bad_amount",
            RejectReason::NegativeAmount => "negative_amount",
            RejectReason::BadCurrency => "bad_currency",
            RejectReason::AmountWithoutCurrency => "amount_without_currency",
            RejectReason::CurrencyWithoutAmount => "currency_without_amount",
            RejectReason::NoAmount => "no_amount",
            RejectReason::RecordTooLong => "record_too_long",
            RejectReason::UnterminatedQuote => "unterminated_quote",
        }
    }
}
