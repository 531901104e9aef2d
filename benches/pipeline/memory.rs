//! `--memory`: normalize's time and peak RSS at a size too large for every run (issue 26:
//! ≤ 1 GB at 100M rows, not growing with the rows or the months written).
//!
//! One lake per size (100M rows unless `FXPIPE_BENCH_ROWS` says otherwise): the rates ingested
//! and the CSV loaded once, then normalize timed with the default open-file bound and with every
//! month open (`--max-open-files 10000`, the behaviour before the bound), alternating which goes
//! first. Into `results/latest-memory.md` and `.json`.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::json;

use crate::measure::{measure, Pacing, Samples};
use crate::{ensure_transactions, fxpipe, report, SHAPE};

/// The bound issue 26 sets on normalize's peak RSS.
const TARGET_MB: f64 = 1024.0;

/// One size's figures.
pub struct MemoryRow {
    rows: u64,
    load: Samples,
    bounded: Samples,
    every_month_open: Samples,
}

/// Loads `rows` rows into a lake of its own, then times both normalizes `pacing.runs` times.
pub fn bench(pacing: &Pacing, cache: &Path, rates: &Path, rows: u64) -> MemoryRow {
    let csv = SHAPE.csv(cache, rows);
    ensure_transactions(&SHAPE, &csv, rows);
    let lake = cache.join(format!("lake-{rows}-memory"));
    let _ = std::fs::remove_dir_all(&lake);
    let lake_arg = lake.to_str().expect("utf-8 path");
    let source = format!("file://{}", rates.display());
    measure(
        pacing,
        &mut fxpipe(&[
            "--lake", lake_arg, "ingest", "--source", &source, "--from", SHAPE.from, "--to",
            SHAPE.to,
        ]),
    );
    let mut row = MemoryRow {
        rows,
        load: Samples::default(),
        bounded: Samples::default(),
        every_month_open: Samples::default(),
    };
    let csv_arg = csv.to_str().expect("utf-8 path");
    row.load
        .push(measure(pacing, &mut fxpipe(&["--lake", lake_arg, "load", csv_arg])).0);
    let bounded = ["--lake", lake_arg, "normalize"];
    let open = ["--lake", lake_arg, "normalize", "--max-open-files", "10000"];
    for run in 0..pacing.runs {
        let once = Pacing { runs: 1, ..*pacing };
        let (first, second) = if run % 2 == 0 {
            (&bounded[..], &open[..])
        } else {
            (&open[..], &bounded[..])
        };
        for args in [first, second] {
            let measured = measure(&once, &mut fxpipe(args)).0;
            if args.len() == bounded.len() {
                row.bounded.push(measured);
            } else {
                row.every_month_open.push(measured);
            }
        }
    }
    // Every normalize replaced the whole table: keep the disk for the next size.
    let _ = std::fs::remove_dir_all(&lake);
    row
}

/// The Markdown table of `rows`.
pub fn table(rows: &[MemoryRow], pacing: &Pacing) -> String {
    let mut out = format!(
        "normalize's peak RSS against the {TARGET_MB:.0} MB target (release; medians of {} \
         runs, fastest and slowest in brackets)\n\n\
         | rows | step | s | peak RSS MB | within {TARGET_MB:.0} MB |\n|---:|---|---:|---:|---|\n",
        pacing.runs
    );
    for row in rows {
        let line = |name: &str, samples: &Samples| {
            let (low, high) = samples.range_seconds();
            let rss = samples.median_peak_rss_mb();
            format!(
                "| {} | {name} | {:.1} ({low:.1}–{high:.1}) | {rss:.0} | {} |\n",
                row.rows,
                samples.median_seconds(),
                if rss <= TARGET_MB { "yes" } else { "**no**" }
            )
        };
        out.push_str(&line("load (once, for reference)", &row.load));
        out.push_str(&line("normalize, default `--max-open-files`", &row.bounded));
        out.push_str(&line(
            "normalize, every month open (`--max-open-files 10000`)",
            &row.every_month_open,
        ));
    }
    let _ = writeln!(out);
    out
}

/// The JSON record of `rows`, every run kept.
pub fn json(rows: &[MemoryRow], pacing: &Pacing) -> serde_json::Value {
    json!({
        "machine": report::machine(),
        "runs": pacing.runs,
        "data": SHAPE.json(),
        "target_peak_rss_mb": TARGET_MB,
        "sizes": rows.iter().map(|row| json!({
            "rows": row.rows,
            "load": {"seconds": row.load.seconds(), "peak_rss_mb": row.load.peak_rss_mb()},
            "normalize_bounded": {
                "seconds": row.bounded.seconds(),
                "peak_rss_mb": row.bounded.peak_rss_mb(),
            },
            "normalize_every_month_open": {
                "seconds": row.every_month_open.seconds(),
                "peak_rss_mb": row.every_month_open.peak_rss_mb(),
            },
        })).collect::<Vec<_>>(),
    })
}
