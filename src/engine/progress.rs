//! Progress of a job on the cluster, from the scheduler's REST API (on its gRPC port).
//!
//! The client names its jobs (`ballista.job.name`), polls `GET /api/jobs` for them and
//! `GET /api/job/{id}/stages` for their tasks, and shows stages and tasks done: a live line on
//! a terminal, a log line per change (at most every few seconds) otherwise, and one line for
//! each job when it ends. Progress is best effort: a scheduler that does not answer the REST
//! API does not fail the job.
//!
//! The watcher is also the job's guard against two Ballista 55 defects, each fixed upstream
//! after 55.0.0:
//! - after an executor is lost mid-stage, the scheduler rolls a stage back by taking it out of
//!   the job's graph and putting a rewritten one back; when the rewrite fails the stage is gone,
//!   and the job waits forever (apache/datafusion-ballista#2215). Ballista re-runs a lost
//!   executor's tasks by itself otherwise, so the guard acts only on a job that has no running
//!   task and has made no progress for the stall timeout since an executor left while it ran:
//!   it cancels that job (`PATCH /api/job/{id}`) and counts a rescue, and
//!   [`super::Engine::collect`] submits the plan again. A job with a task running is never
//!   cancelled, however long the task (an executor that left for good is no reason).
//! - when every executor is lost, running jobs stay queued forever
//!   (apache/datafusion-ballista#2212): after the stall timeout with no executor alive, the
//!   watcher cancels our jobs and counts them stranded, and the job fails saying so.
//!
//! Cancelling is safe because nothing a job writes counts until the client commits it: the
//! cancelled attempt's files are orphans that `vacuum` removes.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::runaway::StageGuard;

/// How often the scheduler is asked.
const POLL: Duration = Duration::from_millis(500);
/// At most this often a log line, when standard error is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// One job in `GET /api/jobs` (the fields fxpipe reads).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
struct Job {
    job_id: String,
    job_name: String,
    status: String,
    num_stages: usize,
    completed_stages: usize,
}

impl Job {
    fn ended(&self) -> bool {
        matches!(self.status.as_str(), "Completed" | "Failed")
    }
}

#[derive(Debug, Deserialize)]
struct Stages {
    stages: Vec<Stage>,
}

#[derive(Debug, Deserialize)]
struct Stage {
    tasks: Vec<Option<Task>>,
}

#[derive(Debug, Deserialize)]
struct Task {
    status: serde_json::Value,
}

/// What a job has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Done {
    stages: usize,
    num_stages: usize,
    tasks: usize,
    num_tasks: usize,
}

impl std::fmt::Display for Done {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} stages, {}/{} tasks",
            self.stages, self.num_stages, self.tasks, self.num_tasks
        )
    }
}

/// Watches the jobs named `job_name` until [`Progress::finish`].
#[derive(Debug)]
pub struct Progress {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
    settle: Settler,
}

/// Asks a [`Progress`] to take its bar off the terminal now, and to draw none for the jobs
/// that have started so far: what a command that writes to the terminal between jobs (the
/// SQL shell, before each prompt) needs, since the bar is drawn from another task and would
/// otherwise clear or overwrite what follows it.
#[derive(Debug, Clone)]
pub struct Settler(mpsc::UnboundedSender<oneshot::Sender<()>>);

impl Settler {
    /// Returns once the bar is off the terminal (or after a second, if the watcher is gone or
    /// slow: a stray bar is better than a shell that hangs).
    pub async fn settle(&self) {
        let (done, settled) = oneshot::channel();
        if self.0.send(done).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(1), settled).await;
        }
    }
}

impl Progress {
    /// Starts watching; `host_port` is the scheduler's `HOST:PORT`. A job stalled for `stall`
    /// after an executor loss is cancelled and counted in `rescues`; a job past the stage bound
    /// in `stages` is cancelled as a runaway (see [`super::runaway`]). `show_bar`: a bar of
    /// tasks on a terminal (else log lines).
    pub fn start(
        host_port: &str,
        tls: Option<&super::tls::Tls>,
        job_name: &str,
        stall: Duration,
        rescues: Arc<Rescues>,
        stages: StageGuard,
        show_bar: bool,
    ) -> Self {
        let (stop, stopped) = oneshot::channel();
        let (settle, settles) = mpsc::unbounded_channel();
        let watcher = Watcher {
            base: format!("{}://{host_port}/api", super::tls::rest_scheme(tls)),
            job_name: job_name.to_string(),
            client: super::tls::rest_client(tls, Duration::from_secs(5)).unwrap_or_default(),
            seen: BTreeMap::new(),
            show_bar: show_bar && std::io::stderr().is_terminal(),
            bar: None,
            quiet: BTreeSet::new(),
            logged: None,
            guard: StallGuard {
                stall,
                rescues,
                ..StallGuard::default()
            },
            stages,
        };
        Self {
            stop,
            task: tokio::spawn(watcher.run(stopped, settles)),
            settle: Settler(settle),
        }
    }

    /// A handle that takes the bar off the terminal between jobs (see [`Settler`]).
    pub fn settler(&self) -> Settler {
        self.settle.clone()
    }

    /// Stops watching, after one last look that reports how each job ended.
    pub async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

struct Watcher {
    base: String,
    job_name: String,
    client: reqwest::Client,
    /// Jobs seen, and what they had done when last reported.
    seen: BTreeMap<String, (Job, Done)>,
    /// A bar on the terminal (else log lines).
    show_bar: bool,
    /// The bar, only while one of the jobs runs: a bar left ticking between jobs would draw
    /// over whatever comes next on the terminal (the SQL shell's prompt).
    bar: Option<ProgressBar>,
    /// Jobs that get no bar: those started before the last [`Settler::settle`].
    quiet: BTreeSet<String>,
    logged: Option<Instant>,
    guard: StallGuard,
    /// The running job's stage bound (see [`super::runaway`]).
    stages: StageGuard,
}

/// Jobs the watcher cancelled, by reason: what [`super::Engine::collect`] reads to decide
/// whether to submit a job again (stalled) or fail it (stranded: no executor alive).
#[derive(Debug, Default)]
pub struct Rescues {
    pub stalled: AtomicUsize,
    pub stranded: AtomicUsize,
    /// Times the watcher saw fewer executors than at its previous look.
    pub losses: AtomicUsize,
}

/// What the watcher knows about executor losses and stalled jobs.
#[derive(Debug, Default)]
struct StallGuard {
    stall: Duration,
    rescues: Arc<Rescues>,
    /// Executors alive at the last look, when the last loss was seen, and since when none is.
    alive: Option<usize>,
    lost_at: Option<Instant>,
    none_since: Option<Instant>,
    /// When each running job was first seen and last moved (progress, or a running task).
    first_seen: BTreeMap<String, Instant>,
    moved: BTreeMap<String, Instant>,
    cancelled: BTreeSet<String>,
}

#[derive(Debug, Deserialize)]
struct Executor {
    #[allow(dead_code)]
    id: String,
}

/// What the guard decides about a job at one look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Fine,
    /// No running task and no progress for the stall timeout since an executor left.
    Stalled,
    /// No executor alive for the stall timeout.
    Stranded,
}

impl StallGuard {
    /// Records how many executors are alive at `now`.
    fn executors(&mut self, alive: usize, now: Instant) {
        if self.alive.is_some_and(|before| alive < before) {
            self.lost_at = Some(now);
            self.rescues.losses.fetch_add(1, Ordering::SeqCst);
        }
        self.alive = Some(alive);
        if alive > 0 {
            self.none_since = None;
        } else if self.none_since.is_none() {
            self.none_since = Some(now);
        }
    }

    /// What to do with `job`, which has (not) `changed` and has `running` tasks at `now`.
    fn verdict(&mut self, job: &str, changed: bool, running: usize, now: Instant) -> Verdict {
        let first_seen = *self.first_seen.entry(job.to_string()).or_insert(now);
        let moved = self.moved.entry(job.to_string()).or_insert(now);
        if changed || running > 0 {
            *moved = now;
        }
        if self.cancelled.contains(job) {
            return Verdict::Fine;
        }
        if self
            .none_since
            .is_some_and(|since| now.duration_since(since.max(first_seen)) >= self.stall)
        {
            return Verdict::Stranded;
        }
        match self.lost_at {
            // Only a loss while the job ran can have stranded one of its stages.
            Some(lost_at) if lost_at >= first_seen => {
                if now.duration_since((*moved).max(lost_at)) >= self.stall {
                    Verdict::Stalled
                } else {
                    Verdict::Fine
                }
            }
            _ => Verdict::Fine,
        }
    }
}

impl Watcher {
    async fn run(
        mut self,
        mut stopped: oneshot::Receiver<()>,
        mut settles: mpsc::UnboundedReceiver<oneshot::Sender<()>>,
    ) {
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                Some(done) = settles.recv() => {
                    self.settle().await;
                    let _ = done.send(());
                }
                _ = tokio::time::sleep(POLL) => self.poll(false).await,
            }
        }
        self.poll(true).await;
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        for (job, done) in self.seen.values() {
            info!(
                job = %job.job_id,
                status = %job.status,
                "cluster job {}: {} ({done})",
                job.job_id,
                job.status.to_lowercase()
            );
        }
    }

    /// Takes the bar off the terminal; the jobs started so far (seen or not yet) get none.
    async fn settle(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        self.quiet.extend(self.seen.keys().cloned());
        if let Some(jobs) = self.get::<Vec<Job>>("/jobs").await {
            self.quiet.extend(
                jobs.into_iter()
                    .filter(|j| j.job_name == self.job_name)
                    .map(|j| j.job_id),
            );
        }
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Option<T> {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        serde_json::from_slice(&response.bytes().await.ok()?).ok()
    }

    async fn cancel(&self, job_id: &str) -> bool {
        self.client
            .patch(format!("{}/job/{job_id}", self.base))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    async fn poll(&mut self, last: bool) {
        if let Some(executors) = self.get::<Vec<Executor>>("/executors").await {
            self.guard.executors(executors.len(), Instant::now());
        }
        let Some(jobs) = self.get::<Vec<Job>>("/jobs").await else {
            return;
        };
        let ours: Vec<Job> = jobs
            .into_iter()
            .filter(|j| j.job_name == self.job_name)
            .collect();
        for job in ours {
            let known = self.seen.get(&job.job_id);
            let ended = job.ended();
            // A job that ended and was reported needs no more requests.
            if known.is_some_and(|(j, _)| j.status == job.status) && ended {
                continue;
            }
            let (done, running) = self.tasks_of(&job).await;
            let changed = known.is_none_or(|(_, before)| *before != done);
            self.seen.insert(job.job_id.clone(), (job.clone(), done));
            self.stop_runaway(&job, ended).await;
            let verdict = if ended || last {
                Verdict::Fine
            } else {
                self.guard
                    .verdict(&job.job_id, changed, running, Instant::now())
            };
            if verdict != Verdict::Fine {
                self.rescue(&job, verdict, done).await;
            }
            if !last && changed {
                self.show(&job, done, ended);
            }
        }
        let running = self.seen.values().any(|(job, _)| !job.ended());
        if !running {
            if let Some(bar) = self.bar.take() {
                bar.finish_and_clear();
            }
        }
    }

    /// The job's stages and tasks done, and its tasks running now.
    async fn tasks_of(&self, job: &Job) -> (Done, usize) {
        let mut done = Done {
            stages: job.completed_stages,
            num_stages: job.num_stages,
            ..Done::default()
        };
        let mut running = 0;
        if let Some(stages) = self
            .get::<Stages>(&format!("/job/{}/stages", job.job_id))
            .await
        {
            for task in stages.stages.iter().flat_map(|s| &s.tasks) {
                done.num_tasks += 1;
                match task.as_ref().and_then(|t| t.status.as_str()) {
                    Some("Successful") => done.tasks += 1,
                    Some("Running") => running += 1,
                    _ => {}
                }
            }
        }
        (done, running)
    }

    /// Cancels a job whose stage count says Ballista is re-planning it without end.
    async fn stop_runaway(&mut self, job: &Job, ended: bool) {
        let Some(runaway) = self.stages.check(&job.job_id, job.num_stages) else {
            return;
        };
        if !ended && !self.guard.cancelled.contains(&job.job_id) {
            warn!(job = %job.job_id, "{runaway}");
            if self.cancel(&job.job_id).await {
                self.guard.cancelled.insert(job.job_id.clone());
            }
            self.stages.trip(runaway);
        }
    }

    /// Cancels a stalled or stranded job (the client submits it again) and counts it.
    async fn rescue(&mut self, job: &Job, verdict: Verdict, done: Done) {
        let stall = self.guard.stall.as_secs();
        if verdict == Verdict::Stalled {
            warn!(
                job = %job.job_id,
                "cluster job {} has had no running task and no progress for {stall} s \
                 since an executor left the cluster ({done}): cancelling it to submit \
                 it again",
                job.job_id,
            );
        } else {
            warn!(
                job = %job.job_id,
                "no executor has been alive on the cluster for {stall} s: cancelling \
                 cluster job {} ({done})",
                job.job_id,
            );
        }
        if self.cancel(&job.job_id).await {
            self.guard.cancelled.insert(job.job_id.clone());
            let counter = match verdict {
                Verdict::Stalled => &self.guard.rescues.stalled,
                _ => &self.guard.rescues.stranded,
            };
            counter.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The job's progress on the bar (a terminal) or, at most every [`LOG_EVERY`], a log line.
    fn show(&mut self, job: &Job, done: Done, ended: bool) {
        let quiet = self.quiet.contains(&job.job_id);
        if self.show_bar && !ended && !quiet && self.bar.is_none() {
            self.bar = Some(new_bar());
        }
        match &self.bar {
            Some(_) if quiet => {}
            Some(bar) => {
                // Tasks of all stages: the bar fills as the job does, and its rate gives
                // the time left.
                bar.set_length(done.num_tasks as u64);
                bar.set_position(done.tasks as u64);
                bar.set_message(format!(
                    "(stage {}/{}, job {})",
                    done.stages, done.num_stages, job.job_id
                ));
            }
            None if self.show_bar => {}
            None => {
                if self.logged.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                    self.logged = Some(Instant::now());
                    info!("cluster job {}: {done}", job.job_id);
                }
            }
        }
    }
}

/// The bar of a running job's tasks.
fn new_bar() -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} cluster [{bar:30}] {pos}/{len} tasks {msg} ({elapsed} elapsed, {eta} left)",
        )
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> StallGuard {
        StallGuard {
            stall: Duration::from_secs(30),
            ..StallGuard::default()
        }
    }

    const S: fn(u64) -> Duration = Duration::from_secs;

    /// What `Engine::executor_losses` reads: every drop in the executor count, and nothing
    /// else (a stable or growing cluster is no loss).
    #[test]
    fn every_drop_in_the_executor_count_is_a_loss() {
        let mut guard = guard();
        let t0 = Instant::now();
        let losses = |g: &StallGuard| g.rescues.losses.load(Ordering::SeqCst);
        guard.executors(2, t0);
        guard.executors(2, t0 + S(1));
        assert_eq!(losses(&guard), 0);
        guard.executors(1, t0 + S(2));
        assert_eq!(losses(&guard), 1);
        guard.executors(2, t0 + S(3));
        guard.executors(3, t0 + S(4));
        assert_eq!(losses(&guard), 1);
        guard.executors(0, t0 + S(5));
        assert_eq!(losses(&guard), 2);
    }

    #[test]
    fn only_a_job_without_running_tasks_stalled_after_an_executor_loss_is_cancelled() {
        let mut guard = guard();
        let t0 = Instant::now();
        guard.executors(2, t0);
        assert_eq!(guard.verdict("a", true, 1, t0), Verdict::Fine);
        // No loss: a long task is never a stall.
        assert_eq!(guard.verdict("a", false, 0, t0 + S(600)), Verdict::Fine);
        let lost = t0 + S(601);
        guard.executors(1, lost);
        assert_eq!(guard.verdict("a", false, 0, lost + S(29)), Verdict::Fine);
        assert_eq!(guard.verdict("a", true, 0, lost + S(31)), Verdict::Fine);
        assert_eq!(guard.verdict("a", false, 0, lost + S(60)), Verdict::Fine);
        assert_eq!(guard.verdict("a", false, 0, lost + S(62)), Verdict::Stalled);
        guard.cancelled.insert("a".into());
        assert_eq!(guard.verdict("a", false, 0, lost + S(90)), Verdict::Fine);
    }

    #[test]
    fn a_running_task_is_never_a_stall_however_long() {
        let mut guard = guard();
        let t0 = Instant::now();
        guard.executors(2, t0);
        guard.verdict("a", true, 2, t0);
        guard.executors(1, t0 + S(1));
        for minute in 1..60 {
            assert_eq!(
                guard.verdict("a", false, 1, t0 + S(60 * minute)),
                Verdict::Fine
            );
        }
    }

    #[test]
    fn an_executor_gone_for_good_before_a_job_started_never_stalls_it() {
        // Issue 23: `lost_at` stayed set until the executor count was back at its maximum, so
        // a later, healthy job whose tasks outlasted the stall time was cancelled.
        let mut guard = guard();
        let t0 = Instant::now();
        guard.executors(2, t0);
        guard.executors(1, t0 + S(5));
        let start = t0 + S(10);
        guard.verdict("b", true, 0, start);
        assert_eq!(guard.verdict("b", false, 0, start + S(600)), Verdict::Fine);
        // A second loss while it runs does count.
        guard.executors(0, start + S(700));
        guard.executors(1, start + S(701));
        guard.executors(0, start + S(702));
        guard.executors(1, start + S(703));
        assert_eq!(guard.verdict("b", false, 0, start + S(720)), Verdict::Fine);
        // (the loss at 702 s; the job last moved before it)
        assert_eq!(
            guard.verdict("b", false, 0, start + S(733)),
            Verdict::Stalled
        );
    }

    #[test]
    fn no_executor_alive_for_the_stall_time_strands_the_job() {
        let mut guard = guard();
        let t0 = Instant::now();
        guard.executors(2, t0);
        guard.verdict("a", true, 2, t0);
        guard.executors(0, t0 + S(10));
        assert_eq!(guard.verdict("a", false, 0, t0 + S(39)), Verdict::Fine);
        assert_eq!(guard.verdict("a", false, 0, t0 + S(41)), Verdict::Stranded);
        // One came back in time: not stranded.
        let mut guard = self::guard();
        guard.executors(0, t0);
        guard.verdict("c", true, 0, t0);
        guard.executors(1, t0 + S(20));
        assert_eq!(guard.verdict("c", true, 1, t0 + S(45)), Verdict::Fine);
    }

    #[test]
    fn the_rest_api_shapes_are_read() {
        let jobs: Vec<Job> = serde_json::from_str(
            r#"[{"job_id":"abc","job_name":"fxpipe-1","job_status":"Running","status":"Running",
                "num_stages":5,"completed_stages":2,"percent_complete":40,"start_time":1,"end_time":0}]"#,
        )
        .unwrap();
        assert_eq!(jobs[0].completed_stages, 2);
        let stages: Stages = serde_json::from_str(
            r#"{"stages":[{"stage_id":"1","stage_status":"Running","input_rows":0,"output_rows":0,
                "elapsed_compute":null,"tasks":[{"id":0,"status":"Successful","partition_id":[0]},
                {"id":1,"status":{"Failed":{"reason":"x","error":"y"}},"partition_id":[1]},null]}]}"#,
        )
        .unwrap();
        assert_eq!(stages.stages[0].tasks.len(), 3);
        assert_eq!(
            stages.stages[0].tasks[0].as_ref().unwrap().status.as_str(),
            Some("Successful")
        );
    }
}
