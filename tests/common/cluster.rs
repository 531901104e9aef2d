//! A loopback Ballista cluster for the tests: `fxpipe-scheduler` and two `fxpipe-executor`s as
//! separate processes on 127.0.0.1 and free ports, with failure detection tuned for tests
//! (seconds, not Ballista's minutes). Every process is killed when the cluster is dropped,
//! also when a test fails.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::moto::free_port;

pub struct Cluster {
    pub scheduler: Child,
    pub executors: Vec<Child>,
    pub port: u16,
    pub work: tempfile::TempDir,
    /// With mutual TLS: the folder `fxpipe cluster certs` wrote (`127.0.0.1/` for the nodes,
    /// `client/` for clients).
    pub certs: Option<PathBuf>,
}

/// A binary of the workspace, built beside the `fxpipe` binary (`tests/run.sh` builds them).
pub fn binary(name: &str) -> PathBuf {
    let fxpipe = PathBuf::from(env!("CARGO_BIN_EXE_fxpipe"));
    let path = fxpipe.with_file_name(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (`cargo build --workspace`, as tests/run.sh does)",
        path.display()
    );
    path
}

impl Cluster {
    /// Starts a scheduler and `executors` executors; returns once all have registered.
    pub fn start(executors: usize, env: &[(&str, String)]) -> Self {
        Self::start_with(executors, env, false)
    }

    /// The same with mutual TLS between every member (certificates made by `fxpipe cluster
    /// certs`).
    pub fn start_tls(executors: usize, env: &[(&str, String)]) -> Self {
        Self::start_with(executors, env, true)
    }

    fn start_with(executors: usize, env: &[(&str, String)], tls: bool) -> Self {
        let port = free_port();
        let work = tempfile::tempdir().expect("work dir");
        let certs = tls.then(|| {
            let certs = work.path().join("certs");
            let status = Command::new(env!("CARGO_BIN_EXE_fxpipe"))
                .args(["cluster", "certs", "--hosts", "127.0.0.1", "--out"])
                .arg(&certs)
                .stdout(Stdio::null())
                .status()
                .expect("fxpipe cluster certs");
            assert!(status.success(), "fxpipe cluster certs failed");
            certs
        });
        let scheduler = Command::new(binary("fxpipe-scheduler"))
            .args(node_tls(certs.as_deref()))
            .args(node_allow())
            .args(["--bind-host", "127.0.0.1", "--external-host", "127.0.0.1"])
            .args(["--bind-port", &port.to_string()])
            // Above the 5 s at which a busy pull-staged executor polls (its heartbeat).
            .args(["--executor-timeout-seconds", "10"])
            .args(["--expire-dead-executor-interval-seconds", "1"])
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file(work.path(), "scheduler.log"))
            .spawn()
            .expect("start fxpipe-scheduler");
        let mut cluster = Self {
            scheduler,
            executors: Vec::new(),
            port,
            work,
            certs,
        };
        cluster.wait_for(|c| c.http_get("/api/version").is_some(), "the scheduler");
        for n in 0..executors {
            cluster.add_executor(n, env);
        }
        cluster.wait_for(
            |c| c.executor_count() >= executors,
            "the executors to register",
        );
        cluster
    }

    fn add_executor(&mut self, n: usize, env: &[(&str, String)]) {
        let dir = self.work.path().join(format!("executor-{n}"));
        std::fs::create_dir_all(&dir).expect("executor work dir");
        let child = Command::new(binary("fxpipe-executor"))
            .args(node_tls(self.certs.as_deref()))
            .args(node_allow())
            .args(["--scheduler-host", "127.0.0.1"])
            .args(["--scheduler-port", &self.port.to_string()])
            .args(["--bind-host", "127.0.0.1", "--external-host", "127.0.0.1"])
            .args(["--bind-port", &free_port().to_string()])
            .args(["--bind-grpc-port", &free_port().to_string()])
            .args(["--bind-health-port", &free_port().to_string()])
            .args(["--work-dir", dir.to_str().expect("utf-8 path")])
            .args(["--vcores", "2"])
            .args(["--executor-heartbeat-interval-seconds", "1"])
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file(self.work.path(), &format!("executor-{n}.log")))
            .spawn()
            .expect("start fxpipe-executor");
        self.executors.push(child);
    }

    /// `df://127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("df://127.0.0.1:{}", self.port)
    }

    fn wait_for(&self, ready: impl Fn(&Self) -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn executor_count(&self) -> usize {
        self.http_get("/api/executors")
            .map(|body| body.matches("\"id\"").count())
            .unwrap_or(0)
    }

    /// The client's TLS directory (`--tls-dir` of fxpipe), on a TLS cluster.
    pub fn client_tls(&self) -> Option<PathBuf> {
        self.certs.as_ref().map(|c| c.join("client"))
    }

    /// A GET to the scheduler's REST API; the body, if it answered 200.
    pub fn http_get(&self, path: &str) -> Option<String> {
        if let Some(client) = self.client_tls() {
            let tls = fxpipe::engine::tls::Tls::load(&client).expect("client TLS");
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            return runtime.block_on(async {
                let response = tls
                    .rest_client(Duration::from_secs(10))
                    .ok()?
                    .get(format!("https://127.0.0.1:{}{path}", self.port))
                    .send()
                    .await
                    .ok()?;
                if !response.status().is_success() {
                    return None;
                }
                response.text().await.ok()
            });
        }
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            self.port
        );
        stream.write_all(request.as_bytes()).ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let (head, body) = response.split_once("\r\n\r\n")?;
        head.contains(" 200 ").then(|| body.to_string())
    }
}

/// What the test nodes may touch: the temporary folders the tests' lakes and inputs live in,
/// the repository's test data, and the S3 tests' bucket.
fn node_allow() -> Vec<String> {
    [
        std::env::temp_dir().display().to_string(),
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests").to_string(),
        format!("s3://{}/", super::BUCKET),
    ]
    .into_iter()
    .flat_map(|prefix| ["--allow".to_string(), prefix])
    .collect()
}

/// `--tls-dir` of a node, on a TLS cluster.
fn node_tls(certs: Option<&std::path::Path>) -> Vec<String> {
    certs
        .map(|c| {
            vec![
                "--tls-dir".to_string(),
                c.join("127.0.0.1").display().to_string(),
            ]
        })
        .unwrap_or_default()
}

/// Each process logs to a file in the cluster's work dir; a failing test prints them.
fn log_file(dir: &std::path::Path, name: &str) -> Stdio {
    std::fs::File::create(dir.join(name))
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null())
}

impl Cluster {
    /// The tasks executor `n` has received and not finished, by Ballista's task ids
    /// (`TID job/stage.attempt/partition.attempt`), from its own log.
    pub fn unfinished_tasks(&self, n: usize) -> Vec<String> {
        let log = std::fs::read_to_string(self.work.path().join(format!("executor-{n}.log")))
            .unwrap_or_default();
        let tid = |line: &str| {
            line.split("[TID ")
                .nth(1)
                .and_then(|rest| rest.split(']').next())
                .map(str::to_string)
        };
        let finished: std::collections::BTreeSet<String> = log
            .lines()
            .filter(|l| l.contains("Finished task"))
            .filter_map(tid)
            .collect();
        log.lines()
            .filter(|l| l.contains("Received task"))
            .filter_map(tid)
            .filter(|t| !finished.contains(t))
            .collect()
    }

    /// The lines of the cluster's logs (scheduler and executors) that contain `text`.
    pub fn log_lines(&self, text: &str) -> Vec<String> {
        let mut lines = Vec::new();
        for entry in std::fs::read_dir(self.work.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry.path().extension().is_some_and(|e| e == "log") {
                let log = std::fs::read_to_string(entry.path()).unwrap_or_default();
                lines.extend(log.lines().filter(|l| l.contains(text)).map(String::from));
            }
        }
        lines
    }

    /// The warnings and errors the cluster's processes logged.
    pub fn problems(&self) -> String {
        let mut out = String::new();
        let mut names: Vec<_> = std::fs::read_dir(self.work.path())
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        names.sort();
        for path in names
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
        {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for line in text
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            {
                out.push_str(&format!("{}: {line}\n", path.display()));
            }
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("cluster logs (warnings and errors):\n{}", self.problems());
        }
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
