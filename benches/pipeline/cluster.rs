//! A loopback Ballista cluster (a scheduler and 2 executors on 127.0.0.1) from the release
//! binaries beside `fxpipe`, for the benchmark's cluster rows. Its nodes may touch only the
//! benchmark's cache folder (`--allow`), as a deployed node touches only its lake and inputs.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::BIN;

/// How many executors, of how many task slots, pinned to which CPUs.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub executors: usize,
    /// `--vcores` (Ballista's default, the machine's cores, when `None`).
    pub vcores: Option<usize>,
    /// `taskset -c` CPU list every executor is pinned to, so the executors' total CPU stays
    /// the same whatever their number.
    pub cpus: Option<&'static str>,
    /// Declare a silent executor lost after 10 s (`--executor-timeout-seconds 10`, checked
    /// every second), as docs/cluster.md advises for fast recovery, instead of Ballista's 180 s.
    pub fast_loss_detection: bool,
}

/// A scheduler and executors on 127.0.0.1, from the release binaries beside `fxpipe`.
pub struct LoopbackCluster {
    scheduler: Child,
    executors: Vec<Child>,
    port: u16,
    _work: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl LoopbackCluster {
    /// Starts a scheduler and 2 executors, the nodes allowed to touch `allow` (the lakes and
    /// inputs) only.
    pub fn start(allow: &Path) -> Option<Self> {
        Self::start_shaped(
            allow,
            Shape {
                executors: 2,
                vcores: None,
                cpus: None,
                fast_loss_detection: false,
            },
        )
    }

    /// The same with `shape`'s executors.
    pub fn start_shaped(allow: &Path, shape: Shape) -> Option<Self> {
        let dir = Path::new(BIN).parent()?;
        let (scheduler, executor) = (dir.join("fxpipe-scheduler"), dir.join("fxpipe-executor"));
        if !scheduler.exists() || !executor.exists() {
            eprintln!(
                "no cluster row: build fxpipe-scheduler and fxpipe-executor first \
                 (cargo build --release --workspace)"
            );
            return None;
        }
        let port = free_port();
        let work = tempfile::tempdir().expect("cluster work dir");
        let allow = allow.to_str().expect("utf-8 path");
        let mut scheduler = Command::new(scheduler);
        if shape.fast_loss_detection {
            scheduler.args([
                "--executor-timeout-seconds",
                "10",
                "--expire-dead-executor-interval-seconds",
                "1",
            ]);
        }
        let scheduler = scheduler
            .args(["--allow", allow])
            .args(["--bind-host", "127.0.0.1", "--external-host", "127.0.0.1"])
            .args(["--bind-port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start fxpipe-scheduler");
        let mut cluster = Self {
            scheduler,
            executors: Vec::new(),
            port,
            _work: work,
        };
        cluster.wait_for(|c| c.http_get("/api/version").is_some());
        for n in 0..shape.executors {
            let dir = cluster._work.path().join(format!("executor-{n}"));
            std::fs::create_dir_all(&dir).expect("executor work dir");
            let mut command = match shape.cpus {
                Some(cpus) => {
                    let mut taskset = Command::new("taskset");
                    taskset.args(["-c", cpus]).arg(&executor);
                    taskset
                }
                None => Command::new(&executor),
            };
            if let Some(vcores) = shape.vcores {
                command.args(["--vcores", &vcores.to_string()]);
            }
            let child = command
                .args(["--allow", allow])
                .args(["--scheduler-host", "127.0.0.1"])
                .args(["--scheduler-port", &port.to_string()])
                .args(["--bind-host", "127.0.0.1", "--external-host", "127.0.0.1"])
                .args(["--bind-port", &free_port().to_string()])
                .args(["--bind-grpc-port", &free_port().to_string()])
                .args(["--bind-health-port", &free_port().to_string()])
                .args(["--work-dir", dir.to_str().expect("utf-8 path")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start fxpipe-executor");
            cluster.executors.push(child);
        }
        cluster.wait_for(|c| {
            c.http_get("/api/executors")
                .is_some_and(|body| body.matches("\"id\"").count() >= shape.executors)
        });
        Some(cluster)
    }

    pub fn address(&self) -> String {
        format!("df://127.0.0.1:{}", self.port)
    }

    fn wait_for(&self, ready: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready(self) {
            assert!(
                Instant::now() < deadline,
                "the loopback cluster did not start"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn http_get(&self, path: &str) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let (head, body) = response.split_once("\r\n\r\n")?;
        head.contains(" 200 ").then(|| body.to_string())
    }

    /// Kills executor `n` (SIGKILL), as a spot reclaim would.
    pub fn kill_executor(&mut self, n: usize) {
        let _ = self.executors[n].kill();
        let _ = self.executors[n].wait();
    }

    /// The bytes of shuffle files each stage of `job` left in the executors' work dirs
    /// (`WORK/JOB/STAGE/…`), by stage id.
    pub fn shuffle_bytes(&self, job: &str) -> std::collections::BTreeMap<String, u64> {
        fn size_of(dir: &Path) -> u64 {
            std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
                .map(|entry| match entry.file_type() {
                    Ok(t) if t.is_dir() => size_of(&entry.path()),
                    _ => entry.metadata().map(|m| m.len()).unwrap_or(0),
                })
                .sum()
        }
        let mut bytes = std::collections::BTreeMap::new();
        for n in 0..self.executors.len() {
            let job_dir = self._work.path().join(format!("executor-{n}")).join(job);
            for stage in std::fs::read_dir(&job_dir).into_iter().flatten().flatten() {
                let name = stage.file_name().to_string_lossy().to_string();
                *bytes.entry(name).or_insert(0) += size_of(&stage.path());
            }
        }
        bytes
    }

    /// The largest peak RSS (VmHWM) of the executors so far, in MB.
    pub fn executor_peak_rss_mb(&self) -> f64 {
        self.executors
            .iter()
            .filter_map(|c| std::fs::read_to_string(format!("/proc/{}/status", c.id())).ok())
            .filter_map(|status| {
                let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
                line.split_whitespace().nth(1)?.parse::<f64>().ok()
            })
            .fold(0.0, f64::max)
            / 1024.0
    }
}

impl Drop for LoopbackCluster {
    fn drop(&mut self) {
        for child in self
            .executors
            .iter_mut()
            .chain(std::iter::once(&mut self.scheduler))
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
