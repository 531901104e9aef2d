//! A real terminal for tests of what people see: fxpipe in tmux, keys sent, the screen read.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::Lake;

/// One tmux server of its own (a private socket), running `fxpipe` in a 160×50 terminal.
pub struct Terminal {
    socket: String,
    _dir: tempfile::TempDir,
}

impl Terminal {
    /// Starts `fxpipe --lake LAKE sql EXTRA…` in a new tmux session, with the environment the
    /// test harness gives every fxpipe run plus the history file.
    pub fn start(lake: &Lake, history: &Path, extra: &[&str]) -> Option<Self> {
        Self::run(lake, history, &[&["sql"], extra].concat())
    }

    /// Starts `fxpipe --lake LAKE ARGS…` in a new tmux session; `None` (the test skips) when
    /// tmux is missing and not required. After fxpipe ends the pane shows `[exited STATUS]`.
    pub fn run(lake: &Lake, history: &Path, args: &[&str]) -> Option<Self> {
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
        let command = lake.command(args);
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

    pub fn tmux(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux");
        String::from_utf8_lossy(&output.stdout).to_string()
    }

    /// Types text literally, as keystrokes. (tmux reads an argument ending in `;` as the end
    /// of its command, so a final `;` is sent escaped.)
    pub fn type_text(&self, text: &str) {
        let text = match text.strip_suffix(';') {
            Some(head) => format!("{head}\\;"),
            None => text.to_string(),
        };
        self.tmux(&["send-keys", "-t", "t", "-l", &text]);
    }

    /// Presses named keys: Enter, Tab, C-c, C-d.
    pub fn press(&self, key: &str) {
        self.tmux(&["send-keys", "-t", "t", key]);
    }

    pub fn line(&self, text: &str) {
        self.type_text(text);
        self.press("Enter");
    }

    /// The whole screen and scrollback.
    pub fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "t", "-S", "-2000"])
    }

    /// Waits until `text` appears `times` times on the screen; panics with the screen if not.
    pub fn wait_for_n(&self, text: &str, times: usize) -> String {
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

    /// Waits until the screen's last line is the bare prompt: the program waits for input.
    pub fn wait_for_prompt(&self, prompt: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let screen = self.screen();
            if screen.lines().rev().find(|l| !l.trim().is_empty()) == Some(prompt) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no prompt {prompt:?}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn wait_for(&self, text: &str) -> String {
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
