//! The same commands on a loopback Ballista cluster (a scheduler and two executors, separate
//! processes) and embedded: the results must be identical, row for row and cent for cent.

mod common;

use common::cluster::Cluster;
use common::{golden_dir, golden_lake, ingest_golden_rates, Lake};

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
    on(&lake, &cluster, &["normalize"]);
    for query in QUERIES {
        assert_eq!(
            lake.run(&["sql", query, "--format", "csv"]),
            embedded.run(&["sql", query, "--format", "csv"]),
            "{query}"
        );
    }
    assert_eq!(lake.latest_report("normalize")["rows_written"], 9);
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
