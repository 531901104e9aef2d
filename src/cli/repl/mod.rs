//! `fxpipe sql` on a terminal: an interactive shell, as datafusion-cli and DuckDB users know.
//!
//! Statements end with `;` and may span lines; backslash commands ([`commands`]) take one line.
//! The shell is read-only like one-shot `sql`: every statement goes through the same
//! [`Statements`] planning and read-only check. Ctrl-C while a query runs cancels that query
//! (its stream is dropped), not the shell; Ctrl-C at the prompt clears the line; Ctrl-D or `\q`
//! quits.

mod commands;
mod helper;

use std::path::PathBuf;
use std::time::Instant;

use rustyline::error::ReadlineError;
use rustyline::history::FileHistory;
use rustyline::Editor;

use super::errors;
use super::print::{self, Format, MaxRows};
use super::statements::{self, Statements};
use commands::Outcome;
use helper::SqlHelper;

/// What the shell's settings are now (`\format`, `\timing`).
pub(crate) struct Settings {
    pub(crate) format: Format,
    pub(crate) max_rows: MaxRows,
    pub(crate) timing: bool,
    pub(crate) base_currency: String,
}

/// The history file: FXPIPE_HISTORY, else `$XDG_STATE_HOME/fxpipe/sql_history` (by default
/// `~/.local/state/fxpipe/sql_history`). `None` when there is no home to keep it in.
fn history_file() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("FXPIPE_HISTORY") {
        return Some(PathBuf::from(path));
    }
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state"))
        })?;
    Some(state.join("fxpipe").join("sql_history"))
}

pub(crate) async fn run(
    session: Statements<'_>,
    format: Format,
    max_rows: MaxRows,
    base_currency: &str,
) -> anyhow::Result<()> {
    let mut settings = Settings {
        format,
        max_rows,
        timing: false,
        base_currency: base_currency.to_string(),
    };
    let mut editor: Editor<SqlHelper, FileHistory> = Editor::new()?;
    editor.set_helper(Some(SqlHelper::new(&session).await));
    let history = history_file();
    if let Some(path) = &history {
        // A first run has no file yet; any other problem only costs the history.
        let _ = editor.load_history(path);
    }
    let engine = match session.engine.cluster_address() {
        Some(address) => format!("the Ballista cluster at {address}"),
        None => "this process".to_string(),
    };
    eprintln!(
        "fxpipe {} SQL shell: {} on {} (read-only).\n\
         End statements with ;  \\? for help, \\q to quit.",
        env!("CARGO_PKG_VERSION"),
        session.lake.display(),
        engine,
    );
    loop {
        let read = tokio::task::block_in_place(|| editor.readline("fxpipe> "));
        let text = match read {
            Ok(text) => text,
            // Ctrl-C at the prompt drops the line being typed, as in psql.
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        let trimmed = text.trim();
        if trimmed.is_empty() {
            continue;
        }
        let _ = editor.add_history_entry(trimmed);
        if let Some(command) = trimmed.strip_prefix('\\') {
            match commands::run(command, &session, &mut settings).await {
                Ok(Outcome::Continue) => {}
                Ok(Outcome::Quit) => break,
                Err(e) => report(&e),
            }
        } else {
            run_text(trimmed, &session, &settings).await;
        }
    }
    if let Some(path) = &history {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Err(e) = editor.save_history(path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot save the shell's history");
        }
    }
    Ok(())
}

/// Runs each statement of one entry; an error ends the entry, never the shell.
async fn run_text(text: &str, session: &Statements<'_>, settings: &Settings) {
    let parsed = match statements::parse(text) {
        Ok(parsed) => parsed,
        Err(e) => return report(&e),
    };
    for statement in parsed {
        let started = Instant::now();
        let run = async {
            let frame = session.plan(statement).await?;
            print::print(
                frame,
                settings.format,
                settings.max_rows,
                &settings.base_currency,
            )
            .await
        };
        let outcome = tokio::select! {
            outcome = run => outcome,
            _ = tokio::signal::ctrl_c() => {
                session.engine.settle_progress().await;
                eprintln!("cancelled");
                return;
            }
        };
        // The cluster's progress bar is drawn by another task: off the terminal before the
        // timing, an error or the next prompt, or it would clear or overwrite them.
        session.engine.settle_progress().await;
        match outcome {
            Ok(rows) => {
                if settings.timing {
                    eprintln!(
                        "{rows} {} in {:.3} s",
                        if rows == 1 { "row" } else { "rows" },
                        started.elapsed().as_secs_f64()
                    );
                }
            }
            Err(e) => return report(&e),
        }
    }
}

fn report(error: &anyhow::Error) {
    eprintln!("error: {}", errors::render(error));
}
