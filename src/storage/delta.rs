//! Delta Lake tables (delta-rs): every write is one atomic commit to `_delta_log`.
//!
//! A failed or killed write leaves no commit, so readers going through the log (`fxpipe sql`,
//! Athena with `table_type` DELTA, Spark, DuckDB's delta extension) keep seeing the previous
//! version. Data files keep the Hive layout (`year=YYYY/month=M/part-….parquet`).

use std::sync::Arc;

use datafusion::catalog::Session;
use datafusion::logical_expr::{Expr, LogicalPlan};
use deltalake::kernel::Transaction;
use deltalake::operations::vacuum::VacuumMode;
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableError};
use futures::TryStreamExt;
use tracing::warn;

use super::staged::delta_error;
use super::{Lake, StorageError, Table};

/// How a write combines with what the table already holds.
#[derive(Debug, Clone)]
pub enum WriteMode {
    /// Add rows.
    Append,
    /// Replace exactly the rows matching the predicate (Delta's `replaceWhere`), in one commit.
    ReplaceWhere(Expr),
    /// `ReplaceWhere`, adding to the table's schema the columns the new rows have and it
    /// lacks (existing rows read them as null): how a table written by an older fxpipe gains
    /// a column.
    ReplaceWhereMergeSchema(Expr),
    /// Replace the whole table (its schema too), in one commit.
    Overwrite,
}

/// Attempts of a commit that lost to a concurrent writer (each from a fresh snapshot).
pub const COMMIT_ATTEMPTS: u32 = 5;

/// Whether a failed write lost to a concurrent commit (and redoing it from a fresh snapshot
/// may succeed), as opposed to failing for a reason a retry would not change.
pub fn is_conflict(error: &StorageError) -> bool {
    use deltalake::kernel::transaction::TransactionError;
    matches!(
        error,
        StorageError::Delta {
            source: DeltaTableError::Transaction {
                source: TransactionError::CommitConflict(_)
                    | TransactionError::MaxCommitAttempts(_)
            } | DeltaTableError::VersionAlreadyExists(_),
            ..
        }
    )
}

/// Waits before retry `attempt` (1, 2, …): exponential with jitter, so two writers that
/// collided do not collide again.
pub async fn backoff(attempt: u32) {
    let base = 200u64 << attempt.min(6);
    let jitter = rand::random::<u64>() % base;
    tokio::time::sleep(std::time::Duration::from_millis(base + jitter)).await;
}

/// Whether the commit carrying `txn` is in `table`'s log: a commit whose answer was lost
/// (a dropped connection after S3 stored it, then a 412 on the retry) did land, and must be
/// recognised as this run's own rather than redone.
pub async fn landed(
    lake: &Lake,
    table: Table,
    txn: &Transaction,
) -> Result<Option<DeltaTable>, StorageError> {
    let Some(opened) = open(lake, table).await? else {
        return Ok(None);
    };
    let version = opened
        .snapshot()
        .map_err(delta_error(table))?
        .transaction_version(opened.log_store().as_ref(), &txn.app_id)
        .await
        .map_err(delta_error(table))?;
    Ok((version == Some(txn.version)).then_some(opened))
}

/// Opens a table at its latest version; `None` when nothing was ever committed there.
pub async fn open(lake: &Lake, table: Table) -> Result<Option<DeltaTable>, StorageError> {
    if !lake.has_delta_log(table).await? {
        return Ok(None);
    }
    let loaded = lake
        .delta_builder(table)?
        .load()
        .await
        .map_err(delta_error(table))?;
    Ok(loaded.version().map(|_| loaded))
}

/// Writes the rows of a logical plan to a table as one commit, streaming: the plan runs inside
/// the write, batches go straight to Parquet files, and the commit happens only after every file
/// is written. Returns the table at its new version.
///
/// Every commit is conditional on the snapshot the write planned against, a table's first
/// version included: when another writer committed first (a concurrent ingest of the same
/// days, or a second writer creating the same table), the write is planned again from the new
/// snapshot and retried, at most [`COMMIT_ATTEMPTS`] times. delta-rs on its own would append a
/// losing first version after the winner's without any conflict check, so two first ingests
/// into a new lake doubled `rates`. All attempts carry one application transaction, so an
/// attempt whose answer was lost is recognised as landed ([`resolve_outcome`]).
pub async fn write(
    lake: &Lake,
    table: Table,
    session: Arc<dyn Session>,
    plan: LogicalPlan,
    mode: WriteMode,
) -> Result<DeltaTable, StorageError> {
    lake.prepare_table(table)?;
    let txn = lake.next_transaction();
    let mut attempt = 1;
    loop {
        let existing = open(lake, table).await?;
        let existed = existing.is_some();
        let written = write_once(
            lake,
            table,
            existing,
            session.clone(),
            plan.clone(),
            &mode,
            &txn,
        )
        .await;
        let error = match written {
            Ok(written) => return Ok(written),
            Err(error) => error,
        };
        if let Some(landed) = resolve_outcome(lake, table, &txn).await? {
            return Ok(landed);
        }
        if !is_conflict(&error) || attempt >= COMMIT_ATTEMPTS {
            return Err(conflict_in_words(lake, table, error, attempt).await);
        }
        warn!(
            table = table.sql_name(),
            attempt,
            "another writer committed to the table first; writing again on top of its version"
        );
        // Lost only the race to create the table: no contention to wait out.
        if existed {
            backoff(attempt).await;
        }
        attempt += 1;
    }
}

/// Creates `table` with the rows of `plan` as its first version, in one attempt: an error if
/// another writer created the table first (then use theirs: [`open`]), never a second "first"
/// version after theirs.
pub async fn create(
    lake: &Lake,
    table: Table,
    session: Arc<dyn Session>,
    plan: LogicalPlan,
) -> Result<DeltaTable, StorageError> {
    lake.prepare_table(table)?;
    if let Some(existing) = open(lake, table).await? {
        return Ok(existing);
    }
    let txn = lake.next_transaction();
    match write_once(lake, table, None, session, plan, &WriteMode::Append, &txn).await {
        Ok(created) => Ok(created),
        Err(error) => match resolve_outcome(lake, table, &txn).await? {
            Some(created) => Ok(created),
            None => Err(error),
        },
    }
}

/// One attempt of [`write`], planned against `existing` (the table's latest version; `None`:
/// no table yet).
async fn write_once(
    lake: &Lake,
    table: Table,
    existing: Option<DeltaTable>,
    session: Arc<dyn Session>,
    plan: LogicalPlan,
    mode: &WriteMode,
    txn: &Transaction,
) -> Result<DeltaTable, StorageError> {
    let existing = match existing {
        Some(opened) => opened,
        None => lake
            .delta_builder(table)?
            .build()
            .map_err(delta_error(table))?,
    };
    let exists = existing.version().is_some();
    let mut properties = lake.commit_properties(txn);
    if !exists {
        // The table's first version: if another writer created the table meanwhile, fail
        // (and plan again against its version) instead of appending this one after it.
        properties = properties.with_max_retries(0);
    }
    let mut builder = existing
        .write(Vec::new())
        .with_commit_properties(properties)
        .with_input_plan(plan)
        .with_session_state(session)
        .with_table_name(table.sql_name());
    if !table.partition_columns().is_empty() {
        builder = builder.with_partition_columns(table.partition_columns().iter().copied());
    }
    builder = match (mode.clone(), exists) {
        (WriteMode::Append, _)
        | (WriteMode::ReplaceWhere(_), false)
        | (WriteMode::ReplaceWhereMergeSchema(_), false) => {
            builder.with_save_mode(SaveMode::Append)
        }
        (WriteMode::ReplaceWhere(predicate), true) => builder
            .with_save_mode(SaveMode::Overwrite)
            .with_replace_where(predicate),
        (WriteMode::ReplaceWhereMergeSchema(predicate), true) => builder
            .with_save_mode(SaveMode::Overwrite)
            .with_replace_where(predicate)
            .with_schema_mode(SchemaMode::Merge),
        // A whole-table overwrite may change the schema (e.g. renamed converted columns).
        (WriteMode::Overwrite, _) => builder
            .with_save_mode(SaveMode::Overwrite)
            .with_schema_mode(SchemaMode::Overwrite),
    };
    builder.await.map_err(delta_error(table))
}

/// How many times [`resolve_outcome`] reads the log before it gives up.
const OUTCOME_READS: u32 = 6;

/// Whether the commit carrying `txn` landed, after a commit that failed: the log is read
/// until it answers (at most [`OUTCOME_READS`] times, with backoff). `Ok(None)`: it did not
/// land, so its files may be deleted or the commit redone. When the log never answers, the
/// outcome is unknown: [`StorageError::OutcomeUnknown`], and nothing may be deleted.
pub async fn resolve_outcome(
    lake: &Lake,
    table: Table,
    txn: &Transaction,
) -> Result<Option<DeltaTable>, StorageError> {
    let mut read = 1;
    loop {
        match landed(lake, table, txn).await {
            Ok(Some(landed)) => {
                warn!(
                    table = table.sql_name(),
                    "the commit's answer was lost, but the log holds it: not committing again"
                );
                return Ok(Some(landed));
            }
            Ok(None) => return Ok(None),
            Err(error) if read >= OUTCOME_READS => {
                return Err(StorageError::OutcomeUnknown {
                    table: table.sql_name().to_string(),
                    detail: error.to_string(),
                })
            }
            Err(error) => {
                warn!(table = table.sql_name(), read, %error, "cannot read the log to learn whether a commit landed; reading it again");
                backoff(read).await;
                read += 1;
            }
        }
    }
}

/// A conflict that outlived its retries, said in fxpipe's words, naming the version that came
/// first and the operation that wrote it (delta-rs's own text talks about isolation levels no
/// fxpipe user sets); any other error as it is.
pub async fn conflict_in_words(
    lake: &Lake,
    table: Table,
    error: StorageError,
    attempts: u32,
) -> StorageError {
    if !is_conflict(&error) {
        return error;
    }
    let mut latest = String::from("a newer version");
    if let Ok(Some(opened)) = open(lake, table).await {
        let version = opened.version().unwrap_or_default();
        let info = opened.history(Some(1)).try_next().await.ok().flatten();
        let operation = info
            .as_ref()
            .and_then(|i| i.operation.clone())
            .unwrap_or_else(|| "a commit".to_string());
        let writer = info
            .as_ref()
            .and_then(|i| i.info.get(COMMAND_KEY))
            .and_then(|c| c.as_str())
            .map(|c| format!(" by `fxpipe {c}`"))
            .unwrap_or_default();
        latest = format!("version {version} ({operation}{writer})");
    }
    StorageError::Contended {
        table: table.sql_name().to_string(),
        attempts,
        latest,
    }
}

/// The key of commitInfo under which every fxpipe commit records its command.
pub const COMMAND_KEY: &str = "fxpipe.command";

/// Whether compacting `table` keeps fxpipe's own writes correct. `transactions` and `rejects`
/// keep the data files of each source file apart: a re-load replaces a file's rows by
/// removing exactly its data files, so merging files of several sources would make every
/// later re-load of them refuse (it never rewrites other files' rows).
pub fn compactable(table: Table) -> bool {
    !matches!(table, Table::Transactions | Table::Rejects)
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

/// A table's latest version as the shell's `\d NAME` shows it.
#[derive(Debug, Clone)]
pub struct TableFiles {
    pub version: u64,
    pub files: u64,
    pub bytes: u64,
    /// From the files' statistics; `None` when a file has none (then count with SQL).
    pub rows: Option<u64>,
}

/// The data files of a table's latest version, read from its Delta log only (no data file is
/// opened); `None` when the table was never committed.
pub async fn files_of(lake: &Lake, table: Table) -> Result<Option<TableFiles>, StorageError> {
    let Some(opened) = open(lake, table).await? else {
        return Ok(None);
    };
    let mut summary = TableFiles {
        version: opened.version().unwrap_or_default(),
        files: 0,
        bytes: 0,
        rows: Some(0),
    };
    let mut views = opened.get_active_add_actions_by_partitions(&[]);
    while let Some(view) = views.try_next().await.map_err(delta_error(table))? {
        summary.files += 1;
        summary.bytes += view.size().max(0) as u64;
        summary.rows = summary
            .rows
            .zip(view.num_records())
            .map(|(sum, rows)| sum + rows as u64);
    }
    Ok(Some(summary))
}
