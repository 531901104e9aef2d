//! Whole-job benchmark: `cargo bench --bench pipeline` (release).
//!
//! Generates 1M and 10M transactions with `fxpipe gen` (cached under the target dir), then runs
//! `fxpipe ingest`, `fxpipe load` and `fxpipe normalize` as separate processes on a fresh lake
//! and prints wall time, throughput (days/s for ingest, rows/s for load and normalize) and each
//! process's peak RSS (from wait4). `FXPIPE_BENCH_ROWS=1000000` limits the sizes.
//!
//! With the release `fxpipe-scheduler` and `fxpipe-executor` built beside `fxpipe`
//! (`cargo build --release --workspace`), it also runs `normalize` on a loopback cluster of a
//! scheduler and 2 executors on the same lake, and prints its ratio to the embedded run and
//! the executors' peak RSS (VmHWM).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_fxpipe");

struct Measured {
    seconds: f64,
    peak_rss_mb: f64,
}

/// Runs fxpipe to completion and returns its wall time and peak RSS.
// The child is reaped by wait4 (which also gives its rusage), not Child::wait.
#[allow(clippy::zombie_processes)]
fn measure(args: &[&str]) -> Measured {
    let started = Instant::now();
    let child = Command::new(BIN)
        .args(args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn fxpipe");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value to be filled by wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; pointers are to live locals.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "fxpipe {args:?} failed"
    );
    Measured {
        seconds: started.elapsed().as_secs_f64(),
        peak_rss_mb: usage.ru_maxrss as f64 / 1024.0,
    }
}

/// A scheduler and 2 executors on 127.0.0.1, from the release binaries beside `fxpipe`.
struct LoopbackCluster {
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
    fn start() -> Option<Self> {
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

    fn address(&self) -> String {
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
    fn executor_peak_rss_mb(&self) -> f64 {
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

/// The first and last rate dates the benchmark ingests.
const RATES_FROM: &str = "2017-01-01";
const RATES_TO: &str = "2018-12-31";

/// Days from `RATES_FROM` to `RATES_TO`, inclusive (730).
fn ingest_days() -> u64 {
    let day = |text: &str| {
        chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").expect("a benchmark date constant")
    };
    (day(RATES_TO) - day(RATES_FROM)).num_days() as u64 + 1
}

fn ensure(path: &Path, args: &[&str]) {
    if !path.exists() {
        let status = Command::new(BIN).args(args).status().expect("fxpipe gen");
        assert!(status.success());
    }
}

fn main() {
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target");
    let cache = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or(target)
        .join("bench-data");
    std::fs::create_dir_all(&cache).expect("bench cache");
    let sizes: Vec<u64> = match std::env::var("FXPIPE_BENCH_ROWS") {
        Ok(list) => list
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect(),
        Err(_) => vec![1_000_000, 10_000_000],
    };
    let rates = cache.join("rates");
    ensure(
        &rates.join("historical/2018-12-31.json"),
        &[
            "gen",
            "rates",
            "--from",
            RATES_FROM,
            "--to",
            RATES_TO,
            "--out",
            rates.to_str().unwrap(),
        ],
    );
    println!("| rows | stage | wall s | throughput | peak RSS MB |");
    println!("|---:|---|---:|---:|---:|");
    for rows in sizes {
        let csv = cache.join(format!("transactions-{rows}.csv"));
        ensure(
            &csv,
            &[
                "gen",
                "transactions",
                "--rows",
                &rows.to_string(),
                "--dirty",
                "0.001",
                "--out",
                csv.to_str().unwrap(),
            ],
        );
        let lake = cache.join(format!("lake-{rows}"));
        let _ = std::fs::remove_dir_all(&lake);
        let lake_arg = lake.to_str().unwrap();
        let source = format!("file://{}", rates.display());
        let ingest = measure(&[
            "--lake", lake_arg, "ingest", "--source", &source, "--from", RATES_FROM, "--to",
            RATES_TO,
        ]);
        let load = measure(&["--lake", lake_arg, "load", csv.to_str().unwrap()]);
        let normalize = measure(&["--lake", lake_arg, "normalize"]);
        // The same normalize on a fresh loopback cluster (the lake is a local folder, which
        // every process here sees at the same path).
        let cluster = LoopbackCluster::start().map(|cluster| {
            let address = cluster.address();
            let measured = measure(&["--lake", lake_arg, "--cluster", &address, "normalize"]);
            (measured, cluster.executor_peak_rss_mb())
        });
        // Ingest reads rate files, one per day, whatever the size of the CSV: its throughput is
        // in days, not in transaction rows.
        let days = ingest_days();
        for (stage, m, units, unit) in [
            (format!("ingest ({days} days)"), &ingest, days, "days/s"),
            ("load".to_string(), &load, rows, "rows/s"),
            ("normalize".to_string(), &normalize, rows, "rows/s"),
        ] {
            println!(
                "| {rows} | {stage} | {:.2} | {:.0} {unit} | {:.0} |",
                m.seconds,
                units as f64 / m.seconds,
                m.peak_rss_mb
            );
        }
        if let Some((m, executors_mb)) = &cluster {
            println!(
                "| {rows} | normalize on a loopback cluster (scheduler + 2 executors) | {:.2} | {:.0} rows/s, {:.2}x embedded | {:.0} client, {:.0} per executor |",
                m.seconds,
                rows as f64 / m.seconds,
                m.seconds / normalize.seconds,
                m.peak_rss_mb,
                executors_mb
            );
        }
        let total = load.seconds + normalize.seconds;
        println!(
            "| {rows} | **load + normalize** | {total:.2} | {:.0} rows/s | {:.0} |",
            rows as f64 / total,
            load.peak_rss_mb.max(normalize.peak_rss_mb)
        );
        let _ = std::fs::remove_dir_all(&lake);
    }
}
