//! The HTML credit report (`fxpipe report --html FILE`): the analytics a lending officer looks
//! at, on one self-contained page.
//!
//! [`gather`] runs the queries (the analytics in `sql/analytics/`, the page's own in
//! `sql/report/`) through the [`Engine`], so they run embedded or on a cluster alike, over one
//! registration of each table: every number on the page comes from the same Delta versions,
//! which the page names. [`html::render`] turns the result into the page; it runs no query.
//!
//! Values travel as the engine's exact text (decimals as `1360124.87`, never through a float);
//! only the charts' geometry is computed in `f64`.

pub mod html;
mod jobs;
mod svg;

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use datafusion::dataframe::DataFrame;

use crate::engine::Engine;
use crate::jobs::analytics::{self, ReportOptions};
use crate::jobs::JobError;
use crate::storage::{Lake, Table};

pub use jobs::JobRun;

/// Accounts in the ratio table.
pub const TOP_RATIO_ACCOUNTS: usize = 10;
/// Accounts with a net-flow and balance chart (the most active ones).
pub const CHARTED_ACCOUNTS: usize = 12;

const CREDIT_BANDS_SQL: &str = include_str!("../../sql/report/credit_bands.sql");
const TOP_RATIO_SQL: &str = include_str!("../../sql/report/top_ratio_accounts.sql");
const MOST_ACTIVE_SQL: &str = include_str!("../../sql/report/most_active_accounts.sql");
const CHART_HISTORY_SQL: &str = include_str!("../../sql/report/chart_history.sql");
const LOAD_TOTALS_SQL: &str = include_str!("../../sql/report/load_totals.sql");
const REJECTS_SQL: &str = include_str!("../../sql/report/rejects_by_reason.sql");
const UNCONVERTED_SQL: &str = include_str!("../../sql/report/unconverted_by_currency.sql");

/// A query's result as text: each value as the engine displays it (decimals exact), `None`
/// for NULL.
#[derive(Debug, Clone, Default)]
pub struct TextTable {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

impl TextTable {
    /// The value of `column` in row `row`; `None` for NULL or a column the result lacks.
    pub fn get(&self, row: usize, column: &str) -> Option<&str> {
        let index = self.columns.iter().position(|c| c == column)?;
        self.rows.get(row)?.get(index)?.as_deref()
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// What the loads, rejects and processed tables say about the jobs that filled them.
#[derive(Debug, Clone, Default)]
pub struct Reconciliation {
    /// `files`, `rows_read`, `rows_loaded`, `rows_rejected`, `last_loaded_at` (one row), or
    /// `None` when nothing was loaded with this fxpipe (no loads table).
    pub loads: Option<TextTable>,
    /// `reason`, `rows_rejected`.
    pub rejects: TextTable,
    /// `currency`, `amounts`, `total` (in that currency).
    pub unconverted: TextTable,
    /// The newest saved job report of each job, from `<lake>/_reports/`.
    pub last_jobs: Vec<JobRun>,
}

/// Everything the page shows.
#[derive(Debug, Clone)]
pub struct CreditReport {
    /// Where the lake is (as the user named it).
    pub lake: String,
    /// When the report was made, UTC.
    pub generated_at: String,
    pub base_currency: String,
    /// The Delta version of each table read.
    pub versions: Vec<(&'static str, u64)>,
    /// `creditworthiness`, `accounts`.
    pub bands: TextTable,
    /// The first [`TOP_RATIO_ACCOUNTS`] rows of `top_ratio_accounts.sql`.
    pub top_ratio: TextTable,
    /// The `currency-exposure` report.
    pub exposure: TextTable,
    /// How many accounts `processed` holds.
    pub accounts: usize,
    /// `balance_history` rows of the [`CHARTED_ACCOUNTS`] most active accounts.
    pub history: TextTable,
    pub reconciliation: Reconciliation,
}

/// Runs every query of the report over the lake's tables at their latest versions.
pub async fn gather(engine: &Engine, lake: &Lake) -> Result<CreditReport, JobError> {
    let processed_version = analytics::register_processed(engine, lake).await?;
    let mut versions = vec![(Table::Processed.sql_name(), processed_version)];
    let options = ReportOptions::default();
    let ctx = engine.ctx();

    let credit = analytics::plan_registered(engine, "creditworthiness", &options).await?;
    register_view(engine, "creditworthiness", credit)?;
    let bands = collect(engine, ctx.sql(CREDIT_BANDS_SQL).await?).await?;
    let base_currency = one_base_currency(&bands)?;
    let accounts = (0..bands.len())
        .filter_map(|row| bands.get(row, "accounts")?.parse::<usize>().ok())
        .sum();
    let top_ratio = ctx
        .sql(TOP_RATIO_SQL)
        .await?
        .limit(0, Some(TOP_RATIO_ACCOUNTS))?;
    let top_ratio = collect(engine, top_ratio).await?;
    let exposure = analytics::plan_registered(engine, "currency-exposure", &options).await?;
    let exposure = collect(engine, exposure).await?;

    let history = analytics::plan_registered(engine, "balance-history", &options).await?;
    register_view(engine, "balance_history", history)?;
    let active = ctx
        .sql(MOST_ACTIVE_SQL)
        .await?
        .limit(0, Some(CHARTED_ACCOUNTS))?;
    register_view(engine, "chart_accounts", active)?;
    let history = collect(engine, ctx.sql(CHART_HISTORY_SQL).await?).await?;

    let unconverted = collect(engine, ctx.sql(UNCONVERTED_SQL).await?).await?;
    let mut reconciliation = Reconciliation {
        unconverted,
        last_jobs: jobs::latest(lake).await?,
        ..Default::default()
    };
    if let Some(version) = engine.register_table_version(lake, Table::Loads).await? {
        versions.push((Table::Loads.sql_name(), version));
        reconciliation.loads = Some(collect(engine, ctx.sql(LOAD_TOTALS_SQL).await?).await?);
    }
    if let Some(version) = engine.register_table_version(lake, Table::Rejects).await? {
        versions.push((Table::Rejects.sql_name(), version));
        reconciliation.rejects = collect(engine, ctx.sql(REJECTS_SQL).await?).await?;
    }

    Ok(CreditReport {
        lake: lake.display().to_string(),
        generated_at: chrono::Utc::now()
            .format("%Y-%m-%d %H:%M:%S UTC")
            .to_string(),
        base_currency,
        versions,
        bands,
        top_ratio,
        exposure,
        accounts,
        history,
        reconciliation,
    })
}

/// Names a planned query so the next queries can read it; a view is a logical plan, inlined
/// where it is used, so it travels to a cluster.
fn register_view(engine: &Engine, name: &str, frame: DataFrame) -> Result<(), JobError> {
    let ctx = engine.ctx();
    let _ = ctx.deregister_table(name);
    ctx.register_table(name, frame.into_view())?;
    Ok(())
}

/// The page's amounts are in one currency. `normalize` writes one base currency per table (a
/// month range in another is refused), so two would mean a table fxpipe did not write.
fn one_base_currency(bands: &TextTable) -> Result<String, JobError> {
    let mut found: Vec<&str> = (0..bands.len())
        .filter_map(|row| bands.get(row, "base_currency"))
        .collect();
    found.dedup();
    match found.as_slice() {
        [one] => Ok(one.to_string()),
        [] => Err(JobError::MissingTable(
            "processed",
            "it has no rows; load transactions and run `fxpipe normalize` first",
        )),
        several => Err(JobError::Invalid(format!(
            "the processed table holds amounts in several base currencies ({}); \
             run `fxpipe normalize` (without --from/--to) to rewrite it in one",
            several.join(", ")
        ))),
    }
}

/// Runs a query to the end (through the engine, so a cluster job lost with an executor is
/// submitted again) and keeps its values as text.
async fn collect(engine: &Engine, frame: DataFrame) -> Result<TextTable, JobError> {
    let columns = frame
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let batches = engine.collect(frame.into_unoptimized_plan()).await?;
    let mut rows = Vec::new();
    for batch in batches {
        let texts = batch
            .columns()
            .iter()
            .map(|column| arrow::compute::cast(column, &DataType::Utf8))
            .collect::<Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            rows.push(
                texts
                    .iter()
                    .map(|text| {
                        let text = text.as_string::<i32>();
                        (!text.is_null(row)).then(|| text.value(row).to_string())
                    })
                    .collect(),
            );
        }
    }
    Ok(TextTable { columns, rows })
}
