//! DuckDB, the peer fxpipe is measured against: `benches/peers/duckdb_steps.py` run as one
//! process per step, so its wall time and peak RSS are taken exactly as fxpipe's are.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::measure::{measure, median, Measured, Pacing, Samples};

/// The Python interpreter the peer script runs under.
const PYTHON: &str = "python3";

/// Every run of one DuckDB step: the process as fxpipe's are measured (wall time from spawn to
/// exit, peak RSS), the statement's own time inside the script (without Python's start-up and
/// `import duckdb`), and what each run reported.
#[derive(Debug, Default)]
pub struct PeerStep {
    pub process: Samples,
    pub statement_seconds: Vec<f64>,
    pub reports: Vec<serde_json::Value>,
}

impl PeerStep {
    fn push(&mut self, (measured, report): (Measured, serde_json::Value)) {
        self.process.push(measured);
        self.statement_seconds
            .push(report["seconds"].as_f64().unwrap_or(f64::NAN));
        self.reports.push(report);
    }

    pub fn median_statement_seconds(&self) -> f64 {
        median(self.statement_seconds.clone())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "seconds": self.process.seconds(),
            "median_seconds": self.process.median_seconds(),
            "statement_seconds": self.statement_seconds,
            "median_statement_seconds": self.median_statement_seconds(),
            "peak_rss_mb": self.process.peak_rss_mb(),
            "median_peak_rss_mb": self.process.median_peak_rss_mb(),
            "reports": self.reports,
        })
    }
}

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

    /// A normalize step of the script: its inputs, its output folder, base SGD.
    fn normalize_step(&self, step: &str, transactions: &Path, rates: &Path, out: &Path) -> Command {
        let mut command = self.step(step);
        command
            .arg("--transactions")
            .arg(transactions)
            .arg("--rates")
            .arg(rates)
            .arg("--out")
            .arg(out)
            .args(["--base", "SGD"]);
        command
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

    /// Runs an untimed step to completion and returns its report; panics with its output if
    /// it fails.
    fn untimed(&self, command: &mut Command, what: &str) -> serde_json::Value {
        let output = command.output().expect("run a DuckDB step");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "DuckDB {what} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        parse_report(&stdout)
    }

    /// The like-for-like peer's inputs: fxpipe's typed `transactions` and `rates` tables of
    /// `lake` (after ingest and load), each copied once into one Parquet file. Untimed.
    pub fn prepare_typed(
        &self,
        lake: &Path,
        transactions: &Path,
        rates: &Path,
    ) -> serde_json::Value {
        self.untimed(
            self.step("typed")
                .arg("--lake")
                .arg(lake)
                .arg("--out-transactions")
                .arg(transactions)
                .arg("--out-rates")
                .arg(rates),
            "typed copy of fxpipe's tables",
        )
    }

    /// Month by month, fxpipe's `processed` table of `lake` against a `normalize-typed`
    /// output. `Err` holds the script's report of the disagreement.
    pub fn compare(&self, lake: &Path, peer_output: &Path) -> Result<serde_json::Value, String> {
        let output = self
            .step("compare")
            .arg("--lake")
            .arg(lake)
            .arg("--peer")
            .arg(peer_output)
            .output()
            .expect("run the DuckDB compare step");
        let stdout = String::from_utf8_lossy(&output.stdout);
        if output.status.success() {
            Ok(parse_report(&stdout))
        } else {
            Err(format!(
                "{stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    /// The peer of `fxpipe load`: CSV → Parquet with auto-detected types.
    pub fn copy(&self, pacing: &Pacing, csv: &Path, out: &Path, step: &mut PeerStep) {
        let (measured, stdout) = measure(
            pacing,
            self.step("copy")
                .arg("--csv")
                .arg(csv)
                .arg("--out")
                .arg(out),
        );
        step.push((measured, parse_report(&stdout)));
    }

    /// The like-for-like peer of `fxpipe normalize`: the typed copies → DECIMAL base-currency
    /// amounts by an ASOF join with fxpipe's max rate age (3 days), partitioned by year and
    /// month into `out` (replaced). `insertion_order: false` sets DuckDB's
    /// `preserve_insertion_order = false` first.
    pub fn normalize_typed(
        &self,
        pacing: &Pacing,
        transactions: &Path,
        rates: &Path,
        out: &Path,
        insertion_order: bool,
        step: &mut PeerStep,
    ) {
        let mut command = self.normalize_step("normalize-typed", transactions, rates, out);
        command.args(["--max-rate-age", "3"]);
        if !insertion_order {
            command.arg("--no-insertion-order");
        }
        let (measured, stdout) = measure(pacing, &mut command);
        step.push((measured, parse_report(&stdout)));
    }

    /// The looser peer of `fxpipe normalize`: the copy's auto-typed Parquet × the rates of the
    /// exact value date in DOUBLE math, partitioned by year and month into `out` (replaced).
    pub fn normalize(
        &self,
        pacing: &Pacing,
        transactions: &Path,
        rates: &Path,
        out: &Path,
        step: &mut PeerStep,
    ) {
        let (measured, stdout) = measure(
            pacing,
            &mut self.normalize_step("normalize", transactions, rates, out),
        );
        step.push((measured, parse_report(&stdout)));
    }
}
