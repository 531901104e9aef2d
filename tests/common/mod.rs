//! Shared helpers for the integration tests: run the real `fxpipe` binary on a lake in a
//! temporary folder, read results back through `fxpipe sql`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Lake {
    pub dir: tempfile::TempDir,
}

impl Lake {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("lake")
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `fxpipe --lake <lake> ARGS`; panics with its output if it fails.
    pub fn run(&self, args: &[&str]) -> String {
        let output = self.try_run(args);
        assert!(
            output.status.success(),
            "fxpipe {args:?} failed:\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).to_string()
    }

    pub fn try_run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run fxpipe")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_fxpipe"));
        command
            .arg("--lake")
            .arg(self.path())
            .args(args)
            .env_remove("RUST_LOG");
        // Every option has an FXPIPE_* fallback: none of the caller's may change a test.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("FXPIPE_") {
                command.env_remove(name);
            }
        }
        command
    }

    /// Query results as CSV rows (header dropped), each row split on commas.
    pub fn query(&self, sql: &str) -> Vec<Vec<String>> {
        let out = self.run(&["sql", sql, "--format", "csv"]);
        csv::Reader::from_reader(out.as_bytes())
            .records()
            .map(|r| r.expect("CSV row").iter().map(str::to_string).collect())
            .collect()
    }

    /// A single value.
    pub fn scalar(&self, sql: &str) -> String {
        let rows = self.query(sql);
        assert_eq!(rows.len(), 1, "expected one row from {sql}: {rows:?}");
        rows[0][0].clone()
    }

    /// Rows in a lake table (through `fxpipe sql`).
    pub fn count(&self, table: &str) -> u64 {
        self.scalar(&format!("SELECT count(*) FROM {table}"))
            .parse()
            .expect("a count")
    }

    /// Number of commits in a table's Delta log.
    pub fn commits(&self, table: &str) -> usize {
        std::fs::read_dir(self.path().join(table).join("_delta_log"))
            .expect("a Delta log")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
            .count()
    }

    /// The newest saved report of a job, as JSON.
    pub fn latest_report(&self, job: &str) -> serde_json::Value {
        let dir = self.path().join("_reports");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .expect("reports folder")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.starts_with(&format!("{job}-")))
            .collect();
        names.sort();
        let name = names.last().expect("a report");
        serde_json::from_str(&std::fs::read_to_string(dir.join(name)).expect("read report"))
            .expect("report is JSON")
    }
}

pub fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Ingests the golden rate files from 2017-06-29 to `to`; returns the run's output (its
/// stderr has the warnings for the days without rates).
pub fn ingest_golden_rates(lake: &Lake, to: &str) -> Output {
    let rates = format!("file://{}", golden_dir().join("rates").display());
    let output = lake.try_run(&[
        "ingest",
        "--source",
        &rates,
        "--from",
        "2017-06-29",
        "--to",
        to,
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A lake with the golden rates and transactions, normalized to SGD.
pub fn golden_lake() -> Lake {
    let lake = Lake::new();
    ingest_golden_rates(&lake, "2017-07-02");
    let csv = golden_dir().join("transactions.csv");
    lake.run(&["load", csv.to_str().unwrap()]);
    lake.run(&["normalize"]);
    lake
}

/// Runs a Python checker from tests/ and returns its output; the test command installs its
/// packages.
pub fn try_python(script: &str, args: &[&str]) -> Output {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(script);
    Command::new("python3")
        .arg(path)
        .args(args)
        .output()
        .expect("python3 runs (bash tests/run.sh installs its packages)")
}

/// Runs a Python checker from tests/; panics with its output if it fails.
pub fn python(script: &str, args: &[&str]) {
    let output = try_python(script, args);
    assert!(
        output.status.success(),
        "{script} failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
