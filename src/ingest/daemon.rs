//! `fxpipe ingest --daemon`: the rates sidecar. It keeps the rates table current on a cron
//! schedule and serves `/healthz` and Prometheus `/metrics`.
//!
//! Each run covers the last `--catch-up-days` complete UTC days (up to yesterday) and fetches
//! only the ones not stored yet, so the first run after a restart or an outage catches up,
//! a day that failed is tried again on the next run, and an up-to-date table costs one query.
//! A stop signal lets the day in flight finish and be committed; the daemon then exits 0.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use chrono::{NaiveDate, Utc};
use croner::parser::{CronParser, Seconds};
use croner::Cron;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::{ingest, last_stored_date, IngestError, IngestOptions, RateSource};
use crate::engine::Engine;
use crate::report::IngestReport;
use crate::storage::Lake;

/// How the sidecar runs.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// A cron expression (five fields, or six with seconds first).
    pub schedule: String,
    /// The zone the schedule is read in (UTC by default).
    pub tz: chrono_tz::Tz,
    /// How many complete days back each run covers.
    pub catch_up_days: u32,
    /// Where `/healthz` and `/metrics` are served, if anywhere.
    pub http: Option<SocketAddr>,
    /// `/healthz` fails once the newest stored day is older than this many days.
    pub stale_after_days: i64,
    /// Concurrency, pacing and batching of each run (its dates are set per run).
    pub ingest: IngestOptions,
}

/// Parses a schedule the way `--schedule` reads it.
pub fn parse_schedule(expression: &str) -> Result<Cron, IngestError> {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .build()
        .parse(expression)
        .map_err(|e| IngestError::Options(format!("--schedule {expression:?}: {e}")))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

/// The sidecar's metrics and health, shared with the HTTP server.
struct Metrics {
    registry: Registry,
    last_stored_date: Gauge<i64>,
    runs: Counter,
    fetches: Counter,
    failures: Family<StatusLabel, Counter>,
    retries: Family<StatusLabel, Counter>,
    last_run_seconds: Gauge<f64, AtomicU64>,
    last_run_ok: Gauge<i64>,
    newest: Mutex<Option<NaiveDate>>,
    stale_after_days: i64,
}

impl Metrics {
    fn new(stale_after_days: i64) -> Self {
        let mut registry = Registry::with_prefix("fxpipe_ingest");
        let last_stored_date = Gauge::<i64>::default();
        let runs = Counter::default();
        let fetches = Counter::default();
        let failures = Family::<StatusLabel, Counter>::default();
        let retries = Family::<StatusLabel, Counter>::default();
        let last_run_seconds = Gauge::<f64, AtomicU64>::default();
        let last_run_ok = Gauge::<i64>::default();
        registry.register(
            "last_stored_date_seconds",
            "The newest day in the rates table, as Unix seconds at its midnight UTC",
            last_stored_date.clone(),
        );
        registry.register("runs", "Scheduled runs", runs.clone());
        registry.register(
            "fetches",
            "Days requested from the rate source",
            fetches.clone(),
        );
        registry.register(
            "failures",
            "Days the source did not give rates for, by HTTP status (0: no answer or invalid)",
            failures.clone(),
        );
        registry.register(
            "retries",
            "Requests retried, by HTTP status (0: connection error or timeout)",
            retries.clone(),
        );
        registry.register(
            "last_run_duration_seconds",
            "How long the last run took",
            last_run_seconds.clone(),
        );
        registry.register(
            "last_run_success",
            "1 when the last run stored every day it fetched, else 0",
            last_run_ok.clone(),
        );
        Self {
            registry,
            last_stored_date,
            runs,
            fetches,
            failures,
            retries,
            last_run_seconds,
            last_run_ok,
            newest: Mutex::default(),
            stale_after_days,
        }
    }

    fn set_newest(&self, newest: Option<NaiveDate>) {
        if let Some(date) = newest {
            let midnight = date.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp());
            self.last_stored_date.set(midnight.unwrap_or_default());
        }
        *self.newest.lock().unwrap_or_else(|p| p.into_inner()) = newest;
    }

    fn record(&self, report: &IngestReport, elapsed: std::time::Duration) {
        self.runs.inc();
        self.fetches
            .inc_by(report.dates_ingested + report.failures.len() as u64);
        for failure in &report.failures {
            self.failures
                .get_or_create(&StatusLabel {
                    status: failure.status.to_string(),
                })
                .inc();
        }
        // Each run has a source of its own, so its retries are this run's.
        for (status, count) in &report.retries {
            self.retries
                .get_or_create(&StatusLabel {
                    status: status.to_string(),
                })
                .inc_by(*count);
        }
        self.last_run_seconds.set(elapsed.as_secs_f64());
        self.last_run_ok.set(i64::from(report.failures.is_empty()));
    }

    /// Healthy while the newest stored day is recent enough.
    fn health(&self) -> (StatusCode, String) {
        let newest = *self.newest.lock().unwrap_or_else(|p| p.into_inner());
        let today = Utc::now().date_naive();
        match newest {
            Some(date) if (today - date).num_days() <= self.stale_after_days => {
                (StatusCode::OK, format!("ok: rates stored up to {date}\n"))
            }
            Some(date) => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "stale: the newest stored rates are for {date}, more than {} days ago\n",
                    self.stale_after_days
                ),
            ),
            None => (
                StatusCode::SERVICE_UNAVAILABLE,
                "no rates stored yet\n".to_string(),
            ),
        }
    }

    fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            warn!(error = %e, "encoding metrics");
        }
        text
    }
}

async fn serve(
    address: SocketAddr,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> Result<(), IngestError> {
    let app = Router::new()
        .route(
            "/healthz",
            get(|State(m): State<Arc<Metrics>>| async move { m.health() }),
        )
        .route(
            "/metrics",
            get(|State(m): State<Arc<Metrics>>| async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    m.encode(),
                )
            }),
        )
        .with_state(metrics);
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| IngestError::Options(format!("--http {address}: {e}")))?;
    info!(address = %listener.local_addr().unwrap_or(address), "serving /healthz and /metrics");
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        if let Err(e) = served {
            error!(error = %e, "the metrics server stopped");
        }
    });
    Ok(())
}

/// One scheduled run: the last `catch_up_days` complete days, those not stored yet.
async fn run_once(
    engine: &Engine,
    lake: &Lake,
    open_source: &OpenSource<'_>,
    options: &DaemonOptions,
    metrics: &Metrics,
    stop: &CancellationToken,
) -> Result<(), IngestError> {
    let yesterday = Utc::now().date_naive() - chrono::Days::new(1);
    let from = yesterday - chrono::Days::new(u64::from(options.catch_up_days.max(1) - 1));
    let mut run = options.ingest.clone();
    run.from = from;
    run.to = yesterday;
    let started = Instant::now();
    // A new source per run: a source may cache what it downloaded (the ECB's document).
    let source = open_source()?;
    let report = ingest(engine, lake, source.as_ref(), &run, stop).await?;
    metrics.record(&report, started.elapsed());
    metrics.set_newest(last_stored_date(engine, lake).await?);
    let saved = crate::report::save(lake, "ingest", &report).await?;
    info!(
        from = %from,
        to = %yesterday,
        ingested = report.dates_ingested,
        skipped = report.dates_skipped,
        failed = report.failures.len(),
        report = %saved,
        "scheduled run done"
    );
    if let Some(why) = &report.stopped {
        warn!("{why}");
    }
    Ok(())
}

/// Makes the rate source for one run.
pub type OpenSource<'a> = dyn Fn() -> Result<Box<dyn RateSource>, IngestError> + Sync + 'a;

/// Runs the sidecar until `stop`: a catch-up run at once, then one per schedule tick.
pub async fn run(
    engine: &Engine,
    lake: &Lake,
    open_source: &OpenSource<'_>,
    options: &DaemonOptions,
    stop: CancellationToken,
) -> Result<(), IngestError> {
    let schedule = parse_schedule(&options.schedule)?;
    let metrics = Arc::new(Metrics::new(options.stale_after_days));
    metrics.set_newest(last_stored_date(engine, lake).await?);
    if let Some(address) = options.http {
        serve(address, metrics.clone(), stop.clone()).await?;
    }
    info!(schedule = %options.schedule, tz = %options.tz, "ingest daemon started");
    loop {
        if stop.is_cancelled() {
            break;
        }
        if let Err(e) = run_once(engine, lake, open_source, options, &metrics, &stop).await {
            // A failed run (the lake unreachable, say) is retried at the next tick; the
            // health check reports the growing staleness.
            error!(error = %e, "scheduled run failed");
        }
        let now = Utc::now().with_timezone(&options.tz);
        let next = schedule
            .find_next_occurrence(&now, false)
            .map_err(|e| IngestError::Options(format!("--schedule {}: {e}", options.schedule)))?;
        let wait = (next - now).to_std().unwrap_or_default();
        info!(next = %next, "next run");
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
    info!("ingest daemon stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_with_and_without_seconds() {
        let daily = parse_schedule("0 8 * * *").unwrap();
        let start = chrono::DateTime::parse_from_rfc3339("2024-03-01T09:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            daily
                .find_next_occurrence(&start, false)
                .unwrap()
                .to_rfc3339(),
            "2024-03-02T08:00:00+00:00"
        );
        let every_two_seconds = parse_schedule("*/2 * * * * *").unwrap();
        let next = every_two_seconds
            .find_next_occurrence(&start, false)
            .unwrap();
        assert_eq!((next - start).num_seconds(), 2);
        assert!(parse_schedule("not a schedule").is_err());
    }

    #[test]
    fn health_follows_the_newest_stored_day() {
        let metrics = Metrics::new(2);
        assert_eq!(metrics.health().0, StatusCode::SERVICE_UNAVAILABLE);
        metrics.set_newest(Some(Utc::now().date_naive() - chrono::Days::new(1)));
        assert_eq!(metrics.health().0, StatusCode::OK);
        metrics.set_newest(Some(Utc::now().date_naive() - chrono::Days::new(3)));
        assert_eq!(metrics.health().0, StatusCode::SERVICE_UNAVAILABLE);
        assert!(metrics
            .encode()
            .contains("fxpipe_ingest_last_stored_date_seconds"));
    }
}
