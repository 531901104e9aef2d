//! DuckDB, the peer fxpipe is measured against: `benches/peers/duckdb_steps.py` run as one
//! process per step, so its wall time and peak RSS are taken exactly as fxpipe's are.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::measure::{measure, Measured, Pacing};

/// The Python interpreter the peer script runs under.
const PYTHON: &str = "python3";

/// The peer steps, with where their inputs and outputs live.
pub struct DuckDb {
    script: PathBuf,
    /// DuckDB's version, for the results.
    pub version: String,
}

/// What the script reports on stdout: one JSON object per step.
fn parse_report(stdout: &str) -> serde_json::Value {
    stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or(serde_json::Value::Null)
}

fn duckdb_version(script: &Path) -> Option<String> {
    let output = Command::new(PYTHON)
        .arg(script)
        .arg("version")
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let report = parse_report(std::str::from_utf8(&output.stdout).ok()?);
    report["duckdb"].as_str().map(str::to_string)
}

impl DuckDb {
    /// Finds DuckDB for `python3`, installing it from PyPI when it is missing (`python3 -m pip
    /// install duckdb`, into pip's default site). Panics with what to do if that fails.
    pub fn ensure() -> Self {
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/peers/duckdb_steps.py");
        if let Some(version) = duckdb_version(&script) {
            return Self { script, version };
        }
        eprintln!("DuckDB is missing for {PYTHON}: python3 -m pip install duckdb");
        let _ = Command::new(PYTHON)
            .args(["-m", "pip", "install", "--quiet", "duckdb"])
            .status();
        match duckdb_version(&script) {
            Some(version) => Self { script, version },
            None => panic!(
                "--peers needs DuckDB for python3 and `python3 -m pip install duckdb` failed: \
                 install it by hand, or run the benchmark without --peers"
            ),
        }
    }

    fn step(&self, step: &str) -> Command {
        let mut command = Command::new(PYTHON);
        command.arg(&self.script).arg(step);
        command
    }

    /// The rates as one Parquet of (rate_date, currency, units_per_usd), made once from the
    /// OXR JSON files and cached: the peer's input, not a timed step. Returns the script's report.
    pub fn prepare_rates(&self, rates_dir: &Path, out: &Path) -> serde_json::Value {
        if out.exists() {
            return serde_json::json!({ "cached": out });
        }
        let partial = out.with_extension("partial");
        let output = self
            .step("rates")
            .arg("--rates-dir")
            .arg(rates_dir)
            .arg("--out")
            .arg(&partial)
            .output()
            .expect("run the DuckDB rates step");
        assert!(
            output.status.success(),
            "DuckDB rates step failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::rename(&partial, out).expect("cache the rates Parquet");
        parse_report(&String::from_utf8_lossy(&output.stdout))
    }

    /// The peer of `fxpipe load`: CSV → Parquet with auto-detected types.
    pub fn copy(&self, pacing: &Pacing, csv: &Path, out: &Path) -> (Measured, serde_json::Value) {
        let (measured, stdout) = measure(
            pacing,
            self.step("copy")
                .arg("--csv")
                .arg(csv)
                .arg("--out")
                .arg(out),
        );
        (measured, parse_report(&stdout))
    }

    /// The peer of `fxpipe normalize`: the copy's Parquet × rates → base-currency amounts,
    /// partitioned by year and month into `out` (replaced).
    pub fn normalize(
        &self,
        pacing: &Pacing,
        transactions: &Path,
        rates: &Path,
        out: &Path,
    ) -> (Measured, serde_json::Value) {
        let (measured, stdout) = measure(
            pacing,
            self.step("normalize")
                .arg("--transactions")
                .arg(transactions)
                .arg("--rates")
                .arg(rates)
                .arg("--out")
                .arg(out)
                .args(["--base", "SGD"]),
        );
        (measured, parse_report(&stdout))
    }
}
