//! `normalize --changed` (issue 24): only the months whose inputs changed since the last
//! normalize are recomputed, found from the Delta logs, and the result equals a full normalize
//! row for row.

mod common;

use common::{golden_dir, golden_lake, Lake};

const ALL_ROWS: &str = "SELECT * FROM processed ORDER BY source_file, source_line";

fn rows(lake: &Lake) -> String {
    lake.run(&["sql", ALL_ROWS, "--format", "csv"])
}

/// The months the last normalize recomputed, from its report.
fn recomputed(lake: &Lake) -> Vec<String> {
    let report = lake.latest_report("normalize");
    report["months_recomputed"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// `normalize --changed`, then a full normalize: the two must give the same rows. Returns the
/// --changed run's report and the months it recomputed.
fn changed_equals_full(lake: &Lake) -> (serde_json::Value, Vec<String>) {
    lake.run(&["normalize", "--changed"]);
    let incremental = rows(lake);
    let report = lake.latest_report("normalize");
    let months = recomputed(lake);
    lake.run(&["normalize"]);
    assert_eq!(
        incremental,
        rows(lake),
        "--changed differs from a full normalize"
    );
    (report, months)
}

const LATER_EXPORT: &str = "account_no,date,transaction_details,chq_no,value_date,withdrawal_amt,withdrawal_currency,deposit_amt,deposit_currency,balance_amt
409000611074',15-Aug-17,August rent,,15-Aug-17,500,INR,,,
409000611074',20-Sep-17,September rent,,20-Sep-17,500,INR,,,
";

#[test]
fn changed_recomputes_exactly_the_months_whose_inputs_changed() {
    let lake = golden_lake();
    let versions = lake.commits("banktxn/processed");

    // Nothing new: no commit, said so.
    let said = lake.run(&["normalize", "--changed"]);
    assert!(
        said.contains("processed is up to date with transactions v"),
        "{said}"
    );
    assert_eq!(lake.commits("banktxn/processed"), versions);

    // New exports in August and September: those two months only.
    let export = lake.file("later.csv");
    std::fs::write(&export, LATER_EXPORT).unwrap();
    lake.run(&["load", export.to_str().unwrap()]);
    let before = lake.commits("banktxn/processed");
    let (report, months) = changed_equals_full(&lake);
    assert_eq!(months, ["2017-08", "2017-09"], "{report}");
    assert_eq!(
        report["partitions_written"],
        serde_json::json!(["year=2017/month=8", "year=2017/month=9"]),
        "{report}"
    );
    // One commit for the --changed run, one for the full one.
    assert_eq!(lake.commits("banktxn/processed"), before + 2);

    // A late rate for 2017-06-30 (a day the golden rates lack): the transactions valued
    // 06-30 to 07-03 (max rate age 3) may now use it, so June and July, not August.
    let late = lake.file("late-rates");
    std::fs::create_dir_all(late.join("historical")).unwrap();
    let body = std::fs::read_to_string(golden_dir().join("rates/historical/2017-06-29.json"))
        .unwrap()
        .replace("\"INR\": 63.0", "\"INR\": 64.5")
        .replace("1498780799", "1498867199");
    std::fs::write(late.join("historical/2017-06-30.json"), body).unwrap();
    let inr_row = "SELECT CAST(withdrawal_sgd_amt AS VARCHAR) FROM processed \
                   WHERE transaction_details = 'INR as-of the day before'";
    let fallback = lake.run(&["sql", inr_row, "--format", "csv"]);
    let source = format!("file://{}", late.display());
    lake.run(&[
        "ingest",
        "--source",
        &source,
        "--from",
        "2017-06-30",
        "--to",
        "2017-06-30",
    ]);
    let (report, months) = changed_equals_full(&lake);
    assert_eq!(months, ["2017-06", "2017-07"], "{report}");
    assert!(
        report["months_recomputed"]["2017-06"][0]
            .as_str()
            .unwrap()
            .contains("rates of 2017-06-30"),
        "{report}"
    );
    assert_ne!(
        lake.run(&["sql", inr_row, "--format", "csv"]),
        fallback,
        "the late rate did not replace the fallback"
    );

    // The same file loaded again with changed content: its months.
    std::fs::write(
        &export,
        LATER_EXPORT.replace("August rent,,15-Aug-17,500", "August rent,,15-Aug-17,550"),
    )
    .unwrap();
    lake.run(&["load", export.to_str().unwrap()]);
    let (report, months) = changed_equals_full(&lake);
    assert_eq!(months, ["2017-08", "2017-09"], "{report}");

    // Another maximum rate age: the whole table, said as such.
    let said = lake.run(&["normalize", "--changed", "--max-rate-age", "5"]);
    assert!(
        said.contains("the whole table is recomputed: the maximum rate age changed"),
        "{said}"
    );
    assert!(recomputed(&lake).is_empty());
    // ... and then nothing again.
    let versions = lake.commits("banktxn/processed");
    let said = lake.run(&["normalize", "--changed", "--max-rate-age", "5"]);
    assert!(said.contains("up to date"), "{said}");
    assert_eq!(lake.commits("banktxn/processed"), versions);
}

/// Rows removed from `transactions` (remove actions in its log) rewrite their months: by a
/// re-load of a file that no longer holds a month, and by another writer's DELETE (deltalake's
/// Python writer, not fxpipe). A month left with no rows is emptied, not left stale.
#[test]
fn removed_rows_rewrite_their_months() {
    let lake = golden_lake();
    let export = lake.file("later.csv");
    std::fs::write(&export, LATER_EXPORT).unwrap();
    lake.run(&["load", export.to_str().unwrap()]);
    lake.run(&["normalize", "--changed"]);
    let august = "SELECT COUNT(*) FROM processed WHERE year = 2017 AND month = 8";
    assert_eq!(lake.scalar(august), "1");

    // The file re-loaded without its August row.
    let without_august: String = LATER_EXPORT
        .lines()
        .filter(|l| !l.contains("August rent"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&export, without_august).unwrap();
    lake.run(&["load", export.to_str().unwrap()]);
    let (report, months) = changed_equals_full(&lake);
    assert_eq!(months, ["2017-08", "2017-09"], "{report}");
    assert_eq!(lake.scalar(august), "0");

    // Another writer deletes September's row.
    let table = lake.path().join("banktxn/parquet");
    let deleted = common::python_env(
        "delta_edit.py",
        &[
            "delete",
            table.to_str().unwrap(),
            "transaction_details = 'September rent'",
        ],
        &[],
    );
    assert_eq!(deleted.trim(), "1");
    let (report, months) = changed_equals_full(&lake);
    assert_eq!(months, ["2017-09"], "{report}");
    assert_eq!(
        lake.scalar("SELECT COUNT(*) FROM processed WHERE year = 2017 AND month = 9"),
        "0"
    );
}

/// `normalize --changed` on a Ballista cluster over an S3 lake (moto): the same months, the
/// same rows as a full normalize in this process, and nothing written when nothing changed.
#[test]
fn changed_on_a_cluster_over_s3_equals_a_full_normalize() {
    let lake = Lake::s3();
    common::ingest_golden_rates(&lake, "2017-07-02");
    let cluster = common::cluster::Cluster::start(1, &lake.moto().env());
    let address = cluster.address();
    let on = |args: &[&str]| {
        let mut full = vec!["--cluster", address.as_str()];
        full.extend_from_slice(args);
        lake.run(&full)
    };
    let csv = golden_dir().join("transactions.csv");
    on(&["load", csv.to_str().unwrap()]);
    on(&["normalize", "--changed"]);
    let versions = lake.commits("banktxn/processed");
    let said = on(&["normalize", "--changed"]);
    assert!(said.contains("up to date"), "{said}");
    assert_eq!(lake.commits("banktxn/processed"), versions);

    let export = lake.file("later.csv");
    std::fs::write(&export, LATER_EXPORT).unwrap();
    on(&["load", export.to_str().unwrap()]);
    on(&["normalize", "--changed"]);
    assert_eq!(recomputed(&lake), ["2017-08", "2017-09"]);
    let incremental = rows(&lake);
    lake.run(&["normalize"]);
    assert_eq!(incremental, rows(&lake));
    let jobs = cluster.http_get("/api/jobs").unwrap();
    assert!(jobs.matches("job_id").count() >= 3, "{jobs}");
}

#[test]
fn changed_on_a_lake_without_a_recorded_normalize_rewrites_everything() {
    let lake = Lake::new();
    common::ingest_golden_rates(&lake, "2017-07-02");
    let csv = golden_dir().join("transactions.csv");
    lake.run(&["load", csv.to_str().unwrap()]);
    let said = lake.run(&["normalize", "--changed"]);
    assert!(
        said.contains("the whole table is recomputed: no earlier normalize recorded what it read"),
        "{said}"
    );
    let golden = golden_lake();
    assert_eq!(rows(&lake), rows(&golden));
}

/// `n` small exports of one row each, in `dir`.
fn small_exports(dir: &std::path::Path, n: usize) -> Vec<std::path::PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    (0..n)
        .map(|i| {
            let path = dir.join(format!("day-{i:04}.csv"));
            let body = format!(
                "account_no,date,transaction_details,chq_no,value_date,withdrawal_amt,withdrawal_currency,deposit_amt,deposit_currency,balance_amt\n\
                 409000611074',29-Jun-17,payment {i},,29-Jun-17,{}.00,INR,,,\n",
                i + 1
            );
            std::fs::write(&path, body).unwrap();
            path
        })
        .collect()
}

/// The number of files a load skipped unread, from its report.
fn unchanged(lake: &Lake) -> usize {
    lake.latest_report("load")["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["status"] == "unchanged")
        .count()
}

#[test]
fn a_load_of_known_files_reads_none_of_them() {
    use std::os::unix::fs::PermissionsExt;
    // Every first load is three commits per file (seconds each in a debug build on a busy
    // machine), so 20 files here.
    let lake = Lake::new();
    let dir = lake.file("exports");
    let files = small_exports(&dir, 20);
    let pattern = format!("{}/day-*.csv", dir.display());
    lake.run(&["load", &pattern]);
    let versions = lake.commits("banktxn/parquet");
    // A read would show in each file's access time: set it before the modification time
    // (with relatime, the next read then updates it), after checking that reads do here.
    let long_ago = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    let set_accessed = |file: &std::path::Path| {
        std::fs::File::options()
            .write(true)
            .open(file)
            .unwrap()
            .set_times(std::fs::FileTimes::new().set_accessed(long_ago))
            .unwrap();
    };
    let accessed = |file: &std::path::Path| std::fs::metadata(file).unwrap().accessed().unwrap();
    let probe = lake.file("probe.csv");
    std::fs::write(&probe, "x").unwrap();
    set_accessed(&probe);
    std::fs::read(&probe).unwrap();
    let reads_show = accessed(&probe) != long_ago;
    for file in &files {
        set_accessed(file);
    }
    let said = lake.run(&["load", &pattern]);
    assert_eq!(unchanged(&lake), 20, "{said}");
    assert_eq!(lake.commits("banktxn/parquet"), versions);
    if reads_show {
        for file in &files {
            assert_eq!(accessed(file), long_ago, "{} was read", file.display());
        }
    } else {
        eprintln!("this file system does not record reads (noatime): only the report checked");
    }
    // Unreadable now (unless root): a load that opened any of them would fail.
    for file in &files {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o000)).unwrap();
    }
    let root = std::fs::read(&files[0]).is_ok();
    lake.run(&["load", &pattern]);
    assert_eq!(unchanged(&lake), 20);
    // --verify reads them (and so fails here, unless root): the runs above did not.
    let verified = lake.try_run(&["load", "--verify", &pattern]);
    assert_eq!(verified.status.success(), root);
    // A touched file (same content, new modification time) is read and found the same.
    for file in &files {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let touched = &files[7];
    let content = std::fs::read(touched).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(10));
    std::fs::write(touched, &content).unwrap();
    lake.run(&["load", &pattern]);
    assert_eq!(unchanged(&lake), 19);
    assert_eq!(lake.commits("banktxn/parquet"), versions);
    // A changed file of the same size and modification time is not seen without --verify:
    // docs/lake.md says so. With it, the new content replaces the path's rows.
    let changed = &files[9];
    let modified = std::fs::metadata(changed).unwrap().modified().unwrap();
    let text = std::fs::read_to_string(changed)
        .unwrap()
        .replace("10.00", "11.00");
    std::fs::write(changed, text).unwrap();
    std::fs::File::options()
        .write(true)
        .open(changed)
        .unwrap()
        .set_modified(modified)
        .unwrap();
    lake.run(&["load", &pattern]);
    assert_eq!(unchanged(&lake), 20);
    lake.run(&["load", "--verify", &pattern]);
    assert_eq!(lake.commits("banktxn/parquet"), versions + 1);
    assert_eq!(
        lake.scalar("SELECT CAST(withdrawal_amt AS VARCHAR) FROM transactions WHERE transaction_details = 'payment 9'"),
        "11.0000"
    );
}

/// A lake written before `loads` had its `source_stamp` column (the previous release): the
/// first load reads each file once (found known by its hash) and adds the column; the next
/// load skips them unread.
#[test]
fn a_lake_without_load_stamps_is_upgraded_by_the_next_load() {
    let lake = Lake::new();
    let dir = lake.file("exports");
    let files = small_exports(&dir, 3);
    let pattern = format!("{}/day-*.csv", dir.display());
    lake.run(&["load", &pattern]);
    let loads = lake.path().join("banktxn/loads");
    common::python_env(
        "delta_edit.py",
        &["drop-column", loads.to_str().unwrap(), "source_stamp"],
        &[],
    );
    assert!(!lake
        .run(&["sql", "SELECT * FROM loads LIMIT 1", "--format", "csv"])
        .contains("source_stamp"));
    let transactions = lake.count("transactions");
    let parquet = lake.commits("banktxn/parquet");

    let said = lake.run(&["load", &pattern]);
    assert_eq!(unchanged(&lake), 0, "{said}");
    assert_eq!(lake.count("transactions"), transactions, "{said}");
    assert_eq!(lake.commits("banktxn/parquet"), parquet, "{said}");
    let said = lake.run(&["load", &pattern]);
    assert_eq!(unchanged(&lake), files.len(), "{said}");
    assert_eq!(lake.count("transactions"), transactions);
}

#[test]
fn a_load_of_known_objects_gets_none_of_them() {
    let lake = Lake::s3();
    // As above: 20 objects, each first loaded in three commits.
    let n = 20;
    let body = |i: usize| {
        format!(
            "account_no,date,transaction_details,chq_no,value_date,withdrawal_amt,withdrawal_currency,deposit_amt,deposit_currency,balance_amt\n\
             409000611074',29-Jun-17,payment {i},,29-Jun-17,{}.00,INR,,,\n",
            i + 1
        )
    };
    for i in 0..n {
        lake.moto().put(
            common::BUCKET,
            &format!("exports/day-{i:04}.csv"),
            body(i).as_bytes(),
        );
    }
    let all = format!("s3://{}/exports/*.csv", common::BUCKET);
    lake.run(&["load", &all]);
    let versions = lake.commits("banktxn/parquet");
    let proxy = common::proxy::Proxy::start(lake.moto().port);
    let output = lake
        .command(&["load", &all])
        .env("AWS_ENDPOINT_URL", proxy.endpoint())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(unchanged(&lake), n);
    assert_eq!(lake.commits("banktxn/parquet"), versions);
    let gets: Vec<String> = proxy
        .seen()
        .into_iter()
        .filter(|s| s.method == "GET" && s.path.contains("/exports/day-"))
        .map(|s| s.path)
        .collect();
    assert!(
        gets.is_empty(),
        "{} exports were read: {:?}",
        gets.len(),
        &gets[..gets.len().min(3)]
    );
}

#[test]
fn run_does_the_days_work_and_a_second_run_does_nothing() {
    let lake = Lake::new();
    let rates = lake.file("rates");
    let csv = lake.file("txns.csv");
    lake.run(&[
        "gen",
        "rates",
        "--from",
        "2017-01-01",
        "--to",
        "2017-03-31",
        "--out",
        rates.to_str().unwrap(),
    ]);
    lake.run(&[
        "gen",
        "transactions",
        "--rows",
        "2000",
        "--from",
        "2017-01-01",
        "--to",
        "2017-02-28",
        "--dirty",
        "0.01",
        "--out",
        csv.to_str().unwrap(),
    ]);
    let source = format!("file://{}", rates.display());
    let exports = format!("{}/*.csv", lake.dir.path().display());
    // `fxpipe run` on these rates and exports, for the rate days `days` say.
    let run = |days: &[&str]| {
        let mut args = vec!["run", "--source", &source, "--inputs", &exports];
        args.extend_from_slice(days);
        lake.command(&args)
    };
    let first = run(&["--from", "2017-01-01", "--to", "2017-02-28"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{stderr}");
    for said in [
        "run: step 1/3, ingest: 2017-01-01 to 2017-02-28",
        "run: step 2/3, load: 1 files",
        "run: step 3/3, normalize --changed: whole table",
    ] {
        assert!(stderr.contains(said), "{said} not in:\n{stderr}");
    }
    let tables = [
        "api_response/response",
        "banktxn/parquet",
        "banktxn/loads",
        "banktxn/processed",
    ];
    let versions: Vec<usize> = tables.iter().map(|t| lake.commits(t)).collect();

    // Nothing new: every step finds its work done, and nothing is committed.
    let second = run(&["--date", "2017-02-28"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{stderr}");
    assert!(
        stderr.contains("normalize --changed: up to date"),
        "{stderr}"
    );
    assert!(stderr.contains("1 skipped unread"), "{stderr}");
    assert_eq!(
        tables.iter().map(|t| lake.commits(t)).collect::<Vec<_>>(),
        versions
    );
    let report = lake.latest_report("run");
    assert_eq!(report["normalize"]["up_to_date"], true, "{report}");

    // A new day of exports and rates, and the run stops after its load (as a kill would): the
    // re-run finishes the work, and the result equals a full normalize.
    let march = lake.file("march.csv");
    lake.run(&[
        "gen",
        "transactions",
        "--rows",
        "300",
        "--from",
        "2017-03-01",
        "--to",
        "2017-03-31",
        "--seed",
        "7",
        "--out",
        march.to_str().unwrap(),
    ]);
    let march_days = ["--from", "2017-03-01", "--to", "2017-03-31"];
    let stopped = run(&march_days)
        .env("FXPIPE_TEST_FAIL_AFTER", "run:load")
        .output()
        .unwrap();
    assert!(!stopped.status.success());
    let resumed = run(&march_days).output().unwrap();
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(resumed.status.success(), "{stderr}");
    assert!(stderr.contains("2 skipped unread"), "{stderr}");
    // March's exports, and every month with a transaction valued in March or up to 3 days
    // later (March's rates reach them: February rows valued in March among them).
    let expected: Vec<String> = lake
        .query(
            "SELECT DISTINCT concat(CAST(date_part('year', date) AS VARCHAR), '-', \
             lpad(CAST(date_part('month', date) AS VARCHAR), 2, '0')) AS m FROM transactions \
             WHERE date >= DATE '2017-03-01' OR value_date BETWEEN DATE '2017-03-01' AND DATE '2017-04-03' \
             ORDER BY m",
        )
        .into_iter()
        .map(|row| row[0].clone())
        .collect();
    assert!(expected.contains(&"2017-03".to_string()), "{expected:?}");
    assert_eq!(recomputed(&lake), expected);
    let incremental = rows(&lake);
    lake.run(&["normalize"]);
    assert_eq!(incremental, rows(&lake));
    assert_eq!(lake.count("transactions") + lake.count("rejects"), 2300);
}

#[test]
fn run_names_the_step_that_failed_and_keeps_the_steps_before() {
    let lake = Lake::new();
    let rates = lake.file("rates");
    lake.run(&[
        "gen",
        "rates",
        "--from",
        "2017-01-01",
        "--to",
        "2017-01-31",
        "--out",
        rates.to_str().unwrap(),
    ]);
    let source = format!("file://{}", rates.display());
    let bad = lake.file("not-an-export.csv");
    std::fs::write(&bad, "hello,world\n1,2\n").unwrap();
    let output = lake.try_run(&[
        "run",
        "--source",
        &source,
        "--from",
        "2017-01-01",
        "--to",
        "2017-01-31",
        "--inputs",
        bad.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("step 2/3, load, failed"), "{stderr}");
    assert!(stderr.contains("not-an-export.csv"), "{stderr}");
    // The rates of step 1 stay committed.
    assert_eq!(
        lake.scalar("SELECT count(DISTINCT run_date) FROM rates"),
        "31"
    );
    assert_eq!(lake.latest_report("run")["failed_step"], "load");
}
