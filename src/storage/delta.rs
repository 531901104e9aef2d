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
    let mut deleted = metrics.files_deleted;
    deleted.extend(abandoned_uploads(lake, table, retention_hours, dry_run)?);
    Ok(deleted)
}

/// Staging files of uploads that never completed (a killed write), older than the retention.
///
/// On a local folder object_store writes each data file as `<name>#<n>` and renames it when
/// the upload completes; a killed writer leaves the staging file behind, and Delta's vacuum
/// does not list it (it is no data file). On S3 the same thing is an incomplete multipart
/// upload, which only a bucket lifecycle rule removes.
fn abandoned_uploads(
    lake: &Lake,
    table: Table,
    retention_hours: u64,
    dry_run: bool,
) -> Result<Vec<String>, StorageError> {
    let Ok(root) = lake.table_url(table).to_file_path() else {
        return Ok(Vec::new());
    };
    let cutoff = std::time::SystemTime::now()
        .checked_sub(std::time::Duration::from_secs(
            retention_hours.saturating_mul(3600),
        ))
        .unwrap_or(std::time::UNIX_EPOCH);
    let io = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| StorageError::LocalFolder { path, source }
    };
    let mut found = Vec::new();
    let mut folders = vec![root.clone()];
    while let Some(folder) = folders.pop() {
        let entries = match std::fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(&folder)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io(&folder))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().to_string();
            let kind = entry.file_type().map_err(io(&path))?;
            if kind.is_dir() {
                if !name.starts_with('_') {
                    folders.push(path);
                }
                continue;
            }
            let staging = name
                .rsplit_once('#')
                .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            let modified = entry
                .metadata()
                .and_then(|m| m.modified())
                .map_err(io(&path))?;
            if !staging || modified > cutoff {
                continue;
            }
            if !dry_run {
                std::fs::remove_file(&path).map_err(io(&path))?;
            }
            let relative = path.strip_prefix(&root).unwrap_or(&path);
            found.push(relative.to_string_lossy().to_string());
        }
    }
    Ok(found)
}
