//! The lake's guarantees: idempotent re-runs, atomic commits under a killed writer, partition
//! replacement, and output that independent readers (delta-rs for Python, DuckDB, pyarrow) open
//! and agree with to the cent.

mod common;

use std::time::Instant;

use common::{generated_lake, python, Lake};

#[test]
fn reruns_never_duplicate_rows() {
    let lake = generated_lake("3000", "0.05");
    let csv = lake.file("txns.csv");
    let loaded = lake.scalar("SELECT count(*) FROM transactions");
    let rejected = lake.scalar("SELECT count(*) FROM rejects");
    let report = lake.latest_report("load");
    assert_eq!(report["rows_read"], 3000);
    assert_eq!(
        loaded.parse::<u64>().unwrap() + rejected.parse::<u64>().unwrap(),
        3000
    );
    assert!(
        rejected.parse::<u64>().unwrap() > 50,
        "--dirty 0.05 makes rejects"
    );

    // Same content again (also under another name): skipped.
    let out = lake.run(&["load", csv.to_str().unwrap()]);
    assert!(out.contains("skipped"), "{out}");
    let copy = lake.file("copy.csv");
    std::fs::copy(&csv, &copy).unwrap();
    lake.run(&["load", copy.to_str().unwrap()]);
    assert_eq!(lake.scalar("SELECT count(*) FROM transactions"), loaded);
    assert_eq!(lake.scalar("SELECT count(*) FROM rejects"), rejected);

    // Same path, new content: replaces that file's rows (and only counts as a replacement
    // at the same full path; another folder's `txns.csv` is another file).
    let bytes = std::fs::read(&csv).unwrap();
    let head: Vec<&[u8]> = bytes.split(|b| *b == b'\n').take(101).collect();
    std::fs::write(&csv, [head.join(&b'\n'), b"\n".to_vec()].concat()).unwrap();
    let out = lake.run(&["load", csv.to_str().unwrap()]);
    assert!(out.contains("replaced 3000 rows"), "{out}");
    let now = lake.count("transactions") + lake.count("rejects");
    assert_eq!(now, 100);
    // The replaced rows' files stay on disk for time travel: a plain-Parquet reader (listing
    // the folder) double counts until vacuum deletes them; the Delta log never does.
    let table = lake.path().join("banktxn/parquet");
    let loaded_now = lake.scalar("SELECT count(*) FROM transactions");
    let args = [table.to_str().unwrap(), loaded_now.as_str(), "--plain-too"];
    assert!(!common::try_python("check_delta.py", &args).status.success());
    let dry = lake.run(&["vacuum", "--retention-hours", "0", "--dry-run"]);
    assert!(dry.contains(".parquet"), "{dry}");
    lake.run(&["vacuum", "--retention-hours", "0", "--force"]);
    python("check_delta.py", &args);

    // Normalize twice: same rows.
    lake.run(&["normalize"]);
    let first = lake.scalar("SELECT count(*) FROM processed");
    lake.run(&["normalize"]);
    assert_eq!(lake.scalar("SELECT count(*) FROM processed"), first);
    assert_eq!(first, lake.scalar("SELECT count(*) FROM transactions"));

    // Re-ingesting a range with --force replaces it.
    let rates = lake.scalar("SELECT count(*) FROM rates");
    let source = format!("file://{}", lake.file("rates").display());
    lake.run(&[
        "ingest",
        "--source",
        &source,
        "--from",
        "2017-03-01",
        "--to",
        "2017-03-31",
        "--force",
    ]);
    assert_eq!(lake.scalar("SELECT count(*) FROM rates"), rates);
}

#[test]
fn month_range_replaces_exactly_those_partitions() {
    let lake = generated_lake("2000", "0");
    lake.run(&["normalize"]);
    // Each month's converted amounts, row by row.
    let month = |m: u32| {
        lake.query(&format!(
            "SELECT source_line, withdrawal_sgd_amt, deposit_sgd_amt, \
             CAST(coalesce(withdrawal_rate_date, deposit_rate_date) AS VARCHAR) \
             FROM processed WHERE year = 2017 AND month = {m} ORDER BY source_line"
        ))
    };
    let before: Vec<_> = (1..=6).map(month).collect();
    let versions = lake.commits("banktxn/processed");

    // New rates (another seed) for March and for mid-May on (April's value dates reach 2 May at
    // most); then recompute March and April only.
    let other = lake.file("other-rates");
    lake.run(&[
        "gen",
        "rates",
        "--from",
        "2017-01-01",
        "--to",
        "2017-06-30",
        "--seed",
        "8",
        "--out",
        other.to_str().unwrap(),
    ]);
    let source = format!("file://{}", other.display());
    for (from, to) in [("2017-03-01", "2017-03-31"), ("2017-05-10", "2017-05-31")] {
        lake.run(&[
            "ingest", "--source", &source, "--from", from, "--to", to, "--force",
        ]);
    }
    lake.run(&["normalize", "--from", "2017-03", "--to", "2017-04"]);
    let report = lake.latest_report("normalize");
    assert_eq!(
        report["partitions_written"],
        serde_json::json!(["year=2017/month=3", "year=2017/month=4"])
    );
    let after: Vec<_> = (1..=6).map(month).collect();
    // March moved with its new rates: same rows, different amounts for foreign currencies.
    let march = (&before[2], &after[2]);
    assert_eq!(march.0.len(), march.1.len());
    assert!(march.0.len() > 100, "{}", march.0.len());
    let changed = march.0.iter().zip(march.1).filter(|(b, a)| b != a).count();
    assert!(
        changed > march.0.len() / 2,
        "only {changed} March rows changed"
    );
    // April was recomputed with unchanged rates; January, February and June were not touched,
    // and May keeps its old amounts although its rates changed: it was outside the range.
    for m in [1, 2, 4, 5, 6] {
        assert!(!before[m - 1].is_empty());
        assert_eq!(before[m - 1], after[m - 1], "month {m} changed");
    }
    let after_commits = lake.commits("banktxn/processed");
    assert_eq!(after_commits, versions + 1, "one commit");
    // Untouched months keep their files from the first run.
    let history = lake.path().join("banktxn/processed/year=2017/month=1");
    assert_eq!(std::fs::read_dir(history).unwrap().count(), 1);
    // A whole run now moves May too.
    lake.run(&["normalize"]);
    assert_ne!(month(5), before[4]);
}

#[test]
fn a_killed_load_leaves_the_previous_version_intact() {
    let lake = generated_lake("1000", "0");
    let before = lake.scalar("SELECT count(*) FROM transactions");
    let big = lake.file("big.csv");
    lake.run(&[
        "gen",
        "transactions",
        "--rows",
        "600000",
        "--seed",
        "9",
        "--from",
        "2017-01-01",
        "--to",
        "2017-06-30",
        "--out",
        big.to_str().unwrap(),
    ]);
    // How long a whole load of this file takes here (into a scratch lake)...
    let scratch = Lake::new();
    let started = Instant::now();
    scratch.run(&["load", big.to_str().unwrap()]);
    let whole = started.elapsed();
    // ...then SIGKILL the real one as soon as its write has reached storage: data files in the
    // table's folder that no version references yet.
    let table = lake.path().join("banktxn/parquet");
    let on_disk = || -> Vec<String> {
        std::fs::read_dir(&table)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.contains(".parquet"))
            .collect()
    };
    let committed = on_disk();
    let mut child = lake
        .command(&["load", big.to_str().unwrap()])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + whole;
    while on_disk().len() == committed.len() {
        assert!(
            Instant::now() < deadline,
            "no data reached storage mid-write"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the load finished before it could be killed"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let orphans: Vec<String> = on_disk()
        .into_iter()
        .filter(|n| !committed.contains(n))
        .collect();
    assert!(!orphans.is_empty(), "the kill landed mid-write");
    // Readers through the log see exactly the previous version.
    assert_eq!(lake.scalar("SELECT count(*) FROM transactions"), before);
    python(
        "check_delta.py",
        &[
            lake.path().join("banktxn/parquet").to_str().unwrap(),
            &before,
        ],
    );
    // The re-run completes; nothing is duplicated.
    lake.run(&["load", big.to_str().unwrap()]);
    let after: u64 = lake
        .scalar("SELECT count(*) FROM transactions")
        .parse()
        .unwrap();
    assert_eq!(after, before.parse::<u64>().unwrap() + 600_000);
    // vacuum deletes what the killed run left, so plain-Parquet readers agree too.
    let dry = lake.run(&["vacuum", "--retention-hours", "0", "--dry-run"]);
    for orphan in &orphans {
        assert!(dry.contains(orphan.as_str()), "{orphan} not in {dry}");
    }
    lake.run(&["vacuum", "--retention-hours", "0", "--force"]);
    for orphan in &orphans {
        assert!(!on_disk().contains(orphan), "{orphan} survived vacuum");
    }
    python(
        "check_delta.py",
        &[table.to_str().unwrap(), &after.to_string(), "--plain-too"],
    );
}

#[test]
fn independent_readers_agree_to_the_cent() {
    let lake = generated_lake("20000", "0.01");
    lake.run(&["normalize"]);
    // deltalake (delta-rs for Python), DuckDB over the Hive folders, and exact Fractions.
    python("check_lake.py", &[lake.path().to_str().unwrap()]);
}

/// A cluster normalize broadcasts its rate calendar as a file under `_scratch/` and deletes it
/// when it ends; a killed client leaves it, and vacuum deletes it once it is older than the
/// retention (never a running job's: it is younger).
#[test]
fn vacuum_deletes_what_a_killed_cluster_job_left_in_scratch() {
    let lake = Lake::new();
    let left = lake.path().join("_scratch/0f1e2d-rate_calendar.parquet");
    std::fs::create_dir_all(left.parent().unwrap()).unwrap();
    std::fs::write(&left, b"PAR1").unwrap();
    let kept = lake.run(&["vacuum", "--retention-hours", "1"]);
    assert!(
        kept.contains("_scratch/ (files of cluster jobs that did not end): deleted 0 files"),
        "{kept}"
    );
    assert!(left.exists());
    let dry = lake.run(&["vacuum", "--retention-hours", "0", "--dry-run"]);
    assert!(
        dry.contains("_scratch/0f1e2d-rate_calendar.parquet"),
        "{dry}"
    );
    assert!(left.exists());
    lake.run(&["vacuum", "--retention-hours", "0", "--force"]);
    assert!(!left.exists());
}
