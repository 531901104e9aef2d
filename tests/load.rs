//! The load job's file identity, idempotency and crash repair: two exports with the same name
//! are two files, a corrected export replaces only its own rows, identical content is skipped
//! without a trace, the content hash is that of the bytes parsed in a single read, and a run
//! stopped between any two commits is repaired by re-running.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::Lake;

const HEADER: &str = "account_no,date,transaction_details,chq_no,value_date,withdrawal_amt,withdrawal_currency,deposit_amt,deposit_currency,balance_amt\n";

/// A small export: `rows` good rows for `account`, plus one bad-date reject.
fn export(account: &str, rows: usize, amount: &str) -> String {
    let mut csv = String::from(HEADER);
    for i in 0..rows {
        csv.push_str(&format!(
            "{account}',29-Jun-17,row {i},,29-Jun-17,{amount},INR,,,\n"
        ));
    }
    csv.push_str(&format!(
        "{account}',31-Jun-17,bad date,,29-Jun-17,1,INR,,,\n"
    ));
    csv
}

fn write(path: &Path, text: &str) -> PathBuf {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::canonicalize(path).unwrap()
}

fn data_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".parquet"))
        .count()
}

#[test]
fn two_exports_with_the_same_name_are_two_files() {
    let lake = Lake::new();
    let jan = write(&lake.file("jan/statement.csv"), &export("111", 3, "10"));
    let feb = write(&lake.file("feb/statement.csv"), &export("222", 2, "20"));
    lake.run(&["load", jan.to_str().unwrap(), feb.to_str().unwrap()]);
    assert_eq!(lake.count("transactions"), 5);
    assert_eq!(lake.count("rejects"), 2);
    assert_eq!(lake.count("loads"), 2);
    let sources = lake.query(
        "SELECT source_file, count(*) FROM transactions GROUP BY source_file ORDER BY source_file",
    );
    assert_eq!(
        sources,
        vec![
            vec![feb.display().to_string(), "2".to_string()],
            vec![jan.display().to_string(), "3".to_string()],
        ]
    );
    let report = lake.latest_report("load");
    assert_eq!(report["files"][0]["source_file"], jan.display().to_string());
    assert_eq!(report["files"][1]["status"], "loaded");
}

#[test]
fn a_corrected_export_replaces_only_its_own_rows() {
    let lake = Lake::new();
    let jan = write(&lake.file("jan/statement.csv"), &export("111", 3, "10"));
    let feb = write(&lake.file("feb/statement.csv"), &export("222", 2, "20"));
    lake.run(&["load", jan.to_str().unwrap(), feb.to_str().unwrap()]);
    // The bank re-issues January: 4 rows, other amounts.
    write(&jan, &export("111", 4, "11"));
    let out = lake.run(&["load", jan.to_str().unwrap()]);
    assert!(out.contains("replaced 4 rows"), "{out}");
    let report = lake.latest_report("load");
    assert_eq!(report["files"][0]["rows_replaced"], 4, "{report}");
    assert_eq!(report["rows_replaced"], 4);
    let by_file = lake.query(
        "SELECT source_file, count(*), sum(withdrawal_amt) FROM transactions \
         GROUP BY source_file ORDER BY source_file",
    );
    assert_eq!(
        by_file,
        vec![
            vec![feb.display().to_string(), "2".into(), "40.0000".into()],
            vec![jan.display().to_string(), "4".into(), "44.0000".into()],
        ]
    );
    assert_eq!(lake.count("rejects"), 2);
    assert_eq!(lake.count("loads"), 2);
}

#[test]
fn identical_content_is_skipped_without_a_trace() {
    let lake = Lake::new();
    let first = write(&lake.file("a/statement.csv"), &export("111", 3, "10"));
    lake.run(&["load", first.to_str().unwrap()]);
    let table = lake.path().join("banktxn/parquet");
    let rejects = lake.path().join("banktxn/rejects");
    let (files, reject_files) = (data_files(&table), data_files(&rejects));
    let copy = write(&lake.file("b/copy.csv"), &export("111", 3, "10"));
    let out = lake.run(&["load", copy.to_str().unwrap()]);
    assert!(
        out.contains(&format!(
            "same content already loaded as {}",
            first.display()
        )),
        "{out}"
    );
    let report = lake.latest_report("load");
    assert_eq!(report["files"][0]["status"], "skipped");
    assert_eq!(
        report["files"][0]["same_content_as"],
        first.display().to_string()
    );
    assert_eq!(lake.count("transactions"), 3);
    // The skipped run's staged data files were deleted, not left for plain-Parquet readers.
    assert_eq!(data_files(&table), files);
    assert_eq!(data_files(&rejects), reject_files);
}

#[test]
fn the_hash_is_of_the_bytes_parsed_in_one_read() {
    let lake = Lake::new();
    let text = export("111", 50, "10");
    // A FIFO can be read exactly once: a loader that reads the file twice hangs or fails.
    let fifo = lake.file("pipe.csv");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(status.success());
    let writer = {
        let (fifo, text) = (fifo.clone(), text.clone());
        std::thread::spawn(move || std::fs::write(fifo, text))
    };
    let mut child = lake
        .command(&["load", fifo.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            // Unblock the writer thread if the loader never opened the FIFO again.
            panic!("load of a FIFO did not finish: the file is read more than once");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success());
    writer.join().unwrap().unwrap();
    assert_eq!(lake.count("transactions"), 50);
    let expected = blake3::hash(text.as_bytes()).to_hex().to_string();
    assert_eq!(lake.scalar("SELECT source_hash FROM loads"), expected);
}

/// The Parquet files in a table's folder.
fn folder_files(lake: &Lake, table: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(lake.path().join(table))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.contains(".parquet"))
        .collect();
    names.sort();
    names
}

/// Every table's content, without load timestamps: what "the same state" means.
fn state(lake: &Lake) -> Vec<Vec<String>> {
    let mut all = lake.query(
        "SELECT 't', source_file, CAST(source_line AS VARCHAR), account_no, \
         CAST(withdrawal_amt AS VARCHAR) FROM transactions",
    );
    all.extend(
        lake.query(
            "SELECT 'r', source_file, CAST(source_line AS VARCHAR), reason, raw FROM rejects",
        ),
    );
    all.extend(lake.query(
        "SELECT 'l', source_file, source_hash, CAST(rows_loaded AS VARCHAR), \
         CAST(rows_rejected AS VARCHAR) FROM loads",
    ));
    all.sort();
    all
}

#[test]
fn a_run_stopped_between_any_two_commits_is_repaired_by_rerunning() {
    let inputs = tempfile::tempdir().unwrap();
    let path = inputs.path().join("statement.csv");
    let other = inputs.path().join("other.csv");
    let (old, new) = (export("111", 3, "10"), export("111", 5, "12"));
    write(&other, &export("999", 2, "7"));

    // What uninterrupted runs leave: the old content, and the new one after it.
    let reference = Lake::new();
    write(&path, &old);
    reference.run(&["load", other.to_str().unwrap(), path.to_str().unwrap()]);
    let after_old = state(&reference);
    write(&path, &new);
    reference.run(&["load", path.to_str().unwrap()]);
    let after_new = state(&reference);
    assert_ne!(after_old, after_new);

    for point in ["load:loads-cleared", "load:transactions", "load:rejects"] {
        for (rerun_with, expected) in [(&new, &after_new), (&old, &after_old)] {
            let lake = Lake::new();
            write(&path, &old);
            lake.run(&["load", other.to_str().unwrap(), path.to_str().unwrap()]);
            write(&path, &new);
            let before = [
                folder_files(&lake, "banktxn/parquet"),
                folder_files(&lake, "banktxn/rejects"),
            ];
            let failed = lake
                .command(&["load", path.to_str().unwrap()])
                .env("FXPIPE_TEST_FAIL_AFTER", point)
                .output()
                .unwrap();
            assert!(!failed.status.success(), "{point}: the fault was injected");
            // The staged files of every table the run did not commit were deleted.
            let uncommitted = match point {
                "load:loads-cleared" => 0..2,
                "load:transactions" => 1..2,
                _ => 2..2,
            };
            let after = [
                folder_files(&lake, "banktxn/parquet"),
                folder_files(&lake, "banktxn/rejects"),
            ];
            for i in uncommitted {
                assert_eq!(before[i], after[i], "{point}: staged files left behind");
            }
            assert!(
                String::from_utf8_lossy(&failed.stderr).contains("injected failure"),
                "{point}: {}",
                String::from_utf8_lossy(&failed.stderr)
            );
            // Re-running (with the new content, or with the earlier one put back) repairs it.
            write(&path, rerun_with);
            lake.run(&["load", path.to_str().unwrap()]);
            assert_eq!(&state(&lake), expected, "failure after {point}");
        }
    }
}

#[test]
fn a_failed_load_then_the_same_content_elsewhere_is_not_counted_twice() {
    let lake = Lake::new();
    let path = write(&lake.file("a/statement.csv"), &export("111", 3, "10"));
    lake.run(&["load", path.to_str().unwrap()]);
    // New content at the path; the load stops after its transactions commit.
    write(&path, &export("111", 5, "12"));
    let failed = lake
        .command(&["load", path.to_str().unwrap()])
        .env("FXPIPE_TEST_FAIL_AFTER", "load:transactions")
        .output()
        .unwrap();
    assert!(!failed.status.success());
    // The same new content is loaded under another path first...
    let copy = write(&lake.file("b/copy.csv"), &export("111", 5, "12"));
    lake.run(&["load", copy.to_str().unwrap()]);
    // ...so the re-run is skipped, and removes the rows the failed run left for its path.
    let out = lake.run(&["load", path.to_str().unwrap()]);
    // 5: the failed run's transactions; 1: the earlier content's reject, whose replacement the
    // failed run never committed.
    assert!(
        out.contains("removed 6 rows a failed earlier load"),
        "{out}"
    );
    let by_file = lake.query(
        "SELECT source_file, count(*) FROM transactions GROUP BY source_file ORDER BY source_file",
    );
    assert_eq!(
        by_file,
        vec![vec![copy.display().to_string(), "5".to_string()]]
    );
    assert_eq!(lake.count("rejects"), 1);
}

#[test]
fn a_reload_with_another_decimal_separator_is_not_skipped() {
    let lake = Lake::new();
    let csv = "account_no;date;transaction_details;chq_no;value_date;withdrawal_amt;withdrawal_currency;deposit_amt;deposit_currency;balance_amt\n\
               111;29-Jun-17;a;;29-Jun-17;12,50;EUR;;;\n\
               111;29-Jun-17;b;;29-Jun-17;1.250;KWD;;;\n";
    let path = write(&lake.file("eu.csv"), csv);
    // `auto` reads comma decimals in a `;` file, and refuses `1.250`: 1250 or 1.25?
    lake.run(&["load", path.to_str().unwrap()]);
    assert_eq!(
        lake.scalar("SELECT CAST(withdrawal_amt AS VARCHAR) FROM transactions"),
        "12.5000"
    );
    let reason = lake.query("SELECT reason, detail FROM rejects");
    assert_eq!(reason[0][0], "bad_amount");
    assert!(reason[0][1].contains("ambiguous"), "{reason:?}");
    // The user says which: comma decimals, so 1.250 is one thousand two hundred and fifty.
    let out = lake.run(&["load", "--decimal-separator", ",", path.to_str().unwrap()]);
    assert!(!out.contains("skipped"), "{out}");
    assert_eq!(
        lake.query("SELECT CAST(withdrawal_amt AS VARCHAR) FROM transactions ORDER BY source_line"),
        vec![vec!["12.5000".to_string()], vec!["1250.0000".to_string()]]
    );
    // Read with the other mark, the same bytes are other content: not skipped either.
    let out = lake.run(&["load", "--decimal-separator", ".", path.to_str().unwrap()]);
    assert!(!out.contains("skipped"), "{out}");
    assert_eq!(lake.scalar("SELECT decimal_separator FROM loads"), ".");
    // The same bytes with the same mark again: skipped.
    let out = lake.run(&["load", "--decimal-separator", ".", path.to_str().unwrap()]);
    assert!(out.contains("skipped"), "{out}");
}

#[test]
fn lone_carriage_return_line_ends_are_refused_naming_the_file() {
    let lake = Lake::new();
    let csv = HEADER.replace('\n', "\r") + &"111',29-Jun-17,x,,29-Jun-17,1,INR,,,\r".repeat(3);
    let path = write(&lake.file("mac.csv"), &csv);
    let output = lake.try_run(&["load", path.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("mac.csv") && stderr.contains("carriage return"),
        "{stderr}"
    );
    assert!(!lake.path().join("banktxn/parquet/_delta_log").exists());
}

#[test]
fn a_lake_from_before_path_identity_is_refused_with_what_to_do() {
    let lake = Lake::new();
    // The earlier fxpipe's `loads` table: file names only, no decimal_separator column.
    let loads = lake.path().join("banktxn/loads");
    let script = "import sys, pyarrow as pa\n\
from deltalake import write_deltalake\n\
write_deltalake(sys.argv[1], pa.table({'source_file': ['statement.csv'], 'source_hash': ['00'], \
'rows_read': [1], 'rows_loaded': [1], 'rows_rejected': [0]}))\n";
    let output = std::process::Command::new("python3")
        .args(["-c", script, loads.to_str().unwrap()])
        .output()
        .expect("python3");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let path = write(&lake.file("statement.csv"), &export("111", 2, "10"));
    let output = lake.try_run(&["load", path.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("written by an earlier fxpipe") && stderr.contains("new lake"),
        "{stderr}"
    );
    assert_eq!(data_files(&lake.path().join("banktxn/parquet")), 0);
}
