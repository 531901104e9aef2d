//! A loopback Ballista cluster (a scheduler and 2 executors on 127.0.0.1) from the release
//! binaries beside `fxpipe`, for the benchmark's cluster row.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::BIN;

/// A scheduler and 2 executors on 127.0.0.1, from the release binaries beside `fxpipe`.
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
    pub fn start() -> Option<Self> {
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
        let scheduler = Command::new(scheduler)
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
        for n in 0..2 {
            let dir = cluster._work.path().join(format!("executor-{n}"));
            std::fs::create_dir_all(&dir).expect("executor work dir");
            let child = Command::new(&executor)
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
                .is_some_and(|body| body.matches("\"id\"").count() >= 2)
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

    fn http_get(&self, path: &str) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let (head, body) = response.split_once("\r\n\r\n")?;
        head.contains(" 200 ").then(|| body.to_string())
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
