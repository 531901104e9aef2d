//! `fxpipe run`: the daily job, as its three commands would run it in turn (ingest, load,
//! `normalize --changed`), with one report of the whole run. A step that fails stops the run
//! and names the step; the steps before it stay committed, and a re-run redoes only what is
//! left (each step skips what is already done: stored rate days, known files, unchanged
//! months).

use std::io::Write;

use anyhow::Context;
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
    /// The step that failed, if one did.
    failed_step: Option<&'static str>,
    elapsed_ms: u64,
}

/// One line per step on standard error, as the step starts and ends.
fn step(number: usize, name: &str, what: &str) {
    let _ = writeln!(std::io::stderr(), "run: step {number}/3, {name}: {what}");
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
    // 1. The rate days not stored yet.
    step(1, "ingest", "starting");
    let ingested = ingest_step(engine, lake, args, base, quiet, report)
        .await
        .context("fxpipe run: step 1/3, ingest, failed (nothing after it ran)");
    if let Err(e) = ingested {
        report.failed_step = Some("ingest");
        return Err(e);
    }
    step(1, "ingest", &report.rate_days);

    // 2. The new exports.
    step(2, "load", "starting");
    let loaded = load_step(engine, lake, args, s3, quiet, report)
        .await
        .context(
            "fxpipe run: step 2/3, load, failed (the rates ingested before it stay committed)",
        );
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
    step(2, "load", &said);
    fxpipe::faults::after("run:load")?;

    // 3. The months whose inputs changed.
    step(3, "normalize --changed", "starting");
    let options = NormalizeOptions {
        base_currency: base.to_string(),
        max_rate_age_days: args.conversion.max_rate_age,
        strict: args.conversion.strict,
        changed: true,
        ..NormalizeOptions::default()
    };
    let normalized = progress::during(
        engine,
        "normalize",
        quiet,
        normalize::normalize(engine, lake, &options),
    )
    .await
    .context(
        "fxpipe run: step 3/3, normalize, failed (the rates and files before it stay committed)",
    );
    match normalized {
        Ok(normalized) => {
            report::save(lake, "normalize", &normalized).await?;
            let said = if normalized.up_to_date {
                "up to date, nothing written".to_string()
            } else if normalized.months_recomputed.is_empty() {
                format!("whole table, {} rows", normalized.rows_written)
            } else {
                format!(
                    "{} months, {} rows",
                    normalized.months_recomputed.len(),
                    normalized.rows_written
                )
            };
            step(3, "normalize --changed", &said);
            report.normalize = Some(normalized);
            Ok(())
        }
        Err(e) => {
            report.failed_step = Some("normalize");
            Err(e)
        }
    }
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
