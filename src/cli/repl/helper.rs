//! The line editor's helper: tab completion of table names, column names, keywords and
//! backslash commands, and multi-line input (a statement is complete at its `;`).

use std::borrow::Cow;

use rustyline::completion::{Completer, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Helper};

use crate::cli::statements::Statements;

/// The keywords offered by completion: the ones read-only queries use.
const KEYWORDS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP",
    "BY",
    "ORDER",
    "HAVING",
    "LIMIT",
    "OFFSET",
    "JOIN",
    "LEFT",
    "RIGHT",
    "FULL",
    "INNER",
    "OUTER",
    "CROSS",
    "ON",
    "USING",
    "AS",
    "AND",
    "OR",
    "NOT",
    "IN",
    "IS",
    "NULL",
    "LIKE",
    "ILIKE",
    "BETWEEN",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "DISTINCT",
    "UNION",
    "ALL",
    "EXCEPT",
    "INTERSECT",
    "WITH",
    "OVER",
    "PARTITION",
    "ROWS",
    "ASC",
    "DESC",
    "NULLS",
    "FIRST",
    "LAST",
    "CAST",
    "COUNT",
    "SUM",
    "AVG",
    "MIN",
    "MAX",
    "EXPLAIN",
    "ANALYZE",
    "SHOW",
    "TABLES",
    "COLUMNS",
    "DESCRIBE",
    "VALUES",
    "TRUE",
    "FALSE",
    "DATE",
    "INTERVAL",
    "EXTRACT",
    "COALESCE",
    "ROUND",
    "DECIMAL",
];

const COMMANDS: &[&str] = &["\\d", "\\timing", "\\format", "\\q", "\\?"];

pub(crate) struct SqlHelper {
    tables: Vec<String>,
    columns: Vec<String>,
}

impl SqlHelper {
    /// Reads the names once, when the shell opens: the shell registers the tables' versions
    /// of that moment too.
    pub(crate) async fn new(session: &Statements<'_>) -> Self {
        let tables: Vec<String> = session.registered.iter().map(|t| t.to_string()).collect();
        let mut columns = Vec::new();
        for table in &tables {
            if let Ok(provider) = session.engine.ctx().table_provider(table.as_str()).await {
                columns.extend(provider.schema().fields().iter().map(|f| f.name().clone()));
            }
        }
        columns.sort();
        columns.dedup();
        Self { tables, columns }
    }

    fn candidates(&self, line: &str, word: &str) -> Vec<Pair> {
        if line.trim_start().starts_with('\\') && !line.trim_start().contains(' ') {
            return COMMANDS
                .iter()
                .filter(|c| c.starts_with(word))
                .map(|c| pair(c))
                .collect();
        }
        if word.is_empty() {
            return Vec::new();
        }
        let lower = word.to_ascii_lowercase();
        let mut found: Vec<Pair> = self
            .tables
            .iter()
            .chain(&self.columns)
            .filter(|name| name.to_ascii_lowercase().starts_with(&lower))
            .map(|name| pair(name))
            .collect();
        // Keywords in the case being typed: `sel` completes to `select`.
        let upper = word.chars().any(|c| c.is_ascii_uppercase());
        found.extend(
            KEYWORDS
                .iter()
                .filter(|k| k.to_ascii_lowercase().starts_with(&lower))
                .map(|k| {
                    if upper {
                        pair(k)
                    } else {
                        pair(&k.to_ascii_lowercase())
                    }
                }),
        );
        found.dedup_by(|a, b| a.replacement == b.replacement);
        found
    }
}

fn pair(text: &str) -> Pair {
    Pair {
        display: text.to_string(),
        replacement: text.to_string(),
    }
}

impl Completer for SqlHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        let start = before
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == '\\' || c == '?'))
            .map_or(0, |i| i + 1);
        Ok((start, self.candidates(line, &before[start..])))
    }
}

impl Hinter for SqlHelper {
    type Hint = String;
}

impl Highlighter for SqlHelper {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        Cow::Borrowed(line)
    }
}

impl Validator for SqlHelper {
    /// A backslash command is one line; SQL waits for its `;`.
    fn validate(&self, ctx: &mut ValidationContext<'_>) -> rustyline::Result<ValidationResult> {
        let input = ctx.input().trim();
        if input.is_empty() || input.starts_with('\\') || input.ends_with(';') {
            Ok(ValidationResult::Valid(None))
        } else {
            Ok(ValidationResult::Incomplete)
        }
    }
}

impl Helper for SqlHelper {}
