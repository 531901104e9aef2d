//! `fxpipe doctor`: the real binary on healthy and broken setups (a local lake, a lake on moto,
//! an endpoint and a scheduler nobody listens on, a lake that cannot be written, an App ID in
//! the environment or a config file, a planted orphan file, a loopback cluster). Every run's
//! output is searched for the test secrets.

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::moto::{free_port, ACCESS_KEY, SECRET_KEY};
use common::{generated_lake, ingest_golden_rates, Lake};

/// stdout and stderr of a run, after checking that neither carries a test secret (nor the
/// access key id, which doctor never prints either).
fn texts(output: &Output) -> (String, String) {
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    for secret in [SECRET_KEY, ACCESS_KEY, common::oxr::KEY] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "a secret in doctor's output:\n{stdout}\n{stderr}"
        );
    }
    (stdout, stderr)
}

/// The line of a check (`ok    lake        …`), by status and name; panics if absent.
fn line<'a>(stdout: &'a str, status: &str, check: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.starts_with(&format!("{status:<6}{check:<12}")))
        .unwrap_or_else(|| panic!("no `{status} {check}` line in:\n{stdout}"))
}

/// `fxpipe --lake LAKE ARGS` as the common helpers run it, and also without any App ID of
/// the caller's (environment or config file): the tests decide where a key is.
fn doctor(lake: &Lake, args: &[&str]) -> Command {
    let mut command = lake.command(args);
    command
        .env_remove("OXR_APP_ID")
        .env_remove("OPENEXCHANGE_APP_ID")
        .env("XDG_CONFIG_HOME", lake.dir.path())
        .env("HOME", lake.dir.path())
        .current_dir(lake.dir.path());
    command
}

fn run(lake: &Lake, args: &[&str]) -> Output {
    doctor(lake, args).output().expect("run fxpipe")
}

/// [`doctor`] with a `--lake` of the test's own (the helpers always pass theirs).
fn bare(lake: &Lake, args: &[&str]) -> Command {
    let template = doctor(lake, &[]);
    let mut command = Command::new(template.get_program());
    command.args(args).current_dir(lake.dir.path());
    for (name, value) in template.get_envs() {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    command
}

#[test]
fn a_healthy_local_lake_passes_with_the_rest_not_used() {
    let lake = generated_lake("50", "0");
    let output = run(&lake, &["doctor"]);
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let location = lake.location();
    assert!(
        line(&stdout, "ok", "config").contains(&format!("lake {location} (flag --lake)")),
        "{stdout}"
    );
    assert!(stdout.contains("base currency SGD (default)"), "{stdout}");
    assert!(stdout.contains("cluster none (unset)"), "{stdout}");
    let lake_line = line(&stdout, "ok", "lake");
    assert!(
        lake_line.contains("(local) readable, writable"),
        "{lake_line}"
    );
    for table in [
        "transactions v",
        "rejects v",
        "loads v",
        "rates v",
        "rates_errors v",
    ] {
        assert!(lake_line.contains(table), "{lake_line}");
    }
    assert!(lake_line.contains("not yet: processed"), "{lake_line}");
    assert!(line(&stdout, "--", "aws").contains("not used (local lake)"));
    assert!(line(&stdout, "--", "oxr").contains("not used"));
    assert!(line(&stdout, "--", "cluster").contains("not used"));
    assert!(line(&stdout, "ok", "orphans").contains("none"));
    assert!(!stdout.contains("FAIL"), "{stdout}");
    // The write probe left nothing behind.
    assert!(!lake.path().join("_doctor").exists());

    // One JSON object per check, with --json or --log-format json; the base currency's source
    // is the environment variable when that is where it came from.
    for flags in [
        &["doctor", "--json"][..],
        &["--log-format", "json", "doctor"][..],
    ] {
        let output = doctor(&lake, flags)
            .env("FXPIPE_BASE_CURRENCY", "EUR")
            .output()
            .unwrap();
        let (stdout, stderr) = texts(&output);
        assert!(output.status.success(), "{stdout}\n{stderr}");
        let checks: Vec<serde_json::Value> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect();
        assert_eq!(checks.len(), 9, "{stdout}");
        let base = checks
            .iter()
            .find(|c| c["setting"] == "base currency")
            .expect("the base currency");
        assert_eq!(base["value"], "EUR");
        assert_eq!(base["source"], "env");
        assert_eq!(base["origin"], "env FXPIPE_BASE_CURRENCY");
        let lake_check = checks.iter().find(|c| c["check"] == "lake").unwrap();
        assert_eq!(lake_check["status"], "ok");
        assert_eq!(lake_check["writable"], true);
        assert_eq!(lake_check["tables"]["rates"], 0, "{lake_check}");
        let aws = checks.iter().find(|c| c["check"] == "aws").unwrap();
        assert_eq!(aws["status"], "not_used");
    }
}

#[test]
fn a_lake_on_s3_names_where_credentials_and_region_came_from_never_their_values() {
    let lake = Lake::s3();
    // One day of rates: the rates tables exist.
    ingest_golden_rates(&lake, "2017-06-29");
    // -vv: the debug logs of the AWS chain and object_store must not carry them either.
    let output = run(&lake, &["-vv", "doctor"]);
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let aws = line(&stdout, "ok", "aws");
    assert!(
        aws.contains("credentials from environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)"),
        "{aws}"
    );
    assert!(aws.contains("region eu-west-1"), "{aws}");
    assert!(
        stdout.contains("region eu-west-1 (env AWS_REGION)"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "S3 endpoint {} (env AWS_ENDPOINT_URL)",
            lake.moto().endpoint()
        )),
        "{stdout}"
    );
    let lake_line = line(&stdout, "ok", "lake");
    assert!(
        lake_line.contains("s3://fxpipe-test-lake/lake (S3) readable, writable"),
        "{lake_line}"
    );
    assert!(lake_line.contains("rates v0"), "{lake_line}");
    line(&stdout, "ok", "orphans");
    // The probe object was deleted.
    assert!(lake.list("_doctor").is_empty());

    let output = run(&lake, &["doctor", "--json"]);
    let (stdout, _) = texts(&output);
    let aws: serde_json::Value = stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|c| c["check"] == "aws")
        .unwrap();
    assert_eq!(aws["credentials"], "environment");
    assert_eq!(aws["region"], "eu-west-1");

    // Keys and region in the shared files instead: the profile is named, the keys are not.
    let credentials = lake.file("credentials");
    std::fs::write(
        &credentials,
        format!(
            "[doctor]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
        ),
    )
    .unwrap();
    let config = lake.file("config");
    std::fs::write(&config, "[profile doctor]\nregion = eu-west-1\n").unwrap();
    let output = doctor(&lake, &["doctor"])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_REGION")
        .env("AWS_PROFILE", "doctor")
        .env("AWS_SHARED_CREDENTIALS_FILE", &credentials)
        .env("AWS_CONFIG_FILE", &config)
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        line(&stdout, "ok", "aws").contains(
            "credentials from profile doctor (shared credentials or config file); region eu-west-1"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("region eu-west-1 (profile doctor)"),
        "{stdout}"
    );
}

#[test]
fn an_unreachable_endpoint_and_scheduler_fail_fast_with_hints() {
    let lake = Lake::new();
    let closed = free_port();
    let cluster = format!("df://127.0.0.1:{}", free_port());
    let started = Instant::now();
    let output = bare(
        &lake,
        &[
            "--lake",
            "s3://fxpipe-test-lake/lake",
            "--cluster",
            &cluster,
            "doctor",
            "--timeout",
            "2",
        ],
    )
    .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{closed}"))
    .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    .env("AWS_REGION", "eu-west-1")
    .output()
    .unwrap();
    let elapsed = started.elapsed();
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    let lake_line = line(&stdout, "FAIL", "lake");
    assert!(lake_line.contains("unreachable"), "{lake_line}");
    assert!(
        lake_line.contains("— hint: check the endpoint"),
        "{lake_line}"
    );
    let cluster_line = line(&stdout, "FAIL", "cluster");
    assert!(
        cluster_line.contains(&format!("{cluster} unreachable")),
        "{cluster_line}"
    );
    assert!(
        cluster_line.contains("— hint: start fxpipe-scheduler"),
        "{cluster_line}"
    );
    // The credentials themselves are fine: they come from the environment.
    line(&stdout, "ok", "aws");
    line(&stdout, "FAIL", "orphans");
    assert!(
        stderr.contains("checks failed (lake, cluster, orphans)"),
        "{stderr}"
    );
}

#[test]
fn a_lake_that_cannot_be_written_or_is_not_a_folder_fails() {
    // Tests run as root, which chmod does not stop: a file where the probe's folder goes
    // makes the write fail for root too.
    let lake = generated_lake("50", "0");
    std::fs::write(lake.path().join("_doctor"), b"in the way").unwrap();
    let output = run(&lake, &["doctor"]);
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    let lake_line = line(&stdout, "FAIL", "lake");
    assert!(lake_line.contains("readable, NOT writable"), "{lake_line}");
    assert!(lake_line.contains("tables: transactions v"), "{lake_line}");
    assert!(
        lake_line.contains("— hint: jobs write the lake"),
        "{lake_line}"
    );
    assert!(stderr.contains("1 of 9 checks failed (lake)"), "{stderr}");

    // A file where the lake folder should be, and a folder that does not exist.
    let file = lake.file("not-a-folder");
    std::fs::write(&file, b"x").unwrap();
    let missing = lake.file("missing");
    for location in [&file, &missing] {
        let output = bare(&lake, &["--lake", location.to_str().unwrap(), "doctor"])
            .output()
            .unwrap();
        let (stdout, stderr) = texts(&output);
        assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
        let lake_line = line(&stdout, "FAIL", "lake");
        assert!(lake_line.contains("no lake at"), "{lake_line}");
        assert!(lake_line.contains("— hint: check --lake"), "{lake_line}");
        assert!(!missing.exists(), "doctor must not create a lake");
    }
}

#[test]
fn the_app_id_is_found_but_never_shown() {
    let lake = generated_lake("50", "0");
    // From the environment, with --source oxr.
    let output = doctor(&lake, &["doctor", "--source", "oxr"])
        .env("OXR_APP_ID", common::oxr::KEY)
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert_eq!(
        line(&stdout, "ok", "oxr"),
        "ok    oxr         App ID present (environment variable OXR_APP_ID)"
    );
    assert!(
        stdout.contains("rate source oxr (flag --source)"),
        "{stdout}"
    );

    // From fxpipe.toml in the working directory, with the source from the environment.
    let home = lake.file("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(
        home.join("fxpipe.toml"),
        format!("[oxr]\napp_id = \"{}\"\n", common::oxr::KEY),
    )
    .unwrap();
    let output = doctor(&lake, &["doctor"])
        .current_dir(&home)
        .env("HOME", &home)
        .env("FXPIPE_RATE_SOURCE", "oxr")
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        line(&stdout, "ok", "oxr").contains("App ID present (config file fxpipe.toml)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("rate source oxr (env FXPIPE_RATE_SOURCE)"),
        "{stdout}"
    );

    // Required but missing: a failure naming the variable.
    let output = run(&lake, &["doctor", "--source", "oxr"]);
    let (stdout, _) = texts(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    let oxr = line(&stdout, "FAIL", "oxr");
    assert!(oxr.contains("set OXR_APP_ID"), "{oxr}");
    assert!(oxr.contains("— hint: export OXR_APP_ID"), "{oxr}");

    // Rates from files or the ECB need no key.
    let output = run(&lake, &["doctor", "--source", "ecb"]);
    let (stdout, _) = texts(&output);
    assert!(output.status.success(), "{stdout}");
    assert!(line(&stdout, "--", "oxr").contains("not used (rates from ecb)"));
}

#[test]
fn orphan_files_are_counted_and_left_in_place() {
    let lake = generated_lake("50", "0");
    let orphan = lake
        .path()
        .join("banktxn/parquet/part-00000-planted-orphan.c000.snappy.parquet");
    std::fs::write(&orphan, b"not referenced by any version").unwrap();

    // Younger than the default retention: vacuum would keep it.
    let output = run(&lake, &["doctor"]);
    let (stdout, _) = texts(&output);
    assert!(line(&stdout, "ok", "orphans").contains("none"), "{stdout}");

    let output = run(&lake, &["doctor", "--retention-hours", "0"]);
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let orphans = line(&stdout, "warn", "orphans");
    assert!(
        orphans.contains("1 files vacuum would delete (retention 0 h): transactions 1"),
        "{orphans}"
    );
    assert!(
        orphans.contains("— hint: `fxpipe vacuum --dry-run`"),
        "{orphans}"
    );
    assert!(orphan.exists(), "doctor deleted a file");
    // vacuum's dry run agrees.
    let listed = lake.run(&["vacuum", "--dry-run", "--retention-hours", "0"]);
    assert!(
        listed.contains("transactions: would delete 1 files"),
        "{listed}"
    );
}

#[test]
fn a_cluster_reports_its_executors() {
    let lake = generated_lake("50", "0");
    // A scheduler alone accepts jobs that never run.
    let empty = Cluster::start(0, &[]);
    let output = run(&lake, &["--cluster", &empty.address(), "doctor"]);
    let (stdout, _) = texts(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    let cluster = line(&stdout, "FAIL", "cluster");
    assert!(cluster.contains("no executor has registered"), "{cluster}");
    assert!(
        cluster.contains("— hint: start fxpipe-executor"),
        "{cluster}"
    );
    drop(empty);

    let cluster = Cluster::start(2, &[]);
    let output = run(&lake, &["--cluster", &cluster.address(), "doctor"]);
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let line = line(&stdout, "ok", "cluster");
    assert!(
        line.contains(&format!("{} Ballista 55", cluster.address())),
        "{line}"
    );
    // 2 executors of 2 vcores each (tests/common/cluster.rs).
    assert!(
        line.ends_with(", 2 executors, 4 cores (partitions per stage unless --cluster-partitions)"),
        "{line}"
    );
}
