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
//! (`cargo build --release --workspace`), every run also loads and normalizes on a loopback
//! cluster of a scheduler and 2 executors, on a lake of its own, alternating which of the two
//! goes first; the table prints their medians, their ratios to embedded and the executors'
//! peak RSS (VmHWM).
//!
//! `--scaling` runs only the cluster's scaling study instead (`scaling.rs`; sizes from
//! `FXPIPE_BENCH_ROWS`, e.g. 1000000,10000000,30000000), into `latest-scaling.md/json`.
//!
//! `--memory` runs only normalize's memory row instead (`memory.rs`): 100M rows unless
//! `FXPIPE_BENCH_ROWS` says otherwise, one run unless `FXPIPE_BENCH_RUNS` does, into
//! `latest-memory.md/json`. It needs about 25 GB of disk and is not run in CI.
//!
//! Then the daily job (issue 24) on the last embedded lake: each run adds the next day of
//! exports (the data's rows per day) and of rates, then times `fxpipe run` (ingest that day,
//! load the new file, `normalize --changed`); then `fxpipe run` with nothing new. The table
//! prints both beside the full normalize, with the target: the daily run within 5% of a full
//! normalize plus its own load, nothing new within 1 s.

mod cluster;
mod daily;
mod measure;
mod memory;
mod peers;
mod report;
mod scaling;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use measure::{measure, Pacing, Samples};
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
#[derive(Default)]
pub struct PeerResult {
    /// CSV → Parquet, the peer of `fxpipe load`.
    copy: peers::PeerStep,
    /// The like-for-like normalize from typed copies of fxpipe's tables (DuckDB's defaults).
    typed: peers::PeerStep,
    /// The same with `preserve_insertion_order = false`.
    typed_unordered: peers::PeerStep,
    /// The looser normalize from the copy's auto-typed Parquet (DOUBLE math, exact value date).
    loose: peers::PeerStep,
    /// The untimed typed copies' report.
    typed_inputs: serde_json::Value,
    /// fxpipe's processed table against the like-for-like output, after the runs.
    agreement: Option<Result<serde_json::Value, String>>,
}

/// The same steps on the loopback cluster, and the executors' peak RSS in MB.
pub struct ClusterResult {
    load: Samples,
    normalize: Samples,
    executor_peak_rss_mb: f64,
}

/// Every run of one size.
pub struct SizeResult {
    rows: u64,
    csv_bytes: u64,
    ingest: Samples,
    load: Samples,
    normalize: Samples,
    peer: Option<PeerResult>,
    cluster: Option<ClusterResult>,
    /// A cluster normalize with one executor killed 40% into it: seconds (negative when the
    /// job failed).
    recovery: Option<f64>,
    daily: Option<daily::DailyResult>,
}

/// What the command line and environment ask for. Unknown arguments (cargo passes `--bench`)
/// are ignored.
struct Options {
    peers: bool,
    scaling: bool,
    memory: bool,
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
        let scaling = std::env::args().skip(1).any(|a| a == "--scaling");
        let memory = std::env::args().skip(1).any(|a| a == "--memory");
        let sizes = match std::env::var("FXPIPE_BENCH_ROWS") {
            Ok(list) => list
                .split(',')
                .filter_map(|s| s.trim().parse().ok())
                .collect(),
            Err(_) if memory => vec![100_000_000],
            Err(_) => vec![1_000_000, 10_000_000],
        };
        let pacing = Pacing {
            runs: env_number("FXPIPE_BENCH_RUNS", if memory { 1 } else { 3usize }).max(1),
            idle: Duration::from_secs_f64(env_number("FXPIPE_BENCH_IDLE_SECONDS", 2.0f64).max(0.0)),
        };
        Self {
            peers,
            scaling,
            memory,
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

/// One run of DuckDB's steps on the same CSV and, for the like-for-like rows, on typed copies
/// of `lake`'s tables (made once, untimed, the first time: `lake` has been loaded by then).
fn run_peer(
    duckdb: &DuckDb,
    pacing: &Pacing,
    work: &Path,
    lake: &Path,
    csv: &Path,
    rates: &Path,
    peer: &mut PeerResult,
) {
    let typed_transactions = work.join("typed-transactions.parquet");
    let typed_rates = work.join("typed-rates.parquet");
    if !typed_transactions.exists() {
        let _ = std::fs::remove_dir_all(work);
        std::fs::create_dir_all(work).expect("DuckDB work dir");
        peer.typed_inputs = duckdb.prepare_typed(lake, &typed_transactions, &typed_rates);
    }
    let parquet = work.join("transactions.parquet");
    let _ = std::fs::remove_file(&parquet);
    duckdb.copy(pacing, csv, &parquet, &mut peer.copy);
    duckdb.normalize_typed(
        pacing,
        &typed_transactions,
        &typed_rates,
        &work.join("typed-unordered"),
        false,
        &mut peer.typed_unordered,
    );
    duckdb.normalize(
        pacing,
        &parquet,
        rates,
        &work.join("normalized"),
        &mut peer.loose,
    );
    // Last, so its output is the one compared with fxpipe's after the runs.
    duckdb.normalize_typed(
        pacing,
        &typed_transactions,
        &typed_rates,
        &work.join("typed"),
        true,
        &mut peer.typed,
    );
}

/// One cluster normalize on `lake` with one of the 2 executors killed `after` into the run,
/// on a cluster that declares a silent executor lost after 10 s: the recovery's whole cost.
fn run_recovery(cache: &Path, lake: &Path, after: Duration) -> Option<f64> {
    let shape = cluster::Shape {
        executors: 2,
        vcores: None,
        cpus: None,
        fast_loss_detection: true,
    };
    let mut cluster = cluster::LoopbackCluster::start_shaped(cache, shape)?;
    let lake = lake.to_str().expect("utf-8 path");
    let address = cluster.address();
    let started = std::time::Instant::now();
    let mut child = fxpipe(&["--lake", lake, "--cluster", &address, "normalize"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("fxpipe normalize");
    std::thread::sleep(after);
    cluster.kill_executor(1);
    let status = child.wait().expect("fxpipe normalize");
    let seconds = started.elapsed().as_secs_f64();
    // A failure is a result too (the table says so), not a reason to lose the other rows.
    Some(if status.success() { seconds } else { -seconds })
}

/// The same load and normalize on the loopback cluster, on a fresh lake of their own (a local
/// folder, which every process here sees at the same path). The rates are ingested untimed.
fn run_cluster(
    pacing: &Pacing,
    cluster: &cluster::LoopbackCluster,
    lake: &Path,
    rates: &Path,
    csv: &Path,
    result: &mut ClusterResult,
) {
    let _ = std::fs::remove_dir_all(lake);
    let lake = lake.to_str().expect("utf-8 path");
    let source = format!("file://{}", rates.display());
    let status = fxpipe(&[
        "--lake", lake, "ingest", "--source", &source, "--from", SHAPE.from, "--to", SHAPE.to,
    ])
    .stdout(std::process::Stdio::null())
    .status()
    .expect("fxpipe ingest");
    assert!(status.success(), "ingest for the cluster's lake failed");
    let address = cluster.address();
    let csv = csv.to_str().expect("utf-8 path");
    let on = |args: &[&str]| {
        let mut command = fxpipe(&["--lake", lake, "--cluster", &address]);
        command.args(args);
        command
    };
    result.load.push(measure(pacing, &mut on(&["load", csv])).0);
    result
        .normalize
        .push(measure(pacing, &mut on(&["normalize"])).0);
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
        recovery: None,
        daily: None,
    };
    let cluster = cluster::LoopbackCluster::start(inputs.cache);
    let cluster_lake = inputs.cache.join(format!("lake-{rows}-cluster"));
    let mut on_cluster = cluster.as_ref().map(|_| ClusterResult {
        load: Samples::default(),
        normalize: Samples::default(),
        executor_peak_rss_mb: 0.0,
    });
    let mut peer = inputs.duckdb.map(|_| PeerResult::default());
    for run in 1..=options.pacing.runs {
        eprintln!("{rows} rows: run {run} of {}", options.pacing.runs);
        // The cluster goes first in every other run, so neither side always runs warm.
        let cluster_run = |result: &mut Option<ClusterResult>| {
            if let (Some(cluster), Some(result)) = (cluster.as_ref(), result.as_mut()) {
                let rates = inputs.rates_dir;
                run_cluster(&options.pacing, cluster, &cluster_lake, rates, &csv, result);
            }
        };
        // The cluster and DuckDB go first in every other run, so no side always runs warm (or
        // cold). DuckDB's typed inputs come from the first run's lake, so run 1 is fxpipe's.
        let peer_run = |peer: &mut Option<PeerResult>| {
            if let (Some((duckdb, rates)), Some(peer)) = (inputs.duckdb, peer.as_mut()) {
                run_peer(duckdb, &options.pacing, &work, &lake, &csv, rates, peer);
            }
        };
        if run % 2 == 0 {
            peer_run(&mut peer);
            cluster_run(&mut on_cluster);
        }
        run_fxpipe(&options.pacing, &lake, inputs.rates_dir, &csv, &mut size);
        if run % 2 == 1 {
            cluster_run(&mut on_cluster);
            peer_run(&mut peer);
        }
    }
    // Both normalizes' last outputs, month by month: a disagreement fails the benchmark (after
    // the results are written, so they can be read).
    if let (Some((duckdb, _)), Some(peer)) = (inputs.duckdb, peer.as_mut()) {
        peer.agreement = Some(duckdb.compare(&lake, &work.join("typed")));
    }
    if let (Some(cluster), Some(result)) = (cluster.as_ref(), on_cluster.as_mut()) {
        result.executor_peak_rss_mb = cluster.executor_peak_rss_mb();
    }
    drop(cluster);
    if let Some(result) = &on_cluster {
        let after = Duration::from_secs_f64(0.4 * result.normalize.median_seconds());
        size.recovery = run_recovery(inputs.cache, &cluster_lake, after);
    }
    size.cluster = on_cluster;
    size.peer = peer;
    // The daily job on the lake the last embedded run left.
    let per_day = rows / SHAPE.rate_days();
    size.daily = Some(daily::bench(
        &options.pacing,
        inputs.cache,
        &lake,
        &SHAPE,
        per_day,
    ));
    // Lakes and Parquet outputs are large; the CSV stays cached.
    let _ = std::fs::remove_dir_all(&lake);
    let _ = std::fs::remove_dir_all(&cluster_lake);
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
    if options.scaling {
        scaling_study(&options, &cache, &rates_dir);
        return;
    }
    if options.memory {
        memory_row(&options, &cache, &rates_dir);
        return;
    }
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
            "DuckDB's times: its process, as fxpipe's (Python start-up and `import duckdb` \
             included), and in brackets its statement's own time. The like-for-like normalize \
             reads one-file typed copies of fxpipe's own transactions and rates tables (made \
             once, untimed), so both sides start from the same rows; DuckDB divides decimals in \
             DOUBLE, rounds to the cent and stores DECIMAL(38,2), fxpipe computes on exact \
             integers. The looser row starts from DuckDB's own auto-typed CSV copy and its rates \
             Parquet (prepared once from the JSON files, untimed)."
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
    for size in &sizes {
        if let Some(Some(Err(output))) = size.peer.as_ref().map(|p| p.agreement.as_ref()) {
            panic!(
                "{} rows: fxpipe's and DuckDB's normalize outputs disagree:\n{output}",
                size.rows
            );
        }
    }
}

/// `--memory`: normalize's time and peak RSS at each size, bounded and with every month open.
fn memory_row(options: &Options, cache: &Path, rates_dir: &Path) {
    let rows: Vec<_> = options
        .sizes
        .iter()
        .map(|&size| memory::bench(&options.pacing, cache, rates_dir, size))
        .collect();
    let table = memory::table(&rows, &options.pacing);
    println!("{}\n\n{table}", SHAPE.describe());
    let json = memory::json(&rows, &options.pacing);
    let markdown = format!("{}\n\n{table}", SHAPE.describe());
    write_results("latest-memory", &json, &markdown);
}

/// Writes `benches/results/NAME.json` and `NAME.md`.
fn write_results(name: &str, json: &serde_json::Value, markdown: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/results");
    let json = serde_json::to_string_pretty(json).expect("JSON") + "\n";
    for (path, text) in [
        (dir.join(format!("{name}.json")), json.as_str()),
        (dir.join(format!("{name}.md")), markdown),
    ] {
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
    eprintln!("wrote {}/{name}.json and .md", dir.display());
}

/// `--scaling`: the cluster's scaling study at each size.
fn scaling_study(options: &Options, cache: &Path, rates_dir: &Path) {
    let mut rows = Vec::new();
    for &size in &options.sizes {
        let csv = SHAPE.csv(cache, size);
        ensure_transactions(&SHAPE, &csv, size);
        rows.extend(scaling::bench(
            &options.pacing,
            cache,
            rates_dir,
            &csv,
            size,
        ));
    }
    let table = scaling::table(&rows);
    println!("{}\n\n{table}", SHAPE.describe());
    let machine = report::machine();
    let json = serde_json::json!({
        "machine": machine,
        "runs_per_shape": options.pacing.runs,
        "data": SHAPE.json(),
        "shapes": scaling::json(&rows),
    });
    let markdown = format!(
        "Measured {} on {} cores, commit {}; {}.\n\n{table}",
        machine["date"].as_str().unwrap_or("?"),
        machine["nproc"],
        machine["commit"]
            .as_str()
            .unwrap_or("?")
            .chars()
            .take(10)
            .collect::<String>(),
        SHAPE.describe()
    );
    write_results("latest-scaling", &json, &markdown);
}
