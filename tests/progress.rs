//! Progress as people and log collectors see it: bars with rate and time left on a terminal
//! (tmux), none with `--quiet`, and periodic log lines when standard error is a pipe.

mod common;

use std::time::{Duration, Instant};

use common::terminal::Terminal;
use common::Lake;

/// A lake with 6 months of rates and a CSV of `rows` transactions beside it (not loaded).
fn lake_with_csv(rows: &str) -> (Lake, String) {
    let lake = Lake::new();
    let rates = lake.file("rates");
    let csv = lake.file("txns.csv");
    let range = ["--from", "2017-01-01", "--to", "2017-06-30"];
    lake.run(
        &[
            &["gen", "rates"][..],
            &range,
            &["--out", rates.to_str().unwrap()],
        ]
        .concat(),
    );
    lake.run(
        &[
            &["gen", "transactions", "--rows", rows][..],
            &range,
            &["--out", csv.to_str().unwrap()],
        ]
        .concat(),
    );
    let source = format!("file://{}", rates.display());
    lake.run(&[&["ingest", "--source", &source][..], &range].concat());
    (lake, csv.to_str().unwrap().to_string())
}

/// Every screen seen until the pane says the command ended, joined.
fn screens_until_exit(term: &Terminal) -> String {
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut seen = String::new();
    loop {
        let screen = term.screen();
        let done = screen.contains("[exited");
        seen.push_str(&screen);
        if done {
            return seen;
        }
        assert!(Instant::now() < deadline, "did not end:\n{screen}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn load_and_normalize_draw_bars_on_a_terminal_and_not_with_quiet() {
    let (lake, csv) = lake_with_csv("300000");
    let history = lake.file("history");
    let Some(term) = Terminal::run(&lake, &history, &["load", &csv]) else {
        return;
    };
    let seen = screens_until_exit(&term);
    assert!(seen.contains("[exited 0]"), "{seen}");
    let bar = seen
        .lines()
        .find(|l| l.starts_with("load [") && l.contains("MiB/s") && l.contains("left)"))
        .unwrap_or_else(|| panic!("no load bar with rate and time left:\n{seen}"));
    assert!(bar.contains("MiB/"), "bytes of the input's size: {bar}");
    drop(term);

    let Some(term) = Terminal::run(&lake, &history, &["normalize"]) else {
        return;
    };
    let seen = screens_until_exit(&term);
    assert!(seen.contains("[exited 0]"), "{seen}");
    assert!(
        seen.lines().any(|l| l.starts_with("normalize [")
            && l.contains(" rows ")
            && l.contains("/s")
            && l.contains("left)")),
        "no normalize bar of rows:\n{seen}"
    );
    drop(term);

    // --quiet: the same job, no bar on the terminal.
    let Some(term) = Terminal::run(&lake, &history, &["--quiet", "load", &csv]) else {
        return;
    };
    let seen = screens_until_exit(&term);
    assert!(seen.contains("[exited 0]"), "{seen}");
    assert!(
        !seen.lines().any(|l| l.starts_with("load [")),
        "a bar despite --quiet:\n{seen}"
    );
}

#[test]
fn without_a_terminal_progress_is_log_lines() {
    let (lake, csv) = lake_with_csv("300000");
    let output = lake
        .command(&["load", &csv])
        .env("FXPIPE_PROGRESS_SECONDS", "1")
        .output()
        .expect("fxpipe");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        !stderr.contains('\r'),
        "no bar redraws in a pipe: {stderr:?}"
    );
    let line = stderr
        .lines()
        .find(|l| l.contains("load: ") && l.contains("MiB of ") && l.contains("%)"))
        .unwrap_or_else(|| panic!("no progress log line:\n{stderr}"));
    assert!(line.contains("/s"), "{line}");

    // As JSON lines with --log-format json.
    let output = lake
        .command(&["--log-format", "json", "normalize"])
        .env("FXPIPE_PROGRESS_SECONDS", "1")
        .output()
        .expect("fxpipe");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    for line in stderr.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
    assert!(
        stderr.contains("normalize: ") && stderr.contains(" rows"),
        "a progress line of rows:\n{stderr}"
    );
}
