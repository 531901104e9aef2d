//! `fxpipe ingest`: daily rates from a [`RateSource`] into the rates table, failures into the
//! errors table.
//!
//! Rates are stored as the source gives them (`rates_base_usd`, units per USD, exact) and as
//! the original's `rates_base_sgd` (units per 1 unit of the base currency, rounded to 18
//! decimals, for Athena queries that use it). Conversion itself always uses the exact USD rates.
//! Re-ingesting a date replaces that date's rows in one commit; a date that fails now keeps any
//! rates an earlier run stored for it.

pub mod ecb;
pub mod oer;
pub mod source;

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Decimal128Array, Int32Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::{Datelike, NaiveDate};
use datafusion::logical_expr::{col, lit, Expr};
use datafusion::scalar::ScalarValue;
use tracing::{info, warn};

pub use source::{FetchError, RateSource};

use crate::engine::Engine;
use crate::money::{self, PRECISION, RATE_SCALE};
use crate::report::{IngestFailure, IngestReport};
use crate::storage::delta::{self, WriteMode};
use crate::storage::{Lake, StorageError, Table};
use crate::transactions::timestamp_type;

/// Why an ingest run failed as a whole (a failed date is a `rates_errors` row, not this).
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Source(#[from] source::SourceError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("building the rates batch: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("query failed: {0}")]
    Query(#[from] datafusion::error::DataFusionError),
    #[error("--from {from} is after --to {to}")]
    EmptyRange { from: NaiveDate, to: NaiveDate },
}

/// The rates table (`api_response/response`), partitioned `year=YYYY/month=M`.
pub fn rates_schema() -> SchemaRef {
    let rate = DataType::Decimal128(PRECISION, RATE_SCALE);
    Arc::new(Schema::new(vec![
        Field::new("run_date", DataType::Date32, false),
        Field::new("target_currency", DataType::Utf8, false),
        Field::new("rates_base_usd", rate.clone(), false),
        Field::new("rates_base_sgd", rate, true),
        Field::new("base_currency", DataType::Utf8, false),
        Field::new("updated_at", timestamp_type(), false),
        Field::new("year", DataType::Int32, false),
        Field::new("month", DataType::Int32, false),
    ]))
}

/// The errors table (`error_temp_dir/error_error`): the source's error body per failed date.
pub fn errors_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("run_date", DataType::Date32, false),
        Field::new("error", DataType::Boolean, false),
        Field::new("status", DataType::Int32, false),
        Field::new("message", DataType::Utf8, false),
        Field::new("description", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("recorded_at", timestamp_type(), false),
    ]))
}

fn days_since_epoch(date: NaiveDate) -> i32 {
    (date - NaiveDate::default()).num_days() as i32
}

fn date_list(dates: &[NaiveDate]) -> Vec<Expr> {
    dates
        .iter()
        .map(|d| lit(ScalarValue::Date32(Some(days_since_epoch(*d)))))
        .collect()
}

#[derive(Default)]
struct RateRows {
    run_date: Vec<i32>,
    currency: Vec<String>,
    per_usd: Vec<i128>,
    per_base: Vec<Option<i128>>,
    year: Vec<i32>,
    month: Vec<i32>,
}

#[derive(Default)]
struct ErrorRows {
    run_date: Vec<i32>,
    status: Vec<i32>,
    message: Vec<String>,
    description: Vec<String>,
}

impl ErrorRows {
    fn push(&mut self, date: NaiveDate, error: &FetchError) {
        self.run_date.push(days_since_epoch(date));
        self.status.push(error.status);
        self.message.push(error.message.clone());
        self.description.push(error.description.clone());
    }
}

/// Fetches every date in `from..=to` and stores the rates relative to `base_currency`.
pub async fn ingest(
    engine: &Engine,
    lake: &Lake,
    source: &dyn RateSource,
    from: NaiveDate,
    to: NaiveDate,
    base_currency: &str,
) -> Result<IngestReport, IngestError> {
    if from > to {
        return Err(IngestError::EmptyRange { from, to });
    }
    let started = Instant::now();
    let now = chrono::Utc::now().timestamp_micros();
    let mut report = IngestReport {
        source: source.describe(),
        base_currency: base_currency.to_string(),
        ..Default::default()
    };
    let mut rows = RateRows::default();
    let mut errors = ErrorRows::default();
    let mut succeeded = Vec::new();
    let mut attempted = Vec::new();
    for date in from.iter_days().take_while(|d| *d <= to) {
        attempted.push(date);
        report.dates_requested += 1;
        let day = source.fetch(date).await.and_then(|day| {
            if day.base != "USD" {
                return Err(FetchError::new(
                    0,
                    "invalid_base",
                    format!("rates are based on {}, expected USD", day.base),
                ));
            }
            Ok(day)
        });
        match day {
            Ok(day) => {
                // Without a base rate the day's USD rates are still stored (normalize uses
                // those, and may reach this day from a later one); only `rates_base_sgd` is
                // unknown, and the gap is recorded.
                let base_rate = day.rates.get(base_currency).copied();
                if base_rate.is_none() {
                    let error = FetchError::new(
                        0,
                        "base_currency_missing",
                        format!("no {base_currency} rate on this day"),
                    );
                    warn!(%date, base = base_currency, "no base-currency rate");
                    errors.push(date, &error);
                }
                for (code, why) in &day.invalid {
                    let error = FetchError::new(0, "invalid_rate", format!("{code}: {why}"));
                    warn!(%date, %code, %why, "rate skipped");
                    errors.push(date, &error);
                }
                for (code, per_usd) in &day.rates {
                    rows.run_date.push(days_since_epoch(date));
                    rows.currency.push(code.clone());
                    rows.per_usd.push(*per_usd);
                    rows.per_base.push(base_rate.and_then(|base| {
                        money::convert_to_scale(
                            (*per_usd, RATE_SCALE),
                            (1, 0),
                            (base, RATE_SCALE),
                            RATE_SCALE,
                        )
                    }));
                    rows.year.push(date.year());
                    rows.month.push(date.month() as i32);
                }
                report.rate_rows += day.rates.len() as u64;
                report.dates_ingested += 1;
                succeeded.push(date);
            }
            Err(error) => {
                warn!(%date, status = error.status, message = %error.message, "no rates");
                report.failures.push(IngestFailure {
                    date: date.to_string(),
                    status: error.status,
                    message: error.message.clone(),
                });
                errors.push(date, &error);
            }
        }
    }

    let ctx = engine.ctx();
    if !succeeded.is_empty() {
        let n = rows.run_date.len();
        let rate_array = |values: Vec<Option<i128>>| -> Result<ArrayRef, arrow::error::ArrowError> {
            Ok(Arc::new(
                Decimal128Array::from(values).with_precision_and_scale(PRECISION, RATE_SCALE)?,
            ))
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Date32Array::from(rows.run_date)),
            Arc::new(StringArray::from(rows.currency)),
            rate_array(rows.per_usd.into_iter().map(Some).collect())?,
            rate_array(rows.per_base)?,
            Arc::new(StringArray::from(vec![base_currency; n])),
            Arc::new(TimestampMicrosecondArray::from(vec![now; n]).with_timezone("UTC")),
            Arc::new(Int32Array::from(rows.year)),
            Arc::new(Int32Array::from(rows.month)),
        ];
        let batch = RecordBatch::try_new(rates_schema(), columns)?;
        let plan = ctx.read_batch(batch)?.into_unoptimized_plan();
        let predicate = col("run_date").in_list(date_list(&succeeded), false);
        let table = delta::write(
            lake,
            Table::Rates,
            engine.session(),
            plan,
            WriteMode::ReplaceWhere(predicate),
        )
        .await?;
        report.rates_version = table.version().map(|v| v as i64);
    }

    // The errors table holds the latest attempt per date: dates that succeeded now lose their
    // old error rows, dates that failed get this attempt's.
    let n = errors.run_date.len();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Date32Array::from(errors.run_date)),
        Arc::new(BooleanArray::from(vec![true; n])),
        Arc::new(Int32Array::from(errors.status)),
        Arc::new(StringArray::from(errors.message)),
        Arc::new(StringArray::from(errors.description)),
        Arc::new(StringArray::from(vec![report.source.clone(); n])),
        Arc::new(TimestampMicrosecondArray::from(vec![now; n]).with_timezone("UTC")),
    ];
    let batch = RecordBatch::try_new(errors_schema(), columns)?;
    let plan = ctx.read_batch(batch)?.into_unoptimized_plan();
    let predicate = col("run_date").in_list(date_list(&attempted), false);
    delta::write(
        lake,
        Table::RatesErrors,
        engine.session(),
        plan,
        WriteMode::ReplaceWhere(predicate),
    )
    .await?;
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    info!(
        dates = report.dates_ingested,
        failed = report.failures.len(),
        "ingested"
    );
    Ok(report)
}
