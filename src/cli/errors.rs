//! How an error reads on stderr: its chain of causes, each once, then any hint.
//!
//! Many errors print their source inside their own message (thiserror's `"…: {source}"`,
//! DataFusion's diagnostics) and also return it from `source()`, so walking the chain naively
//! prints the same cause two or three times. The library's error types are right to carry both
//! (callers may want either); the repeat is a printing problem, fixed here at the edge.

use std::fmt;

/// Advice attached to an error with `.context(Hint(..))`: printed after the causes, on its own
/// line, rather than in front of them as a context would be.
#[derive(Debug)]
pub struct Hint(pub String);

impl fmt::Display for Hint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The run was stopped by Ctrl-C (SIGINT): the process exits with 130 (128 + SIGINT), as a
/// shell reports a command killed by it, so a script tells an interruption from a failure.
#[derive(Debug)]
pub struct Interrupted(pub String);

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "interrupted: {}", self.0)
    }
}

impl std::error::Error for Interrupted {}

/// The text printed for an error (without the `error: ` prefix): the causes joined with `: `,
/// skipping each cause whose text the line already contains, then `hint: …` lines.
pub fn render(error: &anyhow::Error) -> String {
    let mut hints = Vec::new();
    let mut line = String::new();
    for (i, cause) in error.chain().enumerate() {
        let text = cause.to_string();
        let text = text.trim();
        // A hint is always the outermost context; `chain()` yields it as its first entry.
        if i == 0 {
            if let Some(hint) = error.downcast_ref::<Hint>() {
                hints.push(hint.0.clone());
                continue;
            }
        }
        if text.is_empty() || line.contains(text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(text);
    }
    for hint in hints {
        line.push_str("\nhint: ");
        line.push_str(&hint);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read {path}: {source}")]
    struct ReadError {
        path: String,
        source: std::io::Error,
    }

    #[test]
    fn a_cause_already_in_the_message_is_printed_once() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let io_text = io.to_string();
        let error = anyhow::Error::new(ReadError {
            path: "nope.csv".into(),
            source: io,
        })
        .context("loading nope.csv");
        let text = render(&error);
        assert_eq!(
            text,
            format!("loading nope.csv: cannot read nope.csv: {io_text}")
        );
        assert_eq!(text.matches(&io_text).count(), 1);
    }

    #[test]
    fn distinct_causes_are_all_printed_and_a_hint_comes_last() {
        let error = anyhow::anyhow!("table 'nope' not found")
            .context("planning the query")
            .context(Hint("tables: rates, processed".into()));
        assert_eq!(
            render(&error),
            "planning the query: table 'nope' not found\nhint: tables: rates, processed"
        );
    }
}
