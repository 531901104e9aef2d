//! `fxpipe ingest` against a real HTTP server on 127.0.0.1 that speaks the Open Exchange
//! Rates API: backfills, retries, refusals, validation, kills, the sidecar, and the key.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::oxr::{OxrServer, Reply, KEY};
use common::Lake;

/// `fxpipe --lake L ingest --oxr-url URL ARGS` with the key in the environment and every log.
fn ingest(lake: &Lake, server: &OxrServer, args: &[&str]) -> Command {
    let url = server.url();
    let mut full = vec!["ingest", "--oxr-url", url.as_str()];
    full.extend_from_slice(args);
    let mut command = lake.command(&full);
    command
        .env("OXR_APP_ID", KEY)
        .env("RUST_LOG", "trace")
        .env("HOME", lake.dir.path())
        .current_dir(lake.dir.path());
    command
}

fn run(lake: &Lake, server: &OxrServer, args: &[&str]) -> Output {
    let output = ingest(lake, server, args)
        .output()
        .expect("run fxpipe ingest");
    // Whatever happened, the key is in no output.
    for stream in [&output.stdout, &output.stderr] {
        assert!(
            !String::from_utf8_lossy(stream).contains(KEY),
            "the key appears in fxpipe's output"
        );
    }
    output
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

/// Every file of the lake (tables, logs, reports) is free of the key.
fn assert_key_nowhere_in(lake: &Lake) {
    for name in lake.list("") {
        let bytes = lake.read(&name);
        assert!(
            !String::from_utf8_lossy(&bytes).contains(KEY),
            "the key is in the lake's {name}"
        );
    }
}

fn days(from: &str, n: usize) -> Vec<String> {
    let first = chrono::NaiveDate::parse_from_str(from, "%Y-%m-%d").unwrap();
    first.iter_days().take(n).map(|d| d.to_string()).collect()
}

fn error(status: u16, message: &'static str) -> Reply {
    Reply::Error {
        status,
        message,
        retry_after: None,
    }
}

#[test]
fn a_backfill_stores_every_answered_day_and_a_rerun_fetches_only_the_failed_ones() {
    let lake = Lake::new();
    let server = OxrServer::start();
    let month = days("2024-03-01", 30);
    server.plan(&month[9], vec![error(404, "not_found")]);
    server.plan(&month[19], vec![error(400, "invalid_date")]);
    let output = run(
        &lake,
        &server,
        &[
            "--from",
            "2024-03-01",
            "--to",
            "2024-03-30",
            "--batch-days",
            "7",
        ],
    );
    let err = stderr(&output);
    assert!(
        !output.status.success(),
        "two failed dates must fail the run"
    );
    assert!(
        err.contains("2 of 30 dates failed (2024-03-10, 2024-03-20)"),
        "{err}"
    );
    assert_eq!(server.seen().len(), 30, "400 and 404 are not retried");
    // The key went in the header, never in a URL.
    assert!(server.seen().iter().all(|s| s.authorization.as_deref()
        == Some(&format!("Token {KEY}"))
        && !s.path.contains(KEY)));
    assert_eq!(
        lake.scalar("SELECT count(DISTINCT run_date) FROM rates"),
        "28"
    );
    assert_eq!(
        lake.scalar("SELECT count(*) FROM rates"),
        (28 * 5).to_string()
    );
    let errors = lake.query(
        "SELECT CAST(run_date AS VARCHAR) AS day, status, message, source FROM rates_errors ORDER BY run_date",
    );
    let url = server.url();
    assert_eq!(
        errors,
        vec![
            vec![
                "2024-03-10".to_string(),
                "404".into(),
                "not_found".into(),
                format!("{url}/historical/2024-03-10.json")
            ],
            vec![
                "2024-03-20".to_string(),
                "400".into(),
                "invalid_date".into(),
                format!("{url}/historical/2024-03-20.json")
            ],
        ]
    );
    // Exact rates, and the base-currency ones: EUR per SGD = 0.9 / 1.35.
    assert_eq!(
        lake.scalar("SELECT CAST(rates_base_usd AS VARCHAR) FROM rates WHERE target_currency = 'BTC' AND run_date = DATE '2024-03-01'"),
        "0.000016386633000000"
    );
    assert_eq!(
        lake.scalar("SELECT CAST(rates_base_sgd AS VARCHAR) FROM rates WHERE target_currency = 'EUR' AND run_date = DATE '2024-03-01'"),
        "0.666666666666666667"
    );
    assert_eq!(lake.scalar("SELECT DISTINCT source FROM rates"), url);
    // Committed in batches of 7 days: 30 days need 5 commits.
    let report = lake.latest_report("ingest");
    assert_eq!(report["batches"], 5, "{report}");

    // The re-run asks for the two failed days only; now they answer.
    server.forget_requests();
    let output = run(
        &lake,
        &server,
        &["--from", "2024-03-01", "--to", "2024-03-30"],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let asked: Vec<String> = server.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(
        asked.len(),
        2,
        "the re-run fetched more than the failed days: {asked:?}"
    );
    assert_eq!(
        lake.scalar("SELECT count(DISTINCT run_date) FROM rates"),
        "30"
    );
    assert_eq!(
        lake.scalar("SELECT count(*) FROM rates"),
        (30 * 5).to_string()
    );
    assert_eq!(lake.scalar("SELECT count(*) FROM rates_errors"), "0");
    // --force fetches stored days again and replaces them, without duplicates.
    server.forget_requests();
    let output = run(&lake, &server, &["--date", "2024-03-05", "--force"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(server.seen().len(), 1);
    assert_eq!(
        lake.scalar("SELECT count(*) FROM rates"),
        (30 * 5).to_string()
    );
    assert_key_nowhere_in(&lake);
}

#[test]
fn rate_limits_and_server_errors_are_retried_and_client_errors_are_not() {
    let lake = Lake::new();
    let server = OxrServer::start();
    server.plan(
        "2024-03-01",
        vec![Reply::Error {
            status: 429,
            message: "access_restricted",
            retry_after: Some(2),
        }],
    );
    server.plan(
        "2024-03-02",
        vec![error(500, "internal"), error(503, "unavailable")],
    );
    server.plan("2024-03-03", vec![error(403, "not_allowed")]);
    let started = Instant::now();
    let output = run(
        &lake,
        &server,
        &[
            "--from",
            "2024-03-01",
            "--to",
            "2024-03-03",
            "--concurrency",
            "1",
        ],
    );
    let err = stderr(&output);
    assert!(!output.status.success());
    assert!(err.contains("1 of 3 dates failed (2024-03-03)"), "{err}");
    assert_eq!(server.requests_for("2024-03-01"), 2);
    assert_eq!(server.requests_for("2024-03-02"), 3);
    assert_eq!(server.requests_for("2024-03-03"), 1, "403 is final");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "Retry-After: 2 was not honoured"
    );
    let report = lake.latest_report("ingest");
    assert_eq!(report["retries"]["429"], 1, "{report}");
    assert_eq!(report["retries"]["500"], 1, "{report}");
    assert_eq!(report["retries"]["503"], 1, "{report}");
    assert_eq!(
        lake.scalar("SELECT count(DISTINCT run_date) FROM rates"),
        "2"
    );
}

#[test]
fn bad_answers_become_error_rows_never_crashes_or_wrong_days() {
    let lake = Lake::new();
    let server = OxrServer::start();
    let wrong_day = common::oxr::rates_body("2024-03-05");
    server.plan(
        "2024-03-01",
        vec![Reply::Body("{\"rates\": {\"SGD\": 1.3".into())],
    );
    server.plan("2024-03-02", vec![Reply::Body(wrong_day)]);
    server.plan(
        "2024-03-03",
        vec![Reply::Body(
            r#"{"timestamp":1709510399,"base":"USD","rates":{"SGD":1.35,"EUR":0.9,"sgd":1.36}}"#
                .into(),
        )],
    );
    // No SGD: the USD rates are stored, the base-currency ones are unknown, and it is recorded.
    server.plan(
        "2024-03-04",
        vec![Reply::Body(
            r#"{"timestamp":1709596799,"base":"USD","rates":{"EUR":0.9,"INR":83.1}}"#.into(),
        )],
    );
    // Slower than the timeout every time: retried, then an error row.
    let slow = || Reply::Slow(Duration::from_secs(3), Box::new(Reply::Rates));
    server.plan("2024-03-05", vec![slow(), slow()]);
    let output = run(
        &lake,
        &server,
        &[
            "--from",
            "2024-03-01",
            "--to",
            "2024-03-05",
            "--timeout",
            "1",
            "--retries",
            "1",
        ],
    );
    let err = stderr(&output);
    assert!(!output.status.success());
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("4 of 5 dates failed (2024-03-01, 2024-03-02, 2024-03-03, 2024-03-05)"),
        "{err}"
    );
    assert_eq!(server.requests_for("2024-03-05"), 2);
    let errors = lake.query(
        "SELECT CAST(run_date AS VARCHAR) AS day, status, message FROM rates_errors ORDER BY run_date",
    );
    let messages: Vec<(String, String)> = errors
        .iter()
        .map(|r| (r[0].clone(), r[2].clone()))
        .collect();
    assert_eq!(
        messages,
        vec![
            ("2024-03-01".to_string(), "invalid_response".to_string()),
            ("2024-03-02".to_string(), "timestamp_mismatch".to_string()),
            ("2024-03-03".to_string(), "duplicate_currency".to_string()),
            (
                "2024-03-04".to_string(),
                "base_currency_missing".to_string()
            ),
            ("2024-03-05".to_string(), "timeout".to_string()),
        ]
    );
    assert_eq!(
        lake.query("SELECT CAST(run_date AS VARCHAR) AS day, target_currency, rates_base_sgd IS NULL FROM rates ORDER BY target_currency"),
        vec![
            vec!["2024-03-04".to_string(), "EUR".into(), "true".into()],
            vec!["2024-03-04".to_string(), "INR".into(), "true".into()],
        ]
    );
}

#[test]
fn a_missing_or_refused_key_names_the_variable_and_stops_the_run() {
    let lake = Lake::new();
    let server = OxrServer::start();
    let mut command = ingest(&lake, &server, &["--date", "2024-03-01"]);
    command.env_remove("OXR_APP_ID");
    let output = command.output().unwrap();
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("set OXR_APP_ID"),
        "{}",
        stderr(&output)
    );
    assert!(server.seen().is_empty());
    // There is no command-line flag for it.
    let output = run(&lake, &server, &["--date", "2024-03-01", "--app-id", "x"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("--app-id"), "{}", stderr(&output));

    // A rejected key: the run stops at once instead of asking for every other day.
    let mut command = ingest(
        &lake,
        &server,
        &[
            "--from",
            "2024-03-01",
            "--to",
            "2024-03-20",
            "--concurrency",
            "1",
        ],
    );
    command.env("OXR_APP_ID", "not-the-key-0000");
    let output = command.output().unwrap();
    let err = stderr(&output);
    assert!(!output.status.success());
    assert!(err.contains("set OXR_APP_ID to a valid"), "{err}");
    assert!(!err.contains("not-the-key-0000"), "{err}");
    assert!(server.seen().len() <= 2, "{} requests", server.seen().len());

    // The original's variable name and the config file work too.
    server.forget_requests();
    let mut command = ingest(&lake, &server, &["--date", "2024-03-01"]);
    command
        .env_remove("OXR_APP_ID")
        .env("OPENEXCHANGE_APP_ID", KEY);
    assert!(command.output().unwrap().status.success());
    std::fs::write(
        lake.dir.path().join("fxpipe.toml"),
        format!("[oxr]\napp_id = \"{KEY}\"\n"),
    )
    .unwrap();
    let mut command = ingest(&lake, &server, &["--date", "2024-03-02"]);
    command.env_remove("OXR_APP_ID");
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(server.seen().len(), 2);
    // Written with the default umask (readable by others): a warning names the file, never
    // the key; once it is 0600, none.
    let said = stderr(&output);
    assert!(
        said.contains("other users can read it: chmod 600 it") && said.contains("fxpipe.toml"),
        "{said}"
    );
    assert!(!said.contains(KEY), "{said}");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        lake.dir.path().join("fxpipe.toml"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let mut command = ingest(&lake, &server, &["--date", "2024-03-03"]);
    command.env_remove("OXR_APP_ID");
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        !stderr(&output).contains("chmod 600"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_killed_backfill_rerun_ends_complete_without_duplicates() {
    let lake = Lake::new();
    let server = OxrServer::start();
    server.delay_every_answer(Duration::from_millis(150));
    let args = [
        "--from",
        "2024-01-01",
        "--to",
        "2024-02-29",
        "--batch-days",
        "5",
        "--concurrency",
        "2",
    ];
    let mut child = ingest(&lake, &server, &args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once at least one batch is committed.
    let deadline = Instant::now() + Duration::from_secs(60);
    let log = lake.path().join("api_response/response/_delta_log");
    while !log.join("00000000000000000000.json").exists() {
        assert!(Instant::now() < deadline, "no batch was committed");
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before the kill"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let stored = lake.scalar("SELECT count(DISTINCT run_date) FROM rates");
    let stored: usize = stored.parse().unwrap();
    assert!(
        (1..60).contains(&stored),
        "{stored} days stored before the kill"
    );

    server.forget_requests();
    let output = run(&lake, &server, &args);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        server.seen().len(),
        60 - stored,
        "the re-run fetched stored days"
    );
    assert_eq!(
        lake.scalar("SELECT count(DISTINCT run_date) FROM rates"),
        "60"
    );
    assert_eq!(
        lake.scalar("SELECT count(*) FROM rates"),
        (60 * 5).to_string()
    );
}

#[test]
fn the_latest_rates_are_stored_under_their_day() {
    let lake = Lake::new();
    let server = OxrServer::start();
    let output = run(&lake, &server, &["--latest"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let today = chrono::Utc::now().date_naive().to_string();
    assert_eq!(
        lake.scalar("SELECT CAST(max(run_date) AS VARCHAR) FROM rates"),
        today
    );
    assert!(server.seen()[0].path.ends_with("/latest.json"));
}

fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

#[test]
fn the_sidecar_catches_up_serves_health_and_metrics_and_stops_on_sigterm() {
    let lake = Lake::new();
    let server = OxrServer::start();
    let yesterday = chrono::Utc::now().date_naive() - chrono::Days::new(1);
    let failing = (yesterday - chrono::Days::new(1)).to_string();
    server.plan(
        &failing,
        vec![
            Reply::Error {
                status: 502,
                message: "bad_gateway",
                retry_after: None,
            };
            100
        ],
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let mut child = ingest(
        &lake,
        &server,
        &[
            "--daemon",
            "--schedule",
            "*/2 * * * * *",
            "--catch-up-days",
            "3",
            "--retries",
            "0",
            "--http",
            &address,
        ],
    )
    // Trace logs of a run every 2 s would be most of the test's time.
    .env("RUST_LOG", "info")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // Caught up: the two days that answer are stored, and it is healthy.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some((200, body)) = http_get(port, "/healthz") {
            assert!(body.contains(&yesterday.to_string()), "{body}");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "never healthy:\n{}",
                stderr(&output)
                    .chars()
                    .rev()
                    .take(6000)
                    .collect::<String>()
                    .chars()
                    .rev()
                    .collect::<String>()
            );
        }
        assert!(child.try_wait().unwrap().is_none(), "the daemon exited");
        std::thread::sleep(Duration::from_millis(200));
    }
    // A few scheduled runs later, the failing day has been asked for again.
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.requests_for(&failing) < 2 {
        assert!(
            Instant::now() < deadline,
            "the failed day was not retried by the schedule"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, metrics) = http_get(port, "/metrics").expect("metrics");
    assert_eq!(status, 200);
    let midnight = yesterday
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp();
    assert!(
        metrics.contains(&format!(
            "fxpipe_ingest_last_stored_date_seconds {midnight}"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("fxpipe_ingest_failures_total{status=\"502\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("fxpipe_ingest_last_run_duration_seconds"),
        "{metrics}"
    );
    // Each stored day was fetched once, however many runs there were.
    assert_eq!(server.requests_for(&yesterday.to_string()), 1);

    let stopped = Instant::now();
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(30),
            "did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = child.wait_with_output().unwrap();
    let err = stderr(&output);
    assert!(status.success(), "SIGTERM must exit 0: {status}\n{err}");
    assert!(!err.contains(KEY));
    assert_eq!(
        lake.scalar("SELECT count(DISTINCT run_date) FROM rates"),
        "2"
    );
    assert_key_nowhere_in(&lake);
}

#[test]
fn a_backfill_into_an_s3_lake_stores_days_and_error_rows() {
    let lake = Lake::s3();
    let server = OxrServer::start();
    server.plan("2024-03-03", vec![error(404, "not_found")]);
    let output = run(
        &lake,
        &server,
        &["--from", "2024-03-01", "--to", "2024-03-05"],
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("1 of 5 dates failed (2024-03-03)"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        lake.scalar("SELECT count(DISTINCT run_date) FROM rates"),
        "4"
    );
    assert_eq!(lake.scalar("SELECT count(*) FROM rates_errors"), "1");
    // A re-run asks for the missing day only.
    server.forget_requests();
    let output = run(
        &lake,
        &server,
        &["--from", "2024-03-01", "--to", "2024-03-05"],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(server.seen().len(), 1);
    assert_eq!(
        lake.scalar("SELECT count(DISTINCT run_date) FROM rates"),
        "5"
    );
    assert_key_nowhere_in(&lake);
}

#[test]
fn the_ecb_source_needs_no_key_and_skips_the_days_it_does_not_publish() {
    let lake = Lake::new();
    let csv = lake.file("eurofxref-hist.csv");
    std::fs::write(
        &csv,
        "Date,USD,JPY,SGD,\n2024-03-01,1.0830,161.23,1.4563,\n2024-02-29,1.0826,N/A,1.4550,\n",
    )
    .unwrap();
    let url = format!("file://{}", csv.display());
    let output = lake
        .command(&[
            "ingest",
            "--source",
            "ecb",
            "--ecb-url",
            &url,
            "--from",
            "2024-02-29",
            "--to",
            "2024-03-03",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let report = lake.latest_report("ingest");
    assert_eq!(report["dates_ingested"], 2, "{report}");
    assert_eq!(report["dates_not_published"], 2, "{report}");
    assert_eq!(lake.scalar("SELECT count(*) FROM rates_errors"), "0");
    // Units per USD, exact: SGD = 1.4563 / 1.0830, EUR = 1 / 1.0830 (18 decimals, half up).
    assert_eq!(
        lake.query("SELECT target_currency, CAST(rates_base_usd AS VARCHAR) AS per_usd, source FROM rates WHERE run_date = DATE '2024-03-01' ORDER BY target_currency"),
        vec![
            vec!["EUR".to_string(), "0.923361034164358264".into(), format!("ecb:{url}")],
            vec!["JPY".to_string(), "148.873499538319482918".into(), format!("ecb:{url}")],
            vec!["SGD".to_string(), "1.344690674053554940".into(), format!("ecb:{url}")],
            vec!["USD".to_string(), "1.000000000000000000".into(), format!("ecb:{url}")],
        ]
    );
    assert_eq!(
        lake.scalar("SELECT count(*) FROM rates WHERE run_date = DATE '2024-02-29'"),
        "3"
    );
}
