//! `fxpipe ingest`: daily rates from a [`RateSource`] into the rates table, failures into the
//! errors table.
//!
//! Rates are stored as the source gives them (`rates_base_usd`, units per USD, exact) and as
//! the original's `rates_base_sgd` (units per 1 unit of the base currency, rounded to 18
//! decimals, for Athena queries that use it). Conversion itself always uses the exact USD rates.
//! Re-ingesting a date replaces that date's rows in one commit; a date that fails now keeps any
//! rates an earlier run stored for it.

pub mod daemon;
pub mod ecb;
pub mod key;
pub mod oer;
pub mod oxr;
pub mod source;

use std::sync::Arc;
use std::time::Instant;

use arrow::array::AsArray;
use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Decimal128Array, Int32Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Date32Type, Field, Schema, SchemaRef};
use chrono::{Datelike, NaiveDate};
use datafusion::logical_expr::{col, lit, Expr};
use datafusion::scalar::ScalarValue;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_util::sync::CancellationToken;
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
    #[error("{0}")]
    Options(String),
}

const STORED_DATES_SQL: &str = include_str!("../../sql/ingest_stored_dates.sql");
const LAST_STORED_DATE_SQL: &str = include_str!("../../sql/ingest_last_stored_date.sql");

/// What to fetch and how.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub base_currency: String,
    /// Fetch dates the rates table already holds, too.
    pub force: bool,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Requests started per second, at most.
    pub requests_per_second: f64,
    /// A commit after this many days, or after `batch_seconds`, whichever comes first: a
    /// killed backfill loses at most one batch. `None`: 30 days for paced sources (an API
    /// whose every day costs a request and quota); unpaced ones (files, the ECB's single
    /// document) fetch a day in microseconds, so only time bounds their batches and commits
    /// do not dominate the run.
    pub batch_days: Option<usize>,
    pub batch_seconds: u64,
    /// A progress bar on standard error (a terminal); log lines otherwise.
    pub progress_bar: bool,
}

impl IngestOptions {
    pub fn new(from: NaiveDate, to: NaiveDate, base_currency: &str) -> Self {
        Self {
            from,
            to,
            base_currency: base_currency.to_string(),
            force: false,
            concurrency: 4,
            requests_per_second: 10.0,
            batch_days: None,
            batch_seconds: 10,
            progress_bar: false,
        }
    }
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
        // Where the day's rates came from (the API root, `ecb:…`, `file://…`); null in rows
        // written before fxpipe recorded it.
        Field::new("source", DataType::Utf8, true),
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
    source: Vec<String>,
}

impl ErrorRows {
    fn push(&mut self, date: NaiveDate, error: &FetchError, source: String) {
        self.run_date.push(days_since_epoch(date));
        self.status.push(error.status);
        self.message.push(error.message.clone());
        self.description.push(error.description.clone());
        self.source.push(source);
    }
}

/// The days of a batch, before they are committed.
#[derive(Default)]
struct Batch {
    rows: RateRows,
    errors: ErrorRows,
    succeeded: Vec<NaiveDate>,
    attempted: Vec<NaiveDate>,
}

/// Why a fetched day is not stored, or `Ok` with the day.
fn validate(
    source: &dyn RateSource,
    date: NaiveDate,
    day: Result<oer::DailyRates, FetchError>,
) -> Result<oer::DailyRates, FetchError> {
    let day = day?;
    if day.base != "USD" {
        return Err(FetchError::new(
            0,
            "invalid_base",
            format!("rates are based on {}, expected USD", day.base),
        ));
    }
    if !day.duplicates.is_empty() {
        return Err(FetchError::new(
            0,
            "duplicate_currency",
            format!(
                "the response names {} more than once (codes are case-insensitive): which rate is meant cannot be known",
                day.duplicates.join(", ")
            ),
        ));
    }
    if day.rates.is_empty() {
        return Err(FetchError::new(
            0,
            "no_rates",
            "the response holds no usable rate",
        ));
    }
    if source.checks_timestamp() {
        let stamped = chrono::DateTime::from_timestamp(day.timestamp, 0).map(|t| t.date_naive());
        if stamped != Some(date) {
            return Err(FetchError::new(
                0,
                "timestamp_mismatch",
                format!(
                    "the response's timestamp {} is {}, not on {date}: the source answered for another day",
                    day.timestamp,
                    stamped.map_or("out of range".to_string(), |d| format!("on {d}"))
                ),
            ));
        }
    }
    Ok(day)
}

/// Why the run must stop when a failure means the key itself is missing or refused: no later
/// date can succeed.
fn key_refusal(error: &FetchError) -> Option<String> {
    key_refused(error).then(|| {
        format!(
            "the source refused the key ({} {}): set OXR_APP_ID to a valid Open Exchange Rates App ID",
            error.status, error.message
        )
    })
}

fn key_refused(error: &FetchError) -> bool {
    error.status == 401
        || (error.status == 403 && error.message.contains("app_id"))
        || matches!(
            error.message.as_str(),
            "missing_app_id" | "invalid_app_id" | "not_allowed_app_id"
        )
}

/// Adds a fetched (or failed) day to the batch and the report.
fn record(
    batch: &mut Batch,
    report: &mut IngestReport,
    source: &dyn RateSource,
    base_currency: &str,
    date: NaiveDate,
    day: Result<oer::DailyRates, FetchError>,
) {
    batch.attempted.push(date);
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
                batch.errors.push(date, &error, source.location(date));
            }
            for (code, why) in &day.invalid {
                let error = FetchError::new(0, "invalid_rate", format!("{code}: {why}"));
                warn!(%date, %code, %why, "rate skipped");
                batch.errors.push(date, &error, source.location(date));
            }
            for (code, per_usd) in &day.rates {
                let rows = &mut batch.rows;
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
            batch.succeeded.push(date);
        }
        Err(error) if error.is_not_published() => {
            // Not a failure: there are no rates to have for that day.
            info!(%date, why = %error.description, "no rates published");
            report.dates_not_published += 1;
        }
        Err(error) => {
            warn!(%date, status = error.status, message = %error.message, description = %error.description, "no rates");
            report.failures.push(IngestFailure {
                date: date.to_string(),
                status: error.status,
                message: error.message.clone(),
            });
            batch.errors.push(date, &error, source.location(date));
        }
    }
}

/// Commits a batch: first the errors table (the latest attempt per date: dates that succeeded
/// lose their old error rows, dates that failed get this attempt's), then the rates (each
/// succeeded date's rows replaced in one commit, so a reader never sees half a day). In that
/// order a kill between the two commits leaves the succeeded dates unstored, and the next run
/// fetches them again.
async fn commit(
    engine: &Engine,
    lake: &Lake,
    source: &dyn RateSource,
    base_currency: &str,
    batch: Batch,
    report: &mut IngestReport,
) -> Result<(), IngestError> {
    if batch.attempted.is_empty() {
        return Ok(());
    }
    let now = chrono::Utc::now().timestamp_micros();
    let ctx = engine.ctx();
    let errors = batch.errors;
    let n = errors.run_date.len();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Date32Array::from(errors.run_date)),
        Arc::new(BooleanArray::from(vec![true; n])),
        Arc::new(Int32Array::from(errors.status)),
        Arc::new(StringArray::from(errors.message)),
        Arc::new(StringArray::from(errors.description)),
        Arc::new(StringArray::from(errors.source)),
        Arc::new(TimestampMicrosecondArray::from(vec![now; n]).with_timezone("UTC")),
    ];
    let batch_errors = RecordBatch::try_new(errors_schema(), columns)?;
    let plan = ctx.read_batch(batch_errors)?.into_unoptimized_plan();
    let predicate = col("run_date").in_list(date_list(&batch.attempted), false);
    delta::write(
        lake,
        Table::RatesErrors,
        engine.session(),
        plan,
        WriteMode::ReplaceWhere(predicate),
    )
    .await?;

    if !batch.succeeded.is_empty() {
        let rows = batch.rows;
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
            Arc::new(StringArray::from(vec![source.describe(); n])),
        ];
        let rates = RecordBatch::try_new(rates_schema(), columns)?;
        let plan = ctx.read_batch(rates)?.into_unoptimized_plan();
        let predicate = col("run_date").in_list(date_list(&batch.succeeded), false);
        let table = delta::write(
            lake,
            Table::Rates,
            engine.session(),
            plan,
            WriteMode::ReplaceWhereMergeSchema(predicate),
        )
        .await?;
        report.rates_version = table.version().map(|v| v as i64);
    }
    report.batches += 1;
    Ok(())
}

/// Stores one day fetched outside a date range (`--latest`), under the UTC day of its
/// timestamp.
pub async fn ingest_fetched(
    engine: &Engine,
    lake: &Lake,
    source: &dyn RateSource,
    base_currency: &str,
    day: Result<oer::DailyRates, FetchError>,
) -> Result<IngestReport, IngestError> {
    let started = Instant::now();
    let mut report = IngestReport {
        source: source.describe(),
        base_currency: base_currency.to_string(),
        dates_requested: 1,
        ..Default::default()
    };
    let day = day.and_then(|d| {
        chrono::DateTime::from_timestamp(d.timestamp, 0)
            .filter(|_| d.timestamp > 0)
            .map(|t| (t.date_naive(), d))
            .ok_or_else(|| {
                FetchError::new(
                    0,
                    "invalid_response",
                    "the latest rates carry no valid timestamp",
                )
            })
    });
    let (date, day) = match day {
        Ok((date, day)) => (date, validate(source, date, Ok(day))),
        Err(error) => (chrono::Utc::now().date_naive(), Err(error)),
    };
    if let Err(error) = &day {
        report.stopped = key_refusal(error);
    }
    let mut batch = Batch::default();
    record(&mut batch, &mut report, source, base_currency, date, day);
    commit(engine, lake, source, base_currency, batch, &mut report).await?;
    report.retries = source.retries();
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// The dates in `from..=to` that the rates table already holds.
pub async fn stored_dates(
    engine: &Engine,
    lake: &Lake,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<std::collections::BTreeSet<NaiveDate>, IngestError> {
    let mut stored = std::collections::BTreeSet::new();
    if !engine.register_table(lake, Table::Rates).await? {
        return Ok(stored);
    }
    let day = |d: NaiveDate| ScalarValue::Date32(Some(days_since_epoch(d)));
    let batches = engine
        .ctx()
        .sql(STORED_DATES_SQL)
        .await?
        .with_param_values(vec![day(from), day(to)])?
        .collect()
        .await?;
    for batch in &batches {
        for days in batch
            .column(0)
            .as_primitive::<Date32Type>()
            .iter()
            .flatten()
        {
            stored.insert(NaiveDate::default() + chrono::Days::new(days as u64));
        }
    }
    Ok(stored)
}

/// The last date the rates table holds, if any.
pub async fn last_stored_date(
    engine: &Engine,
    lake: &Lake,
) -> Result<Option<NaiveDate>, IngestError> {
    if !engine.register_table(lake, Table::Rates).await? {
        return Ok(None);
    }
    let batches = engine
        .ctx()
        .sql(LAST_STORED_DATE_SQL)
        .await?
        .collect()
        .await?;
    Ok(batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Date32Type>().iter().flatten())
        .next()
        .map(|days| NaiveDate::default() + chrono::Days::new(days as u64)))
}

fn progress_bar(days: usize) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(days as u64), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} ingest [{bar:30}] {pos}/{len} days {per_sec} {msg} [{elapsed} < {eta}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

/// Refuses an empty range and a pace of zero before anything is fetched.
fn check_options(options: &IngestOptions) -> Result<(), IngestError> {
    let (from, to) = (options.from, options.to);
    if from > to {
        return Err(IngestError::EmptyRange { from, to });
    }
    if options.concurrency == 0
        || !options.requests_per_second.is_finite()
        || options.requests_per_second <= 0.0
    {
        return Err(IngestError::Options(
            "--concurrency and --requests-per-second must be above 0".to_string(),
        ));
    }
    Ok(())
}

/// The days of the range not stored yet (all of them with `force`), counted in the report.
async fn dates_to_fetch(
    engine: &Engine,
    lake: &Lake,
    options: &IngestOptions,
    report: &mut IngestReport,
) -> Result<Vec<NaiveDate>, IngestError> {
    let (from, to) = (options.from, options.to);
    let all: Vec<NaiveDate> = from.iter_days().take_while(|d| *d <= to).collect();
    report.dates_requested = all.len() as u64;
    let stored = if options.force {
        Default::default()
    } else {
        stored_dates(engine, lake, from, to).await?
    };
    let dates: Vec<NaiveDate> = all.into_iter().filter(|d| !stored.contains(d)).collect();
    report.dates_skipped = report.dates_requested - dates.len() as u64;
    if report.dates_skipped > 0 {
        info!(
            days = report.dates_skipped,
            "already stored, not fetched again (--force fetches them)"
        );
    }
    Ok(dates)
}

/// The days fetched `concurrency` at a time and in date order, at most `requests_per_second`
/// for sources with quotas; no new day starts once `halt` is cancelled.
fn fetch_days<'a>(
    source: &'a dyn RateSource,
    dates: Vec<NaiveDate>,
    options: &IngestOptions,
    halt: &'a CancellationToken,
) -> impl futures::Stream<Item = (NaiveDate, Result<oer::DailyRates, FetchError>)> + 'a {
    let interval = std::time::Duration::from_secs_f64(1.0 / options.requests_per_second);
    let pace = Arc::new(tokio::sync::Mutex::new(tokio::time::interval(interval)));
    futures::stream::iter(dates)
        .take_while(|_| std::future::ready(!halt.is_cancelled()))
        .map(move |date| {
            let pace = pace.clone();
            async move {
                if source.paced() {
                    pace.lock().await.tick().await;
                }
                (date, source.fetch(date).await)
            }
        })
        .buffered(options.concurrency)
}

/// A bar on a terminal, else a log line every 5 seconds.
struct Progress {
    bar: Option<ProgressBar>,
    logged: Instant,
}

impl Progress {
    fn day_done(&mut self, date: NaiveDate, report: &IngestReport) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
            bar.set_message(format!("{} failed", report.failures.len()));
        } else if self.logged.elapsed().as_secs() >= 5 {
            self.logged = Instant::now();
            info!(
                date = %date,
                ingested = report.dates_ingested,
                failed = report.failures.len(),
                "ingesting"
            );
        }
    }
}

/// Fetches every date in `options.from..=options.to` not yet stored (all with `force`),
/// `concurrency` at a time and, for sources with quotas, at most `requests_per_second`, and stores the rates relative to
/// the base currency, committing every batch. `stop` ends the run early: the days in flight
/// finish and are committed, no new day starts.
pub async fn ingest(
    engine: &Engine,
    lake: &Lake,
    source: &dyn RateSource,
    options: &IngestOptions,
    stop: &CancellationToken,
) -> Result<IngestReport, IngestError> {
    check_options(options)?;
    let started = Instant::now();
    let mut report = IngestReport {
        source: source.describe(),
        base_currency: options.base_currency.clone(),
        ..Default::default()
    };
    let dates = dates_to_fetch(engine, lake, options, &mut report).await?;
    let mut progress = Progress {
        bar: (options.progress_bar && !dates.is_empty()).then(|| progress_bar(dates.len())),
        logged: Instant::now(),
    };
    // Stops taking new days on a signal, or once the key is refused.
    let halt = stop.child_token();
    let mut fetched = fetch_days(source, dates, options, &halt);
    let batch_days = options
        .batch_days
        .unwrap_or(if source.paced() { 30 } else { usize::MAX })
        .max(1);
    let mut batch = Batch::default();
    let mut batch_started = Instant::now();
    while let Some((date, day)) = fetched.next().await {
        let day = validate(source, date, day);
        if let (Err(error), None) = (&day, &report.stopped) {
            report.stopped = key_refusal(error);
            if report.stopped.is_some() {
                halt.cancel();
            }
        }
        record(
            &mut batch,
            &mut report,
            source,
            &options.base_currency,
            date,
            day,
        );
        progress.day_done(date, &report);
        if batch.attempted.len() >= batch_days
            || batch_started.elapsed().as_secs() >= options.batch_seconds
        {
            commit(
                engine,
                lake,
                source,
                &options.base_currency,
                std::mem::take(&mut batch),
                &mut report,
            )
            .await?;
            batch_started = Instant::now();
        }
    }
    drop(fetched);
    commit(
        engine,
        lake,
        source,
        &options.base_currency,
        batch,
        &mut report,
    )
    .await?;
    if let Some(bar) = progress.bar {
        bar.finish_and_clear();
    }
    finish(&mut report, source, stop, started);
    Ok(report)
}

/// The report's last fields, once every batch is committed.
fn finish(
    report: &mut IngestReport,
    source: &dyn RateSource,
    stop: &CancellationToken,
    started: Instant,
) {
    if stop.is_cancelled() && report.stopped.is_none() {
        report.stopped =
            Some("stopped by a signal; the days fetched so far are stored".to_string());
    }
    report.retries = source.retries();
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    info!(
        dates = report.dates_ingested,
        failed = report.failures.len(),
        skipped = report.dates_skipped,
        "ingested"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_is_refused_for_another_days_timestamp_a_duplicate_or_another_base() {
        let source = oxr::OxrSource::new(
            "http://127.0.0.1:9/api",
            key::AppId::new("k"),
            reqwest::Client::new(),
            oxr::RetryPolicy::default(),
        )
        .unwrap();
        let date = NaiveDate::from_ymd_opt(2024, 3, 1).unwrap();
        let day = |timestamp: i64, base: &str, duplicates: Vec<String>| oer::DailyRates {
            base: base.to_string(),
            timestamp,
            rates: [("SGD".to_string(), 1)].into_iter().collect(),
            invalid: vec![],
            duplicates,
        };
        // 2024-03-01T23:59:59Z is on the day; 2024-03-02T00:00:00Z is not.
        assert!(validate(&source, date, Ok(day(1709337599, "USD", vec![]))).is_ok());
        let next = validate(&source, date, Ok(day(1709337600, "USD", vec![]))).unwrap_err();
        assert_eq!(next.message, "timestamp_mismatch");
        assert!(
            next.description.contains("2024-03-02"),
            "{}",
            next.description
        );
        let dup = validate(
            &source,
            date,
            Ok(day(1709337599, "USD", vec!["SGD".into()])),
        )
        .unwrap_err();
        assert_eq!(dup.message, "duplicate_currency");
        let eur = validate(&source, date, Ok(day(1709337599, "EUR", vec![]))).unwrap_err();
        assert_eq!(eur.message, "invalid_base");
    }
}
