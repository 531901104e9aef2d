//! `fxpipe normalize`: transactions × rates → the processed table, in the base currency.
//!
//! The plan is `sql/normalize.sql`; this module registers its inputs, writes its output as one
//! Delta commit (the whole table, or exactly the `year/month` partitions of `--from/--to` with
//! a `replaceWhere`), and counts what was and was not converted.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int32Type};
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::{cast, col, lit, Expr};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;
use tracing::{info, info_span, warn, Instrument};

use super::JobError;
use crate::engine::Engine;
use crate::report::NormalizeReport;
use crate::storage::delta::{self, WriteMode};
use crate::storage::{Lake, Table};

const NORMALIZE_SQL: &str = include_str!("../../sql/normalize.sql");
const RATE_CONFLICTS_SQL: &str = include_str!("../../sql/rate_conflicts.sql");

/// The longest `--max-rate-age`: a year (a leap year's 366 days). Older rates are not a
/// conversion, they are a guess.
pub const MAX_RATE_AGE_DAYS: u32 = 366;

/// The processed table's column naming the currency its amounts are in.
pub const BASE_CURRENCY_COLUMN: &str = "base_currency";

/// A calendar month, `YYYY-MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct YearMonth {
    pub year: i32,
    pub month: u32,
}

impl std::str::FromStr for YearMonth {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not a month (expected YYYY-MM)");
        let (y, m) = s.trim().split_once('-').ok_or_else(bad)?;
        let year: i32 = y.parse().map_err(|_| bad())?;
        let month: u32 = m.parse().map_err(|_| bad())?;
        if !(1..=12).contains(&month) {
            return Err(bad());
        }
        Ok(Self { year, month })
    }
}

impl YearMonth {
    fn key(self) -> i64 {
        self.year as i64 * 100 + self.month as i64
    }
}

/// What to normalize and how.
#[derive(Debug, Clone)]
pub struct NormalizeOptions {
    /// ISO code amounts are converted to.
    pub base_currency: String,
    /// How many days back a missing day's rate may be taken from, at most [`MAX_RATE_AGE_DAYS`].
    pub max_rate_age_days: u32,
    /// Fail (and write nothing) when any amount has no usable rate.
    pub strict: bool,
    /// Middle part of the converted columns' names: `withdrawal_<suffix>_amt`.
    pub column_suffix: String,
    /// Recompute only these months (inclusive); `None` recomputes the whole table.
    pub months: Option<(YearMonth, YearMonth)>,
}

impl Default for NormalizeOptions {
    fn default() -> Self {
        Self {
            base_currency: "SGD".to_string(),
            max_rate_age_days: 3,
            strict: false,
            column_suffix: "sgd".to_string(),
            months: None,
        }
    }
}

/// The rows of the months `from..=to`, in terms of the partition columns alone (comparisons,
/// no arithmetic): Delta's conflict check can then tell that two runs on different months do
/// not overlap, and both commit at once instead of one redoing its write.
fn months_between(from: YearMonth, to: YearMonth) -> Expr {
    let (year, month) = (col("year"), col("month"));
    let after_start = year.clone().gt(lit(from.year)).or(year
        .clone()
        .eq(lit(from.year))
        .and(month.clone().gt_eq(lit(from.month as i32))));
    let before_end = year
        .clone()
        .lt(lit(to.year))
        .or(year.eq(lit(to.year)).and(month.lt_eq(lit(to.month as i32))));
    after_start.and(before_end)
}

fn converted_columns(suffix: &str) -> [(String, String); 2] {
    [
        (
            "withdrawal_sgd_amt".to_string(),
            format!("withdrawal_{suffix}_amt"),
        ),
        (
            "deposit_sgd_amt".to_string(),
            format!("deposit_{suffix}_amt"),
        ),
    ]
}

/// Runs the job. A run that loses its commit to a concurrent one on the same months (or to a
/// whole-table rewrite) redoes its whole write from the new version, a bounded number of
/// times with backoff; runs on different months both commit at once.
pub async fn normalize(
    engine: &Engine,
    lake: &Lake,
    options: &NormalizeOptions,
) -> Result<NormalizeReport, JobError> {
    let mut attempt = 1;
    loop {
        match normalize_once(engine, lake, options).await {
            Err(JobError::Storage(e)) if delta::is_conflict(&e) => {
                if attempt >= delta::COMMIT_ATTEMPTS {
                    return Err(JobError::Invalid(format!(
                        "another writer kept committing to the processed table first ({attempt} \
                         attempts); nothing was written by this run: {e}"
                    )));
                }
                warn!(
                    attempt,
                    "a concurrent commit to processed came first: {e}; redoing the write"
                );
                delta::backoff(attempt).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

async fn normalize_once(
    engine: &Engine,
    lake: &Lake,
    options: &NormalizeOptions,
) -> Result<NormalizeReport, JobError> {
    let started = Instant::now();
    let mut report = NormalizeReport {
        base_currency: options.base_currency.clone(),
        max_rate_age_days: options.max_rate_age_days,
        ..Default::default()
    };
    let ctx = engine.ctx();
    // The rate calendar (the build side of both joins) is small: broadcast it to every
    // partition of the transactions instead of hash-repartitioning millions of rows twice.
    // DataFusion cannot tell it is small (no row count after the unnest), so say so here.
    ctx.state_ref()
        .write()
        .config_mut()
        .options_mut()
        .optimizer
        .repartition_joins = false;
    if !engine.register_table(lake, Table::Transactions).await? {
        return Err(JobError::MissingTable(
            "transactions",
            "run `fxpipe load FILE.csv` first",
        ));
    }
    if !engine.register_table(lake, Table::Rates).await? {
        return Err(JobError::MissingTable(
            "rates",
            "run `fxpipe ingest --source file://DIR --from D1 --to D2` first",
        ));
    }
    if options.max_rate_age_days > MAX_RATE_AGE_DAYS {
        return Err(JobError::Invalid(format!(
            "max rate age {} days is out of range: 0 to {MAX_RATE_AGE_DAYS} days",
            options.max_rate_age_days
        )));
    }
    if options.months.is_some() {
        check_same_base(engine, lake, options).await?;
    }

    let mut normalized = ctx.sql(NORMALIZE_SQL).await?.with_param_values(vec![
        ScalarValue::Utf8(Some(options.base_currency.clone())),
        ScalarValue::Int64(Some(i64::from(options.max_rate_age_days))),
    ])?;
    let mut transactions = ctx.table("transactions").await?;
    let mode = match options.months {
        Some((from, to)) => {
            let in_range = months_between(from, to);
            normalized = normalized.filter(in_range.clone())?;
            let date = col("date");
            transactions = transactions.filter(
                (datafusion::functions::expr_fn::date_part(lit("year"), date.clone()) * lit(100)
                    + datafusion::functions::expr_fn::date_part(lit("month"), date))
                .between(lit(from.key()), lit(to.key())),
            )?;
            WriteMode::ReplaceWhere(in_range)
        }
        None => WriteMode::Overwrite,
    };
    check_one_rate_per_day(engine).await?;
    report.rows_in = transactions.count().await? as u64;
    report
        .stage_ms
        .insert("plan", started.elapsed().as_millis() as u64);

    // Count every row on its way into the writer; the last partition to finish checks the
    // counts before delta-rs may commit, so a strict or unreconciled run commits nothing.
    let stage = Instant::now();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let schema = Arc::new(normalized.schema().as_arrow().clone());
    let streams = normalized.execute_stream_partitioned().await?;
    let gate = Arc::new(Gate {
        partitions: streams.len(),
        finished: AtomicUsize::new(0),
        rows_in: report.rows_in,
        strict: options.strict,
    });
    let streams = streams
        .into_iter()
        .map(|stream| tallied(stream, tally.clone(), gate.clone()))
        .collect();
    let mut output = engine.frame_from_streams(schema, streams)?;
    if options.column_suffix != "sgd" {
        for (from, to) in converted_columns(&options.column_suffix) {
            output = output.with_column_renamed(&from, &to)?;
        }
    }
    let written = delta::write(
        lake,
        Table::Processed,
        engine.session(),
        output.into_unoptimized_plan(),
        mode,
    )
    .instrument(info_span!("write processed"))
    .await;
    let counted = tally
        .lock()
        .map_err(|_| JobError::Invalid("the row tally was poisoned".to_string()))?
        .fill(&mut report);
    // Only a complete tally explains a failed write; otherwise the write's own error does.
    if counted && options.strict && report.unconverted > 0 {
        return Err(JobError::Unconverted {
            count: report.unconverted,
            detail: unconverted_detail(&report),
        });
    }
    if counted && report.rows_written != report.rows_in {
        return Err(JobError::Invalid(format!(
            "rows do not reconcile: {} transactions in, {} rows out of the join; nothing was written",
            report.rows_in, report.rows_written
        )));
    }
    report.processed_version = written?.version().unwrap_or_default() as i64;
    report
        .stage_ms
        .insert("join_and_write", stage.elapsed().as_millis() as u64);
    report
        .stage_ms
        .insert("total", started.elapsed().as_millis() as u64);
    info!(
        rows = report.rows_written,
        unconverted = report.unconverted,
        "normalized"
    );
    Ok(report)
}

fn unconverted_detail(report: &NormalizeReport) -> String {
    report
        .unconverted_by_currency
        .iter()
        .map(|(c, n)| format!("{c}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Refuses a rates table with two different rates for one currency and day: the as-of join
/// would pick one of them arbitrarily. (fxpipe's ingest replaces a day's rows, so only another
/// writer can cause this.)
async fn check_one_rate_per_day(engine: &Engine) -> Result<(), JobError> {
    let conflicts = engine
        .ctx()
        .sql(RATE_CONFLICTS_SQL)
        .await?
        .collect()
        .await?;
    let mut found = Vec::new();
    for batch in &conflicts {
        let days = arrow::compute::cast(batch.column(0), &DataType::Utf8)?;
        let codes = arrow::compute::cast(batch.column(1), &DataType::Utf8)?;
        for (day, code) in days.as_string::<i32>().iter().zip(codes.as_string::<i32>()) {
            found.push(format!("{} {}", day.unwrap_or("?"), code.unwrap_or("?")));
        }
    }
    if found.is_empty() {
        return Ok(());
    }
    Err(JobError::Invalid(format!(
        "the rates table has different rates for the same currency and day ({}); re-ingest those dates with `fxpipe ingest` so each has one rate",
        found.join(", ")
    )))
}

/// The base currencies the processed table's rows are in (none when it is empty or missing).
/// A table written before fxpipe recorded them has no `base_currency` column: `None`.
async fn processed_bases(engine: &Engine, lake: &Lake) -> Result<Option<Vec<String>>, JobError> {
    if !engine.register_table(lake, Table::Processed).await? {
        return Ok(Some(Vec::new()));
    }
    let ctx = engine.ctx();
    let processed = ctx.table(Table::Processed.sql_name()).await?;
    if !processed
        .schema()
        .has_column_with_unqualified_name(BASE_CURRENCY_COLUMN)
    {
        return Ok(None);
    }
    let batches = processed
        .select(vec![cast(col(BASE_CURRENCY_COLUMN), DataType::Utf8)])?
        .distinct()?
        .collect()
        .await?;
    let mut bases = Vec::new();
    for batch in &batches {
        let codes = batch.column(0).as_string::<i32>();
        bases.extend(codes.iter().map(|c| c.unwrap_or("NULL").to_string()));
    }
    bases.sort();
    Ok(Some(bases))
}

/// A month rewrite must be in the table's base currency: the months it leaves alone stay in
/// theirs, and one table in two bases is a table no total can be taken over.
async fn check_same_base(
    engine: &Engine,
    lake: &Lake,
    options: &NormalizeOptions,
) -> Result<(), JobError> {
    let base = &options.base_currency;
    let whole = format!(
        "convert the whole table with `fxpipe --base-currency {base} normalize` (without --from/--to)"
    );
    match processed_bases(engine, lake).await? {
        Some(bases) if bases.iter().all(|b| b == base) => Ok(()),
        Some(bases) => Err(JobError::Invalid(format!(
            "the processed table is in {}, not {base}: a month rewrite cannot mix base currencies; {whole}",
            bases.join(" and ")
        ))),
        None => Err(JobError::Invalid(format!(
            "the processed table was written before fxpipe recorded its base currency, so a month rewrite cannot check it; {whole}"
        ))),
    }
}

/// When the last partition ends: whether the run may commit.
#[derive(Debug)]
struct Gate {
    partitions: usize,
    finished: AtomicUsize,
    rows_in: u64,
    strict: bool,
}

/// Counts of the rows that went into the writer (default column names).
#[derive(Debug, Default)]
struct Tally {
    complete: bool,
    rows: u64,
    /// Withdrawal, deposit: amounts, converted, converted with an earlier day's rate.
    sides: [[u64; 3]; 2],
    unconverted: BTreeMap<String, u64>,
    partitions: BTreeMap<(i32, i32), u64>,
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef, DataFusionError> {
    batch
        .column_by_name(name)
        .ok_or_else(|| DataFusionError::Internal(format!("normalize output has no column {name}")))
}

impl Tally {
    fn add(&mut self, batch: &RecordBatch) -> Result<(), DataFusionError> {
        let rows = batch.num_rows();
        self.rows += rows as u64;
        let value_date = column(batch, "value_date")?;
        for (side, counts) in ["withdrawal", "deposit"]
            .into_iter()
            .zip(self.sides.iter_mut())
        {
            let amount = column(batch, &format!("{side}_amt"))?;
            let converted = column(batch, &format!("{side}_sgd_amt"))?;
            let rate_date = column(batch, &format!("{side}_rate_date"))?;
            counts[0] += (rows - amount.null_count()) as u64;
            counts[1] += (rows - converted.null_count()) as u64;
            counts[2] +=
                arrow::compute::kernels::cmp::lt(rate_date, value_date)?.true_count() as u64;
            if amount.null_count() < converted.null_count() {
                let currency = arrow::compute::cast(
                    column(batch, &format!("{side}_currency"))?,
                    &DataType::Utf8,
                )?;
                let currency = currency.as_string::<i32>();
                for row in (0..rows).filter(|r| amount.is_valid(*r) && converted.is_null(*r)) {
                    let code = if currency.is_null(row) {
                        "?"
                    } else {
                        currency.value(row)
                    };
                    *self.unconverted.entry(code.to_string()).or_default() += 1;
                }
            }
        }
        let year = column(batch, "year")?.as_primitive::<Int32Type>();
        let month = column(batch, "month")?.as_primitive::<Int32Type>();
        let mut start = 0;
        while start < rows {
            let key = (year.value(start), month.value(start));
            let mut end = start + 1;
            while end < rows && (year.value(end), month.value(end)) == key {
                end += 1;
            }
            *self.partitions.entry(key).or_default() += (end - start) as u64;
            start = end;
        }
        Ok(())
    }

    fn unconverted_total(&self) -> u64 {
        self.unconverted.values().sum()
    }

    /// Copies the counts into the report; `false` if some partition did not finish.
    fn fill(&self, report: &mut NormalizeReport) -> bool {
        report.rows_written = self.rows;
        report.withdrawals = self.sides[0][0];
        report.withdrawals_converted = self.sides[0][1];
        report.deposits = self.sides[1][0];
        report.deposits_converted = self.sides[1][1];
        report.converted_with_earlier_rate = self.sides[0][2] + self.sides[1][2];
        report.unconverted = self.unconverted_total();
        report.unconverted_by_currency = self.unconverted.clone();
        report.partitions_written = self
            .partitions
            .keys()
            .map(|(year, month)| format!("year={year}/month={month}"))
            .collect();
        self.complete
    }
}

/// Wraps one partition of the join: counts each batch, and after the last partition ends,
/// fails the stream (so delta-rs commits nothing) if the run is strict and some amount has
/// no rate, or if the rows do not reconcile.
fn tallied(
    stream: SendableRecordBatchStream,
    tally: Arc<Mutex<Tally>>,
    gate: Arc<Gate>,
) -> SendableRecordBatchStream {
    let schema = stream.schema();
    let poisoned = || DataFusionError::Internal("the row tally was poisoned".to_string());
    let counting = tally.clone();
    let counted = stream.map(move |batch| {
        let batch = batch?;
        counting.lock().map_err(|_| poisoned())?.add(&batch)?;
        Ok(batch)
    });
    let end = futures::stream::once(async move {
        if gate.finished.fetch_add(1, Ordering::SeqCst) + 1 < gate.partitions {
            return None;
        }
        let mut tally = match tally.lock() {
            Ok(tally) => tally,
            Err(_) => return Some(Err(poisoned())),
        };
        tally.complete = true;
        if gate.strict && tally.unconverted_total() > 0 {
            return Some(Err(DataFusionError::Execution(
                "amounts without a usable rate (--strict)".to_string(),
            )));
        }
        if tally.rows != gate.rows_in {
            return Some(Err(DataFusionError::Execution(format!(
                "rows do not reconcile: {} in, {} out",
                gate.rows_in, tally.rows
            ))));
        }
        None
    })
    .filter_map(futures::future::ready);
    Box::pin(RecordBatchStreamAdapter::new(schema, counted.chain(end)))
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    use super::*;

    /// Rates with gaps: 01-03 has no SGD rate, nothing between 01-05 and 01-20.
    const RATES: &str = "CREATE TABLE rates AS
        SELECT CAST(column1 AS DATE) AS run_date, column2 AS target_currency,
               CAST(column3 AS DECIMAL(38, 18)) AS rates_base_usd
        FROM (VALUES
            ('2017-01-01', 'SGD', '1.35'), ('2017-01-01', 'INR', '63'),
            ('2017-01-03', 'INR', '64'),
            ('2017-01-05', 'SGD', '1.40'), ('2017-01-05', 'INR', '65'),
            ('2017-01-20', 'SGD', '1.5'), ('2017-01-20', 'INR', '70'))";

    /// 100 INR withdrawn on each value date.
    const TRANSACTIONS: &str = "CREATE TABLE transactions AS
        SELECT 'acc' AS account_no, CAST(column1 AS DATE) AS date, column1 AS transaction_details,
               CAST(NULL AS VARCHAR) AS chq_no, CAST(column1 AS DATE) AS value_date,
               CAST('100' AS DECIMAL(38, 4)) AS withdrawal_amt, 'INR' AS withdrawal_currency,
               CAST(NULL AS DECIMAL(38, 4)) AS deposit_amt, CAST(NULL AS VARCHAR) AS deposit_currency,
               CAST(NULL AS DECIMAL(38, 4)) AS balance_amt, 'as-of.csv' AS source_file,
               CAST(column2 AS BIGINT) AS source_line
        FROM (VALUES ('2016-12-31', 2), ('2017-01-01', 3), ('2017-01-03', 4), ('2017-01-04', 5),
                     ('2017-01-05', 6), ('2017-01-09', 7), ('2017-01-19', 8), ('2018-01-21', 9),
                     ('2018-01-22', 10))";

    /// (value date, converted, rate date) per transaction, with the given rate age.
    async fn convert_all(age: i64) -> datafusion::error::Result<Vec<[String; 3]>> {
        let ctx = SessionContext::new();
        ctx.register_udf(crate::engine::functions::FxConvert::udf());
        ctx.sql(RATES).await?.collect().await?;
        ctx.sql(TRANSACTIONS).await?.collect().await?;
        let frame = ctx.sql(NORMALIZE_SQL).await?.with_param_values(vec![
            ScalarValue::Utf8(Some("SGD".to_string())),
            ScalarValue::Int64(Some(age)),
        ])?;
        let plan = frame.clone().into_optimized_plan()?;
        let shown = plan.display_indent_schema().to_string();
        assert!(
            !shown.contains("Float"),
            "normalize plans a float:\n{shown}"
        );
        let batches = frame
            .sort(vec![col("source_line").sort(true, false)])?
            .select(vec![
                col("transaction_details"),
                cast(col("withdrawal_sgd_amt"), DataType::Utf8),
                cast(col("withdrawal_rate_date"), DataType::Utf8),
                col("base_currency"),
            ])?
            .collect()
            .await?;
        let mut rows = Vec::new();
        for batch in &batches {
            let columns = batch
                .columns()
                .iter()
                .map(|c| arrow::compute::cast(c, &DataType::Utf8))
                .collect::<Result<Vec<_>, _>>()?;
            let text = |i: usize, row: usize| {
                let column = columns[i].as_string::<i32>();
                if column.is_null(row) {
                    String::new()
                } else {
                    column.value(row).to_string()
                }
            };
            for row in 0..batch.num_rows() {
                assert_eq!(text(3, row), "SGD");
                rows.push([text(0, row), text(1, row), text(2, row)]);
            }
        }
        Ok(rows)
    }

    fn rows(expected: &[(&str, &str, &str)]) -> Vec<[String; 3]> {
        expected
            .iter()
            .map(|(a, b, c)| [a.to_string(), b.to_string(), c.to_string()])
            .collect()
    }

    #[tokio::test]
    async fn as_of_rates_within_the_age_never_later_and_paired_by_day(
    ) -> datafusion::error::Result<()> {
        // 100 × 1.35 / 63 = 2.1428… ; 100 × 1.40 / 65 = 2.1538… ; 100 × 1.5 / 70 = 2.1428…
        let three_days = rows(&[
            ("2016-12-31", "", ""), // only later rates: never used
            ("2017-01-01", "2.14", "2017-01-01"),
            ("2017-01-03", "2.14", "2017-01-01"), // 01-03 has INR but no SGD: the 01-01 pair
            ("2017-01-04", "2.14", "2017-01-01"), // 3 days back
            ("2017-01-05", "2.15", "2017-01-05"),
            ("2017-01-09", "", ""), // 4 days after 01-05
            ("2017-01-19", "", ""),
            ("2018-01-21", "", ""),
            ("2018-01-22", "", ""),
        ]);
        assert_eq!(convert_all(3).await?, three_days);
        let a_year = rows(&[
            ("2016-12-31", "", ""),
            ("2017-01-01", "2.14", "2017-01-01"),
            ("2017-01-03", "2.14", "2017-01-01"),
            ("2017-01-04", "2.14", "2017-01-01"),
            ("2017-01-05", "2.15", "2017-01-05"),
            ("2017-01-09", "2.15", "2017-01-05"),
            ("2017-01-19", "2.15", "2017-01-05"), // not the later 01-20
            ("2018-01-21", "2.14", "2017-01-20"), // 366 days after 01-20
            ("2018-01-22", "", ""),               // 367 days
        ]);
        assert_eq!(convert_all(366).await?, a_year);
        let same_day = rows(&[
            ("2016-12-31", "", ""),
            ("2017-01-01", "2.14", "2017-01-01"),
            ("2017-01-03", "", ""),
            ("2017-01-04", "", ""),
            ("2017-01-05", "2.15", "2017-01-05"),
            ("2017-01-09", "", ""),
            ("2017-01-19", "", ""),
            ("2018-01-21", "", ""),
            ("2018-01-22", "", ""),
        ]);
        assert_eq!(convert_all(0).await?, same_day);
        Ok(())
    }
}
