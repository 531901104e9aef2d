//! The SQL shell as a person uses it: typed into a real terminal (tmux), keys and all.
//! Multi-line statements, `\d`, `\timing`, `\format`, tab completion, the read-only refusal, a
//! Ctrl-C that cancels the query and not the shell, history kept across sessions; and
//! statements piped to standard input.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::golden_lake;
use common::terminal::Terminal;

/// The prompt as tmux captures it (trailing spaces trimmed).
const PROMPT: &str = "fxpipe>";

#[test]
fn the_shell_runs_multi_line_statements_describes_tables_and_keeps_history() {
    let lake = golden_lake();
    let history = lake.file("history");
    let processed = lake.count("processed");
    let Some(term) = Terminal::start(&lake, &history, &[]) else {
        return;
    };
    term.wait_for("\\? for help");
    term.wait_for(PROMPT);

    // A statement over two lines runs at its `;`.
    term.line("SELECT count(*) AS processed_rows");
    term.line("FROM processed;");
    term.wait_for("processed_rows");
    let screen = term.wait_for_n(PROMPT, 2);
    assert!(
        screen.contains(&format!("| {processed} ")) || screen.contains(&format!(" {processed} |")),
        "the count {processed} is shown:\n{screen}"
    );

    // \d lists the tables with their Delta versions; \d NAME describes one.
    term.line("\\d");
    let screen = term.wait_for("rates_errors");
    assert!(screen.contains("version"), "{screen}");
    assert!(screen.contains("transactions"), "{screen}");
    term.line("\\d processed");
    let screen = term.wait_for("Delta version");
    assert!(screen.contains("withdrawal_sgd_amt"), "{screen}");
    assert!(screen.contains("Decimal128"), "{screen}");
    assert!(
        screen.contains(&format!("{processed} rows in")),
        "the row count: {screen}"
    );

    // \timing and \format.
    term.line("\\timing");
    term.wait_for("timing is on");
    term.line("\\format csv");
    term.wait_for("format is csv");
    term.line("SELECT 40 + 2 AS answer;");
    let screen = term.wait_for("1 row in");
    assert!(screen.contains("answer\n42\n"), "CSV output: {screen}");

    // Tab completes a table name (and a keyword, in the case typed).
    term.type_text("sel");
    term.press("Tab");
    term.type_text(" count(*) AS completed FROM proce");
    term.press("Tab");
    term.type_text(";");
    term.press("Enter");
    let screen = term.wait_for("completed\n");
    assert!(
        screen.contains("select count(*) AS completed FROM processed;"),
        "completed line: {screen}"
    );
    assert!(
        screen.contains(&format!("completed\n{processed}\n")),
        "{screen}"
    );

    // Writes are refused, errors are shown, and the shell goes on.
    term.line("DELETE FROM processed;");
    term.wait_for("refused");
    term.line("SELECT * FROM no_such_table;");
    term.wait_for("tables in");
    term.line("\\nonsense");
    term.wait_for("unknown command");
    term.line("SELECT 'still here' AS shell;");
    term.wait_for("still here");

    term.wait_for_prompt(PROMPT);
    term.line("\\q");
    term.wait_for("[exited 0]");
    let kept = std::fs::read_to_string(&history).expect("history file written");
    assert!(kept.contains("SELECT 40 + 2 AS answer;"), "{kept}");
    assert_eq!(lake.count("processed"), processed, "nothing was deleted");

    // The next session has the history: Up brings back the last statement.
    let Some(term) = Terminal::start(&lake, &history, &["--format", "csv"]) else {
        return;
    };
    term.wait_for(PROMPT);
    term.press("Up");
    term.press("Up");
    term.press("Enter");
    term.wait_for("still here");
    // Ctrl-D only once the prompt is back: pressed while the query still prints, the terminal
    // is not yet in the editor's raw mode and the EOF is lost.
    term.wait_for_n(PROMPT, 2);
    term.press("C-d");
    term.wait_for("[exited 0]");
}

#[test]
fn ctrl_c_cancels_the_running_query_not_the_shell() {
    let lake = golden_lake();
    let history = lake.file("history");
    let Some(term) = Terminal::start(&lake, &history, &["--format", "csv"]) else {
        return;
    };
    term.wait_for(PROMPT);
    // Minutes of work in a debug build.
    term.line("SELECT sum(value % 7) AS long_sum FROM generate_series(1, 20000000000);");
    std::thread::sleep(Duration::from_secs(2));
    let started = Instant::now();
    term.press("C-c");
    term.wait_for("cancelled");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the query stopped promptly"
    );
    term.line("SELECT 'alive' AS after_cancel;");
    let screen = term.wait_for("after_cancel\nalive");
    assert!(
        !screen.contains("long_sum\n"),
        "no result of the cancelled query: {screen}"
    );
    // Ctrl-C at the prompt clears the line and keeps the shell. Keys go once the editor is
    // back (the third prompt), as a person sees the prompt before typing: sent earlier they
    // reach a terminal not yet in raw mode.
    term.wait_for_n(PROMPT, 3);
    term.type_text("SELECT 'dropped'");
    term.wait_for("SELECT 'dropped'");
    term.press("C-c");
    term.wait_for_n(PROMPT, 4);
    term.line("SELECT 'kept' AS k;");
    let screen = term.wait_for("k\nkept");
    assert!(!screen.contains("dropped\n"), "{screen}");
    term.wait_for_prompt(PROMPT);
    term.line("\\q");
    term.wait_for("[exited 0]");
}

#[test]
fn statements_piped_to_standard_input_run_like_a_file() {
    let lake = golden_lake();
    let mut child = lake
        .command(&["sql", "--format", "csv"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("fxpipe");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"SELECT 1 AS a;\nSELECT count(*) AS n FROM processed;\n")
        .unwrap();
    let output = child.wait_with_output().expect("wait");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout,
        format!("a\n1\nn\n{}\n", lake.count("processed")),
        "both results, no shell banner"
    );

    // A write piped in is refused like a write given as the query.
    let mut child = lake
        .command(&["sql"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("fxpipe");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"DROP TABLE processed;")
        .unwrap();
    let output = child.wait_with_output().expect("wait");
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("refused"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_shell_runs_its_statements_on_a_cluster() {
    let lake = golden_lake();
    let cluster = common::cluster::Cluster::start(2, &[]);
    let query = "SELECT year, month, CAST(sum(deposit_sgd_amt) AS VARCHAR) AS deposits FROM processed GROUP BY year, month ORDER BY year, month;";
    let embedded = lake.run(&["sql", query, "--format", "csv"]);
    let history = lake.file("history");
    let address = cluster.address();
    let Some(term) = Terminal::start(&lake, &history, &["--cluster", &address, "--format", "csv"])
    else {
        return;
    };
    term.wait_for("the Ballista cluster at");
    term.wait_for(PROMPT);
    term.line(query);
    let screen = term.wait_for_n(PROMPT, 2);
    assert!(
        screen.contains(embedded.trim_end()),
        "the cluster's rows equal embedded ({embedded}):\n{screen}"
    );
    term.wait_for_prompt(PROMPT);
    // Once the job has ended its progress bar is gone, not ticking over the prompt (it did,
    // and the prompt sometimes never showed).
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let screen = term.screen();
    let last = screen
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    assert!(
        last.starts_with(PROMPT),
        "the prompt is not the last line:\n{screen}"
    );
    term.line("\\q");
    term.wait_for("[exited 0]");
    let jobs = cluster.http_get("/api/jobs").expect("the scheduler's jobs");
    assert!(
        jobs.contains("job_id"),
        "the query ran on the cluster: {jobs}"
    );
}
