//! The SQL shell as a person uses it: typed into a real terminal (tmux), keys and all.
//! Multi-line statements, `\d`, `\timing`, `\format`, tab completion, the read-only refusal, a
//! Ctrl-C that cancels the query and not the shell, history kept across sessions; and
//! statements piped to standard input.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{golden_lake, Lake};

/// One tmux server of its own (a private socket), running `fxpipe sql` in a 160×50 terminal.
struct Terminal {
    socket: String,
    _dir: tempfile::TempDir,
}

impl Terminal {
    /// Starts `fxpipe --lake LAKE sql EXTRA…` in a new tmux session, with the environment the
    /// test harness gives every fxpipe run plus the history file.
    fn start(lake: &Lake, history: &Path, extra: &[&str]) -> Option<Self> {
        if Command::new("tmux").arg("-V").output().is_err() {
            assert!(
                std::env::var_os("FXPIPE_TEST_REQUIRE_TMUX").is_none(),
                "tmux is required (FXPIPE_TEST_REQUIRE_TMUX) but not installed"
            );
            eprintln!("SKIPPED: tmux is not installed (apt-get install tmux)");
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        // The command and its environment in a script, so tmux's own environment and quoting
        // play no part.
        let command = lake.command(&[&["sql"], extra].concat());
        // The script survives the Ctrl-C typed to fxpipe (a handler, not an ignore, so fxpipe
        // starts with SIGINT's default action, as from a login shell).
        let mut script = String::from("#!/bin/sh\ntrap : INT\n");
        for (name, value) in command.get_envs() {
            let name = name.to_string_lossy();
            match value {
                Some(value) => script.push_str(&format!(
                    "export {name}='{}'\n",
                    value.to_string_lossy().replace('\'', "'\\''")
                )),
                None => script.push_str(&format!("unset {name}\n")),
            }
        }
        script.push_str(&format!(
            "export FXPIPE_HISTORY='{}'\nexport TERM=xterm-256color\n'{}'",
            history.display(),
            command.get_program().to_string_lossy()
        ));
        for arg in command.get_args() {
            script.push_str(&format!(" '{}'", arg.to_string_lossy()));
        }
        script.push_str("\necho \"[exited $?]\"; sleep 600\n");
        let path = dir.path().join("run.sh");
        std::fs::write(&path, script).expect("script");
        let socket = format!("fxpipe-repl-{}-{}", std::process::id(), rand_suffix());
        let status = Command::new("tmux")
            .args([
                "-L",
                &socket,
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-s",
                "t",
            ])
            .args(["-x", "160", "-y", "50"])
            .arg(format!("sh {}", path.display()))
            .status()
            .expect("tmux");
        assert!(status.success(), "tmux new-session failed");
        Some(Self { socket, _dir: dir })
    }

    fn tmux(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux");
        String::from_utf8_lossy(&output.stdout).to_string()
    }

    /// Types text literally, as keystrokes. (tmux reads an argument ending in `;` as the end
    /// of its command, so a final `;` is sent escaped.)
    fn type_text(&self, text: &str) {
        let text = match text.strip_suffix(';') {
            Some(head) => format!("{head}\\;"),
            None => text.to_string(),
        };
        self.tmux(&["send-keys", "-t", "t", "-l", &text]);
    }

    /// Presses named keys: Enter, Tab, C-c, C-d.
    fn press(&self, key: &str) {
        self.tmux(&["send-keys", "-t", "t", key]);
    }

    fn line(&self, text: &str) {
        self.type_text(text);
        self.press("Enter");
    }

    /// The whole screen and scrollback.
    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "t", "-S", "-2000"])
    }

    /// Waits until `text` appears `times` times on the screen; panics with the screen if not.
    fn wait_for_n(&self, text: &str, times: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let screen = self.screen();
            if screen.matches(text).count() >= times {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "{text:?} did not appear {times} times; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_for(&self, text: &str) -> String {
        self.wait_for_n(text, 1)
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        self.tmux(&["kill-server"]);
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

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
    // Ctrl-C at the prompt clears the line and keeps the shell.
    term.type_text("SELECT 'dropped'");
    term.press("C-c");
    term.line("SELECT 'kept' AS k;");
    let screen = term.wait_for("k\nkept");
    assert!(!screen.contains("dropped\n"), "{screen}");
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
