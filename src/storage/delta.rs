//! Delta Lake tables (delta-rs): every write is one atomic commit to `_delta_log`.
//!
//! A failed or killed write leaves no commit, so readers going through the log (`fxpipe sql`,
//! Athena with `table_type` DELTA, Spark, DuckDB's delta extension) keep seeing the previous
//! version. Data files keep the Hive layout (`year=YYYY/month=M/part-….parquet`).

use std::sync::Arc;

use datafusion::catalog::Session;
use datafusion::logical_expr::{Expr, LogicalPlan};
use deltalake::operations::vacuum::VacuumMode;
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};

use super::{Lake, StorageError, Table};

/// How a write combines with what the table already holds.
#[derive(Debug, Clone)]
pub enum WriteMode {
    /// Add rows.
    Append,
    /// Replace exactly the rows matching the predicate (Delta's `replaceWhere`), in one commit.
    ReplaceWhere(Expr),
    /// Replace the whole table (its schema too), in one commit.
    Overwrite,
}

fn delta_error(table: Table) -> impl Fn(DeltaTableError) -> StorageError {
    move |source| StorageError::Delta {
        table: table.sql_name().to_string(),
        source,
    }
}

/// Opens a table at its latest version; `None` when nothing was ever committed there.
pub async fn open(lake: &Lake, table: Table) -> Result<Option<DeltaTable>, StorageError> {
    let url = lake.table_url(table);
    if let Ok(path) = url.to_file_path() {
        if !path.join("_delta_log").is_dir() {
            return Ok(None);
        }
    }
    let loaded = DeltaTable::try_from_url(url)
        .await
        .map_err(delta_error(table))?;
    Ok(loaded.version().map(|_| loaded))
}

/// Writes the rows of a logical plan to a table as one commit, streaming: the plan runs inside
/// the write, batches go straight to Parquet files, and the commit happens only after every file
/// is written. Returns the table at its new version.
pub async fn write(
    lake: &Lake,
    table: Table,
    session: Arc<dyn Session>,
    plan: LogicalPlan,
    mode: WriteMode,
) -> Result<DeltaTable, StorageError> {
    let url = lake.prepare_table(table)?;
    let existing = match open(lake, table).await? {
        Some(opened) => opened,
        None => DeltaTableBuilder::from_url(url)
            .and_then(|builder| builder.build())
            .map_err(delta_error(table))?,
    };
    let exists = existing.version().is_some();
    let mut builder = existing
        .write(Vec::new())
        .with_input_plan(plan)
        .with_session_state(session)
        .with_table_name(table.sql_name());
    if !table.partition_columns().is_empty() {
        builder = builder.with_partition_columns(table.partition_columns().iter().copied());
    }
    builder = match (mode, exists) {
        (WriteMode::Append, _) | (WriteMode::ReplaceWhere(_), false) => {
            builder.with_save_mode(SaveMode::Append)
        }
        (WriteMode::ReplaceWhere(predicate), true) => builder
            .with_save_mode(SaveMode::Overwrite)
            .with_replace_where(predicate),
        // A whole-table overwrite may change the schema (e.g. renamed converted columns).
        (WriteMode::Overwrite, _) => builder
            .with_save_mode(SaveMode::Overwrite)
            .with_schema_mode(SchemaMode::Overwrite),
    };
    builder.await.map_err(delta_error(table))
}

/// Removes data files that no version within the retention period needs, including files a
/// killed or failed write left behind without a commit (delta-rs's `full` mode lists the
/// folder, not only the log's `remove` actions). Files younger than the retention period are
/// kept, so a writer still running is safe unless the retention is 0. Returns the files
/// deleted (or that would be, with `dry_run`).
pub async fn vacuum(
    lake: &Lake,
    table: Table,
    retention_hours: u64,
    dry_run: bool,
) -> Result<Vec<String>, StorageError> {
    let Some(opened) = open(lake, table).await? else {
        return Ok(Vec::new());
    };
    let (_, metrics) = opened
        .vacuum()
        .with_retention_period(chrono::Duration::hours(retention_hours as i64))
        .with_enforce_retention_duration(false)
        .with_mode(VacuumMode::Full)
        .with_dry_run(dry_run)
        .await
        .map_err(delta_error(table))?;
    Ok(metrics.files_deleted)
}
