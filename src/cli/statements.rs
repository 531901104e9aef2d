//! Running statements: `fxpipe sql`, `fxpipe report`, and each statement the shell reads.
//! Every statement is planned, checked read-only, then printed or written to `-o FILE`.

use std::path::PathBuf;

use anyhow::Context;
use fxpipe::engine::Engine;
use fxpipe::storage::Lake;

use super::args::SqlArgs;
use super::print::{self, Format, MaxRows};
use super::{errors, output, readonly};

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
                    "wrote {rows} rows to {} ({})",
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
        (None, None) => anyhow::bail!("give a query or -f FILE"),
    };
    let registered = engine.register_lake(lake).await?;
    // SHOW TABLES, SHOW COLUMNS and information_schema queries need it; it is read-only.
    engine
        .ctx()
        .sql("SET datafusion.catalog.information_schema = true")
        .await?;
    let statements = datafusion::sql::parser::DFParser::parse_sql(&text)?;
    if to.is_some() && statements.len() > 1 {
        anyhow::bail!(
            "-o writes one result: give one statement, not {}",
            statements.len()
        );
    }
    for statement in statements {
        let state = engine.ctx().state();
        let plan = match state.statement_to_plan(statement).await {
            Ok(plan) => plan,
            Err(e) if is_unknown_table(&e) => {
                let tables = if registered.is_empty() {
                    "none yet (`fxpipe quickstart`, `fxpipe load` or `fxpipe ingest` make some)"
                        .to_string()
                } else {
                    registered.join(", ")
                };
                let hint = errors::Hint(format!("tables in {}: {tables}", lake.display()));
                return Err(anyhow::Error::new(e).context(hint));
            }
            Err(e) => return Err(e.into()),
        };
        readonly::check(&plan)?;
        let frame = engine.ctx().execute_logical_plan(plan).await?;
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
