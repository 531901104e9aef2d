//! The EMR roles of `deploy/emr/`, enforced: moto's IAM checks every S3 request against the
//! node policy (scheduler, executors) and the client policy (the steps), as AWS would. The
//! pipeline runs on a cluster whose nodes hold only the node role, the client acts as the
//! client role assumed from a profile (as the steps' `AWS_PROFILE=fxpipe-client` does), and
//! the node role cannot delete or commit.

mod common;

use common::cluster::Cluster;
use common::{golden_dir, ingest_golden_rates, Lake};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ACCOUNT: &str = "123456789012";
const REGION: &str = common::moto::REGION;

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// `aws …` against the lake's moto server, as the test's administrator or with `keys`.
fn aws_as(lake: &Lake, home: &Path, keys: Option<(&str, &str)>, args: &[&str]) -> Output {
    let mut command = Command::new("aws");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AWS_") {
            command.env_remove(name);
        }
    }
    let empty = home.join("empty");
    std::fs::write(&empty, "").unwrap();
    command
        .envs(lake.moto().env())
        .env("AWS_CONFIG_FILE", &empty)
        .env("AWS_SHARED_CREDENTIALS_FILE", &empty)
        .env("AWS_DEFAULT_REGION", REGION);
    if let Some((key, secret)) = keys {
        command
            .env("AWS_ACCESS_KEY_ID", key)
            .env("AWS_SECRET_ACCESS_KEY", secret);
    }
    command
        .args(["--output", "json"])
        .args(args)
        .output()
        .unwrap()
}

/// `aws …` as the administrator (before enforcement); its JSON answer.
fn aws(lake: &Lake, home: &Path, args: &[&str]) -> Value {
    let output = aws_as(lake, home, None, args);
    assert!(
        output.status.success(),
        "aws {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
}

/// The S3 operations AWS authorizes with each IAM action (its "Actions, resources, and
/// condition keys for Amazon S3" table). moto checks `s3:<Operation>` instead, so each
/// statement is given the operations of its actions as well.
const OPERATIONS: [(&str, &[&str]); 4] = [
    ("s3:ListBucket", &["s3:ListObjectsV2", "s3:ListObjects"]),
    ("s3:GetObject", &["s3:HeadObject"]),
    (
        "s3:PutObject",
        &[
            "s3:CreateMultipartUpload",
            "s3:UploadPart",
            "s3:CompleteMultipartUpload",
            "s3:CopyObject",
        ],
    ),
    ("s3:ListMultipartUploadParts", &["s3:ListParts"]),
];

/// A deploy/emr document with the test lake's names, in moto's terms: each action's S3
/// operations added ([`OPERATIONS`]), and no conditions (moto evaluates no condition keys and
/// would deny every listing on `s3:prefix`: the listing is wider here than on AWS, never
/// narrower). A batch delete (`DeleteObjects`), which AWS checks as `s3:DeleteObject` on each
/// key, moto checks once on the bucket: a statement allowing `s3:DeleteObject` also allows that
/// on the bucket.
fn document(name: &str, home: &Path) -> String {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy/emr")
            .join(name),
    )
    .unwrap()
    .replace("LAKE_BUCKET", common::BUCKET)
    .replace("LAKE_PREFIX", "lake")
    .replace("EXPORTS_PREFIX", "exports")
    .replace("BINARIES_BUCKET", common::BUCKET)
    .replace("BINARIES_PREFIX", "bin")
    .replace("LOGS_BUCKET", common::BUCKET)
    .replace("LOGS_PREFIX", "logs")
    .replace("REGION", REGION)
    .replace("ACCOUNT_ID", ACCOUNT)
    .replace("GLUE_DATABASE", "fxpipe")
    .replace("CLIENT_ROLE", "fxpipe-client")
    // The test's node identity is a user (moto issues keys to users, not instance profiles).
    .replace("role/NODE_ROLE", "user/node");
    let mut value: Value = serde_json::from_str(&text).unwrap();
    let mut batch_deletes = Vec::new();
    for statement in value["Statement"].as_array_mut().unwrap() {
        statement.as_object_mut().unwrap().remove("Condition");
        let actions: Vec<String> = match &statement["Action"] {
            Value::String(one) => vec![one.clone()],
            Value::Array(many) => many
                .iter()
                .map(|a| a.as_str().unwrap().to_string())
                .collect(),
            other => panic!("{other}"),
        };
        let mut with_operations = actions.clone();
        for (action, operations) in OPERATIONS {
            if actions.iter().any(|a| a == action) {
                with_operations.extend(operations.iter().map(|o| o.to_string()));
            }
        }
        statement["Action"] = Value::from(with_operations);
        if actions.iter().any(|a| a == "s3:DeleteObject") {
            batch_deletes.push(serde_json::json!({
                "Effect": statement["Effect"],
                "Action": "s3:DeleteObjects",
                "Resource": format!("arn:aws:s3:::{}", common::BUCKET),
            }));
        }
    }
    value["Statement"]
        .as_array_mut()
        .unwrap()
        .extend(batch_deletes);
    let file = home.join(name);
    std::fs::write(&file, value.to_string()).unwrap();
    format!("file://{}", file.display())
}

/// The access key pair of a new user holding the named deploy/emr policy.
fn user(lake: &Lake, home: &Path, name: &str, policy: &str) -> (String, String) {
    let created = aws(
        lake,
        home,
        &[
            "iam",
            "create-policy",
            "--policy-name",
            name,
            "--policy-document",
            &document(policy, home),
        ],
    );
    let arn = created["Policy"]["Arn"].as_str().unwrap().to_string();
    aws(lake, home, &["iam", "create-user", "--user-name", name]);
    aws(
        lake,
        home,
        &[
            "iam",
            "attach-user-policy",
            "--user-name",
            name,
            "--policy-arn",
            &arn,
        ],
    );
    let key = aws(
        lake,
        home,
        &["iam", "create-access-key", "--user-name", name],
    );
    (
        key["AccessKey"]["AccessKeyId"]
            .as_str()
            .unwrap()
            .to_string(),
        key["AccessKey"]["SecretAccessKey"]
            .as_str()
            .unwrap()
            .to_string(),
    )
}

/// `fxpipe` as the steps run it: `AWS_PROFILE=fxpipe-client`, a profile that assumes the
/// client role from the node identity (on EMR: `credential_source = Ec2InstanceMetadata`; here
/// `source_profile`, the same assume-role path in aws-config).
fn as_client(lake: &Lake, config: &Path, args: &[&str]) -> Output {
    lake.command(args)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_CONFIG_FILE", config)
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            config.with_extension("credentials"),
        )
        .env("AWS_PROFILE", "fxpipe-client")
        .output()
        .unwrap()
}

/// `fxpipe` with the node role's keys alone.
fn as_node(lake: &Lake, node: &[(&'static str, String)], args: &[&str]) -> Output {
    lake.command(args)
        .envs(node.iter().cloned())
        .output()
        .unwrap()
}

fn ok(output: &Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{what} failed:\n{stderr}");
    assert!(!stderr.contains("AccessDenied"), "{what}:\n{stderr}");
    String::from_utf8_lossy(&output.stdout).to_string()
}

#[test]
fn the_nodes_role_reads_and_adds_files_and_only_the_client_role_commits_and_deletes() {
    if on_path("aws").is_none() {
        eprintln!("SKIPPED: the AWS CLI is not on PATH (tests/requirements.txt installs awscli)");
        return;
    }
    let lake = Lake::s3();
    let home = tempfile::tempdir().unwrap();
    // Set-up as the administrator: rates, the exports, the identities.
    ingest_golden_rates(&lake, "2017-07-02");
    let csv = std::fs::read(golden_dir().join("transactions.csv")).unwrap();
    lake.moto().put(common::BUCKET, "exports/2017-06.csv", &csv);
    let (node_key, node_secret) = user(&lake, home.path(), "node", "iam-node-policy.json");
    let role = aws(
        &lake,
        home.path(),
        &[
            "iam",
            "create-role",
            "--role-name",
            "fxpipe-client",
            "--assume-role-policy-document",
            &document("iam-client-trust.json", home.path()),
        ],
    );
    let role_arn = role["Role"]["Arn"].as_str().unwrap().to_string();
    let client_policy = aws(
        &lake,
        home.path(),
        &[
            "iam",
            "create-policy",
            "--policy-name",
            "fxpipe-client",
            "--policy-document",
            &document("iam-client-policy.json", home.path()),
        ],
    );
    aws(
        &lake,
        home.path(),
        &[
            "iam",
            "attach-role-policy",
            "--role-name",
            "fxpipe-client",
            "--policy-arn",
            client_policy["Policy"]["Arn"].as_str().unwrap(),
        ],
    );
    let config = home.path().join("steps-config");
    std::fs::write(
        &config,
        format!(
            "[profile fxpipe-client]\nrole_arn = {role_arn}\nsource_profile = node\nregion = {REGION}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        config.with_extension("credentials"),
        format!("[node]\naws_access_key_id = {node_key}\naws_secret_access_key = {node_secret}\n"),
    )
    .unwrap();
    let node: Vec<(&'static str, String)> = vec![
        ("AWS_ACCESS_KEY_ID", node_key.clone()),
        ("AWS_SECRET_ACCESS_KEY", node_secret.clone()),
    ];
    let mut node_env = lake.moto().env();
    node_env.retain(|(name, _)| !name.starts_with("AWS_ACCESS") && !name.starts_with("AWS_SECRET"));
    node_env.extend(node.iter().cloned());

    lake.moto().enforce_iam();
    // The test's own key is refused now: the enforcement is on.
    let refused = lake.try_run(&["sql", "SELECT count(*) FROM rates"]);
    assert!(!refused.status.success(), "moto's IAM is not enforced");

    let cluster = Cluster::start(2, &node_env);
    let address = cluster.address();
    let exports = format!("s3://{}/exports/*.csv", common::BUCKET);
    ok(
        &as_client(&lake, &config, &["--cluster", &address, "load", &exports]),
        "load",
    );
    let processed = |lake: &Lake| {
        ok(
            &as_client(
                lake,
                &config,
                &["sql", "SELECT count(*) FROM processed", "--format", "csv"],
            ),
            "count",
        )
    };
    ok(
        &as_client(&lake, &config, &["--cluster", &address, "normalize"]),
        "normalize",
    );
    let query = "SELECT account_no, sum(withdrawal_sgd_amt), sum(deposit_sgd_amt) \
                 FROM processed GROUP BY account_no ORDER BY account_no";
    let distributed = ok(
        &as_client(
            &lake,
            &config,
            &["--cluster", &address, "sql", query, "--format", "csv"],
        ),
        "sql on the cluster",
    );
    let embedded = ok(
        &as_client(&lake, &config, &["sql", query, "--format", "csv"]),
        "sql",
    );
    assert_eq!(distributed, embedded);
    assert!(distributed.lines().count() > 1, "{distributed}");
    // Compaction and vacuum delete: the client role may.
    ok(&as_client(&lake, &config, &["optimize"]), "optimize");
    ok(
        &as_client(
            &lake,
            &config,
            &["vacuum", "--retention-hours", "0", "--force"],
        ),
        "vacuum",
    );
    let rows = processed(&lake);

    // The node role alone cannot commit: normalize writes its data files, its commit is
    // denied, in fxpipe's words (delta-rs calls it "Failed to read delta log object").
    ok(
        &as_node(&lake, &node, &["sql", "SELECT count(*) FROM processed"]),
        "a read as the node",
    );
    let normalize = as_node(&lake, &node, &["normalize"]);
    let said = String::from_utf8_lossy(&normalize.stderr).to_string();
    assert!(!normalize.status.success(), "the node role committed");
    assert!(
        said.contains("access to lake/banktxn/processed/_delta_log/"),
        "{said}"
    );
    assert!(said.contains("only the client's role commits"), "{said}");
    assert!(!said.contains("Failed to read"), "{said}");
    // Nor delete a data file, nor vacuum (whose log entries are commits too).
    let node_keys = Some((node_key.as_str(), node_secret.as_str()));
    let listed = aws_as(
        &lake,
        home.path(),
        node_keys,
        &[
            "s3api",
            "list-objects-v2",
            "--bucket",
            common::BUCKET,
            "--prefix",
            "lake/banktxn/processed/",
        ],
    );
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let file = listed["Contents"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o["Key"].as_str())
        .find(|k| k.ends_with(".parquet"))
        .expect("a data file of processed")
        .to_string();
    let removed = aws_as(
        &lake,
        home.path(),
        node_keys,
        &["s3", "rm", &format!("s3://{}/{file}", common::BUCKET)],
    );
    let said = String::from_utf8_lossy(&removed.stderr).to_string();
    assert!(
        !removed.status.success() && said.contains("AccessDenied"),
        "{said}"
    );
    let vacuum = as_node(
        &lake,
        &node,
        &["vacuum", "--retention-hours", "0", "--force"],
    );
    let said = String::from_utf8_lossy(&vacuum.stderr).to_string();
    assert!(!vacuum.status.success(), "the node role deleted:\n{said}");
    assert_eq!(processed(&lake), rows);
    let problems = cluster.problems();
    assert!(!problems.contains("AccessDenied"), "{problems}");
}
