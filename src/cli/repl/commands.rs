//! The shell's backslash commands: `\d`, `\d NAME`, `\timing`, `\format`, `\?`, `\q`.

use std::io::Write;

use fxpipe::storage::{delta, Table};

use super::Settings;
use crate::cli::print::{self, Format};
use crate::cli::statements::Statements;

pub(crate) enum Outcome {
    Continue,
    Quit,
}

const HELP: &str = "\
  \\d            list the tables
  \\d NAME       describe a table: columns, types, Delta version, rows, files
  \\timing       show how long each statement takes (toggle; or \\timing on|off)
  \\format FMT   print results as table, csv, json or markdown
  \\q            quit (or Ctrl-D)
  \\?            this help
Statements end with ; and may span lines. Ctrl-C cancels a running query.";

/// Runs one command (the text after `\`).
pub(crate) async fn run(
    command: &str,
    session: &Statements<'_>,
    settings: &mut Settings,
) -> anyhow::Result<Outcome> {
    let mut words = command.split_whitespace();
    let name = words.next().unwrap_or_default();
    let argument = words.next();
    if let Some(extra) = words.next() {
        anyhow::bail!("\\{name}: unexpected {extra:?} (\\? lists the commands)");
    }
    match (name, argument) {
        ("q" | "quit", None) => return Ok(Outcome::Quit),
        ("?" | "h" | "help", None) => eprintln!("{HELP}"),
        ("d", None) => list(session).await?,
        ("d", Some(table)) => describe(session, table).await?,
        ("timing", None) => settings.timing = !settings.timing,
        ("timing", Some("on")) => settings.timing = true,
        ("timing", Some("off")) => settings.timing = false,
        ("timing", Some(other)) => anyhow::bail!("\\timing takes on or off, not {other:?}"),
        ("format", Some(format)) => {
            settings.format =
                <Format as clap::ValueEnum>::from_str(format, true).map_err(|_| {
                    anyhow::anyhow!("\\format takes table, csv, json or markdown, not {format:?}")
                })?;
        }
        ("format", None) => anyhow::bail!("\\format takes table, csv, json or markdown"),
        _ => anyhow::bail!("unknown command \\{command} (\\? lists the commands)"),
    }
    if name == "timing" {
        eprintln!("timing is {}", if settings.timing { "on" } else { "off" });
    }
    if name == "format" {
        eprintln!("format is {}", argument.unwrap_or_default());
    }
    Ok(Outcome::Continue)
}

/// `\d`: every table the lake has, with its version, files and rows.
async fn list(session: &Statements<'_>) -> anyhow::Result<()> {
    let mut out = print::stdout();
    if session.registered.is_empty() {
        writeln!(out, "no tables yet in {}", session.lake.display())?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<14} {:>8} {:>7} {:>12}",
        "table", "version", "files", "rows"
    )?;
    for table in Table::ALL {
        if let Some(files) = delta::files_of(session.lake, table).await? {
            let rows = match files.rows {
                Some(rows) => rows.to_string(),
                None => "?".to_string(),
            };
            writeln!(
                out,
                "{:<14} {:>8} {:>7} {:>12}",
                table.sql_name(),
                files.version,
                files.files,
                rows
            )?;
        }
    }
    Ok(())
}

/// `\d NAME`: the columns and types the shell sees, and the Delta version they come from.
async fn describe(session: &Statements<'_>, name: &str) -> anyhow::Result<()> {
    let Some(table) = Table::ALL.into_iter().find(|t| {
        t.sql_name()
            .eq_ignore_ascii_case(name.trim_end_matches(';'))
    }) else {
        anyhow::bail!(
            "no table {name:?}; the lake's tables are: {}",
            session.registered.join(", ")
        );
    };
    let Some(files) = delta::files_of(session.lake, table).await? else {
        anyhow::bail!(
            "{} has no table {} yet",
            session.lake.display(),
            table.sql_name()
        );
    };
    let provider = session
        .engine
        .ctx()
        .table_provider(table.sql_name())
        .await?;
    let schema = provider.schema();
    let mut out = print::stdout();
    writeln!(
        out,
        "{}  ({})",
        table.sql_name(),
        session.lake.table_url(table)
    )?;
    let width = schema
        .fields()
        .iter()
        .map(|f| f.name().len())
        .max()
        .unwrap_or(0);
    for field in schema.fields() {
        writeln!(
            out,
            "  {:<width$}  {}{}",
            field.name(),
            field.data_type(),
            if field.is_nullable() { "" } else { " NOT NULL" }
        )?;
    }
    let rows = match files.rows {
        Some(rows) => rows,
        None => {
            let frame = session.engine.ctx().table(table.sql_name()).await?;
            frame.count().await? as u64
        }
    };
    writeln!(
        out,
        "Delta version {}, {} rows in {} files ({:.1} MiB)",
        files.version,
        rows,
        files.files,
        files.bytes as f64 / (1024.0 * 1024.0)
    )?;
    Ok(())
}
