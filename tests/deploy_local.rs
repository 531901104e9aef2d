//! `deploy/local/up.sh`: the one-command local deployment. It starts moto, a scheduler, two
//! executors and the ingester sidecar; a cluster `load` and `normalize` run through the line
//! it prints, on the rates the sidecar stored; Ctrl-C (SIGINT) stops every process it started.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chrono::{Days, Utc};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/local/up.sh");

/// The running script; on drop (a failed test) it gets SIGTERM, and what it started is killed.
struct Deployment {
    script: Child,
    pids: Vec<i32>,
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if std::thread::panicking() {
            unsafe { libc::kill(self.script.id() as i32, libc::SIGTERM) };
            let _ = self.script.wait();
            for pid in &self.pids {
                unsafe { libc::kill(-pid, libc::SIGKILL) };
            }
        }
    }
}

/// What the script printed by its `ready` line.
struct Ready {
    env: Vec<(String, String)>,
    binary: PathBuf,
    lake: String,
    cluster: String,
    /// The client's TLS directory: the local cluster runs mutual TLS.
    tls_dir: String,
    pids: Vec<i32>,
    /// The try-out's commands, as printed (the arguments after `--tls-dir D`).
    try_out: Vec<Vec<String>>,
}

/// Reads stdout lines until `ready` (or the script ends, or a minute passes).
fn read_until_ready(stdout: ChildStdout) -> Result<Vec<String>, Vec<String>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut lines = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if line == "ready" => return Ok(lines),
            Ok(line) => lines.push(line),
            Err(_) => break,
        }
    }
    Err(lines)
}

fn parse_ready(lines: &[String]) -> Ready {
    let export = lines
        .iter()
        .find_map(|l| l.strip_prefix("export "))
        .expect("an export line");
    let env = export
        .split_whitespace()
        .map(|pair| {
            let (k, v) = pair.split_once('=').expect("KEY=value");
            (k.to_string(), v.to_string())
        })
        .collect();
    let commands: Vec<Vec<&str>> = lines
        .iter()
        .filter(|l| l.contains(" --lake s3://") && l.contains(" --cluster df://"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    let command = commands.first().expect("the fxpipe lines");
    assert_eq!(
        (command[1], command[3], command[5]),
        ("--lake", "--cluster", "--tls-dir"),
        "{command:?}"
    );
    let pids = lines
        .iter()
        .find_map(|l| l.strip_prefix("pids: "))
        .expect("a pids line")
        .split_whitespace()
        .map(|p| p.parse().expect("a pid"))
        .collect();
    Ready {
        env,
        binary: PathBuf::from(command[0]),
        lake: command[2].to_string(),
        cluster: command[4].to_string(),
        tls_dir: command[6].to_string(),
        pids,
        try_out: commands
            .iter()
            .map(|c| c[7..].iter().map(|a| a.to_string()).collect())
            .collect(),
    }
}

/// Runs `fxpipe --lake L --cluster C ARGS` with exactly the printed environment.
fn fxpipe(ready: &Ready, home: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(&ready.binary);
    for (name, _) in std::env::vars_os() {
        let text = name.to_string_lossy();
        if text.starts_with("FXPIPE_") || text.starts_with("AWS_") || text == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    command
        .args(["--lake", &ready.lake, "--cluster", &ready.cluster])
        .args(["--tls-dir", &ready.tls_dir])
        .args(args)
        .envs(ready.env.iter().map(|(k, v)| (k, v)))
        .env("AWS_CONFIG_FILE", home.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            home.join("no-aws-credentials"),
        )
        .output()
        .expect("run fxpipe")
}

fn run_ok(ready: &Ready, home: &Path, args: &[&str]) -> String {
    let output = fxpipe(ready, home, args);
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(
        output.status.success(),
        "fxpipe {args:?} failed:\n{}\n{stderr}",
        String::from_utf8_lossy(&output.stdout)
    );
    format!("{}{stderr}", String::from_utf8_lossy(&output.stdout))
}

fn csv_rows(ready: &Ready, home: &Path, sql: &str) -> Vec<Vec<String>> {
    let out = fxpipe(ready, home, &["sql", sql, "--format", "csv"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

/// `fxpipe ARGS --format csv` (a report or a query) on the quick start's own (local) lake.
fn quickstart_report(lake: &Path, args: &[&str]) -> String {
    let output = Command::new(common::cluster::binary("fxpipe"))
        .arg("--lake")
        .arg(lake)
        .args(args)
        .args(["--format", "csv"])
        .env_remove("RUST_LOG")
        .output()
        .expect("fxpipe report");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).to_string()
}

/// Processes whose environment carries the script's marker for this work dir.
fn marked_processes(work_dir: &Path) -> Vec<String> {
    let marker = format!("FXPIPE_LOCAL_CLUSTER={}", work_dir.display());
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ
            .split(|b| *b == 0)
            .any(|var| var == marker.as_bytes())
        {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            found.push(format!(
                "{}: {}",
                entry.file_name().to_string_lossy(),
                String::from_utf8_lossy(&cmdline).replace('\0', " ")
            ));
        }
    }
    found
}

/// A process that exists and is not a zombie.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            !stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

#[test]
fn up_runs_a_cluster_job_on_s3_and_ctrl_c_leaves_nothing_behind() {
    let bin_dir = common::cluster::binary("fxpipe-executor")
        .parent()
        .unwrap()
        .to_path_buf();
    let home = tempfile::tempdir().unwrap();
    for name in ["no-aws-config", "no-aws-credentials"] {
        std::fs::write(home.path().join(name), "").unwrap();
    }
    let work_dir = home.path().join("work");
    // The quick start, embedded, into a lake of its own: its sample is the try-out's input, and
    // its report what the cluster must print.
    let sample = home.path().join("sample");
    let quickstart_lake = home.path().join("quickstart-lake");
    let quickstart = Command::new(bin_dir.join("fxpipe"))
        .arg("--lake")
        .arg(&quickstart_lake)
        .args(["quickstart", "--inputs", sample.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("fxpipe quickstart");
    assert!(
        quickstart.status.success(),
        "{}",
        String::from_utf8_lossy(&quickstart.stderr)
    );
    let mut command = Command::new("bash");
    // A shell ignores SIGINT in what it starts in the background (POSIX), and an ignored
    // signal stays ignored through exec: bash could not trap it. The test may run under such a
    // shell, a user at a terminal does not: start the script with SIGINT's default action.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    let mut script = command
        .arg(SCRIPT)
        .args(["--executors", "2", "--bin-dir", bin_dir.to_str().unwrap()])
        .args(["--work-dir", work_dir.to_str().unwrap()])
        .args(["--sample", sample.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash deploy/local/up.sh");
    let stdout = script.stdout.take().unwrap();
    let mut deployment = Deployment {
        script,
        pids: Vec::new(),
    };
    let lines = match read_until_ready(stdout) {
        Ok(lines) => lines,
        Err(lines) => {
            // SIGTERM makes the script stop what it started and exit, so its stderr ends.
            unsafe { libc::kill(deployment.script.id() as i32, libc::SIGTERM) };
            let _ = deployment.script.wait();
            let mut stderr = String::new();
            if let Some(mut pipe) = deployment.script.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
            }
            panic!("up.sh never said ready:\n{}\n{stderr}", lines.join("\n"));
        }
    };
    let ready = parse_ready(&lines);
    deployment.pids = ready.pids.clone();
    // moto, the scheduler, two executors, the ingester.
    assert_eq!(ready.pids.len(), 5, "{lines:?}");
    assert!(
        ready.lake.starts_with("s3://fxpipe-local/"),
        "{}",
        ready.lake
    );
    assert!(
        ready.cluster.starts_with("df://127.0.0.1:"),
        "{}",
        ready.cluster
    );
    let env: Vec<&str> = ready.env.iter().map(|(k, _)| k.as_str()).collect();
    for key in [
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ] {
        assert!(env.contains(&key), "{key} missing from {env:?}");
    }
    assert!(ready
        .env
        .iter()
        .any(|(k, v)| k == "AWS_ENDPOINT_URL" && v.starts_with("http://127.0.0.1:")));

    // The sidecar's first catch-up stored the last 7 complete days of the sample rates.
    let today = Utc::now().date_naive();
    let first = today - Days::new(7);
    let days = csv_rows(
        &ready,
        home.path(),
        "SELECT count(DISTINCT run_date), CAST(min(run_date) AS VARCHAR), CAST(max(run_date) AS VARCHAR) FROM rates",
    );
    let yesterday = today - Days::new(1);
    assert_eq!(
        days,
        vec![vec![
            "7".to_string(),
            first.to_string(),
            yesterday.to_string()
        ]]
    );

    // The README's try-out, as printed: the daily job on the quick start's sample (its rates
    // for 2017-2018 ingested, its 10,000 transactions loaded, normalized), then a report, on
    // the cluster.
    let commands: Vec<Vec<&str>> = ready
        .try_out
        .iter()
        .map(|c| c.iter().map(String::as_str).collect())
        .collect();
    assert_eq!(
        commands.iter().map(|c| c[0]).collect::<Vec<_>>(),
        ["run", "report"],
        "{lines:?}"
    );
    let mut outputs = Vec::new();
    for command in &commands {
        outputs.push(run_ok(&ready, home.path(), command));
    }
    assert!(
        outputs[0].contains("10000 read, ") && outputs[0].contains(" rejected"),
        "{}",
        outputs[0]
    );
    assert!(
        outputs[0].contains("cluster job "),
        "not run on the cluster:\n{}",
        outputs[0]
    );
    // The sample's rates cover its dates: every amount the quick start converted was
    // converted on the cluster too (the sample's malformed rows include unknown currencies),
    // and most were.
    let unconverted = "SELECT count(*), count(*) FILTER (WHERE withdrawal_amt IS NOT NULL AND withdrawal_sgd_amt IS NULL) \
         + count(*) FILTER (WHERE deposit_amt IS NOT NULL AND deposit_sgd_amt IS NULL) FROM processed";
    let processed = csv_rows(&ready, home.path(), unconverted);
    assert_eq!(
        processed.concat(),
        quickstart_report(&quickstart_lake, &["sql", unconverted])
            .lines()
            .skip(1)
            .flat_map(|l| l.split(',').map(str::to_string).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    );
    let (rows, missing): (u64, u64) = (
        processed[0][0].parse().unwrap(),
        processed[0][1].parse().unwrap(),
    );
    assert!(rows > 9_000 && missing * 100 < rows, "{processed:?}");
    // The report the try-out ends with is the quick start's (embedded) one, amounts and all.
    let embedded = quickstart_report(&quickstart_lake, &["report", "creditworthiness"]);
    let distributed = fxpipe(
        &ready,
        home.path(),
        &["report", "creditworthiness", "--format", "csv"],
    );
    assert!(distributed.status.success());
    let distributed = String::from_utf8_lossy(&distributed.stdout).to_string();
    assert_eq!(distributed, embedded);
    assert!(distributed.lines().count() > 5, "{distributed}");
    assert!(outputs[1].contains("Creditworthiness"), "{}", outputs[1]);

    // Ctrl-C: the script stops everything and exits 130.
    let script_pid = deployment.script.id() as i32;
    assert_eq!(unsafe { libc::kill(script_pid, libc::SIGINT) }, 0);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = deployment.script.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "up.sh still running a minute after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(deployment.script.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("fxpipe local cluster stopped"), "{stderr}");
    let left: Vec<i32> = ready.pids.iter().copied().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "still running after Ctrl-C: {left:?}");
    assert_eq!(marked_processes(&work_dir), Vec::<String>::new());
}
