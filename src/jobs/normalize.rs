//! `fxpipe normalize`: transactions × rates → the processed table, in the base currency.
//!
//! The plan is `sql/normalize.sql`; this module registers its inputs, writes its output as one
//! Delta commit (the whole table, or exactly the `year/month` partitions of `--from/--to` with
//! a `replaceWhere`), and counts what was and was not converted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, AsArray, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::{cast, col, lit, Expr};
use tracing::{info, info_span, Instrument};

use super::JobError;
use crate::engine::Engine;
use crate::report::NormalizeReport;
use crate::storage::delta::{self, WriteMode};
use crate::storage::{Lake, Table};

const NORMALIZE_SQL: &str = include_str!("../../sql/normalize.sql");
const SUMMARY_SQL: &str = include_str!("../../sql/normalize_summary.sql");
const PARTITIONS_SQL: &str = include_str!("../../sql/normalize_partitions.sql");

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
    /// How many days back a missing day's rate may be taken from.
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

fn month_key() -> Expr {
    cast(col("year"), DataType::Int64) * lit(100i64) + cast(col("month"), DataType::Int64)
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

/// Runs the job.
pub async fn normalize(
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
    register_params(engine, options)?;

    let mut normalized = ctx.sql(NORMALIZE_SQL).await?;
    let mut transactions = ctx.table("transactions").await?;
    let mode = match options.months {
        Some((from, to)) => {
            let in_range = month_key().between(lit(from.key()), lit(to.key()));
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
    report.rows_in = transactions.count().await? as u64;
    report
        .stage_ms
        .insert("plan", started.elapsed().as_millis() as u64);

    if options.strict {
        let stage = Instant::now();
        summarize(engine, normalized.clone(), &mut report).await?;
        report
            .stage_ms
            .insert("strict_check", stage.elapsed().as_millis() as u64);
        if report.unconverted > 0 {
            return Err(JobError::Unconverted {
                count: report.unconverted,
                detail: unconverted_detail(&report),
            });
        }
    }

    let stage = Instant::now();
    let mut output = normalized;
    if options.column_suffix != "sgd" {
        for (from, to) in converted_columns(&options.column_suffix) {
            output = output.with_column_renamed(&from, &to)?;
        }
    }
    let table = delta::write(
        lake,
        Table::Processed,
        engine.session(),
        output.into_unoptimized_plan(),
        mode,
    )
    .instrument(info_span!("write processed"))
    .await?;
    report.processed_version = table.version().unwrap_or_default() as i64;
    report
        .stage_ms
        .insert("join_and_write", stage.elapsed().as_millis() as u64);

    // Count from what was committed, not from what we meant to write.
    let stage = Instant::now();
    engine.register_table(lake, Table::Processed).await?;
    let mut written = ctx.table("processed").await?;
    if let Some((from, to)) = options.months {
        written = written.filter(month_key().between(lit(from.key()), lit(to.key())))?;
    }
    if options.column_suffix != "sgd" {
        for (to, from) in converted_columns(&options.column_suffix) {
            written = written.with_column_renamed(&from, &to)?;
        }
    }
    report.unconverted = 0;
    report.unconverted_by_currency.clear();
    summarize(engine, written, &mut report).await?;
    report
        .stage_ms
        .insert("summary", stage.elapsed().as_millis() as u64);
    report
        .stage_ms
        .insert("total", started.elapsed().as_millis() as u64);
    info!(
        rows = report.rows_written,
        unconverted = report.unconverted,
        "normalized"
    );
    if report.rows_written != report.rows_in {
        return Err(JobError::Invalid(format!(
            "rows do not reconcile: {} transactions in, {} rows written",
            report.rows_in, report.rows_written
        )));
    }
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

/// `job_params` and `rate_lookback`: the query's parameters, as tables (never spliced into SQL).
fn register_params(engine: &Engine, options: &NormalizeOptions) -> Result<(), JobError> {
    let ctx = engine.ctx();
    let params = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("base_currency", DataType::Utf8, false),
            Field::new("max_rate_age", DataType::Int32, false),
        ])),
        vec![
            Arc::new(StringArray::from(vec![options.base_currency.clone()])),
            Arc::new(Int32Array::from(vec![options.max_rate_age_days as i32])),
        ],
    )
    .map_err(datafusion::error::DataFusionError::from)?;
    let lookback = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new(
            "days_back",
            DataType::Int32,
            false,
        )])),
        vec![Arc::new(Int32Array::from_iter_values(
            0..=options.max_rate_age_days as i32,
        ))],
    )
    .map_err(datafusion::error::DataFusionError::from)?;
    for (name, batch) in [("job_params", params), ("rate_lookback", lookback)] {
        let _ = ctx.deregister_table(name);
        ctx.register_batch(name, batch)?;
    }
    Ok(())
}

/// Fills the report's conversion counts and partitions from `rows` (default column names).
async fn summarize(
    engine: &Engine,
    rows: DataFrame,
    report: &mut NormalizeReport,
) -> Result<(), JobError> {
    let ctx = engine.ctx();
    let _ = ctx.deregister_table("normalized");
    ctx.register_table("normalized", rows.into_view())?;
    let summary = ctx.sql(SUMMARY_SQL).await?.collect().await?;
    let (
        mut withdrawals,
        mut withdrawals_converted,
        mut deposits,
        mut deposits_converted,
        mut earlier,
    ) = (0, 0, 0, 0, 0);
    let mut unconverted: BTreeMap<String, u64> = BTreeMap::new();
    for batch in &summary {
        let side = arrow::compute::cast(batch.column(0), &DataType::Utf8)?;
        let side = side.as_string::<i32>();
        let currency = arrow::compute::cast(batch.column(1), &DataType::Utf8)?;
        let currency = currency.as_string::<i32>();
        let number = |i: usize| batch.column(i).as_primitive::<Int64Type>().clone();
        let (amounts, converted, earlier_rate) = (number(2), number(3), number(4));
        for row in 0..batch.num_rows() {
            let (n, c) = (amounts.value(row) as u64, converted.value(row) as u64);
            earlier += earlier_rate.value(row) as u64;
            if side.value(row) == "withdrawal" {
                withdrawals += n;
                withdrawals_converted += c;
            } else {
                deposits += n;
                deposits_converted += c;
            }
            if n > c {
                let code = if currency.is_null(row) {
                    "?"
                } else {
                    currency.value(row)
                };
                *unconverted.entry(code.to_string()).or_default() += n - c;
            }
        }
    }
    report.withdrawals = withdrawals;
    report.withdrawals_converted = withdrawals_converted;
    report.deposits = deposits;
    report.deposits_converted = deposits_converted;
    report.converted_with_earlier_rate = earlier;
    report.unconverted = unconverted.values().sum();
    report.unconverted_by_currency = unconverted;

    let partitions = ctx.sql(PARTITIONS_SQL).await?.collect().await?;
    report.partitions_written.clear();
    report.rows_written = 0;
    for batch in &partitions {
        let year = batch
            .column(0)
            .as_primitive::<arrow::datatypes::Int32Type>();
        let month = batch
            .column(1)
            .as_primitive::<arrow::datatypes::Int32Type>();
        let count = batch
            .column(2)
            .as_any()
            .downcast_ref::<Int64Array>()
            .cloned()
            .unwrap_or_else(|| Int64Array::from(Vec::<i64>::new()));
        for row in 0..batch.num_rows().min(count.len()) {
            report.partitions_written.push(format!(
                "year={}/month={}",
                year.value(row),
                month.value(row)
            ));
            report.rows_written += count.value(row) as u64;
        }
    }
    let _ = ctx.deregister_table("normalized");
    Ok(())
}
