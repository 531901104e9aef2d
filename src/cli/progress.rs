//! Progress bars for the jobs that run in this process (`load`, `normalize`): on a terminal, a
//! bar with the rate and the time left, fed by the engine's meter (`fxpipe::engine::meter`);
//! when standard error is not a terminal, or with `--quiet`, a log line every 10 s (`FXPIPE_PROGRESS_SECONDS`). Cluster jobs show the scheduler's task counts
//! instead (`fxpipe::engine::progress`), and `ingest` has its own bar of days.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use fxpipe::engine::meter::{Reading, Unit};
use fxpipe::engine::Engine;
use indicatif::{HumanBytes, HumanCount, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const TICK: Duration = Duration::from_millis(200);
/// Between two log lines when there is no bar: FXPIPE_PROGRESS_SECONDS, else 10 s.
fn log_every() -> Duration {
    let seconds = std::env::var("FXPIPE_PROGRESS_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(10);
    Duration::from_secs(seconds.max(1))
}

/// Whether this run may draw bars: standard error is a terminal and `--quiet` was not given.
pub(crate) fn bars_allowed(quiet: bool) -> bool {
    !quiet && std::io::stderr().is_terminal()
}

/// Shows the progress of `job` until [`JobProgress::finish`].
pub(crate) struct JobProgress {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl JobProgress {
    /// `None` on a cluster: its watcher reports.
    pub(crate) fn start(engine: &Engine, job: &'static str, quiet: bool) -> Option<Self> {
        if engine.cluster_address().is_some() {
            return None;
        }
        let meter = engine.meter();
        let bar = bars_allowed(quiet).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_prefix(job);
            bar
        });
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut logged = Instant::now();
            let every = log_every();
            let mut shape = None;
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tokio::time::sleep(TICK) => {}
                }
                let Some(reading) = meter.reading() else {
                    continue;
                };
                match &bar {
                    Some(bar) => draw(bar, &reading, &mut shape),
                    None if logged.elapsed() >= every => {
                        logged = Instant::now();
                        tracing::info!("{job}: {}", line(&reading, started.elapsed()));
                    }
                    None => {}
                }
            }
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
        });
        Some(Self { stop, task })
    }

    pub(crate) async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Runs `job` with its progress shown (see [`JobProgress`]), cleared before the result returns.
pub(crate) async fn during<T>(
    engine: &Engine,
    name: &'static str,
    quiet: bool,
    job: impl std::future::Future<Output = T>,
) -> T {
    let progress = JobProgress::start(engine, name, quiet);
    let outcome = job.await;
    if let Some(progress) = progress {
        progress.finish().await;
    }
    outcome
}

/// Restyles the bar when the unit or the knowledge of the total changes.
fn draw(bar: &ProgressBar, reading: &Reading, shape: &mut Option<(Unit, bool)>) {
    let now = (reading.unit, reading.total.is_some());
    if *shape != Some(now) {
        *shape = Some(now);
        let template = match now {
            (Unit::Bytes, true) => "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ({elapsed} elapsed, {eta} left)",
            (Unit::Rows, true) => "{prefix} [{bar:30}] {human_pos}/{human_len} rows {rows_per_sec} ({elapsed} elapsed, {eta} left)",
            (Unit::Bytes, false) => "{spinner} {prefix} {bytes} {bytes_per_sec} ({elapsed})",
            (Unit::Rows, false) => "{spinner} {prefix} {human_pos} rows {rows_per_sec} ({elapsed})",
        };
        bar.set_style(
            ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .with_key(
                    "rows_per_sec",
                    |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{}/s", HumanCount(state.per_sec() as u64));
                    },
                )
                .progress_chars("=> "),
        );
        bar.set_length(reading.total.unwrap_or(0));
        bar.set_position(0);
        bar.reset_eta();
    }
    if let Some(total) = reading.total {
        bar.set_length(total.max(reading.done));
    }
    bar.set_position(reading.done);
}

/// The log line of a reading, for a standard error that is not a terminal.
fn line(reading: &Reading, elapsed: Duration) -> String {
    let show = |n: u64| match reading.unit {
        Unit::Bytes => HumanBytes(n).to_string(),
        Unit::Rows => format!("{} rows", HumanCount(n)),
    };
    let rate = reading.done as f64 / elapsed.as_secs_f64().max(0.001);
    let rate = match reading.unit {
        Unit::Bytes => format!("{}/s", HumanBytes(rate as u64)),
        Unit::Rows => format!("{} rows/s", HumanCount(rate as u64)),
    };
    match reading.total {
        Some(total) if total > 0 => format!(
            "{} of {} ({:.0}%), {rate}, {}s elapsed",
            show(reading.done),
            show(total),
            100.0 * reading.done as f64 / total as f64,
            elapsed.as_secs()
        ),
        _ => format!(
            "{}, {rate}, {}s elapsed",
            show(reading.done),
            elapsed.as_secs()
        ),
    }
}
