//! `fxpipe normalize`: transactions × rates → the processed table, in the base currency.
//!
//! The plan is `sql/normalize.sql`; this module registers its inputs, writes its output as one
//! Delta commit (the whole table, or exactly the `year/month` partitions of `--from/--to` with
//! a `replaceWhere`), and counts what was and was not converted.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::AsArray;
use arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{cast, col, lit, Expr, LogicalPlan};
use tracing::{info, info_span, warn, Instrument};

use super::{changes, JobError};
use crate::engine::broadcast::Broadcast;
use crate::engine::partition_files::DEFAULT_MAX_OPEN_FILES;
use crate::engine::tally::Tally;
use crate::engine::write::{WriteNode, WriteShuffle, WriteTarget, Written};
use crate::engine::{Engine, RESUBMISSIONS};
use crate::report::NormalizeReport;
use crate::storage::staged::{self, Replace};
use crate::storage::{delta, Lake, Table};

const NORMALIZE_SQL: &str = include_str!("../../sql/normalize.sql");
const RATE_CALENDAR_SQL: &str = include_str!("../../sql/rate_calendar.sql");
const RATE_CONFLICTS_SQL: &str = include_str!("../../sql/rate_conflicts.sql");

/// The longest `--max-rate-age`: a year (a leap year's 366 days). Older rates are not a
/// conversion, they are a guess.
pub const MAX_RATE_AGE_DAYS: u32 = 366;

/// Rows per batch in normalize's plan (see where it is set).
const NORMALIZE_BATCH_ROWS: usize = 32 * 1024;

/// The processed table's column naming the currency its amounts are in.
pub const BASE_CURRENCY_COLUMN: &str = "base_currency";

/// The table property of `processed` that records its base currency: checked against the
/// version each month rewrite commits on, so two normalizes in different bases at once can
/// never leave one table in two currencies.
pub const BASE_CURRENCY_PROPERTY: &str = "fxpipe.baseCurrency";

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

    /// Its first day, and the first day of the next month.
    fn days(self) -> (chrono::NaiveDate, chrono::NaiveDate) {
        let first = chrono::NaiveDate::from_ymd_opt(self.year, self.month, 1).unwrap_or_default();
        let next = if self.month == 12 {
            chrono::NaiveDate::from_ymd_opt(self.year + 1, 1, 1)
        } else {
            chrono::NaiveDate::from_ymd_opt(self.year, self.month + 1, 1)
        };
        (first, next.unwrap_or_default())
    }
}

impl std::fmt::Display for YearMonth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{:02}", self.year, self.month)
    }
}

/// The transactions of `months`, by `date` itself (so Parquet statistics skip the rest).
fn dated_in(months: &BTreeSet<YearMonth>) -> Option<Expr> {
    months
        .iter()
        .map(|month| {
            let (first, next) = month.days();
            col("date")
                .gt_eq(lit(ScalarValue::Date32(Some(days_since_epoch(first)))))
                .and(col("date").lt(lit(ScalarValue::Date32(Some(days_since_epoch(next))))))
        })
        .reduce(Expr::or)
}

fn days_since_epoch(day: chrono::NaiveDate) -> i32 {
    (day - chrono::NaiveDate::default()).num_days() as i32
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
    /// Whether the write shuffles rows by month first (on a cluster).
    pub write_shuffle: WriteShuffle,
    /// Recompute only the months whose inputs changed since the last normalize (see
    /// [`super::changes`]); nothing at all when nothing changed.
    pub changed: bool,
    /// The most months each write task keeps a file open for (see
    /// [`crate::engine::partition_files`]).
    pub max_open_files: usize,
}

/// Which rows a run recomputes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Selection {
    Whole,
    Range(YearMonth, YearMonth),
    Months(BTreeSet<YearMonth>),
}

impl Default for NormalizeOptions {
    fn default() -> Self {
        Self {
            base_currency: "SGD".to_string(),
            max_rate_age_days: 3,
            strict: false,
            column_suffix: "sgd".to_string(),
            months: None,
            write_shuffle: WriteShuffle::Auto,
            changed: false,
            max_open_files: DEFAULT_MAX_OPEN_FILES,
        }
    }
}

/// The rows of the months `from..=to`, in terms of the partition columns alone (comparisons,
/// no arithmetic), so the scan of an existing table can prune by partition.
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

/// Runs the job: one commit of the whole table, or of exactly the months asked for. A
/// concurrent commit to other months does not conflict; one to the same months came first,
/// and this run's rows replace them on top of it.
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
    tune_session(engine)?;
    let (transactions_log, rates_log) = open_inputs(engine, lake).await?;
    if options.max_rate_age_days > MAX_RATE_AGE_DAYS {
        return Err(JobError::Invalid(format!(
            "max rate age {} days is out of range: 0 to {MAX_RATE_AGE_DAYS} days",
            options.max_rate_age_days
        )));
    }
    let recorded = changes::Recorded::now(
        options,
        transactions_log.version().unwrap_or_default() as i64,
        rates_log.version().unwrap_or_default() as i64,
        &format!("{NORMALIZE_SQL}{RATE_CALENDAR_SQL}"),
    );
    report.transactions_version = recorded.transactions_version;
    report.rates_version = recorded.rates_version;
    let inputs = (&transactions_log, &rates_log);
    let Some(selection) = select(engine, lake, options, &recorded, inputs, &mut report).await?
    else {
        return Ok(report);
    };
    if selection != Selection::Whole {
        check_same_base(engine, lake, options).await?;
    }
    let transactions = selected_transactions(engine, &selection).await?;
    let counted = match selection {
        Selection::Whole => counted_in_log(&transactions_log, options).await?,
        _ => None,
    };
    let (rows_in, rate_dates) = match counted {
        Some(counted) => {
            info!(
                rows = counted.0,
                "transactions counted from the Delta log's statistics"
            );
            counted
        }
        None => rows_and_rate_dates(engine, transactions, options).await?,
    };
    report.rows_in = rows_in;
    check_one_rate_per_day(engine, &rate_dates).await?;
    let calendar = rate_calendar(engine, lake, options, &rate_dates).await?;
    report
        .stage_ms
        .insert("plan", started.elapsed().as_millis() as u64);
    let result =
        convert_and_commit(engine, lake, options, &selection, &recorded, &mut report).await;
    calendar.remove(engine).await;
    result?;
    report
        .stage_ms
        .insert("total", started.elapsed().as_millis() as u64);
    info!(
        rows = report.rows_written,
        unconverted = report.unconverted,
        tasks = report.write_tasks,
        files = report.files_written,
        "normalized"
    );
    Ok(report)
}

/// Session settings of a normalize run.
fn tune_session(engine: &Engine) -> Result<(), JobError> {
    let ctx = engine.ctx();
    let state = ctx.state_ref();
    let mut state = state.write();
    let options = state.config_mut().options_mut();
    // The rate calendar (the build side of both joins) is small: broadcast it to every
    // partition of the transactions instead of hash-repartitioning millions of rows twice.
    // DataFusion cannot tell it is small (no row count after the unnest), so say so here.
    options.optimizer.repartition_joins = false;
    // A run of some months (`--changed`, `--from/--to`) reads their rows out of transactions
    // files that hold every month (a bank export is one account's years after another's):
    // filtering `date` while decoding skips the other columns' pages for the rows it drops.
    // A whole run has no filter, so nothing changes for it.
    options.execution.parquet.pushdown_filters = true;
    // Larger batches than DataFusion's 8192 rows: the writer splits every batch by year
    // and month, so an 8192-row batch of five years reaches each of its ~60 partition
    // writers as ~140 rows, and the Parquet writer's per-call cost dominated. With 32768
    // rows normalize took ~16% less time at 1M rows and ~20% at 10M, for 4-8% more memory
    // (benches/README.md, findings).
    options.execution.batch_size =
        datafusion::common::config::ConfigNonZeroUsize::try_new(NORMALIZE_BATCH_ROWS)?;
    Ok(())
}

/// Registers `transactions` and `rates` for the join and returns the versions registered.
async fn open_inputs(
    engine: &Engine,
    lake: &Lake,
) -> Result<(deltalake::DeltaTable, deltalake::DeltaTable), JobError> {
    let Some(transactions_log) = engine
        .register_table_opened(lake, Table::Transactions)
        .await?
    else {
        return Err(JobError::MissingTable(
            "transactions",
            "run `fxpipe load FILE.csv` first",
        ));
    };
    // The version registered for the join is the one recorded: a second open could see an
    // ingest that committed in between, which the next `--changed` would then miss.
    let Some(rates_log) = engine.register_table_opened(lake, Table::Rates).await? else {
        return Err(JobError::MissingTable(
            "rates",
            "run `fxpipe ingest --source file://DIR --from D1 --to D2` first",
        ));
    };
    Ok((transactions_log, rates_log))
}

/// The months this run recomputes: those asked for, those whose inputs changed since the last
/// run (`--changed`), or all. `None` when `--changed` finds nothing to do (the report says so).
async fn select(
    engine: &Engine,
    lake: &Lake,
    options: &NormalizeOptions,
    recorded: &changes::Recorded,
    (transactions_log, rates_log): (&deltalake::DeltaTable, &deltalake::DeltaTable),
    report: &mut NormalizeReport,
) -> Result<Option<Selection>, JobError> {
    if let Some((from, to)) = options.months {
        return Ok(Some(Selection::Range(from, to)));
    }
    if !options.changed {
        return Ok(Some(Selection::Whole));
    }
    Ok(
        match changes::plan(engine, lake, recorded, transactions_log, rates_log).await? {
            changes::Plan::UpToDate => {
                report.up_to_date = true;
                report.processed_version = processed_version(lake).await?;
                info!(
                    transactions = recorded.transactions_version,
                    rates = recorded.rates_version,
                    "processed is up to date"
                );
                None
            }
            changes::Plan::Full(reason) => {
                report.recomputed_because = Some(reason);
                Some(Selection::Whole)
            }
            changes::Plan::Months(months) => {
                report.months_recomputed = months
                    .iter()
                    .map(|(month, why)| (month.to_string(), why.iter().cloned().collect()))
                    .collect();
                Some(Selection::Months(months.into_keys().collect()))
            }
        },
    )
}

/// The registered transactions, filtered to the selected months.
async fn selected_transactions(
    engine: &Engine,
    selection: &Selection,
) -> Result<datafusion::dataframe::DataFrame, JobError> {
    let transactions = engine.ctx().table("transactions").await?;
    Ok(match selection {
        Selection::Whole => transactions,
        // Plain comparisons of `date`, as for --changed: they reach the Parquet scan, and
        // computing year*100+month for every row took 15% of a two-month rewrite at 10M rows.
        Selection::Range(from, to) => {
            let (first, _) = from.days();
            let (_, next) = to.days();
            let day = |d| lit(ScalarValue::Date32(Some(days_since_epoch(d))));
            transactions.filter(col("date").gt_eq(day(first)).and(col("date").lt(day(next))))?
        }
        Selection::Months(months) => match dated_in(months) {
            Some(filter) => transactions.filter(filter)?,
            None => transactions,
        },
    })
}

/// The rate calendar of `sql/rate_calendar.sql`, computed here (from the rates of the dates
/// the transactions can use) and registered as `rate_calendar` for the join: see
/// [`crate::engine::broadcast`].
async fn rate_calendar(
    engine: &Engine,
    lake: &Lake,
    options: &NormalizeOptions,
    (first, last): &(ScalarValue, ScalarValue),
) -> Result<Broadcast, JobError> {
    let calendar = engine
        .local_ctx()
        .sql(RATE_CALENDAR_SQL)
        .await?
        .with_param_values(vec![
            ScalarValue::Utf8(Some(options.base_currency.clone())),
            ScalarValue::Int64(Some(i64::from(options.max_rate_age_days))),
            first.clone(),
            last.clone(),
        ])?;
    let schema = Arc::new(calendar.schema().as_arrow().clone());
    let batches = engine
        .collect_here(calendar.into_unoptimized_plan())
        .instrument(info_span!("rate calendar"))
        .await?;
    Ok(engine
        .broadcast(lake, "rate_calendar", schema, batches)
        .await?)
}

/// The converted rows (`sql/normalize.sql`) of the selected months.
async fn converted(
    engine: &Engine,
    options: &NormalizeOptions,
    selection: &Selection,
) -> Result<datafusion::dataframe::DataFrame, JobError> {
    let normalized = engine
        .ctx()
        .sql(NORMALIZE_SQL)
        .await?
        .with_param_values(vec![ScalarValue::Utf8(Some(options.base_currency.clone()))])?;
    Ok(match selection {
        Selection::Range(from, to) => normalized.filter(months_between(*from, *to))?,
        // On `date` itself, which the optimizer pushes through the joins to the
        // transactions' scan, where Parquet statistics skip the other months' files.
        Selection::Months(months) => match dated_in(months) {
            Some(filter) => normalized.filter(filter)?,
            None => normalized,
        },
        Selection::Whole => normalized,
    })
}

/// Why the written files must not be committed: `--strict` with unconverted amounts, or rows
/// that do not reconcile.
fn refusal(options: &NormalizeOptions, report: &NormalizeReport) -> Option<JobError> {
    if options.strict && report.unconverted > 0 {
        Some(JobError::Unconverted {
            count: report.unconverted,
            detail: unconverted_detail(report),
        })
    } else if report.rows_written != report.rows_in {
        Some(JobError::Invalid(format!(
            "rows do not reconcile: {} transactions in, {} rows out of the join; nothing was written",
            report.rows_in, report.rows_written
        )))
    } else {
        None
    }
}

/// Joins the transactions with the registered rate calendar, writes the processed table's
/// files and commits them (or deletes them when the counts refuse the result).
async fn convert_and_commit(
    engine: &Engine,
    lake: &Lake,
    options: &NormalizeOptions,
    selection: &Selection,
    recorded: &changes::Recorded,
    report: &mut NormalizeReport,
) -> Result<(), JobError> {
    let mut normalized = converted(engine, options, selection).await?;
    // The write node writes the files in as many tasks as there are partitions (here or on
    // the executors); this process checks their tallies, then commits them once.
    let stage = Instant::now();
    if options.column_suffix != "sgd" {
        for (from, to) in converted_columns(&options.column_suffix) {
            normalized = normalized.with_column_renamed(&from, &to)?;
        }
    }
    let schema = Arc::new(normalized.schema().as_arrow().clone());
    let target = WriteTarget {
        max_open_files: options.max_open_files,
        ..WriteTarget::of(
            lake,
            Table::Processed,
            Some(options.column_suffix.clone()),
            options
                .write_shuffle
                .applies(engine.cluster_address().is_some(), engine.partitions()),
        )
    };
    let plan = WriteNode::new(normalized.into_unoptimized_plan(), target)?.into_plan();
    let written = write_reconciled(engine, lake, plan, report).await?;
    fill(&written.tally, report);
    report.files_written = written.adds.len() as u64;
    report.write_tasks = written.tasks as u64;
    if let Some(refusal) = refusal(options, report) {
        discard(lake, written.adds).await;
        return Err(refusal);
    }
    report
        .stage_ms
        .insert("join_and_write", stage.elapsed().as_millis() as u64);
    let commit = Instant::now();
    let replace = match selection {
        Selection::Range(from, to) => months_replaced(*from, *to),
        Selection::Months(months) => months_set_replaced(months.clone()),
        Selection::Whole => Replace::Table,
    };
    // A commit that fails leaves its files unreferenced (vacuum removes them): deleting them
    // here could break a commit whose answer was lost but that did land.
    report.processed_version = staged::commit_written(
        lake,
        Table::Processed,
        schema,
        &written.adds,
        &replace,
        &[(BASE_CURRENCY_PROPERTY, options.base_currency.as_str())],
        &recorded.info(),
    )
    .instrument(info_span!("commit processed"))
    .await?;
    report
        .stage_ms
        .insert("commit", commit.elapsed().as_millis() as u64);
    Ok(())
}

/// Runs the write and gathers what its tasks wrote. On a cluster, when the rows out do not
/// match the rows in and an executor was lost while the job ran, the files are discarded and
/// the job is submitted again (at most [`RESUBMISSIONS`] times): Ballista 55, after rolling
/// back a stage for a lost executor, can report both the first and the re-run attempts of the
/// last stage's tasks, and feed a re-run task its input twice (measured on a loopback cluster,
/// one of two executors killed 1.2 s into a 1M-row normalize: 1,785,479 rows out of 999,047
/// in, in one run of three). The reconciliation below refuses such a result either way; this
/// turns the refusal into a finished run. Without a loss a mismatch is refused at once.
async fn write_reconciled(
    engine: &Engine,
    lake: &Lake,
    plan: LogicalPlan,
    report: &mut NormalizeReport,
) -> Result<Written, JobError> {
    let mut resubmitted = 0;
    loop {
        let losses = engine.executor_losses();
        let batches = engine
            .collect(plan.clone())
            .instrument(info_span!("write processed"))
            .await?;
        let written = Written::from_batches(&batches)?;
        if written.tally.rows == report.rows_in
            || engine.cluster_address().is_none()
            || resubmitted >= RESUBMISSIONS
        {
            return Ok(written);
        }
        // The watcher polls every half second: give it a look at the executors first.
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        if engine.executor_losses() == losses {
            return Ok(written);
        }
        resubmitted += 1;
        report.write_resubmissions = resubmitted as u64;
        warn!(
            rows_in = report.rows_in,
            rows_out = written.tally.rows,
            "an executor was lost while the job ran and its write tasks' results do not \
             reconcile (Ballista 55 reports a rolled-back stage's tasks twice): their files \
             are discarded and the job is submitted again"
        );
        discard(lake, written.adds).await;
    }
}

/// Deletes a refused write's uncommitted files (a failure only leaves them to `vacuum`).
async fn discard(lake: &Lake, adds: Vec<deltalake::kernel::Add>) {
    let discarded = match staged::StagedFiles::from_adds(lake, Table::Processed, adds) {
        Ok(files) => files.discard().await,
        Err(e) => Err(e),
    };
    if let Err(e) = discarded {
        warn!("could not delete the uncommitted files (vacuum will): {e}");
    }
}

/// Exactly `months` (scattered, not a range) as a replacement.
fn months_set_replaced(months: BTreeSet<YearMonth>) -> Replace {
    let predicate = months
        .iter()
        .map(|m| format!("(year = {} AND month = {})", m.year, m.month))
        .collect::<Vec<_>>()
        .join(" OR ");
    let keys: BTreeSet<i64> = months.iter().map(|m| m.key()).collect();
    let matches = move |values: &std::collections::HashMap<String, Option<String>>| {
        let number = |name: &str| values.get(name)?.as_deref()?.parse::<i64>().ok();
        match (number("year"), number("month")) {
            (Some(year), Some(month)) => keys.contains(&(year * 100 + month)),
            _ => false,
        }
    };
    Replace::Partitions {
        predicate,
        matches: Box::new(matches),
    }
}

/// processed's current version (-1 when it has none).
async fn processed_version(lake: &Lake) -> Result<i64, JobError> {
    Ok(delta::open(lake, Table::Processed)
        .await?
        .and_then(|t| t.version())
        .map(|v| v as i64)
        .unwrap_or(-1))
}

/// The months `from..=to` as a replacement: by partition value, and as SQL for the log.
fn months_replaced(from: YearMonth, to: YearMonth) -> Replace {
    let predicate = format!(
        "(year > {fy} OR (year = {fy} AND month >= {fm})) AND (year < {ty} OR (year = {ty} AND month <= {tm}))",
        fy = from.year,
        fm = from.month,
        ty = to.year,
        tm = to.month
    );
    let matches = move |values: &std::collections::HashMap<String, Option<String>>| {
        let number = |name: &str| values.get(name)?.as_deref()?.parse::<i64>().ok();
        match (number("year"), number("month")) {
            (Some(year), Some(month)) => (from.key()..=to.key()).contains(&(year * 100 + month)),
            _ => false,
        }
    };
    Replace::Partitions {
        predicate,
        matches: Box::new(matches),
    }
}

/// Copies a write's counts into the report.
fn fill(tally: &Tally, report: &mut NormalizeReport) {
    report.rows_written = tally.rows;
    report.withdrawals = tally.sides[0][0];
    report.withdrawals_converted = tally.sides[0][1];
    report.deposits = tally.sides[1][0];
    report.deposits_converted = tally.sides[1][1];
    report.converted_with_earlier_rate = tally.sides[0][2] + tally.sides[1][2];
    report.unconverted = tally.unconverted_total();
    report.unconverted_by_currency = tally.unconverted.clone();
    report.partitions_written = tally.partitions.keys().cloned().collect();
    report.partitions_spilled = tally.spilled_partitions;
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
async fn check_one_rate_per_day(
    engine: &Engine,
    (first, last): &(ScalarValue, ScalarValue),
) -> Result<(), JobError> {
    // In this process, like the rate calendar: the rates of a run's dates are small.
    let conflicts = engine
        .collect_here(
            engine
                .local_ctx()
                .sql(RATE_CONFLICTS_SQL)
                .await?
                .with_param_values(vec![first.clone(), last.clone()])?
                .into_unoptimized_plan(),
        )
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

/// A data file's statistics in the Delta log (the columns fxpipe reads from them).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stats {
    num_records: Option<u64>,
    #[serde(default)]
    null_count: std::collections::HashMap<String, serde_json::Value>,
    #[serde(default)]
    min_values: std::collections::HashMap<String, serde_json::Value>,
    #[serde(default)]
    max_values: std::collections::HashMap<String, serde_json::Value>,
}

/// A live file's rows, the nulls of one column among them, and its statistics.
struct FileStats {
    records: u64,
    nulls: u64,
    stats: Stats,
}

/// Every live file of `table` (named `table_name`) with its rows and the nulls of `column`,
/// from the log; `None` when a file lacks them, or has a deletion vector (its `numRecords`
/// counts deleted rows).
async fn files_stats(
    table: &deltalake::DeltaTable,
    table_name: Table,
    column: &str,
) -> Result<Option<Vec<FileStats>>, JobError> {
    use futures::TryStreamExt;
    let mut found = Vec::new();
    let mut files = table.get_active_add_actions_by_partitions(&[]);
    while let Some(file) =
        files
            .try_next()
            .await
            .map_err(|source| crate::storage::StorageError::Delta {
                table: table_name.sql_name().to_string(),
                source,
            })?
    {
        if file.deletion_vector_descriptor().is_some() {
            return Ok(None);
        }
        let Some(stats) = file
            .stats()
            .and_then(|json| serde_json::from_str::<Stats>(&json).ok())
        else {
            return Ok(None);
        };
        let (Some(records), Some(nulls)) = (
            stats.num_records,
            stats.null_count.get(column).and_then(|n| n.as_u64()),
        ) else {
            return Ok(None);
        };
        found.push(FileStats {
            records,
            nulls,
            stats,
        });
    }
    Ok(Some(found))
}

/// The base currencies of `processed`'s live files from their statistics in the log, `NULL`
/// for rows without one; `None` when a file has no usable statistics (then the rows tell).
async fn bases_in_log(table: &deltalake::DeltaTable) -> Result<Option<BTreeSet<String>>, JobError> {
    let Some(files) = files_stats(table, Table::Processed, BASE_CURRENCY_COLUMN).await? else {
        return Ok(None);
    };
    let mut bases = BTreeSet::new();
    for file in files {
        if file.nulls > 0 {
            bases.insert("NULL".to_string());
        }
        if file.nulls < file.records {
            let text = |values: &std::collections::HashMap<String, serde_json::Value>| {
                values
                    .get(BASE_CURRENCY_COLUMN)
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            };
            // Statistics may truncate long strings; a three-letter code never is.
            let (Some(min), Some(max)) =
                (text(&file.stats.min_values), text(&file.stats.max_values))
            else {
                return Ok(None);
            };
            bases.insert(min);
            bases.insert(max);
        }
    }
    Ok(Some(bases))
}

/// What [`rows_and_rate_dates`] computes, read from the Delta log's per-file statistics
/// (`numRecords`, `nullCount`, `minValues`, `maxValues` of `value_date`) instead of a pass over
/// the data: on a cluster that pass was a job of its own. `None` (so the pass runs) unless every
/// file's statistics are there and exact: fxpipe's loads write them; another writer may not, and
/// a deletion vector makes `numRecords` count deleted rows.
async fn counted_in_log(
    table: &deltalake::DeltaTable,
    options: &NormalizeOptions,
) -> Result<Option<(u64, (ScalarValue, ScalarValue))>, JobError> {
    let day = |value: Option<&serde_json::Value>| -> Option<i32> {
        let date = chrono::NaiveDate::parse_from_str(value?.as_str()?, "%Y-%m-%d").ok()?;
        let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?;
        i32::try_from((date - epoch).num_days()).ok()
    };
    let Some(files) = files_stats(table, Table::Transactions, "value_date").await? else {
        return Ok(None);
    };
    let (mut rows, mut first, mut last) = (0u64, None::<i32>, None::<i32>);
    for file in files {
        rows += file.records;
        if file.nulls < file.records {
            let (Some(min), Some(max)) = (
                day(file.stats.min_values.get("value_date")),
                day(file.stats.max_values.get("value_date")),
            ) else {
                return Ok(None);
            };
            first = Some(first.map_or(min, |f| f.min(min)));
            last = Some(last.map_or(max, |l| l.max(max)));
        }
    }
    Ok(Some((
        rows,
        (
            ScalarValue::Date32(first.map(|day| day - options.max_rate_age_days as i32)),
            ScalarValue::Date32(last),
        ),
    )))
}

/// The transactions to convert, counted, and the first and last rate dates they can use: the
/// earliest value date minus the rate age, and the latest value date (both NULL, so no rate is
/// read, when no transaction has a value date). One pass over the table gives all three.
async fn rows_and_rate_dates(
    engine: &Engine,
    transactions: datafusion::dataframe::DataFrame,
    options: &NormalizeOptions,
) -> Result<(u64, (ScalarValue, ScalarValue)), JobError> {
    use datafusion::functions_aggregate::expr_fn::{count, max, min};
    let plan = transactions
        .aggregate(
            vec![],
            vec![
                count(lit(1)).alias("n"),
                min(col("value_date")).alias("first"),
                max(col("value_date")).alias("last"),
            ],
        )?
        .into_unoptimized_plan();
    let batches = engine.collect(plan).await?;
    let batch = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .ok_or_else(|| JobError::Invalid("counting the transactions returned no row".into()))?;
    let rows = ScalarValue::try_from_array(batch.column(0), 0)?;
    let rows = match rows {
        ScalarValue::Int64(Some(n)) => n as u64,
        other => {
            return Err(JobError::Invalid(format!(
                "counting the transactions returned {other:?}"
            )))
        }
    };
    let first = match ScalarValue::try_from_array(batch.column(1), 0)? {
        ScalarValue::Date32(Some(day)) => {
            ScalarValue::Date32(Some(day - options.max_rate_age_days as i32))
        }
        _ => ScalarValue::Date32(None),
    };
    let last = match ScalarValue::try_from_array(batch.column(2), 0)? {
        ScalarValue::Date32(Some(day)) => ScalarValue::Date32(Some(day)),
        _ => ScalarValue::Date32(None),
    };
    Ok((rows, (first, last)))
}

/// The base currencies the processed table's rows are in (none when it is empty or missing).
/// A table written before fxpipe recorded them has no `base_currency` column: `None`.
async fn processed_bases(engine: &Engine, lake: &Lake) -> Result<Option<Vec<String>>, JobError> {
    let Some(log) = engine.register_table_opened(lake, Table::Processed).await? else {
        return Ok(Some(Vec::new()));
    };
    let ctx = engine.ctx();
    let processed = ctx.table(Table::Processed.sql_name()).await?;
    if !processed
        .schema()
        .has_column_with_unqualified_name(BASE_CURRENCY_COLUMN)
    {
        return Ok(None);
    }
    // The files' statistics in the log answer without reading a row: a scan of the column
    // took 230 ms of a day's 1-second run at 10M rows.
    if let Some(bases) = bases_in_log(&log).await? {
        return Ok(Some(bases.into_iter().collect()));
    }
    let batches = engine
        .collect(
            processed
                .select(vec![cast(col(BASE_CURRENCY_COLUMN), DataType::Utf8)])?
                .distinct()?
                .into_unoptimized_plan(),
        )
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

#[cfg(test)]
mod tests {
    use arrow::array::Array;
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

    /// Days since 1970-01-01 of a `YYYY-MM-DD` date.
    fn day(text: &str) -> i32 {
        let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap();
        (date - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days() as i32
    }

    /// (value date, converted, rate date) per transaction, with the given rate age: the same
    /// whether every rate is read or only the job's range (the earliest value date minus the
    /// age to the latest value date).
    async fn convert_all(age: i64) -> datafusion::error::Result<Vec<[String; 3]>> {
        let everything = convert_between(age, day("1900-01-01"), day("2100-01-01")).await?;
        let range = (day("2016-12-31") - age as i32, day("2018-01-22"));
        let only_used = convert_between(age, range.0, range.1).await?;
        assert_eq!(
            only_used, everything,
            "age {age}: reading only {range:?} changes nothing"
        );
        Ok(everything)
    }

    async fn convert_between(
        age: i64,
        first: i32,
        last: i32,
    ) -> datafusion::error::Result<Vec<[String; 3]>> {
        let ctx = SessionContext::new();
        ctx.register_udf(crate::engine::functions::FxConvert::udf());
        ctx.sql(RATES).await?.collect().await?;
        ctx.sql(TRANSACTIONS).await?.collect().await?;
        // As the job does: the calendar once, registered, then the join.
        let calendar = ctx.sql(RATE_CALENDAR_SQL).await?.with_param_values(vec![
            ScalarValue::Utf8(Some("SGD".to_string())),
            ScalarValue::Int64(Some(age)),
            ScalarValue::Date32(Some(first)),
            ScalarValue::Date32(Some(last)),
        ])?;
        let frame_plans = |plan: datafusion::logical_expr::LogicalPlan, what: &str| {
            let shown = plan.display_indent_schema().to_string();
            assert!(!shown.contains("Float"), "{what} plans a float:\n{shown}");
        };
        frame_plans(calendar.clone().into_optimized_plan()?, "the rate calendar");
        let schema = Arc::new(calendar.schema().as_arrow().clone());
        let batches = calendar.collect().await?;
        ctx.register_table(
            "rate_calendar",
            Arc::new(datafusion::datasource::MemTable::try_new(
                schema,
                vec![batches],
            )?),
        )?;
        let frame = ctx
            .sql(NORMALIZE_SQL)
            .await?
            .with_param_values(vec![ScalarValue::Utf8(Some("SGD".to_string()))])?;
        frame_plans(frame.clone().into_optimized_plan()?, "normalize");
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

    #[test]
    fn a_month_range_replaces_exactly_its_partitions_across_a_year_end() {
        let from = "2017-11".parse().unwrap();
        let to = "2018-02".parse().unwrap();
        let Replace::Partitions { predicate, matches } = months_replaced(from, to) else {
            panic!("a month range replaces partitions");
        };
        let partition = |year: Option<&str>, month: Option<&str>| {
            let mut values = std::collections::HashMap::new();
            values.insert("year".to_string(), year.map(str::to_string));
            values.insert("month".to_string(), month.map(str::to_string));
            values
        };
        for (year, month, replaced) in [
            ("2017", "10", false),
            ("2017", "11", true),
            ("2017", "12", true),
            ("2018", "1", true),
            ("2018", "2", true),
            ("2018", "3", false),
            ("2016", "12", false),
        ] {
            assert_eq!(
                matches(&partition(Some(year), Some(month))),
                replaced,
                "{year}-{month}"
            );
        }
        // A file without partition values is never taken for one of the months.
        assert!(!matches(&partition(None, Some("12"))));
        assert!(!matches(&partition(Some("2017"), None)));
        assert_eq!(
            predicate,
            "(year > 2017 OR (year = 2017 AND month >= 11)) AND (year < 2018 OR (year = 2018 AND month <= 2))"
        );
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

    /// rate_conflicts.sql finds a day with two rates for one currency only inside the range
    /// the job reads.
    #[tokio::test]
    async fn rate_conflicts_are_looked_for_in_the_range_used() -> datafusion::error::Result<()> {
        let ctx = SessionContext::new();
        ctx.sql(
            "CREATE TABLE rates AS
             SELECT CAST(column1 AS DATE) AS run_date, column2 AS target_currency,
                    CAST(column3 AS DECIMAL(38, 18)) AS rates_base_usd
             FROM (VALUES ('2010-05-05', 'INR', '40'), ('2010-05-05', 'INR', '41'),
                          ('2017-01-02', 'INR', '63'), ('2017-01-02', 'INR', '63'))",
        )
        .await?
        .collect()
        .await?;
        let conflicts = |first: &str, last: &str| {
            let ctx = ctx.clone();
            let (first, last) = (day(first), day(last));
            async move {
                let batches = ctx
                    .sql(RATE_CONFLICTS_SQL)
                    .await?
                    .with_param_values(vec![
                        ScalarValue::Date32(Some(first)),
                        ScalarValue::Date32(Some(last)),
                    ])?
                    .collect()
                    .await?;
                Ok::<_, datafusion::error::DataFusionError>(
                    batches.iter().map(|b| b.num_rows()).sum::<usize>(),
                )
            }
        };
        assert_eq!(
            conflicts("2016-12-29", "2017-06-30").await?,
            0,
            "the same rate twice is one rate"
        );
        assert_eq!(conflicts("2010-01-01", "2017-06-30").await?, 1);
        Ok(())
    }
}
