//! A cluster with mutual TLS (issue 22): load, normalize and sql give embedded's results; the
//! scheduler (gRPC and REST), and an executor's Flight port, refuse clients without a
//! certificate the cluster's CA signed, checked with plain reqwest and tonic clients built
//! here (so the refusal is the server's, not fxpipe's); and a node refuses to serve a
//! non-loopback address in plain text.

mod common;

use std::process::Command;
use std::time::Duration;

use common::cluster::{binary, Cluster};
use common::{golden_dir, golden_lake, ingest_golden_rates, Lake};

const QUERIES: [&str; 2] = [
    "SELECT * FROM processed ORDER BY source_line",
    "SELECT year, month, CAST(sum(withdrawal_sgd_amt) AS VARCHAR), CAST(sum(deposit_sgd_amt) AS VARCHAR), count(*) FROM processed GROUP BY year, month ORDER BY year, month",
];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn load_normalize_and_sql_over_mutual_tls_equal_embedded() {
    let embedded = golden_lake();
    let cluster = Cluster::start_tls(2, &[]);
    let address = cluster.address();
    let client = cluster.client_tls().unwrap();
    let client = client.to_str().unwrap();
    let lake = Lake::new();
    ingest_golden_rates(&lake, "2017-07-02");
    let csv = golden_dir().join("transactions.csv");
    let on = |args: &[&str]| {
        let mut full = vec!["--cluster", address.as_str(), "--tls-dir", client];
        full.extend_from_slice(args);
        lake.run(&full)
    };
    on(&["load", csv.to_str().unwrap()]);
    on(&["normalize"]);
    for query in QUERIES {
        assert_eq!(
            on(&["sql", query, "--format", "csv"]),
            embedded.run(&["sql", query, "--format", "csv"]),
            "{query}"
        );
    }
    // The jobs ran on the cluster.
    let jobs = cluster
        .http_get("/api/jobs")
        .expect("the job list over TLS");
    assert!(jobs.matches("job_id").count() >= 3, "{jobs}");

    // fxpipe without --tls-dir is told why it cannot connect.
    let plain = lake.try_run(&["--cluster", &address, "sql", "SELECT 1"]);
    let stderr = String::from_utf8_lossy(&plain.stderr);
    assert!(!plain.status.success());
    assert!(stderr.contains("--tls-dir"), "{stderr}");
}

/// A reqwest client that trusts the cluster's CA, with `identity` (cert + key PEM) or none.
fn rest_client(ca: &[u8], identity: Option<Vec<u8>>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .tls_certs_only([reqwest::Certificate::from_pem(ca).unwrap()]);
    if let Some(pem) = identity {
        builder = builder.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    builder.build().unwrap()
}

#[test]
fn clients_without_a_certificate_of_the_clusters_ca_are_refused() {
    fxpipe::engine::tls::install_crypto_provider();
    let cluster = Cluster::start_tls(1, &[]);
    let certs = cluster.certs.clone().unwrap();
    let ca = std::fs::read(certs.join("client/ca.pem")).unwrap();
    let identity = |dir: &std::path::Path| {
        let mut pem = std::fs::read(dir.join("cert.pem")).unwrap();
        pem.extend(std::fs::read(dir.join("key.pem")).unwrap());
        pem
    };
    // Another CA's certificates, for the same host names.
    let other = tempfile::tempdir().unwrap();
    fxpipe::engine::tls::generate(other.path(), &["127.0.0.1".to_string()], 1).unwrap();
    let url = format!("https://127.0.0.1:{}/api/executors", cluster.port);
    let rt = runtime();
    let get = |client: reqwest::Client| rt.block_on(async { client.get(&url).send().await });
    // The REST API (which also cancels jobs): no certificate, another CA's, then ours.
    let error = get(rest_client(&ca, None)).expect_err("no certificate must be refused");
    assert!(error.is_connect() || error.is_request(), "{error:?}");
    get(rest_client(
        &ca,
        Some(identity(&other.path().join("client"))),
    ))
    .expect_err("another CA's certificate must be refused");
    let answer = get(rest_client(&ca, Some(identity(&certs.join("client"))))).unwrap();
    assert!(answer.status().is_success());
    // Plain HTTP gets no answer from a TLS port.
    let plain = rt.block_on(async {
        reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}/api/executors", cluster.port))
            .timeout(Duration::from_secs(10))
            .send()
            .await
    });
    assert!(plain.is_err(), "{plain:?}");

    // gRPC to the scheduler, and Flight to the executor, with tonic: the TLS handshake fails
    // without a certificate the CA signed.
    let executors = cluster.http_get("/api/executors").unwrap();
    let flight_port: u16 = executors
        .split("\"port\":")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse().ok())
        .expect("the executor's Flight port");
    for port in [cluster.port, flight_port] {
        let connect = |tls: tonic::transport::ClientTlsConfig| {
            rt.block_on(async {
                tonic::transport::Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
                    .unwrap()
                    .connect_timeout(Duration::from_secs(10))
                    .tls_config(tls)
                    .unwrap()
                    .connect()
                    .await
            })
        };
        let ca_only = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&ca));
        // tonic connects lazily on the first request for some errors: a connected channel must
        // still fail its first call, so try a Flight handshake-free call.
        match connect(ca_only) {
            Err(_) => {}
            Ok(channel) => {
                let mut flight =
                    arrow_flight::flight_service_client::FlightServiceClient::new(channel);
                let listed = rt.block_on(async {
                    flight.list_flights(arrow_flight::Criteria::default()).await
                });
                assert!(
                    listed.is_err(),
                    "port {port} answered a client without a certificate"
                );
            }
        }
        let ours = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&ca))
            .identity(tonic::transport::Identity::from_pem(
                std::fs::read(certs.join("client/cert.pem")).unwrap(),
                std::fs::read(certs.join("client/key.pem")).unwrap(),
            ));
        connect(ours).unwrap_or_else(|e| panic!("port {port} refused our certificate: {e:?}"));
    }
}

#[test]
fn nodes_refuse_a_non_loopback_address_without_tls() {
    for (node, policy_free_args) in [
        ("fxpipe-scheduler", vec!["--bind-port", "0"]),
        (
            "fxpipe-executor",
            vec!["--scheduler-port", "1", "--bind-port", "0"],
        ),
    ] {
        let output = Command::new(binary(node))
            .args(["--bind-host", "0.0.0.0"])
            .args(&policy_free_args)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{node}: {stderr}");
        assert!(
            stderr.contains("binding 0.0.0.0 without TLS")
                && stderr.contains("--tls-dir")
                && stderr.contains("--insecure-plaintext"),
            "{node}: {stderr}"
        );
    }
}

#[test]
fn plans_naming_anything_but_the_lake_and_inputs_fail_on_the_nodes() {
    use ballista::prelude::SessionContextExt;
    let cluster = Cluster::start_tls(1, &[]);
    let tls = fxpipe::engine::tls::Tls::load(&cluster.client_tls().unwrap()).unwrap();
    let rt = runtime();
    // A stock Ballista client (no fxpipe read-only check), with the cluster's certificate.
    let refused = |location: &str| {
        rt.block_on(async {
            let config =
                tls.session_config(fxpipe::engine::node::session_config(&fxpipe::extensions()));
            let state = datafusion::execution::SessionStateBuilder::new()
                .with_config(config)
                .with_default_features()
                .build();
            let ctx =
                datafusion::prelude::SessionContext::remote_with_state(&cluster.address(), state)
                    .await
                    .unwrap();
            ctx.sql(&format!(
                "CREATE EXTERNAL TABLE secrets (line VARCHAR) STORED AS CSV LOCATION '{location}'"
            ))
            .await
            .unwrap();
            let result = match ctx.sql("SELECT count(*) FROM secrets").await {
                Ok(frame) => frame.collect().await.map(|_| ()),
                Err(error) => Err(error),
            };
            result
                .expect_err(&format!("{location} must be refused"))
                .to_string()
        })
    };
    for location in [
        "/etc/passwd",
        "file:///etc/",
        "s3://another-bank/ledger/",
        // A sibling of an allowed prefix.
        &format!("s3://{}-other/x/", common::BUCKET),
    ] {
        let error = refused(location);
        assert!(
            error.contains("outside what this cluster node may touch"),
            "{location}: {error}"
        );
    }
    // The scheduler logged the refusal, naming the location; no node read it.
    assert!(!cluster.log_lines("refused a location").is_empty());
}

#[test]
fn cluster_certs_keep_existing_keeps_the_ca_the_nodes_trust() {
    let out = tempfile::tempdir().unwrap();
    let certs = out.path().join("certs");
    let make = |extra: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_fxpipe"))
            .args([
                "cluster",
                "certs",
                "--hosts",
                "scheduler,executor-1",
                "--out",
            ])
            .arg(&certs)
            .args(extra)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stdout).to_string()
    };
    make(&["--keep-existing"]);
    let ca = std::fs::read(certs.join("scheduler/ca.pem")).unwrap();
    let said = make(&["--keep-existing"]);
    assert!(said.contains("kept"), "{said}");
    assert_eq!(std::fs::read(certs.join("scheduler/ca.pem")).unwrap(), ca);
    // Without it, a new CA (the way to rotate one).
    make(&[]);
    assert_ne!(std::fs::read(certs.join("scheduler/ca.pem")).unwrap(), ca);
}
