//! Whole-job benchmark: `cargo bench --bench pipeline [-- --peers]` (release).
//!
//! Generates 1M and 10M transactions over 5 years (1,000 accounts, 0.1% malformed rows) and
//! 5 years of daily rates with `fxpipe gen`, cached under `<target dir>/bench-data`. Each run
//! ingests the rates, loads the CSV and normalizes it on a fresh lake, every step a separate
//! `fxpipe` process measured for wall time and peak RSS (wait4). Every step runs 3 times,
//! each after an idle pause, and the table shows medians: the machine is shared.
//!
//! `--peers` also runs DuckDB's peer steps (`benches/peers/duckdb_steps.py`) on the same files
//! in the same runs, and prints each fxpipe figure's ratio to its peer. The table goes to
//! stdout and `benches/results/latest.md`; every run to `benches/results/latest.json`.
//!
//! `FXPIPE_BENCH_ROWS=1000000` (a comma-separated list) limits the sizes,
//! `FXPIPE_BENCH_RUNS` sets the runs per step (3) and `FXPIPE_BENCH_IDLE_SECONDS` the pause (2).
//!
//! With the release `fxpipe-scheduler` and `fxpipe-executor` built beside `fxpipe`
//! (`cargo build --release --workspace`), it also runs `normalize` once on a loopback cluster
//! of a scheduler and 2 executors on the same lake, and prints its ratio to the embedded
//! median and the executors' peak RSS (VmHWM).

mod cluster;
mod measure;
mod peers;
mod report;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use measure::{measure, Measured, Pacing, Samples};
use peers::DuckDb;

const BIN: &str = env!("CARGO_BIN_EXE_fxpipe");

/// The generated data: the shape (5 years of transactions and daily rates).
pub struct DataShape {
    from: &'static str,
    to: &'static str,
    accounts: u32,
    dirty: f64,
}

const SHAPE: DataShape = DataShape {
    from: "2014-01-01",
    to: "2018-12-31",
    accounts: 1000,
    dirty: 0.001,
};

impl DataShape {
    /// Days of rates, `from` to `to` inclusive (1,826).
    fn rate_days(&self) -> u64 {
        let day = |text: &str| {
            chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").expect("a benchmark date constant")
        };
        (day(self.to) - day(self.from)).num_days() as u64 + 1
    }

    /// Cache names carry the shape, so a cache of another shape is never reused.
    fn tag(&self) -> String {
        format!("{}-{}", self.from, self.to)
    }

    fn rates_dir(&self, cache: &Path) -> PathBuf {
        cache.join(format!("rates-{}", self.tag()))
    }

    fn csv(&self, cache: &Path, rows: u64) -> PathBuf {
        cache.join(format!(
            "transactions-{}-{}acct-{rows}.csv",
            self.tag(),
            self.accounts
        ))
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "from": self.from,
            "to": self.to,
            "rate_days": self.rate_days(),
            "accounts": self.accounts,
            "dirty_fraction": self.dirty,
            "base_currency": "SGD",
        })
    }

    fn describe(&self) -> String {
        format!(
            "transactions and daily rates {} to {} ({} days), {} accounts, {}% malformed rows, base SGD",
            self.from,
            self.to,
            self.rate_days(),
            self.accounts,
            self.dirty * 100.0
        )
    }
}

/// DuckDB's runs of one size.
pub struct PeerResult {
    copy: Samples,
    normalize: Samples,
    copy_report: serde_json::Value,
    normalize_report: serde_json::Value,
}

/// Every run of one size.
pub struct SizeResult {
    rows: u64,
    csv_bytes: u64,
    ingest: Samples,
    load: Samples,
    normalize: Samples,
    peer: Option<PeerResult>,
    /// One loopback-cluster normalize and the executors' peak RSS in MB.
    cluster: Option<(Measured, f64)>,
}

/// What the command line and environment ask for. Unknown arguments (cargo passes `--bench`)
/// are ignored.
struct Options {
    peers: bool,
    sizes: Vec<u64>,
    pacing: Pacing,
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

impl Options {
    fn parse() -> Self {
        let peers = std::env::args().skip(1).any(|a| a == "--peers");
        let sizes = match std::env::var("FXPIPE_BENCH_ROWS") {
            Ok(list) => list
                .split(',')
                .filter_map(|s| s.trim().parse().ok())
                .collect(),
            Err(_) => vec![1_000_000, 10_000_000],
        };
        let pacing = Pacing {
            runs: env_number("FXPIPE_BENCH_RUNS", 3usize).max(1),
            idle: Duration::from_secs_f64(env_number("FXPIPE_BENCH_IDLE_SECONDS", 2.0f64).max(0.0)),
        };
        Self {
            peers,
            sizes,
            pacing,
        }
    }
}

fn fxpipe(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command.args(args);
    command
}

/// Runs `fxpipe gen ...` unless `path` (its last output) exists.
fn ensure(path: &Path, args: &[&str]) {
    if !path.exists() {
        let status = fxpipe(args).status().expect("fxpipe gen");
        assert!(status.success(), "fxpipe {args:?} failed");
    }
}

fn ensure_rates(shape: &DataShape, dir: &Path) {
    let last = dir.join(format!("historical/{}.json", shape.to));
    let out = dir.to_str().expect("utf-8 path");
    ensure(
        &last,
        &[
            "gen", "rates", "--from", shape.from, "--to", shape.to, "--out", out,
        ],
    );
}

fn ensure_transactions(shape: &DataShape, csv: &Path, rows: u64) {
    if csv.exists() {
        return;
    }
    // Written under a temporary name, so an interrupted run leaves no truncated cache.
    let partial = csv.with_extension("partial.csv");
    let (rows, accounts, dirty) = (
        rows.to_string(),
        shape.accounts.to_string(),
        shape.dirty.to_string(),
    );
    let args = [
        "gen",
        "transactions",
        "--rows",
        &rows,
        "--accounts",
        &accounts,
        "--from",
        shape.from,
        "--to",
        shape.to,
        "--dirty",
        &dirty,
        "--out",
        partial.to_str().expect("utf-8 path"),
    ];
    let status = fxpipe(&args).status().expect("fxpipe gen");
    assert!(status.success(), "fxpipe {args:?} failed");
    std::fs::rename(&partial, csv).expect("cache the transactions CSV");
}

/// One run of fxpipe's steps on a fresh lake, which the run leaves in place.
fn run_fxpipe(pacing: &Pacing, lake: &Path, rates: &Path, csv: &Path, size: &mut SizeResult) {
    let _ = std::fs::remove_dir_all(lake);
    let lake = lake.to_str().expect("utf-8 path");
    let source = format!("file://{}", rates.display());
    let (ingest, _) = measure(
        pacing,
        &mut fxpipe(&[
            "--lake", lake, "ingest", "--source", &source, "--from", SHAPE.from, "--to", SHAPE.to,
        ]),
    );
    size.ingest.push(ingest);
    let csv = csv.to_str().expect("utf-8 path");
    size.load
        .push(measure(pacing, &mut fxpipe(&["--lake", lake, "load", csv])).0);
    size.normalize
        .push(measure(pacing, &mut fxpipe(&["--lake", lake, "normalize"])).0);
}

/// One run of DuckDB's steps on the same CSV, into `work` (replaced).
fn run_peer(
    duckdb: &DuckDb,
    pacing: &Pacing,
    work: &Path,
    rates: &Path,
    csv: &Path,
    peer: &mut PeerResult,
) {
    let _ = std::fs::remove_dir_all(work);
    std::fs::create_dir_all(work).expect("DuckDB work dir");
    let parquet = work.join("transactions.parquet");
    let (copy, copy_report) = duckdb.copy(pacing, csv, &parquet);
    peer.copy.push(copy);
    peer.copy_report = copy_report;
    let (normalize, report) = duckdb.normalize(pacing, &parquet, rates, &work.join("normalized"));
    peer.normalize.push(normalize);
    peer.normalize_report = report;
}

/// The same normalize once on a fresh loopback cluster (the lake is a local folder, which
/// every process here sees at the same path).
fn run_cluster(pacing: &Pacing, lake: &Path) -> Option<(Measured, f64)> {
    let cluster = cluster::LoopbackCluster::start()?;
    let lake = lake.to_str().expect("utf-8 path");
    let address = cluster.address();
    let (run, _) = measure(
        pacing,
        &mut fxpipe(&["--lake", lake, "--cluster", &address, "normalize"]),
    );
    Some((run, cluster.executor_peak_rss_mb()))
}

struct Inputs<'a> {
    cache: &'a Path,
    rates_dir: &'a Path,
    duckdb: Option<(&'a DuckDb, &'a Path)>,
}

/// All runs of one size. fxpipe's and DuckDB's runs alternate, so a slow spell on the shared
/// machine hits both.
fn bench_size(options: &Options, inputs: &Inputs, rows: u64) -> SizeResult {
    let csv = SHAPE.csv(inputs.cache, rows);
    ensure_transactions(&SHAPE, &csv, rows);
    let lake = inputs.cache.join(format!("lake-{rows}"));
    let work = inputs.cache.join(format!("duckdb-{rows}"));
    let mut size = SizeResult {
        rows,
        csv_bytes: std::fs::metadata(&csv).map(|m| m.len()).unwrap_or(0),
        ingest: Samples::default(),
        load: Samples::default(),
        normalize: Samples::default(),
        peer: None,
        cluster: None,
    };
    let mut peer = inputs.duckdb.map(|_| PeerResult {
        copy: Samples::default(),
        normalize: Samples::default(),
        copy_report: serde_json::Value::Null,
        normalize_report: serde_json::Value::Null,
    });
    for run in 1..=options.pacing.runs {
        eprintln!("{rows} rows: run {run} of {}", options.pacing.runs);
        run_fxpipe(&options.pacing, &lake, inputs.rates_dir, &csv, &mut size);
        if let (Some((duckdb, rates)), Some(peer)) = (inputs.duckdb, peer.as_mut()) {
            run_peer(duckdb, &options.pacing, &work, rates, &csv, peer);
        }
    }
    size.cluster = run_cluster(&options.pacing, &lake);
    size.peer = peer;
    // Lakes and Parquet outputs are large; the CSV stays cached.
    let _ = std::fs::remove_dir_all(&lake);
    let _ = std::fs::remove_dir_all(&work);
    size
}

fn main() {
    let options = Options::parse();
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target");
    let cache = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or(target)
        .join("bench-data");
    std::fs::create_dir_all(&cache).expect("bench cache");
    let rates_dir = SHAPE.rates_dir(&cache);
    ensure_rates(&SHAPE, &rates_dir);
    let duckdb = options.peers.then(DuckDb::ensure);
    let rates_parquet = cache.join(format!("duckdb-rates-{}.parquet", SHAPE.tag()));
    let peers_json = duckdb.as_ref().map(|duckdb| {
        let prepared = duckdb.prepare_rates(&rates_dir, &rates_parquet);
        eprintln!(
            "DuckDB {}: rates Parquet prepared once from the JSON files, untimed ({})",
            duckdb.version,
            rates_parquet.display()
        );
        serde_json::json!({
            "duckdb": duckdb.version,
            "rates_parquet": rates_parquet,
            "rates_preparation_untimed": prepared,
        })
    });
    let inputs = Inputs {
        cache: &cache,
        rates_dir: &rates_dir,
        duckdb: duckdb.as_ref().map(|d| (d, rates_parquet.as_path())),
    };
    let sizes: Vec<SizeResult> = options
        .sizes
        .iter()
        .map(|&rows| bench_size(&options, &inputs, rows))
        .collect();
    let table = report::table(&sizes, &SHAPE, &options.pacing, options.peers);
    println!("{}\n\n{table}", SHAPE.describe());
    if options.peers {
        println!(
            "DuckDB's rates Parquet was prepared once from the JSON files and is not timed; \
             its normalize converts in DOUBLE arithmetic, fxpipe's in exact decimals."
        );
    }
    let results = report::Results {
        sizes: &sizes,
        shape: &SHAPE,
        pacing: &options.pacing,
        peers: peers_json,
    };
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/results");
    results.write(&dir, &table);
    eprintln!("wrote {}/latest.json and latest.md", dir.display());
}
