//! The lake on S3: every command against a real S3-compatible server (moto on 127.0.0.1), with
//! credentials only in the environment. The storage conformance cases run the same body on a
//! local lake and on S3, so the two can never drift apart.

mod common;

use common::moto::{Moto, SECRET_KEY};
use common::{golden_dir, ingest_golden_rates, Lake};

/// Runs a case on a local lake and on an S3 lake.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn local() {
                    super::$name(super::Lake::new());
                }
                #[test]
                fn s3() {
                    super::$name(super::Lake::s3());
                }
            }
        )*
    };
}

conformance!(
    golden_pipeline_gives_the_golden_numbers,
    a_reload_of_the_same_file_changes_nothing,
    optimize_compacts_and_vacuum_deletes_without_changing_a_row,
    reads_need_an_existing_lake,
);

fn golden_csv() -> String {
    golden_dir().join("transactions.csv").display().to_string()
}

/// The golden flow, step by step: the same numbers as the golden tests, on either storage.
fn golden_pipeline_gives_the_golden_numbers(lake: Lake) {
    ingest_golden_rates(&lake, "2017-07-02");
    lake.run(&["load", &golden_csv()]);
    lake.run(&["normalize"]);
    assert_eq!(lake.count("processed"), 9);
    assert_eq!(lake.count("transactions"), 9);
    // 100 USD on 2017-06-29 at 0.72 SGD/USD... the golden sums, exactly.
    let sums = lake.query(
        "SELECT CAST(sum(withdrawal_sgd_amt) AS VARCHAR), CAST(sum(deposit_sgd_amt) AS VARCHAR) FROM processed",
    );
    let local = common::golden_lake().query(
        "SELECT CAST(sum(withdrawal_sgd_amt) AS VARCHAR), CAST(sum(deposit_sgd_amt) AS VARCHAR) FROM processed",
    );
    assert_eq!(sums, local);
    let report = lake.run(&["report", "creditworthiness", "--format", "csv"]);
    assert!(report.contains("Creditworthiness"), "{report}");
    assert_eq!(lake.latest_report("normalize")["rows_written"], 9);
    // An independent reader opens the table where fxpipe says it is.
    let table = format!("{}/banktxn/processed", lake.location());
    let env = lake.s3.as_ref().map(|(m, _)| m.env()).unwrap_or_default();
    common::python_env("check_delta.py", &[&table, "9", "--plain-too"], &env);
}

fn a_reload_of_the_same_file_changes_nothing(lake: Lake) {
    lake.run(&["load", &golden_csv()]);
    let versions = lake.commits("banktxn/parquet");
    let again = lake.run(&["load", &golden_csv()]);
    assert!(again.contains("skipped"), "{again}");
    assert_eq!(lake.commits("banktxn/parquet"), versions);
    assert_eq!(lake.count("transactions"), 9);
}

fn optimize_compacts_and_vacuum_deletes_without_changing_a_row(lake: Lake) {
    // One ingest per day: a commit, and a small file, per day.
    let dir = lake.file("rates");
    lake.run(&[
        "gen",
        "rates",
        "--from",
        "2017-01-01",
        "--to",
        "2017-01-06",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let rates = format!("file://{}", dir.display());
    for day in 1..=6 {
        let day = format!("2017-01-0{day}");
        lake.run(&["ingest", "--source", &rates, "--from", &day, "--to", &day]);
    }
    let rates = lake.count("rates");
    let files_before = data_files(&lake, "api_response/response");
    assert!(files_before >= 3, "{files_before} rate files");
    let out = lake.run(&["optimize"]);
    assert!(out.contains("rates: "), "{out}");
    assert!(out.contains("transactions: kept as written"), "{out}");
    assert_eq!(lake.count("rates"), rates);
    let out = lake.run(&["vacuum", "--retention-hours", "0", "--force"]);
    assert!(out.contains("rates: deleted"), "{out}");
    let files_after = data_files(&lake, "api_response/response");
    assert!(
        files_after < files_before,
        "{files_before} files before, {files_after} after optimize + vacuum"
    );
    assert_eq!(lake.count("rates"), rates);
}

fn data_files(lake: &Lake, table: &str) -> usize {
    lake.list(table)
        .iter()
        .filter(|f| f.ends_with(".parquet") && !f.contains("_delta_log"))
        .count()
}

fn reads_need_an_existing_lake(lake: Lake) {
    let output = lake.try_run(&["sql", "SELECT 1"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no lake at"), "{stderr}");
}

#[test]
fn quickstart_runs_on_s3() {
    let lake = Lake::s3();
    let inputs = lake.file("sample");
    let out = lake.run(&[
        "quickstart",
        "--rows",
        "2000",
        "--inputs",
        inputs.to_str().unwrap(),
    ]);
    assert!(out.contains("fxpipe report creditworthiness"), "{out}");
    assert!(
        out.contains("s3://fxpipe-test-lake/lake/banktxn/processed"),
        "{out}"
    );
    let loaded = lake.latest_report("load");
    let rows_loaded = loaded["rows_loaded"].as_u64().expect("rows_loaded");
    let rows_rejected = loaded["rows_rejected"].as_u64().expect("rows_rejected");
    assert_eq!(rows_loaded + rows_rejected, 2000, "{loaded}");
    assert_eq!(lake.count("processed"), rows_loaded);
    // Nothing of the lake was written to local disk.
    assert!(!lake.path().exists());
}

#[test]
fn load_reads_globs_of_s3_objects() {
    let lake = Lake::s3();
    let csv = std::fs::read(golden_dir().join("transactions.csv")).unwrap();
    let text = String::from_utf8(csv.clone()).unwrap();
    // A second export: the same rows for another account.
    let other = text.replace("409000611074", "409000999999");
    let moto = lake.moto();
    moto.put(common::BUCKET, "exports/2024-01.csv", &csv);
    moto.put(common::BUCKET, "exports/2024-02.csv", other.as_bytes());
    moto.put(
        common::BUCKET,
        "exports/notes/2024-03.csv",
        b"not an export",
    );
    moto.put(common::BUCKET, "exports/2023-12.txt", b"not an export");
    let out = lake.run(&["load", "s3://fxpipe-test-lake/exports/2024-*.csv"]);
    assert!(
        out.contains("2024-01.csv") && out.contains("2024-02.csv"),
        "{out}"
    );
    assert_eq!(lake.count("transactions"), 18);
    let sources = lake.query("SELECT DISTINCT source_file FROM transactions ORDER BY 1");
    assert_eq!(
        sources,
        vec![
            vec!["s3://fxpipe-test-lake/exports/2024-01.csv".to_string()],
            vec!["s3://fxpipe-test-lake/exports/2024-02.csv".to_string()],
        ]
    );
    let none = lake.try_run(&["load", "s3://fxpipe-test-lake/exports/1999-*.csv"]);
    assert!(!none.status.success());
    let stderr = String::from_utf8_lossy(&none.stderr);
    assert!(
        stderr.contains("no file matches s3://fxpipe-test-lake/exports/1999-*.csv"),
        "{stderr}"
    );
}

#[test]
fn a_missing_region_is_an_error_not_us_east_1() {
    let lake = Lake::s3();
    let mut command = lake.command(&["load", &golden_csv()]);
    command
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION");
    let output = command.output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no AWS region: set AWS_REGION"), "{stderr}");
    assert!(lake.moto().keys(common::BUCKET, "lake/").is_empty());
}

#[test]
fn s3_errors_name_the_bucket_and_what_to_check_and_never_the_secret() {
    let lake = Lake::s3();
    // A bucket that does not exist.
    let mut command = lake.command(&["load", &golden_csv()]);
    command.args(["--lake", "s3://no-such-bucket-here/lake"]);
    let output = command.output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("s3://no-such-bucket-here/lake/"),
        "{stderr}"
    );
    assert!(stderr.contains("check: "), "{stderr}");
    assert!(!stderr.contains(SECRET_KEY), "{stderr}");
    // An endpoint nothing listens on: retried, then a clear error.
    let dead = format!("http://127.0.0.1:{}", common::moto::free_port());
    let mut command = lake.command(&["sql", "SELECT 1"]);
    command.args([
        "--s3-endpoint",
        &dead,
        "--s3-retries",
        "1",
        "--s3-retry-timeout",
        "2",
    ]);
    let output = command.output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("S3 list of s3://fxpipe-test-lake/lake/"),
        "{stderr}"
    );
    assert!(stderr.contains("the endpoint"), "{stderr}");
}

#[test]
fn no_output_or_log_carries_the_secret_key() {
    let lake = Lake::s3();
    let mut seen = String::new();
    let mut run = |args: &[&str]| {
        let mut command = lake.command(args);
        command.env("RUST_LOG", "trace");
        let output = command.output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        seen.push_str(&String::from_utf8_lossy(&output.stdout));
        seen.push_str(&String::from_utf8_lossy(&output.stderr));
    };
    let rates = format!("file://{}", golden_dir().join("rates").display());
    // The golden days that have rates (06-30 has none; a failed day fails the run).
    for day in ["2017-06-29", "2017-07-01"] {
        run(&["-vv", "ingest", "--source", &rates, "--date", day]);
    }
    run(&["-vv", "load", &golden_csv()]);
    run(&["-vv", "normalize"]);
    run(&["-vv", "sql", "SELECT * FROM processed"]);
    assert!(
        seen.len() > 10_000,
        "trace logs were captured ({} bytes)",
        seen.len()
    );
    assert!(
        !seen.contains(SECRET_KEY),
        "the secret key appears in fxpipe's output"
    );
    for report in lake.list("_reports") {
        let text = String::from_utf8_lossy(&lake.read(&format!("_reports/{report}"))).to_string();
        assert!(!text.contains(SECRET_KEY), "{report}");
    }
}

#[test]
fn moto_refuses_a_second_create_of_the_same_commit() {
    // The property every Delta commit on S3 relies on: If-None-Match: * is honoured (412).
    let moto = Moto::start();
    moto.create_bucket("fxpipe-precondition");
    let put = |port: u16| {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let request = format!(
            "PUT /fxpipe-precondition/_delta_log/00000000000000000000.json HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{}\r\nIf-None-Match: *\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}",
            common::moto::authorization()
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response.split(' ').nth(1).unwrap_or_default().to_string()
    };
    assert_eq!(put(moto.port), "200");
    assert_eq!(put(moto.port), "412");
}

#[test]
fn load_expands_quoted_local_globs_too() {
    let lake = Lake::new();
    let exports = lake.file("exports");
    std::fs::create_dir_all(exports.join("notes")).unwrap();
    let csv = std::fs::read_to_string(golden_dir().join("transactions.csv")).unwrap();
    std::fs::write(exports.join("2024-01.csv"), &csv).unwrap();
    std::fs::write(
        exports.join("2024-02.csv"),
        csv.replace("409000611074", "409000999999"),
    )
    .unwrap();
    std::fs::write(exports.join("2023-12.txt"), "not an export").unwrap();
    let pattern = format!("{}/2024-*.csv", exports.display());
    lake.run(&["load", &pattern]);
    assert_eq!(lake.count("transactions"), 18);
    let none = lake.try_run(&["load", &format!("{}/1999-*.csv", exports.display())]);
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("no file matches"));
}
