//! Whole-job benchmark: `cargo bench --bench pipeline` (release).
//!
//! Generates 1M and 10M transactions with `fxpipe gen` (cached under the target dir), then runs
//! `fxpipe load` and `fxpipe normalize` as separate processes on a fresh lake and prints wall
//! time, rows/s and each process's peak RSS (from wait4). `FXPIPE_BENCH_ROWS=1000000` limits
//! the sizes.

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
            "2017-01-01",
            "--to",
            "2018-12-31",
            "--out",
            rates.to_str().unwrap(),
        ],
    );
    println!("| rows | stage | wall s | rows/s | peak RSS MB |");
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
            "--lake",
            lake_arg,
            "ingest",
            "--source",
            &source,
            "--from",
            "2017-01-01",
            "--to",
            "2018-12-31",
        ]);
        let load = measure(&["--lake", lake_arg, "load", csv.to_str().unwrap()]);
        let normalize = measure(&["--lake", lake_arg, "normalize"]);
        for (stage, m) in [
            ("ingest (730 days)", &ingest),
            ("load", &load),
            ("normalize", &normalize),
        ] {
            println!(
                "| {rows} | {stage} | {:.2} | {:.0} | {:.0} |",
                m.seconds,
                rows as f64 / m.seconds,
                m.peak_rss_mb
            );
        }
        let total = load.seconds + normalize.seconds;
        println!(
            "| {rows} | **load + normalize** | {total:.2} | {:.0} | {:.0} |",
            rows as f64 / total,
            load.peak_rss_mb.max(normalize.peak_rss_mb)
        );
        let _ = std::fs::remove_dir_all(&lake);
    }
}
