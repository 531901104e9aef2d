//! Shared helpers for the integration tests: run the real `fxpipe` binary on a lake in a
//! temporary folder, read results back through `fxpipe sql`.
#![allow(dead_code)]

pub mod cluster;
pub mod moto;
pub mod oxr;
pub mod proxy;
pub mod terminal;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A lake for one test: a local folder, or a prefix in a bucket of its own moto server.
pub struct Lake {
    pub dir: tempfile::TempDir,
    /// The S3 server and bucket, for lakes on S3 (`s3://BUCKET/lake`).
    pub s3: Option<(moto::Moto, String)>,
}

/// The bucket of S3 test lakes.
pub const BUCKET: &str = "fxpipe-test-lake";

impl Lake {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            s3: None,
        }
    }

    /// A lake at `s3://fxpipe-test-lake/lake` on a moto server of its own.
    pub fn s3() -> Self {
        let server = moto::Moto::start();
        server.create_bucket(BUCKET);
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            s3: Some((server, BUCKET.to_string())),
        }
    }

    /// The local folder of a local lake (S3 lakes: a folder that stays empty).
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("lake")
    }

    /// What `--lake` gets.
    pub fn location(&self) -> String {
        match &self.s3 {
            Some((_, bucket)) => format!("s3://{bucket}/lake"),
            None => self.path().display().to_string(),
        }
    }

    /// The moto server of an S3 lake.
    pub fn moto(&self) -> &moto::Moto {
        &self.s3.as_ref().expect("an S3 lake").0
    }

    /// Names of the objects (S3) or files (local) under a folder of the lake, relative to it.
    pub fn list(&self, folder: &str) -> Vec<String> {
        match &self.s3 {
            Some((server, bucket)) => {
                let prefix = format!("lake/{folder}/");
                server
                    .keys(bucket, &prefix)
                    .into_iter()
                    .map(|k| k[prefix.len()..].to_string())
                    .collect()
            }
            None => {
                let root = self.path().join(folder);
                let mut found = Vec::new();
                let mut dirs = vec![root.clone()];
                while let Some(dir) = dirs.pop() {
                    let Ok(entries) = std::fs::read_dir(&dir) else {
                        continue;
                    };
                    for entry in entries.filter_map(|e| e.ok()) {
                        let path = entry.path();
                        if path.is_dir() {
                            dirs.push(path);
                        } else {
                            let relative = path.strip_prefix(&root).unwrap_or(&path);
                            found.push(relative.to_string_lossy().to_string());
                        }
                    }
                }
                found
            }
        }
    }

    /// The bytes of an object or file of the lake.
    pub fn read(&self, relative: &str) -> Vec<u8> {
        match &self.s3 {
            Some((server, bucket)) => server.get(bucket, &format!("lake/{relative}")),
            None => std::fs::read(self.path().join(relative)).expect("read lake file"),
        }
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
            .arg(self.location())
            .args(args)
            .env_remove("RUST_LOG");
        // Every option has an FXPIPE_* fallback, and AWS settings come from the environment:
        // none of the caller's may change a test.
        for (name, _) in std::env::vars_os() {
            let name_text = name.to_string_lossy();
            if name_text.starts_with("FXPIPE_") || name_text.starts_with("AWS_") {
                command.env_remove(name);
            }
        }
        // No shared config or credentials files of the machine running the tests (empty
        // ones: a missing file makes aws-config warn on every run).
        for name in ["no-aws-config", "no-aws-credentials"] {
            let _ = std::fs::write(self.dir.path().join(name), "");
        }
        command
            .env("AWS_CONFIG_FILE", self.dir.path().join("no-aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                self.dir.path().join("no-aws-credentials"),
            )
            .env("AWS_EC2_METADATA_DISABLED", "true");
        if let Some((server, _)) = &self.s3 {
            command.envs(server.env());
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
        let log = self.list(&format!("{table}/_delta_log"));
        assert!(!log.is_empty(), "no Delta log at {table}");
        log.iter()
            .filter(|name| !name.contains('/') && name.ends_with(".json"))
            .count()
    }

    /// The newest saved report of a job, as JSON.
    pub fn latest_report(&self, job: &str) -> serde_json::Value {
        let mut names: Vec<String> = self
            .list("_reports")
            .into_iter()
            .filter(|n| n.starts_with(&format!("{job}-")))
            .collect();
        names.sort();
        let name = names.last().expect("a report");
        serde_json::from_slice(&self.read(&format!("_reports/{name}"))).expect("report is JSON")
    }
}

/// delta-rs's own words (its help text, its log target, its conflict text), which must never
/// reach an fxpipe user.
pub const DELTA_RS_WORDS: [&str; 5] = [
    "Help:",
    "isolation level",
    "Commit failed",
    "deltalake_core",
    "concurrent transaction",
];

pub fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Ingests the golden rate files from 2017-06-29 to `to`; returns the run's output. The
/// golden folder has no file for 2017-06-30 (the original's missing day) and the API's 429
/// error body for 2017-07-02, so the run stores every other day, records those in
/// rates_errors, and exits non-zero naming them.
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
    let stderr = String::from_utf8_lossy(&output.stderr);
    let failing: Vec<&str> = ["2017-06-30", "2017-07-02"]
        .into_iter()
        .filter(|day| *day <= to)
        .collect();
    if failing.is_empty() {
        assert!(output.status.success(), "{stderr}");
    } else {
        assert!(
            !output.status.success(),
            "a failed day must fail the run:\n{stderr}"
        );
        let said = format!("{} of", failing.len());
        let listed = format!("dates failed ({})", failing.join(", "));
        assert!(
            stderr.contains(&said) && stderr.contains(&listed),
            "{stderr}"
        );
        let report = lake.latest_report("ingest");
        assert_eq!(
            report["failures"].as_array().map(Vec::len),
            Some(failing.len()),
            "{report}"
        );
    }
    output
}

/// A lake with `rows` generated transactions over the first half of 2017 (a fraction `dirty`
/// of them malformed), loaded, and that half year of rates ingested.
pub fn generated_lake(rows: &str, dirty: &str) -> Lake {
    let lake = Lake::new();
    let rates = lake.file("rates");
    let csv = lake.file("txns.csv");
    lake.run(&[
        "gen",
        "rates",
        "--from",
        "2017-01-01",
        "--to",
        "2017-06-30",
        "--out",
        rates.to_str().unwrap(),
    ]);
    lake.run(&[
        "gen",
        "transactions",
        "--rows",
        rows,
        "--from",
        "2017-01-01",
        "--to",
        "2017-06-30",
        "--dirty",
        dirty,
        "--out",
        csv.to_str().unwrap(),
    ]);
    let source = format!("file://{}", rates.display());
    lake.run(&[
        "ingest",
        "--source",
        &source,
        "--from",
        "2017-01-01",
        "--to",
        "2017-06-30",
    ]);
    lake.run(&["load", csv.to_str().unwrap()]);
    lake
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

/// Runs a Python checker from tests/ with extra environment (an S3 endpoint and credentials);
/// panics with its output if it fails, returns its stdout.
pub fn python_env(script: &str, args: &[&str], env: &[(&str, String)]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(script);
    let output = Command::new("python3")
        .arg(path)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("python3 runs (bash tests/run.sh installs its packages)");
    assert!(
        output.status.success(),
        "{script} failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).to_string()
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
