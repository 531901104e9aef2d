//! The daily job (issue 24): on a lake holding the whole history, each run adds the next day
//! of exports and of rates and times `fxpipe run`; then `fxpipe run` with nothing new. The
//! day's inputs are generated once with `fxpipe gen` and cached beside the history's.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::measure::{measure, Pacing, Samples};
use super::{ensure, fxpipe, DataShape};

/// Every daily run of one size.
pub struct DailyResult {
    /// Rows of one day's export: the history's rows per day.
    pub rows_per_day: u64,
    /// `fxpipe run` adding one day each.
    pub run: Samples,
    /// Each run's load step, from its load report (the day's own load time).
    pub load_seconds: Vec<f64>,
    /// The months each run's `normalize --changed` recomputed.
    pub months_recomputed: Vec<Value>,
    /// `fxpipe run` when nothing is new.
    pub nothing_new: Samples,
}

/// The `n`th day after the history's last.
fn day_after(shape: &DataShape, n: u64) -> String {
    let last = chrono::NaiveDate::parse_from_str(shape.to, "%Y-%m-%d").expect("a date constant");
    (last + chrono::Days::new(n)).format("%Y-%m-%d").to_string()
}

/// The newest `_reports/JOB-*.json` of the lake.
fn newest_report(lake: &Path, job: &str) -> Value {
    let mut names: Vec<PathBuf> = std::fs::read_dir(lake.join("_reports"))
        .expect("the lake's reports")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{job}-")))
        })
        .collect();
    names.sort();
    let newest = names.last().unwrap_or_else(|| panic!("no {job} report"));
    serde_json::from_slice(&std::fs::read(newest).expect("read a report")).expect("report JSON")
}

/// Rates for the days after the history, and one export per day of `per_day` rows.
fn ensure_days(cache: &Path, shape: &DataShape, days: u64, per_day: u64) -> (PathBuf, PathBuf) {
    let (first, last) = (day_after(shape, 1), day_after(shape, days));
    let rates = cache.join(format!("daily-rates-{first}-{last}"));
    let rates_text = rates.to_str().expect("utf-8 path").to_string();
    ensure(
        &rates.join(format!("historical/{last}.json")),
        &[
            "gen",
            "rates",
            "--from",
            &first,
            "--to",
            &last,
            "--out",
            &rates_text,
        ],
    );
    let exports = cache.join(format!("daily-exports-{}acct-{per_day}", shape.accounts));
    std::fs::create_dir_all(&exports).expect("the daily exports' cache");
    for n in 1..=days {
        let day = day_after(shape, n);
        let csv = exports.join(format!("{day}.csv"));
        let (rows, accounts, dirty, seed) = (
            per_day.to_string(),
            shape.accounts.to_string(),
            shape.dirty.to_string(),
            (1000 + n).to_string(),
        );
        ensure(
            &csv,
            &[
                "gen",
                "transactions",
                "--rows",
                &rows,
                "--accounts",
                &accounts,
                "--from",
                &day,
                "--to",
                &day,
                "--dirty",
                &dirty,
                "--seed",
                &seed,
                "--out",
                csv.to_str().expect("utf-8 path"),
            ],
        );
    }
    (rates, exports)
}

/// Times the daily runs on `lake` (which holds the history, normalized), leaving it with the
/// new days in it.
pub fn bench(
    pacing: &Pacing,
    cache: &Path,
    lake: &Path,
    shape: &DataShape,
    per_day: u64,
) -> DailyResult {
    let days = pacing.runs as u64;
    let (rates, exports) = ensure_days(cache, shape, days, per_day);
    // The folder `--inputs` names: the exports delivered so far.
    let inbox = lake.with_extension("inbox");
    let _ = std::fs::remove_dir_all(&inbox);
    std::fs::create_dir_all(&inbox).expect("the daily inbox");
    let source = format!("file://{}", rates.display());
    let inputs = format!("{}/*.csv", inbox.display());
    let lake_text = lake.to_str().expect("utf-8 path");
    let run = |day: &str| {
        fxpipe(&[
            "--lake", lake_text, "run", "--source", &source, "--date", day, "--inputs", &inputs,
        ])
    };
    let mut result = DailyResult {
        rows_per_day: per_day,
        run: Samples::default(),
        load_seconds: Vec::new(),
        months_recomputed: Vec::new(),
        nothing_new: Samples::default(),
    };
    for n in 1..=days {
        let day = day_after(shape, n);
        eprintln!("daily run: {day}");
        let file = format!("{day}.csv");
        std::fs::copy(exports.join(&file), inbox.join(&file)).expect("deliver the day's export");
        result.run.push(measure(pacing, &mut run(&day)).0);
        let load = newest_report(lake, "load");
        result
            .load_seconds
            .push(load["elapsed_ms"].as_f64().unwrap_or(0.0) / 1000.0);
        let normalize = newest_report(lake, "normalize");
        result
            .months_recomputed
            .push(normalize["months_recomputed"].clone());
    }
    let last = day_after(shape, days);
    for _ in 0..pacing.runs {
        let (measured, said) = measure(pacing, &mut run(&last));
        assert!(
            said.contains("up to date"),
            "a run with nothing new wrote something:\n{said}"
        );
        result.nothing_new.push(measured);
    }
    let _ = std::fs::remove_dir_all(&inbox);
    result
}
