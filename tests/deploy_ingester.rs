//! The ingester's deploy files (`deploy/ingester/`): units that systemd itself accepts, a
//! Dockerfile hadolint accepts, and no key in any of them.
//!
//! `systemd-analyze verify` and `hadolint` are run where they are installed (the tests say so
//! and pass when they are not); the content checks run everywhere.

use std::path::{Path, PathBuf};
use std::process::Command;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/ingester");
const DAEMON: &str = "fxpipe-ingest.service";
const ONCE: &str = "fxpipe-ingest-once.service";
const TIMER: &str = "fxpipe-ingest.timer";
const INSTALLED_BINARY: &str = "/usr/local/bin/fxpipe";

fn read(name: &str) -> String {
    std::fs::read_to_string(Path::new(DIR).join(name))
        .unwrap_or_else(|e| panic!("{DIR}/{name}: {e}"))
}

/// A program on PATH, like `command -v`.
fn on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// The value of `key=` in a unit (the last one wins, as in systemd).
fn setting<'a>(unit: &'a str, key: &str) -> Option<&'a str> {
    unit.lines()
        .filter_map(|line| line.trim().strip_prefix(key)?.strip_prefix('='))
        .next_back()
}

fn seconds(value: &str) -> u64 {
    let (number, unit) = value.split_at(
        value
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(value.len()),
    );
    let number: u64 = number
        .parse()
        .unwrap_or_else(|_| panic!("not a time span: {value}"));
    match unit {
        "" | "s" => number,
        "min" => number * 60,
        "h" => number * 3600,
        other => panic!("unit {other:?} of {value} not handled by this test"),
    }
}

#[test]
fn the_units_pass_systemd_analyze_verify() {
    let Some(analyze) = on_path("systemd-analyze") else {
        eprintln!("SKIPPED: systemd-analyze is not on PATH, the units were not verified");
        return;
    };
    // The units run /usr/local/bin/fxpipe, which verify checks is executable: copies run the
    // binary under test instead, so a wrong ExecStart path or a bad setting still shows.
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for name in [DAEMON, ONCE, TIMER] {
        let text = read(name).replace(INSTALLED_BINARY, env!("CARGO_BIN_EXE_fxpipe"));
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        paths.push(path);
    }
    let output = Command::new(analyze)
        .arg("verify")
        .arg("--man=no")
        .args(&paths)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "systemd-analyze verify failed:\n{stderr}"
    );
    // verify exits 0 on unknown keys and unparsable values ("..., ignoring"): any word about
    // our files is a defect.
    let dir_text = dir.path().display().to_string();
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|line| {
            line.contains(&dir_text) || [DAEMON, ONCE, TIMER].iter().any(|u| line.contains(u))
        })
        .collect();
    assert!(
        complaints.is_empty(),
        "systemd-analyze verify complains:\n{}",
        complaints.join("\n")
    );
}

#[test]
fn the_services_read_the_key_from_a_file_and_run_sandboxed() {
    for name in [DAEMON, ONCE] {
        let unit = read(name);
        for (key, value) in [
            ("EnvironmentFile", "/etc/fxpipe/ingest.env"),
            ("User", "fxpipe-ingest"),
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"),
            ("KillSignal", "SIGTERM"),
            ("CapabilityBoundingSet", ""),
        ] {
            assert_eq!(setting(&unit, key), Some(value), "{name}: {key}");
        }
        let exec = setting(&unit, "ExecStart").unwrap();
        assert!(exec.starts_with(INSTALLED_BINARY), "{name}: {exec}");
        for word in ["OXR", "APP_ID", "app_id", "key", "token", "Token"] {
            assert!(
                !exec.contains(word),
                "{name}: ExecStart mentions {word}: {exec}"
            );
        }
        // SIGTERM finishes the day in flight: give it minutes before SIGKILL.
        let stop = seconds(setting(&unit, "TimeoutStopSec").unwrap());
        assert!(stop >= 300, "{name}: TimeoutStopSec {stop}s");
    }
    let daemon = read(DAEMON);
    assert_eq!(setting(&daemon, "Type"), Some("simple"));
    assert_eq!(setting(&daemon, "Restart"), Some("on-failure"));
    let exec = setting(&daemon, "ExecStart").unwrap();
    assert!(
        exec.contains(" ingest --daemon --schedule \"0 8 * * *\" --http 127.0.0.1:9108"),
        "{exec}"
    );

    let once = read(ONCE);
    assert_eq!(setting(&once, "Type"), Some("oneshot"));
    assert_eq!(
        setting(&once, "ExecStart"),
        Some("/usr/local/bin/fxpipe ingest --latest")
    );

    let timer = read(TIMER);
    assert_eq!(setting(&timer, "OnCalendar"), Some("*-*-* 08:00:00 UTC"));
    assert_eq!(setting(&timer, "Persistent"), Some("true"));
    assert_eq!(setting(&timer, "Unit"), Some(ONCE));
    assert_eq!(setting(&timer, "WantedBy"), Some("timers.target"));
}

/// Runs of at least 32 hex digits (an OXR App ID is 32) or an AWS access key id.
fn secret_looking(text: &str) -> Option<String> {
    let mut run = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_hexdigit() {
            run.push(c);
        } else {
            if run.len() >= 32 {
                return Some(run);
            }
            run.clear();
        }
    }
    text.match_indices("AKIA").find_map(|(i, _)| {
        let id: String = text[i..].chars().take(20).collect();
        (id.len() == 20
            && id
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()))
        .then_some(id)
    })
}

#[test]
fn no_deploy_file_holds_a_secret() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(DIR)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 6, "{files:?}");
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        assert_eq!(secret_looking(&text), None, "{}", path.display());
        for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
            // KEY=value, ENV KEY=value, ARG KEY=value, Environment=KEY=value, -e KEY=value.
            for (left, value) in line
                .split_whitespace()
                .filter_map(|word| word.rsplit_once('='))
            {
                let key = left.rsplit('=').next().unwrap_or(left).to_ascii_uppercase();
                if ["APP_ID", "SECRET", "TOKEN", "PASSWORD", "ACCESS_KEY"]
                    .iter()
                    .any(|k| key.contains(k))
                {
                    assert!(value.is_empty(), "{}: {line}", path.display());
                }
            }
        }
    }
    // The example names the key's variable, with no value.
    let example = read("ingest.env.example");
    assert!(example.lines().any(|l| l == "#OXR_APP_ID="), "{example}");
    assert!(example.contains("0600"));
    // The self-check finds what it looks for.
    assert!(secret_looking("OXR_APP_ID=0123456789abcdef0123456789abcdef").is_some());
    assert!(secret_looking("id AKIAIOSFODNN7EXAMPLE").is_some());
    assert_eq!(secret_looking("FXPIPE_LAKE=/var/lib/fxpipe/lake"), None);
}

#[test]
fn the_dockerfile_is_multi_stage_non_root_and_keyless() {
    let dockerfile = read("Dockerfile");
    let instructions: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let from: Vec<&&str> = instructions
        .iter()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(from.len(), 2, "{from:?}");
    assert!(from[0].ends_with(" AS build"), "{from:?}");
    let user = instructions
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .unwrap();
    assert!(
        !user.starts_with("root") && !user.starts_with("0"),
        "USER {user}"
    );
    assert!(instructions.contains(&r#"ENTRYPOINT ["fxpipe"]"#));
    let cmd = instructions
        .iter()
        .find_map(|l| l.strip_prefix("CMD "))
        .unwrap();
    assert!(cmd.starts_with(r#"["ingest", "--daemon""#), "{cmd}");
    for line in &instructions {
        if line.starts_with("ARG ") || line.starts_with("ENV ") {
            assert!(!line.contains("OXR") && !line.contains("APP_ID"), "{line}");
        }
    }
}

#[test]
fn the_dockerfile_passes_hadolint() {
    let Some(hadolint) = on_path("hadolint") else {
        eprintln!(
            "SKIPPED: hadolint is not on PATH (pip install -r tests/requirements.txt installs it), \
             the Dockerfile was not linted"
        );
        return;
    };
    let output = Command::new(hadolint)
        .arg("--no-color")
        .arg(Path::new(DIR).join("Dockerfile"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "hadolint:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
