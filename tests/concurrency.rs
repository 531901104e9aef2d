//! Two fxpipe commands at once on one lake: the tables stay exact (no day or line twice, no
//! row lost), both commands succeed when their work can be merged, and conflicts read like
//! fxpipe, not like delta-rs (issue 21).

mod common;

use std::process::Output;
use std::time::Duration;

use common::proxy::{spawn_via, Fault, Proxy, Rule};
use common::{golden_dir, Lake};

/// Rate files for the first quarter of 2017 (three ingest batches of up to 30 days).
fn rate_files(dir: &std::path::Path) -> String {
    let lake = Lake::new();
    lake.run(&[
        "gen",
        "rates",
        "--from",
        "2017-01-01",
        "--to",
        "2017-03-31",
        "--out",
        dir.to_str().unwrap(),
    ]);
    format!("file://{}", dir.display())
}

/// Runs both commands at once and waits for both.
fn together(lake: &Lake, first: &[&str], second: &[&str]) -> (Output, Output) {
    together_via(lake, None, first, second)
}

fn together_via(
    lake: &Lake,
    proxy: Option<&Proxy>,
    first: &[&str],
    second: &[&str],
) -> (Output, Output) {
    let a = spawn_via(lake, proxy, first);
    let b = spawn_via(lake, proxy, second);
    (
        a.wait_with_output().expect("first ends"),
        b.wait_with_output().expect("second ends"),
    )
}

fn assert_ok_in_fxpipes_words(output: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{what} failed:\n{stderr}");
    assert_no_delta_rs_words(&stderr, what);
}

/// None of delta-rs's own words reached the user.
fn assert_no_delta_rs_words(stderr: &str, what: &str) {
    for delta_rs in common::DELTA_RS_WORDS {
        assert!(
            !stderr.contains(delta_rs),
            "{what} printed delta-rs's {delta_rs:?}:\n{stderr}"
        );
    }
}

/// Rows of `rates`, and distinct (day, currency) pairs.
fn rates_and_pairs(lake: &Lake) -> (String, String) {
    let rows = lake.query(
        "SELECT count(*), count(DISTINCT concat(CAST(run_date AS VARCHAR), target_currency)) FROM rates",
    );
    (rows[0][0].clone(), rows[0][1].clone())
}

/// The golden rates and transactions, loaded.
fn load_golden(lake: &Lake) {
    common::ingest_golden_rates(lake, "2017-07-01");
    let csv = golden_dir().join("transactions.csv");
    lake.run(&["load", csv.to_str().unwrap()]);
}

fn ingest<'a>(source: &'a str, from: &'a str, to: &'a str) -> [&'a str; 7] {
    ["ingest", "--source", source, "--from", from, "--to", to]
}

/// An S3 lake behind the fault proxy, whose data-file uploads take a second: two commands
/// started together have both planned their first commit before either makes it.
fn slow_uploads() -> (Lake, Proxy) {
    let lake = Lake::s3();
    let proxy = Proxy::start(lake.moto().port);
    proxy.set(Rule::always(
        Fault::Slow(Duration::from_secs(1)),
        "PUT",
        ".parquet",
    ));
    (lake, proxy)
}

/// Attempts to write version 0 of the table at `table` (a lake path) that the proxy saw.
fn first_commits(proxy: &Proxy, table: &str) -> usize {
    proxy
        .requests(
            "PUT",
            &format!("{table}/_delta_log/00000000000000000000.json"),
        )
        .len()
}

#[test]
fn two_first_ingests_into_a_new_lake_store_each_day_once() {
    let files = tempfile::tempdir().unwrap();
    let source = rate_files(files.path());
    let alone = Lake::new();
    alone.run(&ingest(&source, "2017-01-01", "2017-03-31"));
    let (rows, pairs) = rates_and_pairs(&alone);
    assert_eq!(rows, pairs);
    let (lake, proxy) = slow_uploads();
    let args = ingest(&source, "2017-01-01", "2017-03-31");
    let (a, b) = together_via(&lake, Some(&proxy), &args, &args);
    assert_ok_in_fxpipes_words(&a, "the first ingest");
    assert_ok_in_fxpipes_words(&b, "the second ingest");
    // Both raced for the table's first version: the test proves something.
    assert!(first_commits(&proxy, "api_response/response") >= 2);
    assert_eq!(rates_and_pairs(&lake), (rows, pairs));
}

#[test]
fn two_ingests_of_overlapping_days_both_succeed_and_store_each_day_once() {
    let files = tempfile::tempdir().unwrap();
    let source = rate_files(files.path());
    let alone = Lake::new();
    alone.run(&ingest(&source, "2017-01-01", "2017-03-31"));
    let expected = rates_and_pairs(&alone);
    for _ in 0..2 {
        let lake = Lake::new();
        lake.run(&ingest(&source, "2017-01-01", "2017-01-10"));
        let (a, b) = together(
            &lake,
            &ingest(&source, "2017-01-01", "2017-03-31"),
            &ingest(&source, "2017-01-05", "2017-03-31"),
        );
        assert_ok_in_fxpipes_words(&a, "the first ingest");
        assert_ok_in_fxpipes_words(&b, "the second ingest");
        assert_eq!(rates_and_pairs(&lake), expected);
    }
}

#[test]
fn two_first_normalizes_write_each_line_once() {
    let (lake, proxy) = slow_uploads();
    proxy.clear();
    load_golden(&lake);
    let loaded = lake.count("transactions");
    // Listings of the processed log answer 2 s late, with what moto held when asked: both
    // runs find no table when they come to commit, so both try to write its version 0.
    proxy.set(Rule::always(
        Fault::Slow(Duration::from_secs(2)),
        "GET",
        "banktxn%2Fprocessed%2F_delta_log",
    ));
    let (a, b) = together_via(&lake, Some(&proxy), &["normalize"], &["normalize"]);
    assert_ok_in_fxpipes_words(&a, "the first normalize");
    assert_ok_in_fxpipes_words(&b, "the second normalize");
    assert!(first_commits(&proxy, "banktxn/processed") >= 2);
    let rows = lake.query(
        "SELECT count(*), count(DISTINCT concat(source_file, CAST(source_line AS VARCHAR))) FROM processed",
    );
    assert_eq!(rows[0], [loaded.to_string(), loaded.to_string()]);
}

#[test]
fn two_normalizes_in_different_bases_at_once_leave_one_base_per_table() {
    let lake = Lake::new();
    load_golden(&lake);
    lake.run(&["normalize"]);
    let loaded = lake.count("transactions");
    for _ in 0..3 {
        // A whole-table rewrite in EUR and a month rewrite in SGD, at once. Whichever commits
        // first, the table ends in one base: the month rewrite either lands before the EUR
        // rewrite replaces everything, or sees EUR recorded and refuses.
        let (eur, sgd) = together(
            &lake,
            &["--base-currency", "EUR", "normalize"],
            &["normalize", "--from", "2017-06", "--to", "2017-06"],
        );
        assert_ok_in_fxpipes_words(&eur, "the EUR normalize");
        let bases = lake.query("SELECT DISTINCT base_currency FROM processed");
        assert_eq!(bases, [["EUR"]], "{}", String::from_utf8_lossy(&sgd.stderr));
        if !sgd.status.success() {
            let stderr = String::from_utf8_lossy(&sgd.stderr);
            // Refused before it started (the rows said EUR) or at its commit (the version it
            // would commit on records EUR).
            assert!(
                stderr.contains("records fxpipe.baseCurrency = EUR")
                    || stderr.contains("the processed table is in EUR, not SGD"),
                "{stderr}"
            );
        }
        assert_eq!(lake.count("processed"), loaded);
        // Back to SGD for the next round.
        lake.run(&["normalize"]);
        assert_eq!(
            lake.query("SELECT DISTINCT base_currency FROM processed"),
            [["SGD"]]
        );
    }
}

#[test]
fn vacuum_refuses_a_retention_shorter_than_the_longest_job_without_force() {
    let lake = Lake::new();
    load_golden(&lake);
    lake.run(&["normalize"]);
    // A second normalize leaves the first one's files for vacuum.
    lake.run(&["normalize"]);
    let files = || {
        lake.list("banktxn/processed")
            .iter()
            .filter(|f| f.ends_with(".parquet"))
            .count()
    };
    let before = files();
    let refused = lake.try_run(&["vacuum", "--retention-hours", "0"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("could delete the files of a job running now")
            && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(files(), before, "a refused vacuum deleted files");
    // The dry run still lists them; --force deletes them.
    let dry = lake.run(&["vacuum", "--retention-hours", "0", "--dry-run"]);
    assert!(dry.contains("processed: would delete"), "{dry}");
    lake.run(&["vacuum", "--retention-hours", "0", "--force"]);
    assert!(files() < before);
    assert_eq!(lake.count("processed"), lake.count("transactions"));
}

#[test]
fn a_commit_that_keeps_losing_says_so_in_fxpipes_words() {
    let files = tempfile::tempdir().unwrap();
    let source = rate_files(files.path());
    let lake = Lake::s3();
    lake.run(&ingest(&source, "2017-01-01", "2017-01-10"));
    let rates = lake.count("rates");
    // Every attempt to write the next log version finds it taken (412), as when other writers
    // keep committing first.
    let proxy = Proxy::start(lake.moto().port);
    proxy.set(Rule::always(
        Fault::Taken412,
        "PUT",
        "api_response/response/_delta_log/",
    ));
    let mut command = lake.command(&ingest(&source, "2017-01-11", "2017-01-20"));
    command.env("AWS_ENDPOINT_URL", proxy.endpoint());
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("other writers kept committing to it first")
            && stderr.contains("the newest is version 0 (WRITE by `fxpipe ingest")
            && stderr.contains("attempts"),
        "{stderr}"
    );
    assert_no_delta_rs_words(&stderr, "the losing ingest");
    // It tried more than once, and nothing of it landed.
    assert!(proxy.faulted(Some(Fault::Taken412)).len() >= 2);
    assert_eq!(lake.count("rates"), rates);
}
