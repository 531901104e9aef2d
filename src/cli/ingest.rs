//! `fxpipe ingest`: one-shot backfills, `--latest`, and the sidecar (`--daemon`).

use std::io::Write;

use fxpipe::engine::Engine;
use fxpipe::ingest;
use fxpipe::report;
use fxpipe::storage::Lake;

use super::args::IngestArgs;
use super::print;

/// The rate source `--source` names.
pub(crate) fn open_source(args: &IngestArgs) -> anyhow::Result<Box<dyn ingest::RateSource>> {
    let client = ingest::oxr::client(std::time::Duration::from_secs(args.timeout.max(1)))?;
    Ok(match args.source.as_str() {
        "oxr" => {
            let key = ingest::key::resolve(args.config.as_deref(), |v| std::env::var(v).ok())?;
            let retry = ingest::oxr::RetryPolicy {
                max_retries: args.retries,
                ..Default::default()
            };
            Box::new(
                ingest::oxr::OxrSource::new(&args.oxr_url, key, client, retry)
                    .map_err(anyhow::Error::msg)?,
            )
        }
        "ecb" => Box::new(
            ingest::ecb::EcbSource::new(
                args.ecb_url
                    .clone()
                    .unwrap_or_else(|| ingest::ecb::DEFAULT_URL.to_string()),
                client,
            )
            .map_err(anyhow::Error::msg)?,
        ),
        other => ingest::source::open(other)?,
    })
}

/// SIGTERM or SIGINT cancels the token: the days in flight finish and are committed. A second
/// signal exits at once.
pub(crate) fn stop_on_signal() -> tokio_util::sync::CancellationToken {
    let stop = tokio_util::sync::CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            return;
        };
        for n in 0.. {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            if n > 0 {
                std::process::exit(130);
            }
            tracing::warn!(
                "stopping: the days in flight finish and are stored (again to quit now)"
            );
            token.cancel();
        }
    });
    stop
}

pub(crate) async fn run_ingest_command(
    engine: &Engine,
    lake: &Lake,
    args: IngestArgs,
    base: &str,
    quiet: bool,
) -> anyhow::Result<()> {
    let source = open_source(&args)?;
    let today = chrono::Utc::now().date_naive();
    let mut options = ingest::IngestOptions::new(today, today, base);
    options.force = args.force;
    options.concurrency = args.concurrency;
    options.requests_per_second = args.requests_per_second;
    options.batch_days = args.batch_days;
    options.batch_seconds = args.batch_seconds;
    options.progress_bar = super::progress::bars_allowed(quiet);
    let stop = stop_on_signal();
    if args.daemon {
        let daemon = ingest::daemon::DaemonOptions {
            schedule: args.schedule.clone(),
            tz: args.tz,
            catch_up_days: args.catch_up_days,
            http: args.http,
            stale_after_days: args.stale_after_days,
            ingest: ingest::IngestOptions {
                progress_bar: false,
                ..options
            },
        };
        drop(source);
        let open =
            || open_source(&args).map_err(|e| ingest::IngestError::Options(format!("{e:#}")));
        ingest::daemon::run(engine, lake, &open, &daemon, stop).await?;
        return Ok(());
    }
    let report = if args.latest {
        let ingest::source::Latest::Supported(latest) = source.latest().await else {
            anyhow::bail!(
                "--latest needs --source oxr: {} has no latest rates",
                source.describe()
            );
        };
        ingest::ingest_fetched(engine, lake, source.as_ref(), base, latest).await?
    } else {
        let (from, to) = match (args.date, args.from) {
            (Some(date), _) => (date, date),
            (None, Some(from)) => (from, args.to.unwrap_or(today)),
            (None, None) => {
                anyhow::bail!("say which days: --date D, --from D [--to D], --latest, or --daemon")
            }
        };
        options.from = from;
        options.to = to;
        ingest::ingest(engine, lake, source.as_ref(), &options, &stop).await?
    };
    finish_ingest(lake, &report).await
}

/// Saves and prints the report; an error when a date failed or the run stopped early, so the
/// exit status tells a scheduler or script.
pub(crate) async fn finish_ingest(
    lake: &Lake,
    report: &report::IngestReport,
) -> anyhow::Result<()> {
    // Saved before printing: a closed stdout must not lose the job's record.
    let saved = report::save(lake, "ingest", report).await?;
    write!(print::stdout(), "{report}")?;
    outln!("  report: {saved}")?;
    match failure_summary(report) {
        Some(summary) => anyhow::bail!(summary),
        None => Ok(()),
    }
}

/// Why an ingest run counts as failed (a date failed, or it stopped early), if it does.
pub(crate) fn failure_summary(report: &report::IngestReport) -> Option<String> {
    if let Some(why) = &report.stopped {
        return Some(format!("ingest stopped early: {why}"));
    }
    if report.failures.is_empty() {
        return None;
    }
    let dates: Vec<&str> = report.failures.iter().map(|f| f.date.as_str()).collect();
    Some(format!(
        "{} of {} dates failed ({}); they are in the rates_errors table, and the next run fetches them again",
        dates.len(),
        report.dates_requested - report.dates_skipped,
        if dates.len() > 10 {
            format!("{} …", dates[..10].join(", "))
        } else {
            dates.join(", ")
        }
    ))
}
