//! The analyst's outputs: `-o FILE` in CSV, JSON lines and Parquet (read back by independent
//! readers, decimals exact, nothing left behind by a failed query), `--format markdown`, the
//! `table` layout (numbers right, money headers naming their currency), `--log-format json`
//! and `fxpipe completions`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{golden_lake, Lake};
use serde_json::value::RawValue;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_string()
}

/// The files in a folder, sorted by name.
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    names
}

/// An empty folder beside the lake for output files.
fn out_dir(lake: &Lake) -> std::path::PathBuf {
    let dir = lake.file("out");
    std::fs::create_dir_all(&dir).expect("out dir");
    dir
}

const CREDIT_CSV: &str = "\
base_currency,account_no,withdrawals_sgd,deposits_sgd,deposit_withdrawal_ratio,creditworthiness,unconverted_amounts
SGD,409000493210,5.37,41194.26,7671.1844,High Creditworthiness,1
SGD,409000611074,1360124.87,26670.05,0.0196,Low Creditworthiness,0
";

#[test]
fn report_output_files_in_each_format_read_back_exactly() {
    let lake = golden_lake();
    let dir = out_dir(&lake);

    // CSV: the exact text, decimals as written.
    let csv = dir.join("credit.csv");
    let output = lake.try_run(&["report", "creditworthiness", "-o", csv.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        "",
        "the rows go to the file, not stdout"
    );
    assert!(
        text(&output.stderr).contains(&format!("wrote 2 rows to {} (CSV)", csv.display())),
        "{}",
        text(&output.stderr)
    );
    assert_eq!(std::fs::read_to_string(&csv).unwrap(), CREDIT_CSV);

    // JSON lines, under each of its extensions: decimals are JSON numbers with the exact
    // decimal text (read raw, never through a float).
    for name in ["credit.jsonl", "credit.ndjson", "credit.json"] {
        let path = dir.join(name);
        lake.run(&[
            "report",
            "creditworthiness",
            "--output",
            path.to_str().unwrap(),
        ]);
        let content = std::fs::read_to_string(&path).unwrap();
        let rows: Vec<BTreeMap<String, Box<RawValue>>> = content
            .lines()
            .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
            .collect();
        assert_eq!(rows.len(), 2, "{name}: {content}");
        let raw = |row: usize, column: &str| rows[row][column].get().to_string();
        assert_eq!(raw(0, "account_no"), "\"409000493210\"", "{name}");
        assert_eq!(raw(0, "deposits_sgd"), "41194.26", "{name}");
        assert_eq!(raw(0, "deposit_withdrawal_ratio"), "7671.1844", "{name}");
        assert_eq!(raw(1, "withdrawals_sgd"), "1360124.87", "{name}");
        assert_eq!(
            raw(1, "creditworthiness"),
            "\"Low Creditworthiness\"",
            "{name}"
        );
    }

    // Parquet, read with pyarrow: decimals keep their type and exact value.
    let parquet = dir.join("credit.parquet");
    lake.run(&[
        "report",
        "creditworthiness",
        "-o",
        parquet.to_str().unwrap(),
    ]);
    let read = common::python_env("read_parquet.py", &[parquet.to_str().unwrap()], &[]);
    let lines: Vec<&str> = read.lines().collect();
    assert!(lines.contains(&"deposits_sgd decimal128(38, 2)"), "{read}");
    assert!(
        lines.contains(&"withdrawals_sgd decimal128(38, 2)"),
        "{read}"
    );
    // Plain strings, not DataFusion's string_view, which older readers cannot open.
    assert!(lines.contains(&"account_no string"), "{read}");
    assert!(
        lines.contains(&"SGD|409000493210|5.37|41194.26|7671.1844|High Creditworthiness|1"),
        "{read}"
    );
    assert!(
        lines.contains(&"SGD|409000611074|1360124.87|26670.05|0.0196|Low Creditworthiness|0"),
        "{read}"
    );
    // Only the finished files, no temporaries.
    assert_eq!(
        files_in(&dir),
        [
            "credit.csv",
            "credit.json",
            "credit.jsonl",
            "credit.ndjson",
            "credit.parquet"
        ]
    );
}

#[test]
fn sql_output_keeps_scale_four_amounts_and_refuses_unknown_extensions() {
    let lake = golden_lake();
    let dir = out_dir(&lake);
    let query = "SELECT source_line, deposit_amt, deposit_sgd_amt FROM processed \
                 WHERE deposit_amt IS NOT NULL ORDER BY source_line";
    let csv = dir.join("deposits.csv");
    lake.run(&["sql", query, "-o", csv.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(&csv).unwrap(),
        "source_line,deposit_amt,deposit_sgd_amt\n\
         3,1234.5670,5420.05\n\
         5,0.5000,41192.11\n\
         6,2.1450,2.15\n\
         10,1000000.0000,21250.00\n"
    );
    let parquet = dir.join("deposits.parquet");
    lake.run(&["sql", query, "-o", parquet.to_str().unwrap()]);
    let read = common::python_env("read_parquet.py", &[parquet.to_str().unwrap()], &[]);
    assert!(read.contains("deposit_amt decimal128(38, 4)\n"), "{read}");
    assert!(read.contains("10|1000000.0000|21250.00\n"), "{read}");

    let bad = dir.join("deposits.xlsx");
    let output = lake.try_run(&["sql", query, "-o", bad.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(".xlsx is not a format fxpipe writes")
            && stderr.contains(".csv, .jsonl, .ndjson, .json (JSON lines) or .parquet"),
        "{stderr}"
    );
    // One file holds one result.
    let output = lake.try_run(&["sql", "SELECT 1; SELECT 2", "-o", csv.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("-o writes one result: give one statement, not 2"),
        "{}",
        text(&output.stderr)
    );
    assert_eq!(files_in(&dir), ["deposits.csv", "deposits.parquet"]);
}

#[test]
fn a_query_failing_mid_run_leaves_the_old_file_and_no_temporary() {
    let lake = golden_lake();
    let dir = out_dir(&lake);
    let target = dir.join("accounts.csv");
    std::fs::write(&target, "the previous result\n").unwrap();
    // Plans fine; fails while running, on the first account number too big for an INT.
    let output = lake.try_run(&[
        "sql",
        "SELECT CAST(account_no AS INT) FROM transactions",
        "-o",
        target.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("Cannot cast string '409000611074' to value of Int32 type"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "the previous result\n"
    );
    assert_eq!(files_in(&dir), ["accounts.csv"]);
}

#[test]
fn markdown_is_a_pipe_table_with_escaped_pipes() {
    let lake = golden_lake();
    let out = lake.run(&[
        "sql",
        "SELECT source_line, account_no || '|x' AS account, deposit_sgd_amt FROM processed \
         WHERE source_line IN (2, 3) ORDER BY source_line",
        "--format",
        "markdown",
    ]);
    assert_eq!(
        out,
        "| source_line | account | deposit_sgd_amt |\n\
         |---:|---|---:|\n\
         | 2 | 409000611074\\|x |  |\n\
         | 3 | 409000611074\\|x | 5420.05 |\n"
    );
}

#[test]
fn table_aligns_numbers_right_and_names_the_currency_of_money_columns() {
    let lake = golden_lake();
    let out = lake.run(&[
        "sql",
        "SELECT account_no, deposit_amt, deposit_sgd_amt, base_currency, source_line \
         FROM processed WHERE source_line IN (3, 6) ORDER BY source_line",
    ]);
    assert_eq!(
        out,
        "\
+--------------+-------------+-----------------------+---------------+-------------+
| account_no   | deposit_amt | deposit_sgd_amt (SGD) | base_currency | source_line |
+--------------+-------------+-----------------------+---------------+-------------+
| 409000611074 |   1234.5670 |               5420.05 | SGD           |           3 |
| 409000493210 |      2.1450 |                  2.15 | SGD           |           6 |
+--------------+-------------+-----------------------+---------------+-------------+
"
    );
    // Reports' totals are money too.
    let report = lake.run(&["report", "account-summary"]);
    assert!(
        report.contains("| total_withdrawals_sgd (SGD) | total_deposits_sgd (SGD) |"),
        "{report}"
    );
    assert!(report.contains("|                 41194.26 |"), "{report}");
    // Without a base_currency column in the result, --base-currency names it.
    let out = lake.run(&[
        "--base-currency",
        "EUR",
        "sql",
        "SELECT sum(deposit_sgd_amt) AS deposit_sgd_amt FROM processed",
    ]);
    assert!(out.contains("| deposit_sgd_amt (EUR) |"), "{out}");
    // CSV stays as the engine returns it, for programs.
    let csv = lake.run(&[
        "sql",
        "SELECT deposit_sgd_amt FROM processed WHERE source_line = 3",
        "--format",
        "csv",
    ]);
    assert_eq!(csv, "deposit_sgd_amt\n5420.05\n");
}

/// Every stderr line parsed as a JSON object; panics naming the first that is not one.
fn json_lines(stderr: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}\nall:\n{stderr}"));
            assert!(value.is_object(), "{line}");
            value
        })
        .collect()
}

#[test]
fn log_format_json_writes_only_json_lines_to_stderr() {
    let lake = golden_lake();
    let target = out_dir(&lake).join("one.csv");
    let output = lake.try_run(&[
        "--log-format",
        "json",
        "-v",
        "sql",
        "SELECT 1 AS one",
        "-o",
        target.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let lines = json_lines(&text(&output.stderr));
    // -v still selects the level: the engine's info lines are there, as JSON.
    assert!(
        lines
            .iter()
            .any(|l| l["level"] == "INFO" && l["target"] != "fxpipe"),
        "{lines:?}"
    );
    let summary = lines.last().expect("the summary line");
    assert_eq!(summary["fields"]["rows"], 1, "{summary}");
    assert_eq!(
        summary["fields"]["path"],
        target.display().to_string(),
        "{summary}"
    );
    // The environment variable, a warning from the ingest, and the final error line.
    let rates = format!("file://{}", common::golden_dir().join("rates").display());
    let fresh = Lake::new();
    let output = fresh
        .command(&[
            "ingest",
            "--source",
            &rates,
            "--from",
            "2017-07-01",
            "--to",
            "2017-07-02",
        ])
        .env("FXPIPE_LOG_FORMAT", "json")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let lines = json_lines(&text(&output.stderr));
    assert!(lines.iter().any(|l| l["level"] == "WARN"), "{lines:?}");
    let error = lines.last().expect("the error line");
    assert_eq!(error["level"], "ERROR", "{error}");
    assert!(
        error["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("1 of 2 dates failed (2017-07-02)")),
        "{error}"
    );
}

#[test]
fn completions_print_a_script_each_shell_loads() {
    let lake = Lake::new();
    let bash = lake.run(&["completions", "bash"]);
    assert!(bash.contains("_fxpipe()"), "{bash}");
    assert!(bash.contains("normalize"), "{bash}");
    assert!(bash.contains("--log-format"), "{bash}");
    // bash itself loads it and registers the completion.
    let script = lake.file("fxpipe.bash");
    std::fs::write(&script, &bash).unwrap();
    let loaded = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p fxpipe", script.display()))
        .output()
        .expect("bash runs");
    assert!(loaded.status.success(), "{}", text(&loaded.stderr));
    assert!(
        text(&loaded.stdout).contains("-F _fxpipe") && text(&loaded.stdout).contains("fxpipe"),
        "{}",
        text(&loaded.stdout)
    );
    let zsh = lake.run(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef fxpipe"), "{zsh}");
    assert!(zsh.contains("report"), "{zsh}");
    let fish = lake.run(&["completions", "fish"]);
    assert!(fish.contains("complete -c fxpipe"), "{fish}");
    assert!(fish.contains("quickstart"), "{fish}");
    // No lake is opened or created for it.
    assert!(!lake.path().exists(), "completions created the lake");
}

#[test]
fn ctrl_c_during_a_write_leaves_the_old_file_and_no_temporary() {
    let lake = golden_lake();
    let dir = out_dir(&lake);
    let target = dir.join("sum.csv");
    std::fs::write(&target, "the previous result\n").unwrap();
    // Long enough to be interrupted: a sum over ten billion rows (not answerable from statistics).
    let child = lake
        .command(&[
            "sql",
            "SELECT sum(value) FROM range(10000000000)",
            "-o",
            target.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn fxpipe");
    let started = std::time::Instant::now();
    while files_in(&dir).len() < 2 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "no temporary file appeared: {:?}",
            files_in(&dir)
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let temporary = files_in(&dir);
    assert!(
        temporary[0].starts_with(".sum.csv.fxpipe-") && temporary[0].ends_with(".tmp"),
        "{temporary:?}"
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    let pid = i32::try_from(child.id()).expect("pid");
    // SAFETY: kill(2) on our own child's pid, with a valid signal number.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let output = child.wait_with_output().expect("fxpipe ends");
    assert_eq!(
        output.status.code(),
        Some(130),
        "128 + SIGINT: {}",
        text(&output.stderr)
    );
    assert!(
        text(&output.stderr).contains(&format!(
            "interrupted: {} was not written",
            target.display()
        )),
        "{}",
        text(&output.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "the previous result\n"
    );
    assert_eq!(files_in(&dir), ["sum.csv"]);
}

/// A value holding terminal control sequences (as a hostile export's transaction details
/// could) is shown, not obeyed: on a real terminal (tmux) the screen is not cleared, the cursor
/// not moved and the line not overwritten.
#[test]
fn control_characters_in_values_do_not_drive_the_terminal() {
    let lake = golden_lake();
    let history = lake.file("history");
    // From a file: the terminal helper quotes arguments for sh without escaping quotes.
    let hostile = lake.file("hostile.sql");
    std::fs::write(
        &hostile,
        "SELECT concat('SAFE', chr(27), '[2J', chr(27), '[HPWNED', chr(13), 'EVIL', chr(7)) AS details",
    )
    .unwrap();
    let hostile = hostile.to_str().unwrap();
    // Markdown writes a carriage return as a line break, as it always did.
    for (format, shown) in [
        ("table", r"SAFE\x1B[2J\x1B[HPWNED\x0DEVIL\x07"),
        ("markdown", r"SAFE\x1B[2J\x1B[HPWNED<br>EVIL\x07"),
    ] {
        let Some(term) = common::terminal::Terminal::run(
            &lake,
            &history,
            &["sql", "-f", hostile, "--format", format],
        ) else {
            return;
        };
        let screen = term.wait_for("[exited");
        assert!(screen.contains("[exited 0]"), "{format}: {screen}");
        assert!(
            screen.contains(shown),
            "{format}: the control characters were not shown:\n{screen}"
        );
    }
}
