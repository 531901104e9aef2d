//! `fxpipe run`: the daily job, as its three commands would run it in turn (ingest, load,
//! `normalize --changed`), with one report of the whole run. A step that fails stops the run
//! and names the step; the steps before it stay committed, and a re-run redoes only what is
//! left (each step skips what is already done: stored rate days, known files, unchanged
//! months).

use std::io::Write;

use anyhow::Context;
use fxpipe::catalog::{self, glue, Database};
use fxpipe::engine::Engine;
use fxpipe::ingest;
use fxpipe::jobs::load::{self, LoadOptions};
use fxpipe::jobs::normalize::{self, NormalizeOptions};
use fxpipe::report::{self, IngestReport, LoadReport, NormalizeReport};
use fxpipe::storage::inputs::InputError;
use fxpipe::storage::{inputs, Lake, S3Options};
use serde::Serialize;

use super::args::RunArgs;
use super::{ingest as ingest_cmd, print, progress};

/// The record of one daily run (`_reports/run-…`).
#[derive(Debug, Default, Serialize)]
struct RunReport {
    /// The rate days asked for, or why none were.
    rate_days: String,
    ingest: Option<IngestReport>,
    load: Option<LoadReport>,
    normalize: Option<NormalizeReport>,
    /// The Glue registration, if asked for (`--glue-database`).
    catalog: Option<String>,
    /// The step that failed, if one did.
    failed_step: Option<&'static str>,
    elapsed_ms: u64,
}

/// The steps of this run, for their progress lines and failure messages: three, or four
/// with the catalog refresh.
#[derive(Clone, Copy)]
struct Steps {
    total: usize,
}

impl Steps {
    /// One line on standard error as step `number` starts and ends.
    fn line(self, number: usize, name: &str, what: &str) {
        let _ = writeln!(
            std::io::stderr(),
            "run: step {number}/{}, {name}: {what}",
            self.total
        );
    }

    /// The context of step `number`'s failure: which step, and what stays committed.
    fn failed(self, number: usize, name: &str, kept: &str) -> String {
        format!(
            "fxpipe run: step {number}/{}, {name}, failed ({kept})",
            self.total
        )
    }
}

pub(crate) async fn run(
    engine: &Engine,
    lake: &Lake,
    args: RunArgs,
    base: &str,
    s3: &S3Options,
    quiet: bool,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let mut report = RunReport::default();
    let outcome = steps(engine, lake, &args, base, s3, quiet, &mut report).await;
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    if let Err(e) = &outcome {
        tracing::debug!("run failed: {e:#}");
    }
    let saved = report::save(lake, "run", &report).await?;
    if let Some(report) = &report.ingest {
        write!(print::stdout(), "{report}")?;
    }
    if let Some(report) = &report.load {
        write!(print::stdout(), "{report}")?;
    }
    if let Some(report) = &report.normalize {
        write!(print::stdout(), "{report}")?;
    }
    if let Some(catalog) = &report.catalog {
        outln!("{catalog}")?;
    }
    outln!("run: {} ms; report: {saved}", report.elapsed_ms)?;
    outcome
}

async fn steps(
    engine: &Engine,
    lake: &Lake,
    args: &RunArgs,
    base: &str,
    s3: &S3Options,
    quiet: bool,
    report: &mut RunReport,
) -> anyhow::Result<()> {
    // A database name Glue would refuse fails now, not after the day's work.
    if let Some(database) = &args.glue_database {
        Database::new(database)?;
    }
    let steps = Steps {
        total: if args.glue_database.is_some() { 4 } else { 3 },
    };
    // 1. The rate days not stored yet.
    steps.line(1, "ingest", "starting");
    let ingested = ingest_step(engine, lake, args, base, quiet, report)
        .await
        .with_context(|| steps.failed(1, "ingest", "nothing after it ran"));
    if let Err(e) = ingested {
        report.failed_step = Some("ingest");
        return Err(e);
    }
    steps.line(1, "ingest", &report.rate_days);

    // 2. The new exports.
    steps.line(2, "load", "starting");
    let loaded = load_step(engine, lake, args, s3, quiet, report)
        .await
        .with_context(|| steps.failed(2, "load", "the rates ingested before it stay committed"));
    if let Err(e) = loaded {
        report.failed_step = Some("load");
        return Err(e);
    }
    let said = match &report.load {
        Some(load) => format!(
            "{} files, {} rows loaded, {} skipped unread",
            load.files.len(),
            load.rows_loaded,
            load.files
                .iter()
                .filter(|f| f.status == "unchanged")
                .count()
        ),
        None => "no inputs given or found".to_string(),
    };
    steps.line(2, "load", &said);
    fxpipe::faults::after("run:load")?;

    // 3. The months whose inputs changed.
    steps.line(3, "normalize --changed", "starting");
    let normalized = normalize_step(engine, lake, args, base, quiet, report)
        .await
        .with_context(|| {
            steps.failed(
                3,
                "normalize",
                "the rates and files before it stay committed",
            )
        });
    if let Err(e) = normalized {
        report.failed_step = Some("normalize");
        return Err(e);
    }
    steps.line(3, "normalize --changed", &normalize_said(report));

    // 4. The catalog, if asked for.
    let Some(database) = &args.glue_database else {
        return Ok(());
    };
    steps.line(4, "catalog", "starting");
    let registered = catalog_step(lake, database)
        .await
        .with_context(|| steps.failed(4, "catalog", "the lake's tables are all committed"));
    match registered {
        Ok(said) => {
            steps.line(4, "catalog", &said);
            report.catalog = Some(said);
            Ok(())
        }
        Err(e) => {
            report.failed_step = Some("catalog");
            Err(e)
        }
    }
}

/// `normalize --changed` with the run's conversion settings.
async fn normalize_step(
    engine: &Engine,
    lake: &Lake,
    args: &RunArgs,
    base: &str,
    quiet: bool,
    report: &mut RunReport,
) -> anyhow::Result<()> {
    let options = NormalizeOptions {
        base_currency: base.to_string(),
        max_rate_age_days: args.conversion.max_rate_age,
        strict: args.conversion.strict,
        max_open_files: args.conversion.max_open_files as usize,
        changed: true,
        ..NormalizeOptions::default()
    };
    let normalized = progress::during(
        engine,
        "normalize",
        quiet,
        normalize::normalize(engine, lake, &options),
    )
    .await?;
    report::save(lake, "normalize", &normalized).await?;
    report.normalize = Some(normalized);
    Ok(())
}

/// What the normalize step did, in a few words.
fn normalize_said(report: &RunReport) -> String {
    match &report.normalize {
        Some(n) if n.up_to_date => "up to date, nothing written".to_string(),
        Some(n) if n.months_recomputed.is_empty() => {
            format!("whole table, {} rows", n.rows_written)
        }
        Some(n) => format!(
            "{} months, {} rows",
            n.months_recomputed.len(),
            n.rows_written
        ),
        None => "not run".to_string(),
    }
}

/// Registers (or updates) the lake's tables in the Glue Data Catalog, as `catalog glue` does.
/// Delta tables carry their own schema and files, so an existing entry needs no partition
/// refresh; this step matters the day a table first appears.
async fn catalog_step(lake: &Lake, database: &str) -> anyhow::Result<String> {
    let database = Database::new(database)?;
    let tables = catalog::lake_tables(lake).await?;
    let registered = glue::register(&database, &tables.present).await?;
    let created = registered
        .tables
        .iter()
        .filter(|(_, _, outcome)| *outcome == glue::Registered::Created)
        .count();
    Ok(format!(
        "glue database {} ({}): {} tables registered, {created} of them new",
        database.as_str(),
        registered.region,
        registered.tables.len()
    ))
}

async fn ingest_step(
    engine: &Engine,
    lake: &Lake,
    args: &RunArgs,
    base: &str,
    quiet: bool,
    report: &mut RunReport,
) -> anyhow::Result<()> {
    if args.skip_ingest {
        report.rate_days = "skipped (--skip-ingest)".to_string();
        return Ok(());
    }
    let yesterday = chrono::Utc::now().date_naive() - chrono::Days::new(1);
    let (from, to) = match (args.ingest.date, args.ingest.from) {
        (Some(date), _) => (date, date),
        (None, Some(from)) => (from, args.ingest.to.unwrap_or(yesterday)),
        (None, None) => match ingest::last_stored_date(engine, lake).await? {
            Some(last) => (last + chrono::Days::new(1), yesterday),
            None => anyhow::bail!(
                "the rates table is empty: say where the first run starts, e.g. --from 2024-01-01"
            ),
        },
    };
    if from > to {
        report.rate_days = format!("rates are stored up to {to}: none to fetch");
        return Ok(());
    }
    report.rate_days = format!("{from} to {to}");
    let source = ingest_cmd::open_source(&args.ingest)?;
    let mut options = ingest::IngestOptions::new(from, to, base);
    options.force = args.ingest.force;
    options.concurrency = args.ingest.concurrency;
    options.requests_per_second = args.ingest.requests_per_second;
    options.batch_days = args.ingest.batch_days;
    options.batch_seconds = args.ingest.batch_seconds;
    options.progress_bar = progress::bars_allowed(quiet);
    let stop = ingest_cmd::stop_on_signal();
    let ingested = ingest::ingest(engine, lake, source.as_ref(), &options, &stop).await?;
    report::save(lake, "ingest", &ingested).await?;
    let failed = !ingested.failures.is_empty() || ingested.stopped.is_some();
    let summary = ingest_cmd::failure_summary(&ingested);
    report.ingest = Some(ingested);
    match summary {
        Some(summary) if failed => anyhow::bail!(summary),
        _ => Ok(()),
    }
}

async fn load_step(
    engine: &Engine,
    lake: &Lake,
    args: &RunArgs,
    s3: &S3Options,
    quiet: bool,
    report: &mut RunReport,
) -> anyhow::Result<()> {
    if args.inputs.is_empty() {
        return Ok(());
    }
    let files = match inputs::resolve(&args.inputs, lake, s3).await {
        Ok(files) => files,
        // An empty exports folder on a day without exports is not a failure.
        Err(InputError::NoMatch(pattern)) => {
            tracing::info!(%pattern, "no export matches: nothing to load");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let options = LoadOptions {
        decimal_separator: args.decimal_separator,
        verify: false,
    };
    let loaded = progress::during(
        engine,
        "load",
        quiet,
        load::load(engine, lake, &files, &options),
    )
    .await?;
    report::save(lake, "load", &loaded).await?;
    report.load = Some(loaded);
    Ok(())
}
