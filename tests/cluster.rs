//! The same commands on a loopback Ballista cluster (a scheduler and two executors, separate
//! processes) and embedded: the results must be identical, row for row and cent for cent.

mod common;

use common::cluster::Cluster;
use common::{generated_lake, golden_dir, golden_lake, ingest_golden_rates, Lake};

const QUERIES: [&str; 3] = [
    "SELECT * FROM processed ORDER BY source_line",
    "SELECT year, month, CAST(sum(withdrawal_sgd_amt) AS VARCHAR), CAST(sum(deposit_sgd_amt) AS VARCHAR), count(*) FROM processed GROUP BY year, month ORDER BY year, month",
    "SELECT target_currency, count(*), CAST(sum(rates_base_usd) AS VARCHAR) FROM rates GROUP BY target_currency ORDER BY target_currency",
];

fn on(lake: &Lake, cluster: &Cluster, args: &[&str]) -> String {
    let mut full = vec!["--cluster", &*Box::leak(cluster.address().into_boxed_str())];
    full.extend_from_slice(args);
    lake.run(&full)
}

#[test]
fn sql_and_reports_on_the_cluster_equal_embedded() {
    let lake = golden_lake();
    let cluster = Cluster::start(2, &[]);
    for query in QUERIES {
        let embedded = lake.run(&["sql", query, "--format", "csv"]);
        let distributed = on(&lake, &cluster, &["sql", query, "--format", "csv"]);
        assert_eq!(distributed, embedded, "{query}");
        assert!(embedded.lines().count() > 1, "{query}: {embedded}");
    }
    for report in [
        "account-summary",
        "creditworthiness",
        "deposits-by-currency",
    ] {
        let embedded = lake.run(&["report", report, "--format", "csv"]);
        let distributed = on(&lake, &cluster, &["report", report, "--format", "csv"]);
        assert_eq!(distributed, embedded, "{report}");
        // -o streams the cluster's result into the file: the same rows.
        let file = lake.file(&format!("{report}.csv"));
        let written = on(
            &lake,
            &cluster,
            &["report", report, "-o", file.to_str().unwrap()],
        );
        assert_eq!(written, "", "{report}: the rows go to the file");
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            embedded,
            "{report}"
        );
    }
    // The jobs ran on the cluster: the scheduler saw them.
    let jobs = cluster
        .http_get("/api/jobs")
        .expect("the scheduler's job list");
    assert!(jobs.matches("job_id").count() >= QUERIES.len(), "{jobs}");
}

#[test]
fn normalize_on_the_cluster_equals_embedded() {
    let embedded = golden_lake();
    let lake = Lake::new();
    ingest_golden_rates(&lake, "2017-07-02");
    let csv = golden_dir().join("transactions.csv");
    lake.run(&["load", csv.to_str().unwrap()]);
    let cluster = Cluster::start(2, &[]);
    // Shuffled by month before the write (what auto does above 8 partitions per stage).
    let output = lake
        .command(&[
            "--cluster",
            &cluster.address(),
            "normalize",
            "--write-shuffle",
            "always",
        ])
        .output()
        .expect("normalize on the cluster");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    // Progress from the scheduler's REST API: each of the job's cluster jobs, as it ended.
    let ended: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("cluster job") && l.contains(": completed ("))
        .collect();
    assert!(!ended.is_empty(), "no progress in:\n{stderr}");
    assert!(
        ended
            .iter()
            .all(|l| l.contains(" stages, ") && l.contains(" tasks)")),
        "{stderr}"
    );
    for query in QUERIES {
        assert_eq!(
            lake.run(&["sql", query, "--format", "csv"]),
            embedded.run(&["sql", query, "--format", "csv"]),
            "{query}"
        );
    }
    let report = lake.latest_report("normalize");
    assert_eq!(report["rows_written"], 9);
    // The rate calendar went to the executors as a file, deleted when the job ended.
    assert_eq!(lake.list("_scratch"), Vec::<String>::new());
    // The executors wrote the files, in parallel tasks, and the client committed them.
    // One task per core of the executors (2 executors x 2 vcores), not Ballista's 16.
    let tasks = report["write_tasks"].as_u64().unwrap();
    assert_eq!(tasks, 4, "{report}");
    assert_eq!(cluster.log_lines("wrote data files").len() as u64, tasks);
    assert_eq!(
        report["files_written"],
        lake.list("banktxn/processed")
            .iter()
            .filter(|f| f.ends_with(".parquet"))
            .count() as u64
    );

    // --cluster-partitions overrides the executors' cores, with the same result.
    lake.run(&[
        "--cluster",
        &cluster.address(),
        "--cluster-partitions",
        "3",
        "normalize",
        "--write-shuffle",
        "always",
    ]);
    assert_eq!(lake.latest_report("normalize")["write_tasks"], 3);
    for query in QUERIES {
        assert_eq!(
            lake.run(&["sql", query, "--format", "csv"]),
            embedded.run(&["sql", query, "--format", "csv"]),
            "{query}"
        );
    }
    // Without the shuffle (auto, at 4 partitions), the scan's tasks write: one small file is
    // one task, and each month it holds gets its files from that task alone.
    lake.run(&["--cluster", &cluster.address(), "normalize"]);
    let report = lake.latest_report("normalize");
    assert_eq!(report["write_tasks"], 1, "{report}");
    for query in QUERIES {
        assert_eq!(
            lake.run(&["sql", query, "--format", "csv"]),
            embedded.run(&["sql", query, "--format", "csv"]),
            "{query}"
        );
    }
}

const LOADED: [&str; 3] = [
    "SELECT * FROM transactions ORDER BY source_file, source_line",
    "SELECT source_file, source_line, reason, field, raw FROM rejects ORDER BY source_file, source_line",
    "SELECT source_file, source_hash, rows_read, rows_loaded, rows_rejected, decimal_separator FROM loads ORDER BY source_file",
];

#[test]
fn load_on_the_cluster_equals_embedded() {
    let embedded = Lake::new();
    let lake = Lake::new();
    // Four exports (three with faults, each different), at paths both lakes' runs name alike.
    let dir = tempfile::tempdir().unwrap();
    let golden = dir.path().join("golden.csv");
    std::fs::copy(golden_dir().join("transactions.csv"), &golden).unwrap();
    let mut files = vec![golden.to_str().unwrap().to_string()];
    for (n, rows) in ["2000", "3000", "500"].into_iter().enumerate() {
        let dirty = dir.path().join(format!("dirty-{n}.csv"));
        lake.run(&[
            "gen",
            "transactions",
            "--rows",
            rows,
            "--dirty",
            "0.05",
            "--out",
            dirty.to_str().unwrap(),
        ]);
        files.push(dirty.to_str().unwrap().to_string());
    }
    let mut args = vec!["load"];
    args.extend(files.iter().map(String::as_str));
    embedded.run(&args);
    let cluster = Cluster::start(2, &[]);
    let output = lake
        .command(&["--cluster", &cluster.address()])
        .args(&args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    // Each file's commits start from the version the previous file's made: none of them
    // lost a race to this run's own earlier commit (and retried).
    for retried in ["came first", "committed to the table first"] {
        assert!(!stderr.contains(retried), "{stderr}");
    }
    // The files were spread over several tasks (what makes each task's share matter).
    let tasks: Vec<u64> = stderr
        .lines()
        .filter(|l| l.contains("cluster job") && l.contains(": completed ("))
        .filter_map(|l| l.split(" stages, ").nth(1)?.split('/').next()?.parse().ok())
        .collect();
    assert!(tasks.iter().any(|&t| t >= 2), "{stderr}");
    for query in LOADED {
        assert_eq!(
            lake.run(&["sql", query, "--format", "csv"]),
            embedded.run(&["sql", query, "--format", "csv"]),
            "{query}"
        );
    }
    // The executors parsed each file exactly once (however the scheduler grouped the files
    // into tasks), and the client committed them.
    let parsed = cluster.log_lines("parsed and staged an export");
    assert_eq!(parsed.len(), files.len(), "{parsed:#?}");
    for file in &files {
        assert_eq!(
            parsed.iter().filter(|l| l.contains(file.as_str())).count(),
            1,
            "{file}: {parsed:#?}"
        );
    }
    // The same content again is skipped, as embedded.
    let again = on(&lake, &cluster, &args);
    assert!(again.contains("skipped"), "{again}");
    assert_eq!(
        lake.run(&[
            "sql",
            "SELECT count(*) FROM transactions",
            "--format",
            "csv"
        ]),
        embedded.run(&[
            "sql",
            "SELECT count(*) FROM transactions",
            "--format",
            "csv"
        ])
    );
}

#[test]
fn load_of_s3_objects_on_the_cluster_reads_them_on_the_executors() {
    let lake = Lake::s3();
    let csv = std::fs::read(golden_dir().join("transactions.csv")).unwrap();
    let other = String::from_utf8(csv.clone())
        .unwrap()
        .replace("409000611074", "409000999999");
    let moto = lake.moto();
    moto.put(common::BUCKET, "exports/2024-01.csv", &csv);
    moto.put(common::BUCKET, "exports/2024-02.csv", other.as_bytes());
    let cluster = Cluster::start(2, &moto.env());
    let out = on(
        &lake,
        &cluster,
        &["load", "s3://fxpipe-test-lake/exports/2024-*.csv"],
    );
    assert!(out.contains("2024-02.csv"), "{out}");
    assert_eq!(lake.count("transactions"), 18);
    assert_eq!(lake.count("rejects"), 18);
    assert_eq!(cluster.log_lines("parsed and staged an export").len(), 2);
}

#[test]
fn a_file_that_is_not_an_export_fails_on_the_cluster_as_embedded() {
    let lake = Lake::new();
    let dir = tempfile::tempdir().unwrap();
    let golden = dir.path().join("golden.csv");
    std::fs::copy(golden_dir().join("transactions.csv"), &golden).unwrap();
    let bad = dir.path().join("notes.csv");
    std::fs::write(&bad, "name,amount\nalice,3\n").unwrap();
    let args = ["load", golden.to_str().unwrap(), bad.to_str().unwrap()];
    let embedded_lake = Lake::new();
    let embedded = embedded_lake.try_run(&args);
    assert!(!embedded.status.success());
    let cluster = Cluster::start(2, &[]);
    let output = lake
        .command(&["--cluster", &cluster.address()])
        .args(args)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let (want, got) = (
        String::from_utf8_lossy(&embedded.stderr),
        String::from_utf8_lossy(&output.stderr),
    );
    // The same error, naming the file; the good file before it was committed, as embedded.
    let error = want
        .lines()
        .find_map(|l| l.strip_prefix("error: "))
        .unwrap();
    assert!(error.contains("notes.csv"), "{want}");
    assert!(got.contains(error), "embedded: {want}\ncluster: {got}");
    assert_eq!(
        lake.count("transactions"),
        embedded_lake.count("transactions")
    );
    assert_eq!(lake.count("loads"), 1);
}

#[test]
fn an_unreachable_scheduler_is_a_clear_error_and_changes_nothing() {
    let lake = golden_lake();
    let versions = lake.commits("banktxn/processed");
    let address = format!("df://127.0.0.1:{}", common::moto::free_port());
    let output = lake.try_run(&["--cluster", &address, "normalize"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot reach the Ballista scheduler at {address}")),
        "{stderr}"
    );
    assert_eq!(lake.commits("banktxn/processed"), versions);
    assert_eq!(lake.count("processed"), 9);
}

#[test]
fn a_lake_on_s3_is_read_by_the_executors_with_their_own_credentials() {
    let lake = Lake::s3();
    ingest_golden_rates(&lake, "2017-07-02");
    let csv = golden_dir().join("transactions.csv");
    lake.run(&["load", csv.to_str().unwrap()]);
    lake.run(&["normalize"]);
    let env = lake.moto().env();
    let cluster = Cluster::start(2, &env);
    for query in QUERIES {
        let embedded = lake.run(&["sql", query, "--format", "csv"]);
        let distributed = on(&lake, &cluster, &["sql", query, "--format", "csv"]);
        assert_eq!(distributed, embedded, "{query}");
    }
}

#[test]
fn executors_that_cannot_reach_the_lake_fail_the_job_cleanly() {
    let lake = Lake::s3();
    ingest_golden_rates(&lake, "2017-07-02");
    let csv = golden_dir().join("transactions.csv");
    lake.run(&["load", csv.to_str().unwrap()]);
    lake.run(&["normalize"]);
    let before = lake.run(&["sql", QUERIES[1], "--format", "csv"]);
    let versions = lake.commits("banktxn/processed");
    // The executors have credentials, but their S3 endpoint is a port nothing listens on.
    let dead = format!("http://127.0.0.1:{}", common::moto::free_port());
    let mut env = lake.moto().env();
    env.push(("FXPIPE_S3_ENDPOINT", dead.clone()));
    env.push(("FXPIPE_S3_RETRIES", "1".to_string()));
    env.push(("FXPIPE_S3_RETRY_TIMEOUT", "2".to_string()));
    let cluster = Cluster::start(2, &env);
    let job = lake
        .command(&["--cluster", &cluster.address(), "normalize"])
        // A job stalled by an executor loss is submitted again after this long.
        .env("FXPIPE_CLUSTER_STALL_SECONDS", "15")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start normalize");
    let output = wait_bounded(job, std::time::Duration::from_secs(120), &cluster);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "normalize succeeded: {stderr}");
    // The error says the job failed on the cluster, and what the executors could not reach.
    assert!(stderr.contains(&cluster.address()), "{stderr}");
    assert!(stderr.contains(&dead["http://".len()..]), "{stderr}");
    assert!(!stderr.contains(common::moto::SECRET_KEY), "{stderr}");
    assert_eq!(lake.commits("banktxn/processed"), versions);
    assert_eq!(lake.run(&["sql", QUERIES[1], "--format", "csv"]), before);
}

/// Starts `normalize` on the cluster and returns once the scheduler has its job.
fn start_normalize(lake: &Lake, cluster: &Cluster) -> std::process::Child {
    let job = lake
        .command(&["--cluster", &cluster.address(), "normalize"])
        // A job stalled by an executor loss is submitted again after this long.
        .env("FXPIPE_CLUSTER_STALL_SECONDS", "15")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start normalize");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !cluster
        .http_get("/api/jobs")
        .is_some_and(|jobs| jobs.contains("job_id"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the job never reached the scheduler"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    job
}

/// Waits for a job, failing the test (and killing the job) if it runs longer than `limit`: a
/// hung job must fail CI, not stall it.
fn wait_bounded(
    mut job: std::process::Child,
    limit: std::time::Duration,
    cluster: &Cluster,
) -> std::process::Output {
    let deadline = std::time::Instant::now() + limit;
    while job.try_wait().expect("job status").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = job.kill();
            let output = job.wait_with_output().expect("killed job ends");
            panic!(
                "the job did not finish within {limit:?}:\n{}\n{}",
                String::from_utf8_lossy(&output.stderr),
                cluster.problems()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    job.wait_with_output().expect("job output")
}

const SUMS: &str = "SELECT year, month, count(*), CAST(sum(withdrawal_sgd_amt) AS VARCHAR), CAST(sum(deposit_sgd_amt) AS VARCHAR) FROM processed GROUP BY year, month ORDER BY year, month";

/// Every row of processed, in a fixed order: a recovered job must equal an undisturbed one row
/// for row, not only in its sums.
const ALL_ROWS: &str = "SELECT * FROM processed ORDER BY source_file, source_line";

/// Starts normalize on the cluster with `stall` seconds of stall guard, then kills executor 0
/// once it holds a running task of the job (from its own log: the scheduler's REST API does
/// not say which executor runs a task). Returns the job and the task it held.
fn normalize_and_kill_a_busy_executor(
    lake: &Lake,
    cluster: &mut Cluster,
    stall: &str,
) -> (std::process::Child, Vec<String>) {
    let job = lake
        .command(&["--cluster", &cluster.address(), "normalize"])
        .env("FXPIPE_CLUSTER_STALL_SECONDS", stall)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start normalize");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let held = loop {
        let held = cluster.unfinished_tasks(0);
        if !held.is_empty() {
            break held;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "executor 0 never ran a task of the job"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    cluster.executors[0].kill().expect("kill an executor");
    (job, held)
}

#[test]
fn an_executor_killed_mid_normalize_changes_nothing_in_the_result() {
    let lake = generated_lake("300000", "0");
    lake.run(&["normalize"]);
    let undisturbed = lake.run(&["sql", ALL_ROWS, "--format", "csv"]);
    let versions = lake.commits("banktxn/processed");

    let mut cluster = Cluster::start(2, &[]);
    let (job, held) = normalize_and_kill_a_busy_executor(&lake, &mut cluster, "30");
    let output = wait_bounded(job, std::time::Duration::from_secs(180), &cluster);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "normalize failed after an executor was killed:\n{stderr}\n{}",
        cluster.problems()
    );
    // Which path ran: Ballista re-running the lost tasks, or fxpipe's resubmission.
    let resubmitted = stderr.contains("submitting the job again");
    eprintln!(
        "the killed executor held {held:?}; the job {}",
        if resubmitted {
            "was submitted again (the stall guard)"
        } else {
            "finished without a resubmission (Ballista re-ran the lost tasks)"
        }
    );
    assert_eq!(lake.run(&["sql", ALL_ROWS, "--format", "csv"]), undisturbed);
    assert_eq!(lake.commits("banktxn/processed"), versions + 1);
}

#[test]
fn a_healthy_job_outlasting_the_stall_time_after_an_executor_left_for_good_succeeds() {
    // Issue 23: after a loss, the stall guard cancelled any job whose tasks ran longer than
    // the stall time, healthy or not, for as long as the executor stayed away.
    let lake = generated_lake("300000", "0");
    lake.run(&["normalize"]);
    let undisturbed = lake.run(&["sql", ALL_ROWS, "--format", "csv"]);
    let versions = lake.commits("banktxn/processed");
    let mut cluster = Cluster::start(2, &[]);
    // A stall time far below the tasks' length (seconds each in a debug build).
    let (job, _) = normalize_and_kill_a_busy_executor(&lake, &mut cluster, "1");
    let output = wait_bounded(job, std::time::Duration::from_secs(180), &cluster);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}\n{}", cluster.problems());
    assert!(cluster.executor_count() <= 1, "the executor came back");
    assert!(
        !stderr.contains("cancelling"),
        "a job with running tasks was cancelled:\n{stderr}"
    );
    assert_eq!(lake.run(&["sql", ALL_ROWS, "--format", "csv"]), undisturbed);
    assert_eq!(lake.commits("banktxn/processed"), versions + 1);
}

#[test]
fn a_job_whose_executors_are_all_lost_fails_in_bounded_time_and_changes_nothing() {
    let lake = generated_lake("300000", "0");
    lake.run(&["normalize"]);
    let before = lake.run(&["sql", SUMS, "--format", "csv"]);
    let versions = lake.commits("banktxn/processed");
    let mut cluster = Cluster::start(2, &[]);
    let (job, _) = normalize_and_kill_a_busy_executor(&lake, &mut cluster, "5");
    cluster.executors[1]
        .kill()
        .expect("kill the other executor");
    let started = std::time::Instant::now();
    let output = wait_bounded(job, std::time::Duration::from_secs(120), &cluster);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "normalize succeeded with no executor"
    );
    assert!(
        stderr.contains("no executor was alive on the cluster")
            && stderr.contains("run the command again"),
        "{stderr}"
    );
    // The executors' timeout (10 s here) plus the stall time, and some slack.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(lake.commits("banktxn/processed"), versions);
    assert_eq!(lake.run(&["sql", SUMS, "--format", "csv"]), before);
}

#[test]
fn a_scheduler_lost_mid_job_fails_naming_it_and_keeps_the_previous_version() {
    let lake = generated_lake("300000", "0");
    lake.run(&["normalize"]);
    let before = lake.run(&["sql", SUMS, "--format", "csv"]);
    let versions = lake.commits("banktxn/processed");

    let mut cluster = Cluster::start(2, &[]);
    let address = cluster.address();
    let mut job = start_normalize(&lake, &cluster);
    let still_running = job.try_wait().expect("job status").is_none();
    cluster.scheduler.kill().expect("kill the scheduler");
    let output = wait_bounded(job, std::time::Duration::from_secs(180), &cluster);
    assert!(
        still_running,
        "the job had finished before the scheduler was killed"
    );
    assert!(
        !output.status.success(),
        "normalize succeeded without its scheduler"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&address), "{stderr}");
    assert_eq!(lake.commits("banktxn/processed"), versions);
    assert_eq!(lake.run(&["sql", SUMS, "--format", "csv"]), before);
}

#[test]
fn two_jobs_at_once_both_give_embedded_results() {
    let lake = golden_lake();
    let cluster = Cluster::start(2, &[]);
    let expected: Vec<String> = QUERIES[..2]
        .iter()
        .map(|q| lake.run(&["sql", q, "--format", "csv"]))
        .collect();
    let jobs: Vec<_> = QUERIES[..2]
        .iter()
        .map(|q| {
            lake.command(&["--cluster", &cluster.address(), "sql", q, "--format", "csv"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("start a query")
        })
        .collect();
    for (job, expected) in jobs.into_iter().zip(expected) {
        let output = job.wait_with_output().expect("query ends");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&output.stdout), expected);
    }
}
