//! S3 faults: fxpipe against moto through a fault-injecting proxy (tests/common/proxy.rs).
//!
//! Each test asserts that its fault actually fired (a fault test whose fault never happened
//! proves nothing), then the numbers that matter: row counts, sums, table versions.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::moto::Moto;
use common::proxy::{Fault, Proxy, Rule};
use common::{golden_dir, ingest_golden_rates, Lake};

/// One plain HTTP/1.1 request; `None` when the connection closes without an answer. moto
/// checks no signature but refuses anonymous reads of objects, so the request names the test
/// user.
fn http(port: u16, method: &str, path: &str, body: &[u8]) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential={}/20260101/{}/s3/aws4_request, SignedHeaders=host, Signature=0\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        common::moto::ACCESS_KEY,
        common::moto::REGION,
        body.len()
    );
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body).ok()?;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let split = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((
        status,
        String::from_utf8_lossy(&response[split + 4..]).to_string(),
    ))
}

/// The object the proxy test writes, read from moto directly.
fn object(moto: &Moto) -> Vec<u8> {
    let (status, body) = http(moto.port, "GET", "/proxy-test/a.txt", &[]).expect("moto answers");
    assert_eq!(status, 200, "{body}");
    body.into_bytes()
}

#[test]
fn the_proxy_forwards_and_injects_each_fault() {
    let moto = Moto::start();
    moto.create_bucket("proxy-test");
    let proxy = Proxy::start(moto.port);

    // Untouched: a PUT and a GET through the proxy reach moto.
    let put = http(proxy.port, "PUT", "/proxy-test/a.txt", b"first").expect("an answer");
    assert_eq!(put.0, 200, "{}", put.1);
    let get = http(proxy.port, "GET", "/proxy-test/a.txt", &[]).expect("an answer");
    assert_eq!(get, (200, "first".to_string()));
    assert_eq!(object(&moto), b"first");

    // 503 SlowDown twice on PUTs, then through; GETs are not matched.
    proxy.set(Rule::new(Fault::SlowDown503, "PUT", "/proxy-test/", 2));
    for _ in 0..2 {
        let (status, body) =
            http(proxy.port, "PUT", "/proxy-test/a.txt", b"second").expect("an answer");
        assert_eq!(status, 503);
        assert!(body.contains("<Code>SlowDown</Code>"), "{body}");
    }
    assert_eq!(object(&moto), b"first", "a 503 must not reach moto");
    assert_eq!(
        http(proxy.port, "GET", "/proxy-test/a.txt", &[]).map(|r| r.0),
        Some(200)
    );
    assert_eq!(
        http(proxy.port, "PUT", "/proxy-test/a.txt", b"second").map(|r| r.0),
        Some(200)
    );
    assert_eq!(object(&moto), b"second");
    assert_eq!(proxy.faulted(Some(Fault::SlowDown503)).len(), 2);

    // Dropped before forwarding: no answer, no effect.
    proxy.set(Rule::new(Fault::DropBefore, "PUT", "a.txt", 1));
    assert_eq!(http(proxy.port, "PUT", "/proxy-test/a.txt", b"third"), None);
    assert_eq!(object(&moto), b"second");

    // The lost answer: no answer, but the request took effect.
    proxy.set(Rule::new(Fault::LostAnswer, "PUT", "a.txt", 1));
    assert_eq!(
        http(proxy.port, "PUT", "/proxy-test/a.txt", b"fourth"),
        None
    );
    assert_eq!(object(&moto), b"fourth");
    let lost = proxy.faulted(Some(Fault::LostAnswer));
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].upstream_status, Some(200));

    // A slow answer arrives, late.
    proxy.set(Rule::always(
        Fault::Slow(Duration::from_millis(700)),
        "GET",
        "",
    ));
    let started = Instant::now();
    assert_eq!(
        http(proxy.port, "GET", "/proxy-test/a.txt", &[]),
        Some((200, "fourth".to_string()))
    );
    assert!(started.elapsed() >= Duration::from_millis(700));

    proxy.clear();
    assert_eq!(
        http(proxy.port, "GET", "/proxy-test/a.txt", &[]).map(|r| r.0),
        Some(200)
    );
    assert_eq!(proxy.faulted(None).len(), 5);
    assert_eq!(proxy.requests("PUT", "a.txt").len(), 6);
}

// ---------------------------------------------------------------------------------------------
// fxpipe through the proxy.

/// An S3 lake and a proxy in front of its moto server.
fn lake_behind_proxy() -> (Lake, Proxy) {
    let lake = Lake::s3();
    let proxy = Proxy::start(lake.moto().port);
    (lake, proxy)
}

/// `fxpipe --lake <lake> ARGS` with its S3 requests going through the proxy, plus settings.
fn through(lake: &Lake, proxy: &Proxy, args: &[&str], settings: &[(&str, &str)]) -> Command {
    let mut command = lake.command(args);
    command.env("AWS_ENDPOINT_URL", proxy.endpoint());
    command.envs(settings.iter().copied());
    command
}

fn run_through(lake: &Lake, proxy: &Proxy, args: &[&str], settings: &[(&str, &str)]) -> Output {
    through(lake, proxy, args, settings)
        .output()
        .expect("run fxpipe")
}

/// Like [`run_through`], and the run must succeed.
fn succeeds(lake: &Lake, proxy: &Proxy, args: &[&str], settings: &[(&str, &str)]) -> String {
    let output = run_through(lake, proxy, args, settings);
    assert!(
        output.status.success(),
        "fxpipe {args:?} failed:\nstdout:\n{}\nstderr:\n{}\nrequests:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        requests(proxy)
    );
    String::from_utf8_lossy(&output.stdout).to_string()
}

/// The requests the proxy saw, one a line, for failure messages.
fn requests(proxy: &Proxy) -> String {
    proxy
        .seen()
        .iter()
        .map(|s| {
            format!(
                "{} {} {:?} {:?}",
                s.method, s.path, s.fault, s.upstream_status
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn golden_csv() -> String {
    golden_dir().join("transactions.csv").display().to_string()
}

/// The commit file of `version` in the log of the table at `table` (a lake path).
fn commit_key(table: &str, version: u64) -> String {
    format!("lake/{table}/_delta_log/{version:020}.json")
}

/// Row count and exact sums of the amounts of `transactions`, through `fxpipe sql`.
fn transaction_totals(lake: &Lake) -> Vec<String> {
    plain_numbers(lake.query(
        "SELECT count(*), CAST(sum(withdrawal_amt) AS VARCHAR), CAST(sum(deposit_amt) AS VARCHAR) FROM transactions",
    ))
}

/// Per month: row count and exact sums of the converted amounts of `processed`.
fn processed_totals(lake: &Lake) -> Vec<String> {
    plain_numbers(lake.query(
        "SELECT year, month, count(*), CAST(sum(withdrawal_sgd_amt) AS VARCHAR), CAST(sum(deposit_sgd_amt) AS VARCHAR) FROM processed GROUP BY year, month ORDER BY year, month",
    ))
}

/// Query rows flattened to `a b c` lines, decimals without trailing zeros.
fn plain_numbers(rows: Vec<Vec<String>>) -> Vec<String> {
    rows.into_iter()
        .map(|row| row.iter().map(|v| plain(v)).collect::<Vec<_>>().join(" "))
        .collect()
}

fn plain(value: &str) -> String {
    if value.is_empty() {
        return "0".to_string();
    }
    if value.contains('.') {
        value
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    } else {
        value.to_string()
    }
}

/// Row count and exact sums of `columns`, read by the deltalake Python package straight from
/// moto (not through fxpipe, not through the proxy).
fn independent_totals(lake: &Lake, table: &str, columns: &[&str]) -> String {
    let url = format!("{}/{table}", lake.location());
    let mut args = vec![url.as_str()];
    args.extend_from_slice(columns);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/delta_totals.py");
    let output = Command::new("python3")
        .arg(script)
        .args(&args)
        .envs(lake.moto().env())
        .output()
        .expect("python3 runs (bash tests/run.sh installs its packages)");
    assert!(
        output.status.success(),
        "delta_totals.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// A lake with the golden rates, transactions and processed rows, set up without the proxy.
fn golden_s3_lake() -> Lake {
    let lake = Lake::s3();
    ingest_golden_rates(&lake, "2017-07-02");
    lake.run(&["load", &golden_csv()]);
    lake.run(&["normalize"]);
    lake
}

/// What the golden lake holds: transactions (rows, withdrawals, deposits) and processed per
/// month, as the golden tests know them.
const GOLDEN_TRANSACTIONS: &str = "9 1010450.49 1001237.212";
const GOLDEN_PROCESSED: [&str; 2] = ["2017 6 6 130.24 46614.31", "2017 7 3 1360000 21250"];

#[test]
fn slow_down_503s_on_data_and_commit_puts_are_retried() {
    let (lake, proxy) = lake_behind_proxy();
    ingest_golden_rates(&lake, "2017-07-02");

    // Twice on data files, twice on commits: every write of this load meets a 503 first.
    proxy.add(Rule::new(Fault::SlowDown503, "PUT", ".parquet", 2));
    proxy.add(Rule::new(Fault::SlowDown503, "PUT", "/_delta_log/0", 2));
    let out = succeeds(&lake, &proxy, &["load", &golden_csv()], &[]);
    assert!(out.contains("9 loaded, 9 rejected"), "{out}");
    let faulted = proxy.faulted(Some(Fault::SlowDown503));
    assert_eq!(faulted.len(), 4, "{}", requests(&proxy));
    for fault in &faulted {
        let retried = proxy
            .requests("PUT", &fault.path)
            .iter()
            .any(|s| s.upstream_status == Some(200));
        assert!(
            retried,
            "{} was never retried:\n{}",
            fault.path,
            requests(&proxy)
        );
    }
    // One version per commit, no more: the empty table, then the file's rows.
    assert_eq!(lake.commits("banktxn/parquet"), 2);
    assert_eq!(transaction_totals(&lake), [GOLDEN_TRANSACTIONS]);
    assert_eq!(lake.count("rejects"), 9);
    assert_eq!(lake.count("loads"), 1);

    // And normalize, whose replaceWhere commit goes through delta-rs's write builder.
    proxy.clear();
    proxy.reset_seen();
    proxy.add(Rule::new(
        Fault::SlowDown503,
        "PUT",
        "banktxn/processed/year",
        2,
    ));
    proxy.add(Rule::new(
        Fault::SlowDown503,
        "PUT",
        "banktxn/processed/_delta_log/0",
        2,
    ));
    succeeds(&lake, &proxy, &["normalize"], &[]);
    assert_eq!(proxy.faulted(None).len(), 4, "{}", requests(&proxy));
    assert_eq!(processed_totals(&lake), GOLDEN_PROCESSED);
    assert_eq!(lake.commits("banktxn/processed"), 1);
}

#[test]
fn dropped_connections_are_retried() {
    let (lake, proxy) = lake_behind_proxy();
    ingest_golden_rates(&lake, "2017-07-02");
    // A read of the log, a data file upload and the commit itself each lose their connection
    // once, before moto sees them.
    proxy.add(Rule::new(Fault::DropBefore, "GET", "/_delta_log/0", 1));
    proxy.add(Rule::new(
        Fault::DropBefore,
        "PUT",
        "banktxn/parquet/part-",
        1,
    ));
    proxy.add(Rule::new(
        Fault::DropBefore,
        "PUT",
        &commit_key("banktxn/parquet", 1),
        1,
    ));
    let out = succeeds(&lake, &proxy, &["load", &golden_csv()], &[]);
    assert!(out.contains("9 loaded, 9 rejected"), "{out}");
    assert_eq!(
        proxy.faulted(Some(Fault::DropBefore)).len(),
        3,
        "{}",
        requests(&proxy)
    );
    assert_eq!(lake.commits("banktxn/parquet"), 2);
    assert_eq!(transaction_totals(&lake), [GOLDEN_TRANSACTIONS]);
    assert_eq!(lake.count("loads"), 1);
}

#[test]
fn responses_slower_than_the_timeout_are_retried_or_recognised() {
    let (lake, proxy) = lake_behind_proxy();
    ingest_golden_rates(&lake, "2017-07-02");
    let timeout = [("FXPIPE_S3_TIMEOUT", "1")];
    // A log read answered after 3 s with a 1 s timeout: abandoned and retried (reads are
    // idempotent). The commit's answer, also late: the commit itself landed, and the run must
    // see that it did rather than fail or commit again.
    let slow = Fault::Slow(Duration::from_secs(3));
    proxy.add(Rule::new(slow, "GET", "/_delta_log/0", 1));
    proxy.add(Rule::new(slow, "PUT", &commit_key("banktxn/parquet", 1), 1));
    let started = Instant::now();
    let out = succeeds(&lake, &proxy, &["load", &golden_csv()], &timeout);
    assert!(out.contains("9 loaded, 9 rejected"), "{out}");
    assert_eq!(proxy.faulted(Some(slow)).len(), 2, "{}", requests(&proxy));
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(lake.commits("banktxn/parquet"), 2);
    assert_eq!(transaction_totals(&lake), [GOLDEN_TRANSACTIONS]);
    assert_eq!(lake.count("loads"), 1);
}

#[test]
fn a_commit_that_keeps_failing_ends_the_job_and_leaves_every_table_as_it_was() {
    let lake = golden_s3_lake();
    let proxy = Proxy::start(lake.moto().port);
    let before_transactions = transaction_totals(&lake);
    let before_processed = processed_totals(&lake);
    let independent_before =
        independent_totals(&lake, "banktxn/parquet", &["withdrawal_amt", "deposit_amt"]);
    assert_eq!(independent_before, GOLDEN_TRANSACTIONS);

    // Every commit PUT answers 503; a few retries keep the test short.
    let more = lake.file("more.csv");
    lake.run(&[
        "gen",
        "transactions",
        "--rows",
        "40",
        "--out",
        more.to_str().unwrap(),
    ]);
    proxy.set(Rule::always(Fault::SlowDown503, "PUT", "/_delta_log/"));
    let settings = [("FXPIPE_S3_RETRIES", "2")];
    let failed = run_through(&lake, &proxy, &["load", more.to_str().unwrap()], &settings);
    assert!(!failed.status.success());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    // The error says which table, which request on which key, and why.
    for expected in [
        "transactions",
        "PUT",
        "banktxn/parquet/_delta_log/",
        "503",
        "SlowDown",
    ] {
        assert!(stderr.contains(expected), "no {expected:?} in:\n{stderr}");
    }
    // The first attempt and two retries, on one commit: then the job stopped.
    let faulted = proxy.faulted(Some(Fault::SlowDown503));
    assert_eq!(faulted.len(), 3, "{}", requests(&proxy));
    assert!(faulted.iter().all(|s| s.path == faulted[0].path));

    let normalize = run_through(&lake, &proxy, &["normalize"], &settings);
    assert!(!normalize.status.success());
    let stderr = String::from_utf8_lossy(&normalize.stderr);
    assert!(stderr.contains("banktxn/processed/_delta_log/"), "{stderr}");

    // Nothing changed, for fxpipe and for an independent reader.
    assert_eq!(transaction_totals(&lake), before_transactions);
    assert_eq!(processed_totals(&lake), before_processed);
    assert_eq!(lake.count("loads"), 1);
    assert_eq!(lake.commits("banktxn/parquet"), 2);
    assert_eq!(lake.commits("banktxn/processed"), 1);
    assert_eq!(
        independent_totals(&lake, "banktxn/parquet", &["withdrawal_amt", "deposit_amt"]),
        independent_before
    );

    // Once S3 answers again, the same command works.
    proxy.clear();
    succeeds(&lake, &proxy, &["load", more.to_str().unwrap()], &[]);
    assert_eq!(lake.count("transactions"), 9 + 40);
}

#[test]
fn a_commit_whose_answer_was_lost_is_recognised_and_not_made_twice() {
    let (lake, proxy) = lake_behind_proxy();
    ingest_golden_rates(&lake, "2017-07-02");
    // moto stores the transactions commit (version 1), then the connection drops: fxpipe
    // cannot know from S3's answer that its commit landed. (Today the HTTP client resends the
    // PUT, moto answers 412, and delta-rs sees its version taken; without the resend the PUT
    // fails. Either way only the run's application transaction in the log tells.)
    let key = commit_key("banktxn/parquet", 1);
    proxy.set(Rule::new(Fault::LostAnswer, "PUT", &key, 1));
    let out = succeeds(&lake, &proxy, &["load", &golden_csv()], &[]);
    assert!(out.contains("9 loaded, 9 rejected"), "{out}");
    let lost = proxy.faulted(Some(Fault::LostAnswer));
    assert_eq!(lost.len(), 1, "{}", requests(&proxy));
    assert_eq!(
        lost[0].upstream_status,
        Some(200),
        "the commit reached moto"
    );
    // Exactly one new version, no duplicated rows.
    assert_eq!(lake.commits("banktxn/parquet"), 2);
    assert_eq!(transaction_totals(&lake), [GOLDEN_TRANSACTIONS]);
    assert_eq!(lake.count("rejects"), 9);
    assert_eq!(lake.count("loads"), 1);
    assert_eq!(
        independent_totals(&lake, "banktxn/parquet", &["withdrawal_amt", "deposit_amt"]),
        GOLDEN_TRANSACTIONS
    );

    // The same for normalize's replaceWhere commit over an existing version.
    succeeds(&lake, &proxy, &["normalize"], &[]);
    proxy.set(Rule::new(
        Fault::LostAnswer,
        "PUT",
        &commit_key("banktxn/processed", 1),
        1,
    ));
    succeeds(&lake, &proxy, &["normalize"], &[]);
    assert_eq!(proxy.faulted(Some(Fault::LostAnswer)).len(), 2);
    assert_eq!(lake.commits("banktxn/processed"), 2);
    assert_eq!(processed_totals(&lake), GOLDEN_PROCESSED);
}

// ---------------------------------------------------------------------------------------------
// Killed mid-write, then re-run.

/// Waits (at most a minute) until the proxy has seen a request matching `wanted`.
fn wait_for(proxy: &Proxy, what: &str, wanted: impl Fn(&common::proxy::Seen) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !proxy.seen().iter().any(&wanted) {
        assert!(
            Instant::now() < deadline,
            "no {what} within a minute:\n{}",
            requests(proxy)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_load_killed_while_it_uploads_then_rerun_has_no_duplicate_rows() {
    let (lake, proxy) = lake_behind_proxy();
    let big = lake.file("big.csv");
    let big = big.to_str().unwrap();
    lake.run(&["gen", "transactions", "--rows", "300000", "--out", big]);
    // What one uninterrupted load gives.
    let clean = Lake::new();
    clean.run(&["load", big]);
    let expected = transaction_totals(&clean);
    assert_eq!(expected[0].split(' ').next(), Some("300000"));

    // The data upload's answers are held back, so the kill surely comes while it runs.
    proxy.set(Rule::always(
        Fault::Slow(Duration::from_secs(20)),
        "*",
        "/banktxn/parquet/part-",
    ));
    let mut child = through(&lake, &proxy, &["load", big], &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run fxpipe");
    // SIGKILL once the transactions' data is on its way to S3, before it is committed.
    wait_for(&proxy, "data upload", |s| {
        s.path.contains("/banktxn/parquet/part-")
    });
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    assert!(
        proxy
            .requests("PUT", &commit_key("banktxn/parquet", 1))
            .is_empty(),
        "killed too late, after the commit:\n{}",
        requests(&proxy)
    );

    let out = lake.run(&["load", big]);
    assert!(out.contains("300000 loaded"), "{out}");
    assert_eq!(transaction_totals(&lake), expected);
    assert_eq!(lake.count("loads"), 1);
    assert_eq!(lake.count("rejects"), 0);
}

#[test]
fn a_load_killed_between_its_commits_then_rerun_has_no_duplicate_rows() {
    let (lake, proxy) = lake_behind_proxy();
    // The transactions commit lands, its answer is held back, and the process dies then:
    // the rows are in the table, the loads row that marks the file as loaded is not.
    proxy.set(Rule::new(
        Fault::Slow(Duration::from_secs(60)),
        "PUT",
        &commit_key("banktxn/parquet", 1),
        1,
    ));
    let mut child = through(&lake, &proxy, &["load", &golden_csv()], &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run fxpipe");
    wait_for(&proxy, "transactions commit", |s| {
        s.fault.is_some() && s.upstream_status == Some(200)
    });
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    assert_eq!(lake.count("transactions"), 9, "the commit landed");

    let out = lake.run(&["load", &golden_csv()]);
    assert!(out.contains("9 loaded, 9 rejected"), "{out}");
    assert_eq!(transaction_totals(&lake), [GOLDEN_TRANSACTIONS]);
    assert_eq!(lake.count("rejects"), 9);
    assert_eq!(lake.count("loads"), 1);
    assert_eq!(
        independent_totals(&lake, "banktxn/parquet", &["withdrawal_amt", "deposit_amt"]),
        GOLDEN_TRANSACTIONS
    );
}

// ---------------------------------------------------------------------------------------------
// Concurrent writers on S3.

/// Whether both runs had uploaded their data files before either committed: the writes
/// overlapped, each made from the same snapshot.
fn uploads_overlapped(proxy: &Proxy, table: &str) -> bool {
    let seen = proxy.seen();
    let upload = |s: &common::proxy::Seen| s.method == "PUT" && s.fault.is_some();
    let Some(first_upload) = seen.iter().position(upload) else {
        return false;
    };
    // The first commit after an upload (a new table's empty version 0 may come before).
    let first_commit = seen[first_upload..]
        .iter()
        .position(|s| s.method == "PUT" && s.path.contains(&format!("/{table}/_delta_log/")))
        .map_or(seen.len(), |i| first_upload + i);
    seen[..first_commit].iter().filter(|s| upload(s)).count() >= 2
}

/// Starts `fxpipe ARGS` through the proxy without waiting.
fn start(lake: &Lake, proxy: &Proxy, args: &[&str]) -> std::process::Child {
    through(lake, proxy, args, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run fxpipe")
}

fn finish(child: std::process::Child) -> Output {
    child.wait_with_output().expect("fxpipe ends")
}

fn ok(output: &Output) -> bool {
    output.status.success()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

#[test]
fn two_normalizes_of_different_months_at_once_both_commit() {
    let lake = golden_s3_lake();
    let proxy = Proxy::start(lake.moto().port);
    // Data uploads answered after 2 s: both runs read version 0 before either commits.
    proxy.set(Rule::always(
        Fault::Slow(Duration::from_secs(2)),
        "PUT",
        "/banktxn/processed/year",
    ));
    let june = start(
        &lake,
        &proxy,
        &["normalize", "--from", "2017-06", "--to", "2017-06"],
    );
    let july = start(
        &lake,
        &proxy,
        &["normalize", "--from", "2017-07", "--to", "2017-07"],
    );
    let (june, july) = (finish(june), finish(july));
    assert!(ok(&june), "{}", stderr(&june));
    assert!(ok(&july), "{}", stderr(&july));
    // They overlapped, and both committed at once: Delta's conflict check saw that the
    // months differ, so neither had to commit again on top of the other.
    assert!(
        uploads_overlapped(&proxy, "banktxn/processed"),
        "{}",
        requests(&proxy)
    );
    for run in [&june, &july] {
        assert!(
            !stderr(run).contains("committed to the table first"),
            "a run on other months conflicted with the other: {}",
            stderr(run)
        );
    }
    assert_eq!(lake.commits("banktxn/processed"), 3);
    // Every row of both months, once.
    assert_eq!(processed_totals(&lake), GOLDEN_PROCESSED);
    assert_eq!(
        independent_totals(
            &lake,
            "banktxn/processed",
            &["withdrawal_sgd_amt", "deposit_sgd_amt"]
        ),
        "9 1360130.24 67864.31"
    );
}

#[test]
fn two_normalizes_of_the_same_months_at_once_never_duplicate_rows() {
    let lake = golden_s3_lake();
    let proxy = Proxy::start(lake.moto().port);
    proxy.set(Rule::always(
        Fault::Slow(Duration::from_secs(2)),
        "PUT",
        "/banktxn/processed/year",
    ));
    let args = ["normalize", "--from", "2017-06", "--to", "2017-07"];
    // The race is the point: on a loaded machine one run may start late enough to plan on top
    // of the other's commit (correct, but nothing raced). Up to three tries for a real race.
    let mut tries = Vec::new();
    for _ in 0..3 {
        let first = start(&lake, &proxy, &args);
        let second = start(&lake, &proxy, &args);
        let (first, second) = (finish(first), finish(second));
        assert!(
            uploads_overlapped(&proxy, "banktxn/processed"),
            "{}",
            requests(&proxy)
        );
        // Raced or not, never a duplicated row.
        assert!(ok(&first) || ok(&second));
        assert_eq!(processed_totals(&lake), GOLDEN_PROCESSED);
        // One committed; the other lost the race: it committed its files again on top of the
        // first (replacing the same months) or failed saying why.
        let loser = [&first, &second]
            .into_iter()
            .find(|o| stderr(o).contains("committed to the table first") || !ok(o));
        let Some(loser) = loser else {
            tries.push(format!("{}\n---\n{}", stderr(&first), stderr(&second)));
            continue;
        };
        if !ok(loser) {
            assert!(
                stderr(loser).contains("another writer"),
                "{}",
                stderr(loser)
            );
        }
        assert_eq!(
            independent_totals(
                &lake,
                "banktxn/processed",
                &["withdrawal_sgd_amt", "deposit_sgd_amt"]
            ),
            "9 1360130.24 67864.31"
        );
        return;
    }
    panic!(
        "no run saw the other's commit in 3 tries:\n{}",
        tries.join("\n===")
    );
}

#[test]
fn two_loads_of_different_files_at_once_both_land() {
    let (lake, proxy) = lake_behind_proxy();
    let (a, b) = (lake.file("a.csv"), lake.file("b.csv"));
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    lake.run(&[
        "gen",
        "transactions",
        "--rows",
        "300",
        "--seed",
        "1",
        "--out",
        a,
    ]);
    lake.run(&[
        "gen",
        "transactions",
        "--rows",
        "200",
        "--seed",
        "2",
        "--out",
        b,
    ]);
    let per_file = "SELECT source_file, count(*), CAST(sum(withdrawal_amt) AS VARCHAR), \
                    CAST(sum(deposit_amt) AS VARCHAR) FROM transactions GROUP BY source_file \
                    ORDER BY source_file";
    let clean = Lake::new();
    clean.run(&["load", a]);
    clean.run(&["load", b]);
    let expected = plain_numbers(clean.query(per_file));
    assert_eq!(expected.len(), 2);

    // On a new lake: both also race to create the tables. Uploads are slowed so that both
    // are written before either commits.
    proxy.set(Rule::always(
        Fault::Slow(Duration::from_secs(2)),
        "PUT",
        "/banktxn/parquet/part-",
    ));
    let first = start(&lake, &proxy, &["load", a]);
    let second = start(&lake, &proxy, &["load", b]);
    let (first, second) = (finish(first), finish(second));
    assert!(ok(&first), "{}", stderr(&first));
    assert!(ok(&second), "{}", stderr(&second));
    assert!(
        uploads_overlapped(&proxy, "banktxn/parquet"),
        "{}",
        requests(&proxy)
    );
    assert_eq!(plain_numbers(lake.query(per_file)), expected);
    assert_eq!(lake.count("transactions"), 500);
    assert_eq!(lake.count("loads"), 2);
}

#[test]
fn a_lost_commit_answer_then_an_unreadable_log_is_an_unknown_outcome_that_deletes_nothing() {
    let (lake, proxy) = lake_behind_proxy();
    ingest_golden_rates(&lake, "2017-07-02");
    // moto stores the transactions commit, its answer is lost, and from then on every read of
    // the table's log fails: fxpipe cannot learn whether its commit landed.
    proxy.add(Rule::new(
        Fault::LostAnswer,
        "PUT",
        &commit_key("banktxn/parquet", 1),
        1,
    ));
    proxy.add(Rule::always(Fault::DropBefore, "GET", "_delta_log").after_earlier());
    let output = run_through(
        &lake,
        &proxy,
        &["load", &golden_csv()],
        &[("FXPIPE_S3_RETRIES", "1")],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(75),
        "{stderr}\nrequests:\n{}",
        requests(&proxy)
    );
    assert!(
        stderr.contains("could not be read to learn whether it landed"),
        "{stderr}"
    );
    assert!(!proxy.faulted(Some(Fault::DropBefore)).is_empty());
    // The commit did land, and its data files are all there (an independent reader reads
    // every row of the version).
    proxy.clear();
    assert_eq!(lake.commits("banktxn/parquet"), 2);
    assert_eq!(
        independent_totals(&lake, "banktxn/parquet", &["withdrawal_amt", "deposit_amt"]),
        GOLDEN_TRANSACTIONS
    );
    // A re-run neither duplicates nor loses a row.
    succeeds(&lake, &proxy, &["load", &golden_csv()], &[]);
    assert_eq!(transaction_totals(&lake), [GOLDEN_TRANSACTIONS]);
    assert_eq!(lake.count("rejects"), 9);
    assert_eq!(lake.count("loads"), 1);
}
