//! The command line's edges: `fxpipe sql` only reads, `--max-rows` previews, errors print
//! each cause once, a closed stdout ends quietly, and tests/run.sh builds where `cargo run` does.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use common::{golden_lake, Lake};

const TABLES: [(&str, &str); 6] = [
    ("transactions", "banktxn/parquet"),
    ("rejects", "banktxn/rejects"),
    ("loads", "banktxn/loads"),
    ("rates", "api_response/response"),
    ("rates_errors", "error_temp_dir/error_error"),
    ("processed", "banktxn/processed"),
];

/// Row count and Delta version count of every table, and every file under the lake.
fn snapshot(lake: &Lake) -> (Vec<(u64, usize)>, Vec<PathBuf>) {
    let tables = TABLES
        .iter()
        .map(|(name, path)| (lake.count(name), lake.commits(path)))
        .collect();
    let mut files = Vec::new();
    let mut dirs = vec![lake.path()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read lake dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    (tables, files)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_string()
}

#[test]
fn sql_refuses_every_write_and_names_the_command_that_makes_it() {
    let lake = golden_lake();
    let before = snapshot(&lake);
    assert_eq!(before.0[3].0, 13, "golden rates");
    let export = lake.file("export.csv");
    let copy = format!(
        "COPY (SELECT * FROM rates) TO '{}' STORED AS CSV",
        export.display()
    );
    let cases: &[(&str, &str)] = &[
        ("INSERT INTO rates SELECT * FROM rates", "fxpipe ingest"),
        ("INSERT OVERWRITE rates SELECT * FROM rates", "fxpipe ingest"),
        ("TRUNCATE TABLE rates_errors", "fxpipe ingest"),
        (
            "EXPLAIN ANALYZE INSERT INTO rates SELECT * FROM rates",
            "fxpipe ingest",
        ),
        ("DELETE FROM transactions", "fxpipe load"),
        ("UPDATE processed SET source_line = 0", "fxpipe normalize"),
        ("DROP TABLE rates", "fxpipe ingest"),
        ("CREATE TABLE copy AS SELECT * FROM rates", "fxpipe vacuum"),
        ("CREATE TABLE rejects (x INT)", "fxpipe load"),
        ("CREATE VIEW v AS SELECT * FROM loads", "fxpipe normalize"),
        ("DROP VIEW IF EXISTS v", "fxpipe vacuum"),
        (&copy, "--format csv"),
        ("SET datafusion.execution.batch_size = 1", "SET refused"),
        (
            "SELECT count(*) FROM rates WHERE target_currency IN (SELECT target_currency FROM rates)",
            "",
        ),
    ];
    for &(sql, names) in cases {
        let output = lake.try_run(&["sql", sql]);
        let stderr = text(&output.stderr);
        if names.is_empty() {
            // A plain query still runs (a subquery is not a write).
            assert!(output.status.success(), "{sql}: {stderr}");
            continue;
        }
        assert_eq!(output.status.code(), Some(1), "{sql} must be refused");
        assert!(
            stderr.contains("refused") && stderr.contains(names),
            "{sql}: {stderr}"
        );
        assert!(output.stdout.is_empty(), "{sql}: {}", text(&output.stdout));
    }
    assert!(!export.exists(), "COPY wrote {}", export.display());
    // The same from a file of statements: the query before the write runs, the write does not.
    let script = lake.file("script.sql");
    std::fs::write(
        &script,
        "SELECT count(*) AS n FROM rates; INSERT INTO rates SELECT * FROM rates;",
    )
    .unwrap();
    let output = lake.try_run(&["sql", "-f", script.to_str().unwrap(), "--format", "csv"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(text(&output.stdout), "n\n13\n");
    assert_eq!(snapshot(&lake), before, "the lake changed");
}

#[test]
fn sql_still_answers_queries_explain_show_and_describe() {
    let lake = golden_lake();
    let with = lake.query(
        "WITH c AS (SELECT target_currency FROM rates WHERE run_date = DATE '2017-06-29') \
         SELECT count(*) FROM c",
    );
    assert_eq!(with, vec![vec!["7".to_string()]]);
    let explain = lake.run(&["sql", "EXPLAIN SELECT count(*) FROM processed"]);
    assert!(explain.contains("logical_plan"), "{explain}");
    let describe = lake.run(&["sql", "DESCRIBE processed", "--format", "csv"]);
    assert!(describe.contains("withdrawal_sgd_amt"), "{describe}");
    let tables = lake.run(&["sql", "SHOW TABLES", "--format", "csv"]);
    for (name, _) in TABLES {
        assert!(tables.contains(name), "{name}: {tables}");
    }
}

/// A query's filters reach the Parquet scan of fxpipe's tables (row groups and pages are then
/// skipped by their statistics), and the answer is still the filter's: the scan may return
/// rows the filter drops, never drop one.
#[test]
fn filters_reach_the_parquet_scan_and_keep_every_row() {
    let lake = golden_lake();
    let explain = lake.run(&[
        "sql",
        "EXPLAIN SELECT count(*) FROM transactions WHERE value_date > DATE '2017-06-30'",
    ]);
    assert!(
        explain
            .lines()
            .any(|l| l.contains("DataSourceExec") && l.contains("predicate=")),
        "{explain}"
    );
    for (filtered, counted) in [
        (
            "SELECT count(*) FROM transactions WHERE value_date > DATE '2017-06-30'",
            "SELECT sum(CASE WHEN value_date > DATE '2017-06-30' THEN 1 ELSE 0 END) FROM transactions",
        ),
        (
            "SELECT count(*) FROM transactions WHERE value_date > DATE '2030-01-01'",
            "SELECT sum(CASE WHEN value_date > DATE '2030-01-01' THEN 1 ELSE 0 END) FROM transactions",
        ),
        (
            "SELECT count(*) FROM processed WHERE year = 2017 AND month = 7",
            "SELECT sum(CASE WHEN year = 2017 AND month = 7 THEN 1 ELSE 0 END) FROM processed",
        ),
    ] {
        let counted = lake.query(counted)[0][0].clone();
        let expected = if counted.is_empty() { "0".to_string() } else { counted };
        assert_eq!(lake.query(filtered), vec![vec![expected]], "{filtered}");
    }
}

/// The data rows of a `--format table` output, and its closing count line if any.
fn table_rows(out: &str) -> (usize, Option<String>) {
    let lines: Vec<&str> = out.lines().collect();
    // +---+ / | header | / +---+ / rows… / +---+
    let rows = lines.iter().filter(|l| l.starts_with('|')).count() - 1;
    let footer = lines
        .last()
        .filter(|l| !l.starts_with('+'))
        .map(|l| l.to_string());
    (rows, footer)
}

#[test]
fn table_format_previews_max_rows_and_counts_the_rest() {
    let lake = golden_lake();
    let big = "SELECT value FROM range(100)";
    // Default: 40, like datafusion-cli and DuckDB.
    let (rows, footer) = table_rows(&lake.run(&["sql", big]));
    assert_eq!(rows, 40);
    let footer = footer.expect("a count line");
    assert!(footer.starts_with("100 rows, 40 shown"), "{footer}");
    for all in ["0", "inf"] {
        let (rows, footer) = table_rows(&lake.run(&["sql", big, "--max-rows", all]));
        assert_eq!((rows, footer), (100, None), "--max-rows {all}");
    }
    let out = lake.run(&[
        "sql",
        "SELECT source_line FROM processed ORDER BY source_line",
        "--max-rows",
        "4",
    ]);
    let (rows, footer) = table_rows(&out);
    assert_eq!(rows, 4);
    assert!(footer.expect("count line").starts_with("9 rows, 4 shown"));
    // The first four rows in order: lines 2 to 5 of the golden CSV.
    let cells: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with('|'))
        .skip(1)
        .map(|l| l.trim_matches(|c| c == '|' || c == ' '))
        .collect();
    assert_eq!(cells, ["2", "3", "4", "5"], "{out}");
    // Exactly as many rows as the limit: no count line.
    let (rows, footer) =
        table_rows(&lake.run(&["sql", "SELECT * FROM processed", "--max-rows", "9"]));
    assert_eq!((rows, footer), (9, None));
    // The environment variable, and reports.
    let out = lake
        .command(&["report", "monthly-flows"])
        .env("FXPIPE_MAX_ROWS", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let all_months = lake.run(&["report", "monthly-flows", "--format", "csv"]);
    let months = all_months.lines().count() - 1;
    assert!(months > 1, "{all_months}");
    let (rows, footer) = table_rows(&text(&out.stdout));
    assert_eq!(rows, 1);
    assert!(
        footer
            .expect("count line")
            .starts_with(&format!("{months} rows, 1 shown")),
        "{}",
        text(&out.stdout)
    );
    // csv and json print every row whatever the limit.
    let csv = lake.run(&["sql", big, "--format", "csv", "--max-rows", "3"]);
    assert_eq!(csv.lines().count(), 101);
    let json = lake.run(&["sql", big, "--format", "json", "--max-rows", "3"]);
    assert_eq!(json.lines().count(), 100);
    let bad = lake.try_run(&["sql", big, "--max-rows", "many"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn a_missing_file_is_reported_once() {
    let lake = golden_lake();
    let output = lake.try_run(&["load", "nope.csv"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("nope.csv"), "{stderr}");
    assert_eq!(stderr.matches("os error 2").count(), 1, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn an_unknown_table_is_reported_once_with_the_tables_there_are() {
    let lake = golden_lake();
    let output = lake.try_run(&["sql", "select * from nope"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert_eq!(stderr.matches("not found").count(), 1, "{stderr}");
    let hint = stderr
        .lines()
        .find(|l| l.starts_with("hint:"))
        .unwrap_or_else(|| panic!("no hint: {stderr}"));
    for (name, _) in TABLES {
        assert!(hint.contains(name), "{name}: {hint}");
    }
}

#[test]
fn an_unknown_column_suggests_the_closest_once() {
    let lake = golden_lake();
    let output = lake.try_run(&["sql", "select withdrawl_amt from processed"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert_eq!(stderr.matches("No field named").count(), 1, "{stderr}");
    assert_eq!(
        stderr
            .matches("Did you mean 'processed.withdrawal_amt'?")
            .count(),
        1,
        "{stderr}"
    );
}

/// Runs fxpipe with its stdout a pipe that `reader` reads from and then closes.
fn with_closed_stdout(lake: &Lake, args: &[&str], lines_read: usize) -> Output {
    let mut child = lake
        .command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fxpipe");
    let stdout = child.stdout.take().expect("stdout pipe");
    let mut reader = BufReader::new(stdout);
    for _ in 0..lines_read {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read a line");
        assert!(!line.is_empty(), "{args:?} printed nothing");
    }
    drop(reader);
    child.wait_with_output().expect("wait for fxpipe")
}

fn assert_quiet_sigpipe_exit(output: &Output, what: &str) {
    assert_eq!(
        (output.status.code(), text(&output.stderr).as_str()),
        (Some(141), ""),
        "{what}: a closed stdout must end fxpipe quietly with 141"
    );
}

#[test]
fn a_closed_pipe_ends_quietly() {
    let lake = golden_lake();
    // Far more output than a pipe buffers, so writes hit the closed pipe.
    let output = with_closed_stdout(
        &lake,
        &[
            "sql",
            "SELECT value, value * 2 AS twice FROM range(2000000)",
            "--format",
            "csv",
        ],
        1,
    );
    assert_quiet_sigpipe_exit(&output, "sql --format csv");

    let output = with_closed_stdout(&lake, &["report", "account-summary"], 0);
    assert_quiet_sigpipe_exit(&output, "report");

    // A job that writes: its work and its saved report are done before it prints.
    let reports = || {
        std::fs::read_dir(lake.path().join("_reports"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("normalize-"))
            })
            .count()
    };
    let (saved, versions) = (reports(), lake.commits("banktxn/processed"));
    let output = with_closed_stdout(&lake, &["normalize"], 0);
    assert_quiet_sigpipe_exit(&output, "normalize");
    assert_eq!(reports(), saved + 1);
    assert_eq!(lake.commits("banktxn/processed"), versions + 1);
    assert_eq!(lake.count("processed"), 9);
}

/// Runs tests/run.sh with stand-ins for cargo and python3 that report the target dir cargo got.
fn run_sh(target_dir: Option<&str>) -> String {
    let bin = tempfile::tempdir().unwrap();
    let write = |name: &str, body: &str| {
        let path = bin.path().join(name);
        std::fs::write(&path, body).unwrap();
        let mut permissions = std::fs::metadata(&path).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
        std::fs::set_permissions(&path, permissions).unwrap();
    };
    write(
        "cargo",
        "#!/bin/sh\necho \"$1 target=${CARGO_TARGET_DIR-unset}\"\n[ \"$1\" = test ] && echo 'test result: ok. 3 passed; 0 failed; 0 ignored'\nexit 0\n",
    );
    write("python3", "#!/bin/sh\nexit 0\n");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/run.sh");
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = std::process::Command::new("bash");
    command
        .arg(script)
        .env("PATH", path)
        .env_remove("CARGO_TARGET_DIR");
    if let Some(dir) = target_dir {
        command.env("CARGO_TARGET_DIR", dir);
    }
    let output = command.output().expect("run bash tests/run.sh");
    assert!(output.status.success(), "{}", text(&output.stderr));
    text(&output.stdout)
}

#[test]
fn run_sh_builds_where_cargo_run_builds() {
    let out = run_sh(None);
    // Both the build of the workspace's binaries and the tests build in the same place.
    assert!(out.contains("build target=unset\n"), "{out}");
    assert!(out.contains("test target=unset\n"), "{out}");
    assert!(out.contains("tests: 3 passed, 0 failed"), "{out}");
    let out = run_sh(Some("/tmp/elsewhere"));
    assert!(out.contains("build target=/tmp/elsewhere\n"), "{out}");
    assert!(out.contains("test target=/tmp/elsewhere\n"), "{out}");
}

#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    let lake = Lake::new();
    // 2017-06-30 has no file and 2017-07-02 is an error body: each logs a warning.
    let output = common::ingest_golden_rates(&lake, "2017-07-02");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("WARN"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
}
