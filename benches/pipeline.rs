//! Whole-job benchmark: `cargo bench --bench pipeline` (release).
//!
//! Generates 1M and 10M transactions with `fxpipe gen` (cached under the target dir), then runs
//! `fxpipe ingest`, `fxpipe load` and `fxpipe normalize` as separate processes on a fresh lake
//! and prints wall time, throughput (days/s for ingest, rows/s for load and normalize) and each
//! process's peak RSS (from wait4). `FXPIPE_BENCH_ROWS=1000000` limits the sizes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

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
        let total = load.seconds + normalize.seconds;
        println!(
            "| {rows} | **load + normalize** | {total:.2} | {:.0} rows/s | {:.0} |",
            rows as f64 / total,
            load.peak_rss_mb.max(normalize.peak_rss_mb)
        );
        let _ = std::fs::remove_dir_all(&lake);
    }
}
