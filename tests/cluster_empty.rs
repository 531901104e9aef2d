//! Cluster jobs over empty inputs finish, and with the rows of an embedded run: a rate
//! calendar with no row, a month range with no transaction, an ad-hoc join with an empty
//! side. Under Ballista's adaptive planner each of these replanned without end (issue 20).
//! And the runaway guard: a job past its stage bound is cancelled and fails naming the job.

mod common;

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::{golden_dir, Lake};

const PROCESSED: &str = "SELECT * FROM processed ORDER BY source_file, source_line";

/// How long a job on a few thousand rows may take on the loopback cluster (debug build);
/// the runaway ran until it was killed.
const BOUND: Duration = Duration::from_secs(120);

/// Runs `fxpipe ARGS` on the lake, killing it and failing the test past `limit`.
fn run_bounded(lake: &Lake, args: &[&str], env: &[(&str, &str)], limit: Duration) -> Output {
    let mut child = lake
        .command(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start fxpipe");
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("status").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("killed job ends");
            panic!(
                "fxpipe {args:?} did not finish within {limit:?}:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().expect("output")
}

fn on_cluster(lake: &Lake, cluster: &Cluster, args: &[&str]) -> String {
    let address = cluster.address();
    let mut full = vec!["--cluster", address.as_str()];
    full.extend_from_slice(args);
    let output = run_bounded(lake, &full, &[], BOUND);
    assert!(
        output.status.success(),
        "fxpipe {full:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        cluster.problems()
    );
    String::from_utf8_lossy(&output.stdout).to_string()
}

/// The golden transactions (2017) and rates for two weeks of December 2019 only: no
/// transaction has a usable rate, as on a new lake whose ingester has just started.
fn lake_with_no_usable_rate() -> Lake {
    let lake = Lake::new();
    let rates = lake.file("rates");
    lake.run(&[
        "gen",
        "rates",
        "--from",
        "2019-12-01",
        "--to",
        "2019-12-14",
        "--out",
        rates.to_str().unwrap(),
    ]);
    lake.run(&[
        "ingest",
        "--source",
        &format!("file://{}", rates.display()),
        "--from",
        "2019-12-01",
        "--to",
        "2019-12-14",
    ]);
    let csv = golden_dir().join("transactions.csv");
    lake.run(&["load", csv.to_str().unwrap()]);
    lake
}

#[test]
fn empty_inputs_finish_on_the_cluster_with_the_embedded_rows() {
    let lake = lake_with_no_usable_rate();
    let cluster = Cluster::start(2, &[]);

    // No usable rate: every row written, unconverted, as embedded.
    lake.run(&["normalize"]);
    let embedded = lake.run(&["sql", PROCESSED, "--format", "csv"]);
    let rows = lake.latest_report("normalize")["rows_written"].clone();
    assert_eq!(rows, 9, "{embedded}");
    assert_eq!(
        lake.scalar("SELECT count(*) FROM processed WHERE withdrawal_sgd_amt IS NOT NULL AND withdrawal_currency <> 'SGD'"),
        "0"
    );
    on_cluster(&lake, &cluster, &["normalize"]);
    assert_eq!(lake.run(&["sql", PROCESSED, "--format", "csv"]), embedded);
    assert_eq!(lake.latest_report("normalize")["rows_written"], rows);

    // A month range with no transaction: nothing to convert, the other months untouched.
    let versions = lake.commits("banktxn/processed");
    on_cluster(
        &lake,
        &cluster,
        &["normalize", "--from", "2019-01", "--to", "2019-02"],
    );
    assert_eq!(lake.latest_report("normalize")["rows_written"], 0);
    assert_eq!(lake.run(&["sql", PROCESSED, "--format", "csv"]), embedded);
    assert!(lake.commits("banktxn/processed") <= versions + 1);

    // Ad-hoc joins with an empty side, and a filter that leaves nothing.
    for query in [
        "SELECT t.source_line, r.rates_base_sgd FROM transactions t LEFT JOIN rates r \
         ON r.target_currency = t.withdrawal_currency AND r.run_date = t.value_date \
         ORDER BY t.source_line",
        "SELECT r.target_currency, count(t.source_line) FROM (SELECT * FROM transactions WHERE account_no = 'none') t \
         RIGHT JOIN rates r ON r.target_currency = t.withdrawal_currency \
         GROUP BY r.target_currency ORDER BY r.target_currency",
        "SELECT t.account_no, count(*) FROM transactions t JOIN rates r \
         ON r.target_currency = t.deposit_currency AND r.run_date = t.value_date \
         GROUP BY t.account_no ORDER BY t.account_no",
        "SELECT count(*) FROM processed WHERE year = 1999",
    ] {
        let embedded = lake.run(&["sql", query, "--format", "csv"]);
        assert_eq!(
            on_cluster(&lake, &cluster, &["sql", query, "--format", "csv"]),
            embedded,
            "{query}"
        );
    }
    assert_eq!(
        cluster.log_lines("stages to be cancelled"),
        Vec::<String>::new()
    );
}

#[test]
fn a_job_past_its_stage_bound_is_cancelled_and_fails_naming_it() {
    // Enough rows that the job runs for a while on the loopback cluster.
    let lake = common::generated_lake("200000", "0");
    lake.run(&["normalize"]);
    let before = lake.run(&[
        "sql",
        "SELECT count(*), CAST(sum(deposit_sgd_amt) AS VARCHAR) FROM processed",
        "--format",
        "csv",
    ]);
    let cluster = Cluster::start(2, &[]);
    let versions = lake.commits("banktxn/processed");
    let address = cluster.address();
    let started = Instant::now();
    let output = run_bounded(
        &lake,
        &["--cluster", &address, "normalize"],
        // Below the stages of normalize's real plan (a broadcast, the join and write).
        &[("FXPIPE_CLUSTER_MAX_STAGES", "1")],
        BOUND,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "the job passed its bound:\n{stderr}"
    );
    assert!(
        stderr.contains("was cancelled after it created")
            && stderr.contains("more than the 1 its plan allows"),
        "{stderr}"
    );
    let jobs = cluster.http_get("/api/jobs").expect("the scheduler's jobs");
    let job_id = jobs
        .split("\"job_id\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a job id");
    assert!(stderr.contains(job_id), "the error names the job: {stderr}");
    assert!(started.elapsed() < BOUND);
    // Nothing was committed: the previous version stands.
    assert_eq!(lake.commits("banktxn/processed"), versions);
    assert_eq!(
        lake.run(&[
            "sql",
            "SELECT count(*), CAST(sum(deposit_sgd_amt) AS VARCHAR) FROM processed",
            "--format",
            "csv"
        ]),
        before
    );
}
