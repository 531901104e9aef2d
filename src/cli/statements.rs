//! Running statements: `fxpipe sql`, `fxpipe report`, and each statement the shell reads.
//! Every statement is planned, checked read-only, then printed or written to `-o FILE`.

use std::collections::VecDeque;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use anyhow::Context;
use datafusion::dataframe::DataFrame;
use datafusion::sql::parser::{DFParser, Statement};
use fxpipe::engine::Engine;
use fxpipe::storage::Lake;

use super::args::SqlArgs;
use super::print::{self, Format, MaxRows};
use super::{errors, output, readonly, repl};

/// Prints a result, or writes it to `-o FILE` and says so on stderr.
pub(crate) async fn emit(
    frame: datafusion::dataframe::DataFrame,
    to: Option<&(PathBuf, output::FileFormat)>,
    format: Format,
    max_rows: MaxRows,
    base_currency: &str,
) -> anyhow::Result<()> {
    match to {
        None => {
            print::print(frame, format, max_rows, base_currency).await?;
        }
        Some((file, file_format)) => {
            let rows = output::write(frame, file, *file_format).await?;
            print::stderr_note(
                "INFO",
                &format!(
                    "wrote {rows} {} to {} ({})",
                    if rows == 1 { "row" } else { "rows" },
                    file.display(),
                    file_format.name()
                ),
                serde_json::json!({
                    "rows": rows,
                    "path": file.display().to_string(),
                    "format": file_format.name(),
                }),
            );
        }
    }
    Ok(())
}

/// Whether planning failed on a table name the session does not know.
pub(crate) fn is_unknown_table(error: &datafusion::error::DataFusionError) -> bool {
    let text = error.to_string();
    text.contains("table '") && text.contains("' not found")
}

/// A session ready for statements: the lake's tables registered at their latest versions, and
/// information_schema on (SHOW TABLES, SHOW COLUMNS; it is read-only).
pub(crate) struct Statements<'a> {
    pub(crate) engine: &'a Engine,
    pub(crate) lake: &'a Lake,
    pub(crate) registered: Vec<&'static str>,
}

impl<'a> Statements<'a> {
    pub(crate) async fn open(engine: &'a Engine, lake: &'a Lake) -> anyhow::Result<Self> {
        let registered = engine.register_lake(lake).await?;
        engine
            .ctx()
            .sql("SET datafusion.catalog.information_schema = true")
            .await?;
        Ok(Self {
            engine,
            lake,
            registered,
        })
    }

    /// Plans one statement and refuses anything that would write; an unknown table's error
    /// lists the tables there are.
    pub(crate) async fn plan(&self, statement: Statement) -> anyhow::Result<DataFrame> {
        let state = self.engine.ctx().state();
        let plan = match state.statement_to_plan(statement).await {
            Ok(plan) => plan,
            Err(e) if is_unknown_table(&e) => {
                let tables = if self.registered.is_empty() {
                    "none yet (`fxpipe quickstart`, `fxpipe load` or `fxpipe ingest` make some)"
                        .to_string()
                } else {
                    self.registered.join(", ")
                };
                let hint = errors::Hint(format!("tables in {}: {tables}", self.lake.display()));
                return Err(anyhow::Error::new(e).context(hint));
            }
            Err(e) => return Err(e.into()),
        };
        readonly::check(&plan)?;
        self.engine.guard_stages(&plan).await;
        Ok(self.engine.ctx().execute_logical_plan(plan).await?)
    }
}

/// Splits text into statements (`;`-separated), as DataFusion parses them.
pub(crate) fn parse(text: &str) -> anyhow::Result<VecDeque<Statement>> {
    Ok(DFParser::parse_sql(text)?)
}

/// `fxpipe sql`: the query, `-f FILE`, statements piped to standard input, or, on a terminal
/// with none of those, the interactive shell.
pub(crate) async fn run_sql(
    engine: &Engine,
    lake: &Lake,
    args: SqlArgs,
    base_currency: &str,
) -> anyhow::Result<()> {
    let to = args.output.format()?;
    let text = match (&args.query, &args.file) {
        (Some(query), _) => query.clone(),
        (None, Some(file)) => std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?,
        (None, None) if std::io::stdin().is_terminal() => {
            if to.is_some() {
                anyhow::bail!("-o writes one query's result: give the query (or -f FILE)");
            }
            let session = Statements::open(engine, lake).await?;
            return repl::run(session, args.format, args.max_rows.value, base_currency).await;
        }
        (None, None) => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the statements on standard input")?;
            text
        }
    };
    let session = Statements::open(engine, lake).await?;
    let statements = parse(&text)?;
    if to.is_some() && statements.len() > 1 {
        anyhow::bail!(
            "-o writes one result: give one statement, not {}",
            statements.len()
        );
    }
    for statement in statements {
        let frame = session.plan(statement).await?;
        emit(
            frame,
            to.as_ref(),
            args.format,
            args.max_rows.value,
            base_currency,
        )
        .await?;
    }
    Ok(())
}
