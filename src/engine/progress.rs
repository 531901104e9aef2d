//! Progress of a job on the cluster, from the scheduler's REST API (on its gRPC port).
//!
//! The client names its jobs (`ballista.job.name`), polls `GET /api/jobs` for them and
//! `GET /api/job/{id}/stages` for their tasks, and shows stages and tasks done: a live line on
//! a terminal, a log line per change (at most every few seconds) otherwise, and one line for
//! each job when it ends. Progress is best effort: a scheduler that does not answer the REST
//! API does not fail the job.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Deserialize;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::info;

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
}

impl Progress {
    /// Starts watching; `host_port` is the scheduler's `HOST:PORT`.
    pub fn start(host_port: &str, job_name: &str) -> Self {
        let (stop, stopped) = oneshot::channel();
        let watcher = Watcher {
            base: format!("http://{host_port}/api"),
            job_name: job_name.to_string(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            seen: BTreeMap::new(),
            bar: std::io::stderr().is_terminal().then(|| {
                let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} cluster {msg} [{elapsed}]")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.enable_steady_tick(Duration::from_millis(200));
                bar
            }),
            logged: None,
        };
        Self {
            stop,
            task: tokio::spawn(watcher.run(stopped)),
        }
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
    bar: Option<ProgressBar>,
    logged: Option<Instant>,
}

impl Watcher {
    async fn run(mut self, mut stopped: oneshot::Receiver<()>) {
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                _ = tokio::time::sleep(POLL) => self.poll(false).await,
            }
        }
        self.poll(true).await;
        if let Some(bar) = &self.bar {
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

    async fn poll(&mut self, last: bool) {
        let Some(jobs) = self.get::<Vec<Job>>("/jobs").await else {
            return;
        };
        for job in jobs.into_iter().filter(|j| j.job_name == self.job_name) {
            let known = self.seen.get(&job.job_id);
            let ended = matches!(job.status.as_str(), "Completed" | "Failed");
            // A job that ended and was reported needs no more requests.
            if known.is_some_and(|(j, _)| j.status == job.status) && ended {
                continue;
            }
            let mut done = Done {
                stages: job.completed_stages,
                num_stages: job.num_stages,
                ..Done::default()
            };
            if let Some(stages) = self
                .get::<Stages>(&format!("/job/{}/stages", job.job_id))
                .await
            {
                for task in stages.stages.iter().flat_map(|s| &s.tasks) {
                    done.num_tasks += 1;
                    if task
                        .as_ref()
                        .is_some_and(|t| t.status.as_str() == Some("Successful"))
                    {
                        done.tasks += 1;
                    }
                }
            }
            let changed = known.is_none_or(|(_, before)| *before != done);
            self.seen.insert(job.job_id.clone(), (job.clone(), done));
            if last || !changed {
                continue;
            }
            let line = format!("job {}: {done}", job.job_id);
            match &self.bar {
                Some(bar) => bar.set_message(line),
                None => {
                    if self.logged.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                        self.logged = Some(Instant::now());
                        info!("cluster {line}");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
