//! Two-phase writes: data files first, then one commit that makes them visible.
//!
//! delta-rs's write builder writes and commits in one call, so a job cannot look at what it
//! wrote before deciding to commit, nor clean up after deciding not to. Here the files are
//! written by [`StagedWriter`] (delta-rs's `DeltaWriter`: Hive folders, Parquet, statistics) and
//! stay invisible to every Delta reader until [`commit_replacing`] adds them, together with the
//! removal of the rows they replace, in a single commit. A job that decides not to commit
//! (the same content was already loaded) deletes its files with [`StagedFiles::discard`], so
//! nothing is left for plain-Parquet readers either. This is also the shape distributed writes
//! take: workers stage files, one coordinator commits.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU64;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::functions_aggregate::count::count_all;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::prelude::{col, lit, SessionContext};
use deltalake::datafile::writer::{DeltaWriter, WriterConfig};
use deltalake::kernel::transaction::{CommitBuilder, TableReference};
use deltalake::kernel::{Action, Add};
use deltalake::logstore::ObjectStoreRef;
use deltalake::operations::get_num_idx_cols_and_stats_columns;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::{DeltaTable, DeltaTableError};
use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::ObjectStoreExt;
use percent_encoding::percent_decode_str;

use tracing::warn;

use super::{delta, Lake, StorageError, Table};

/// Data files roll over at this size (Delta's usual target).
pub(crate) const TARGET_FILE_BYTES: NonZeroU64 = NonZeroU64::new(128 << 20).expect("not zero");

/// Rows per Parquet row group. The writer holds a row group in memory until it is complete,
/// so this bounds the memory of a write (the Parquet default of 1Mi rows is ~8x more), and
/// lets a long write reach storage as it goes instead of at the end.
const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Rows per Parquet data page (the Parquet default is 20,000). A partitioned write keeps one
/// open file per Hive partition in every task (normalize: 2 tasks x 60 months for five years),
/// and each file's column writers hold their current page unencoded; at 20,000 rows those pages
/// were ~300 MB of normalize's 1.2 GB at 10M rows. Smaller pages cost no time (measured).
const PAGE_ROWS: usize = 8 * 1024;

/// Bytes of a column chunk's dictionary before the writer falls back to plain encoding (the
/// Parquet default is 1 MiB). Low-cardinality columns (accounts, currencies, dates, source
/// files) stay far below it; high-cardinality ones (transaction details, amounts, line
/// numbers) gain nothing from a dictionary, and with 1 MiB each of the open files above kept a
/// large dictionary and its hash table: at 10M rows normalize took 7% longer, wrote 5% larger
/// files and peaked ~200 MB higher than with this limit.
const DICTIONARY_PAGE_BYTES: usize = 128 * 1024;

/// The column delta-rs's scan fills with each row's data file (to find the files to remove).
const FILE_COLUMN: &str = "__fxpipe_data_file";

pub(crate) fn delta_error(table: Table) -> impl Fn(DeltaTableError) -> StorageError {
    move |source| StorageError::delta(table, source)
}

/// How fxpipe writes data files, wherever they are written (a load here, or a task of the
/// write node): Snappy Parquet, row groups of [`ROW_GROUP_ROWS`], pages of [`PAGE_ROWS`],
/// dictionaries up to [`DICTIONARY_PAGE_BYTES`], files rolled at
/// [`TARGET_FILE_BYTES`], statistics as the table's configuration (`delta.dataSkipping…`)
/// asks.
pub(crate) fn writer_config(
    schema: SchemaRef,
    partition_columns: Vec<String>,
    configuration: &std::collections::HashMap<String, String>,
) -> WriterConfig {
    writer_config_sized(schema, partition_columns, configuration, TARGET_FILE_BYTES)
}

/// [`writer_config`] with files rolled at `target_file_bytes` (`optimize --target-mib`).
pub(crate) fn writer_config_sized(
    schema: SchemaRef,
    partition_columns: Vec<String>,
    configuration: &std::collections::HashMap<String, String>,
    target_file_bytes: NonZeroU64,
) -> WriterConfig {
    let configuration = configuration
        .iter()
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    let (indexed, stats_columns) = get_num_idx_cols_and_stats_columns(None, configuration);
    WriterConfig::new(
        schema,
        partition_columns,
        Some(
            WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
                .set_data_page_row_count_limit(PAGE_ROWS)
                .set_dictionary_page_size_limit(DICTIONARY_PAGE_BYTES)
                .set_created_by(format!("fxpipe {}", env!("CARGO_PKG_VERSION")))
                .build(),
        ),
        Some(target_file_bytes),
        None,
        indexed,
        stats_columns,
    )
}

/// Writes data files of one table without committing them.
pub struct StagedWriter {
    table: Table,
    store: ObjectStoreRef,
    writer: DeltaWriter,
}

impl std::fmt::Debug for StagedWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StagedWriter")
            .field("table", &self.table)
            .finish()
    }
}

/// Files written by a [`StagedWriter`], not yet part of any table version.
#[derive(Debug)]
pub struct StagedFiles {
    table: Table,
    store: ObjectStoreRef,
    adds: Vec<Add>,
}

impl StagedWriter {
    /// Starts writing files for `table` (which must exist: see [`ensure_table`]).
    pub async fn begin(
        lake: &Lake,
        table: Table,
        opened: &DeltaTable,
        schema: SchemaRef,
    ) -> Result<Self, StorageError> {
        Self::begin_sized(lake, table, opened, schema, TARGET_FILE_BYTES).await
    }

    /// [`StagedWriter::begin`], rolling files at `target_file_bytes` (compaction's target).
    pub async fn begin_sized(
        lake: &Lake,
        table: Table,
        opened: &DeltaTable,
        schema: SchemaRef,
        target_file_bytes: NonZeroU64,
    ) -> Result<Self, StorageError> {
        let state = opened.snapshot().map_err(delta_error(table))?;
        let partition_columns = table
            .partition_columns()
            .iter()
            .map(|c| c.to_string())
            .collect();
        let config = writer_config_sized(
            schema,
            partition_columns,
            state.metadata().configuration(),
            target_file_bytes,
        );
        let store = table_store(lake, table)?;
        Ok(Self {
            table,
            writer: DeltaWriter::new(store.clone(), config),
            store,
        })
    }

    /// Starts writing files for `table` into `store` (rooted at the table's folder): what a
    /// cluster node does, with its own store and no table to open.
    pub fn with_store(table: Table, store: ObjectStoreRef, schema: SchemaRef) -> Self {
        let partition_columns = table
            .partition_columns()
            .iter()
            .map(|c| c.to_string())
            .collect();
        let config = writer_config(schema, partition_columns, &Default::default());
        Self {
            table,
            writer: DeltaWriter::new(store.clone(), config),
            store,
        }
    }

    pub async fn write(&mut self, batch: &RecordBatch) -> Result<(), StorageError> {
        self.writer
            .write(batch)
            .await
            .map_err(delta_error(self.table))
    }

    /// Flushes every file; they exist in storage but no version references them yet.
    pub async fn finish(self) -> Result<StagedFiles, StorageError> {
        let adds = self.writer.close().await.map_err(delta_error(self.table))?;
        Ok(StagedFiles {
            table: self.table,
            store: self.store,
            adds,
        })
    }

    /// Gives up: in-progress uploads are aborted (finished files stay until `vacuum`).
    pub async fn abort(self) {
        let _ = self.writer.abort().await;
    }
}

impl StagedFiles {
    /// Files another process (a cluster task) wrote for `table` of `lake`.
    pub fn from_adds(lake: &Lake, table: Table, adds: Vec<Add>) -> Result<Self, StorageError> {
        Ok(Self {
            table,
            store: table_store(lake, table)?,
            adds,
        })
    }

    /// Marks the files as no data change (`dataChange = false`): they hold rows the table
    /// already has, rewritten (compaction), so streaming readers skip them.
    pub fn mark_no_data_change(&mut self) {
        for add in &mut self.adds {
            add.data_change = false;
        }
    }

    /// The files' `Add` actions.
    pub fn adds(&self) -> &[Add] {
        &self.adds
    }

    /// Deletes the files: the write never happened, for every kind of reader.
    pub async fn discard(self) -> Result<(), StorageError> {
        self.discarder().discard().await
    }

    /// What is needed to delete these files later, e.g. if a commit before theirs fails.
    pub fn discarder(&self) -> Discarder {
        Discarder {
            table: self.table,
            store: self.store.clone(),
            paths: self.adds.iter().map(|a| a.path.clone()).collect(),
        }
    }
}

/// Deletes staged files that will never be committed.
#[derive(Debug, Clone)]
pub struct Discarder {
    table: Table,
    store: ObjectStoreRef,
    paths: Vec<String>,
}

impl Discarder {
    /// Deletes the files (a file already gone is fine).
    pub async fn discard(self) -> Result<(), StorageError> {
        for path in &self.paths {
            let decoded = percent_decode_str(path).decode_utf8_lossy();
            let location = StorePath::from(decoded.as_ref());
            match self.store.delete(&location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(source) => {
                    return Err(StorageError::Store {
                        location: format!("{}/{}", self.table.path(), path),
                        source,
                    })
                }
            }
        }
        Ok(())
    }
}

/// An object store rooted at the table's folder, as `DeltaWriter` wants it.
fn table_store(lake: &Lake, table: Table) -> Result<ObjectStoreRef, StorageError> {
    lake.prepare_table(table)?;
    let storage = lake
        .delta_builder(table)?
        .build_storage()
        .map_err(delta_error(table))?;
    Ok(storage.object_store(None))
}

/// Checks that every file a commit is about to add is still there (one HEAD each): a
/// `vacuum` with a short retention run during the job may have deleted a staged file, and a
/// version pointing at a missing file breaks every reader.
pub async fn check_present(lake: &Lake, table: Table, adds: &[Add]) -> Result<(), StorageError> {
    use futures::StreamExt;
    let store = table_store(lake, table)?;
    // Sixteen at a time: a normalize commits a file per month and task (hundreds on S3).
    let mut heads = futures::stream::iter(adds)
        .map(|add| {
            let store = store.clone();
            async move {
                let decoded = percent_decode_str(&add.path).decode_utf8_lossy();
                match store.head(&StorePath::from(decoded.as_ref())).await {
                    Ok(_) => Ok(()),
                    Err(object_store::Error::NotFound { .. }) => {
                        Err(StorageError::StagedFileMissing {
                            table: table.sql_name().to_string(),
                            path: add.path.clone(),
                        })
                    }
                    Err(source) => Err(StorageError::Store {
                        location: format!("{}/{}", table.path(), add.path),
                        source,
                    }),
                }
            }
        })
        .buffer_unordered(16);
    while let Some(head) = heads.next().await {
        head?;
    }
    Ok(())
}

/// Opens `table`, creating it (an empty first version with the schema) if it does not exist.
pub async fn ensure_table(
    lake: &Lake,
    table: Table,
    ctx: &SessionContext,
    schema: SchemaRef,
) -> Result<DeltaTable, StorageError> {
    if let Some(opened) = delta::open(lake, table).await? {
        return Ok(opened);
    }
    let empty = ctx
        .read_batch(RecordBatch::new_empty(schema))
        .map_err(|e| delta_error(table)(DeltaTableError::from(e)))?
        .into_unoptimized_plan();
    let created = delta::create(lake, table, Arc::new(ctx.state()), empty).await;
    match created {
        Ok(created) => Ok(created),
        // Another writer created it first (two loads into a new lake): use theirs.
        Err(error) => match delta::open(lake, table).await {
            Ok(Some(opened)) => Ok(opened),
            _ => Err(error),
        },
    }
}

/// The removal half of a replacing commit: the data files holding every row where
/// `column = value`, found before anything is committed so a job can refuse early.
#[derive(Debug)]
pub struct Replacement {
    table: Table,
    removes: Vec<Action>,
    predicate: String,
    /// Rows in the files to remove.
    pub rows: u64,
}

/// What a replacing commit did.
#[derive(Debug, Clone, Copy)]
pub struct Replaced {
    /// The table's new version.
    pub version: i64,
    /// Rows the commit removed (those where `column = value` before it).
    pub rows_removed: u64,
}

/// The data files holding matching rows, from a scan's `(file, count)` groups.
struct Matching {
    /// As the scan names them (to filter on).
    scanned: Vec<String>,
    /// As the log does (decoded, relative, or a URL ending in it).
    files: HashSet<String>,
    rows: u64,
}

impl Matching {
    fn of(groups: &[RecordBatch]) -> Result<Self, arrow::error::ArrowError> {
        let mut matching = Self {
            scanned: Vec::new(),
            files: HashSet::new(),
            rows: 0,
        };
        for batch in groups {
            let names = arrow::compute::cast(batch.column(0), &DataType::Utf8)?;
            let counts = batch
                .column(1)
                .as_primitive::<arrow::datatypes::Int64Type>();
            for (name, count) in names.as_string::<i32>().iter().zip(counts.iter()) {
                if let Some(name) = name {
                    matching.scanned.push(name.to_string());
                    let decoded = percent_decode_str(name).decode_utf8_lossy().to_string();
                    matching.files.insert(decoded);
                }
                matching.rows += count.unwrap_or(0) as u64;
            }
        }
        Ok(matching)
    }
}

/// Finds the files of `opened` holding the rows where `column = value` (Delta's replaceWhere,
/// done by file). Each such file must hold only matching rows (true for files fxpipe writes
/// per source); a file that mixes values is refused rather than silently rewritten.
pub async fn prepare_replace(
    ctx: &SessionContext,
    table: Table,
    opened: &DeltaTable,
    column: &str,
    value: &str,
) -> Result<Replacement, StorageError> {
    let to_error = delta_error(table);
    let df_error = |e: datafusion::error::DataFusionError| to_error(DeltaTableError::from(e));
    let provider = opened
        .table_provider()
        .with_file_column(FILE_COLUMN)
        .await
        .map_err(df_error)?;
    let scan = ctx.read_table(provider).map_err(df_error)?;
    let matching = scan
        .clone()
        .filter(col(column).eq(lit(value)))
        .and_then(|f| f.aggregate(vec![col(FILE_COLUMN)], vec![count_all()]))
        .map_err(df_error)?
        .collect()
        .await
        .map_err(df_error)?;
    let Matching {
        scanned,
        files,
        rows,
    } = Matching::of(&matching).map_err(|e| df_error(e.into()))?;
    if !scanned.is_empty() {
        let listed: Vec<_> = scanned.iter().map(|f| lit(f.clone())).collect();
        let mixed = scan
            .filter(
                arrow_cast_utf8(col(FILE_COLUMN))
                    .in_list(listed, false)
                    .and(col(column).not_eq(lit(value))),
            )
            .map_err(df_error)?
            .count()
            .await
            .map_err(df_error)?;
        if mixed > 0 {
            return Err(StorageError::MixedFiles {
                table: table.sql_name().to_string(),
                column: column.to_string(),
                value: value.to_string(),
            });
        }
    }
    let mut removes = Vec::new();
    let mut views = opened.get_active_add_actions_by_partitions(&[]);
    while let Some(view) = views.try_next().await.map_err(&to_error)? {
        let path = percent_decode_str(&view.path())
            .decode_utf8_lossy()
            .to_string();
        if files.contains(&path) || files.iter().any(|f| f.ends_with(&format!("/{path}"))) {
            removes.push(Action::Remove(view.remove_action(true)));
        }
    }
    if removes.len() != files.len() {
        return Err(to_error(DeltaTableError::Generic(format!(
            "{} data files hold rows with {column} = {value:?} but {} were found in the log",
            files.len(),
            removes.len()
        ))));
    }
    Ok(Replacement {
        table,
        removes,
        predicate: format!("{column} = '{}'", value.replace('\'', "''")),
        rows,
    })
}

/// Commits `staged` to `opened` in one version that also removes the rows of `replacement`.
/// `opened` must be the version `replacement` was prepared from; a concurrent commit that
/// touched those files makes this one fail (Delta's conflict check) rather than duplicate:
/// see [`commit_replacing_retried`]. The commit carries this run's application transaction,
/// so a commit whose answer was lost is recognised as landed, not made twice.
pub async fn commit_replacing(
    lake: &Lake,
    opened: &DeltaTable,
    staged: Option<&StagedFiles>,
    replacement: Replacement,
) -> Result<Replaced, StorageError> {
    let table = replacement.table;
    let to_error = delta_error(table);
    if let Some(staged) = staged {
        check_present(lake, table, &staged.adds).await?;
    }
    let mut actions: Vec<Action> = staged
        .map(|s| s.adds.iter().cloned().map(Action::Add).collect())
        .unwrap_or_default();
    actions.extend(replacement.removes);
    let operation = DeltaOperation::Write {
        mode: SaveMode::Overwrite,
        partition_by: None,
        predicate: Some(replacement.predicate),
    };
    let txn = lake.next_transaction();
    let committed = commit_on(lake, opened, &txn, actions, operation, &[]).await;
    let version = match committed {
        Ok(version) => version,
        // Unknown (the log cannot be read): an error that is no conflict, so nothing is
        // retried and the caller deletes nothing.
        Err(error) => match delta::resolve_outcome(lake, table, &txn).await? {
            Some(landed) => landed.version().unwrap_or_default() as i64,
            None => return Err(to_error(error)),
        },
    };
    Ok(Replaced {
        version,
        rows_removed: replacement.rows,
    })
}

/// Commits `actions` on `opened`'s version, carrying `txn`: Delta's conflict check runs
/// against the versions committed since. Returns the new version.
async fn commit_on(
    lake: &Lake,
    opened: &DeltaTable,
    txn: &deltalake::kernel::Transaction,
    actions: Vec<Action>,
    operation: DeltaOperation,
    info: &[(String, serde_json::Value)],
) -> Result<i64, DeltaTableError> {
    let state = opened.snapshot()?;
    let committed = CommitBuilder::from(lake.commit_properties_with(txn, info))
        .with_actions(actions)
        .build(
            Some(state as &dyn TableReference),
            opened.log_store(),
            operation,
        )
        .await?;
    Ok(committed.version() as i64)
}

/// [`commit_replacing`] of the rows where `column = value`, redone from a fresh snapshot when
/// a concurrent writer committed first (bounded, with backoff): another load of another file
/// at the same time is not a reason to fail.
pub async fn commit_replacing_retried(
    lake: &Lake,
    ctx: &SessionContext,
    opened: &DeltaTable,
    staged: Option<&StagedFiles>,
    replacement: Replacement,
    column: &str,
    value: &str,
) -> Result<Replaced, StorageError> {
    let table = replacement.table;
    let mut result = commit_replacing(lake, opened, staged, replacement).await;
    let mut attempt = 1;
    while let Err(error) = &result {
        if !delta::is_conflict(error) || attempt >= delta::COMMIT_ATTEMPTS {
            break;
        }
        warn!(
            table = table.sql_name(),
            attempt,
            "another writer committed to the table first; committing again on top of its version"
        );
        delta::backoff(attempt).await;
        attempt += 1;
        let Some(fresh) = delta::open(lake, table).await? else {
            break;
        };
        let replacement = prepare_replace(ctx, table, &fresh, column, value).await?;
        result = commit_replacing(lake, &fresh, staged, replacement).await;
    }
    match result {
        Err(error) => Err(delta::conflict_in_words(lake, table, error, attempt).await),
        replaced => replaced,
    }
}

fn arrow_cast_utf8(expr: datafusion::prelude::Expr) -> datafusion::prelude::Expr {
    datafusion::logical_expr::cast(expr, DataType::Utf8)
}

/// Which rows a commit of written files replaces.
pub enum Replace {
    /// Every row: the table becomes exactly the written files, with their schema.
    Table,
    /// The rows of the partitions `matches` selects (by partition value, as the log holds
    /// them). `predicate` says the same in SQL over the partition columns; it goes into the
    /// log, where Delta's conflict check uses it: two writes of different partitions both
    /// commit.
    Partitions {
        predicate: String,
        #[allow(clippy::type_complexity)]
        matches: Box<dyn Fn(&HashMap<String, Option<String>>) -> bool + Send + Sync>,
    },
}

impl std::fmt::Debug for Replace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Table => f.write_str("Table"),
            Self::Partitions { predicate, .. } => write!(f, "Partitions({predicate})"),
        }
    }
}

/// Names and types of a schema's columns (nullability aside: a plan may say a column can
/// be null where the table's first writer said it cannot, and the data is the same).
fn columns_of(schema: &deltalake::kernel::StructType) -> Vec<(String, String)> {
    schema
        .fields()
        .map(|f| (f.name().to_string(), format!("{:?}", f.data_type())))
        .collect()
}

/// Commits files that write tasks wrote (see `engine::write`) to `table` as one version that
/// also removes the rows they replace; a missing table is created by that same version. The
/// commit carries one application transaction: an answer lost on the way back is recognised
/// as landed, not committed twice. A concurrent commit that came first is not a reason to
/// fail: the removals are re-planned from the new version and the same files committed again
/// (bounded, with backoff), so this run's rows replace the partitions as if it had run last.
/// Returns the new version; on failure the files are left for the caller (or `vacuum`).
///
/// `invariants` are table properties every row of the table must agree with (normalize: the
/// base currency). A whole-table rewrite records them in the commit's metadata; a partition
/// rewrite is refused when the version it commits on records other values, checked on every
/// attempt's snapshot: a concurrent rewrite in another base that committed first is seen (its
/// metadata change fails this attempt's conflict check, and the next attempt reads it).
pub async fn commit_written(
    lake: &Lake,
    table: Table,
    schema: SchemaRef,
    adds: &[Add],
    replace: &Replace,
    invariants: &[(&str, &str)],
    info: &[(String, serde_json::Value)],
) -> Result<i64, StorageError> {
    use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
    let to_error = delta_error(table);
    lake.prepare_table(table)?;
    let plain = deltalake::kernel::schema::normalize_for_delta(&schema);
    let written = Written {
        lake,
        table,
        schema: plain
            .as_ref()
            .try_into_kernel()
            .map_err(|e| to_error(DeltaTableError::from(e)))?,
        invariants,
        info,
        txn: lake.next_transaction(),
    };
    check_present(lake, table, adds).await?;
    let mut opened = delta::open(lake, table).await?;
    let mut attempt = 1;
    loop {
        let actions: Vec<Action> = adds.iter().cloned().map(Action::Add).collect();
        let committed = match &opened {
            None => written.first_version(actions).await?,
            Some(opened) => written.over(opened, actions, replace).await?,
        };
        let error = match committed {
            Ok(version) => return Ok(version),
            Err(error) => to_error(error),
        };
        if let Some(landed) = delta::resolve_outcome(lake, table, &written.txn).await? {
            return Ok(landed.version().unwrap_or_default() as i64);
        }
        if !delta::is_conflict(&error) || attempt >= delta::COMMIT_ATTEMPTS {
            return Err(delta::conflict_in_words(lake, table, error, attempt).await);
        }
        warn!(
            table = table.sql_name(),
            attempt,
            "another writer committed to the table first; committing again on top of its version"
        );
        // Lost only the race to create the table: no contention to wait out.
        if opened.is_some() {
            delta::backoff(attempt).await;
        }
        attempt += 1;
        opened = delta::open(lake, table).await?;
    }
}

/// One [`commit_written`]: what every attempt commits, whatever the table's state. The outer
/// `Result` refuses the commit (a schema or invariant the table cannot take); the inner one is
/// the commit's own outcome, which may be a conflict worth another attempt.
struct Written<'a> {
    lake: &'a Lake,
    table: Table,
    /// The written files' schema, as Delta records it.
    schema: deltalake::kernel::StructType,
    invariants: &'a [(&'a str, &'a str)],
    info: &'a [(String, serde_json::Value)],
    /// The same for every attempt, so a lost answer is found by [`delta::resolve_outcome`].
    txn: deltalake::kernel::Transaction,
}

impl Written<'_> {
    fn kernel_error(&self, error: deltalake::kernel::Error) -> StorageError {
        delta_error(self.table)(DeltaTableError::from(error))
    }

    /// The table's first version: protocol, metadata and the files, in one commit. If another
    /// writer created the table meanwhile, it fails (no retries inside delta-rs) and the caller
    /// commits again on top of that version, instead of delta-rs appending this one after it
    /// unchecked.
    async fn first_version(
        &self,
        mut actions: Vec<Action>,
    ) -> Result<Result<i64, DeltaTableError>, StorageError> {
        use deltalake::kernel::MetadataExt;
        let (lake, table) = (self.lake, self.table);
        let to_error = delta_error(table);
        let protocol = serde_json::from_value(serde_json::json!({
            "minReaderVersion": 1,
            "minWriterVersion": 2
        }))
        .map_err(|e| to_error(DeltaTableError::from(e)))?;
        let metadata = deltalake::kernel::new_metadata(
            &self.schema,
            table.partition_columns(),
            self.invariants
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string())),
        )
        .and_then(|m| m.with_name(table.sql_name().to_string()))
        .map_err(|e| self.kernel_error(e))?;
        actions.insert(0, Action::Metadata(metadata));
        actions.insert(0, Action::Protocol(protocol));
        let operation = DeltaOperation::Write {
            mode: SaveMode::Append,
            partition_by: Some(
                table
                    .partition_columns()
                    .iter()
                    .map(|c| c.to_string())
                    .collect(),
            ),
            predicate: None,
        };
        let log_store = lake
            .delta_builder(table)?
            .build()
            .map_err(&to_error)?
            .log_store();
        Ok(CommitBuilder::from(
            lake.commit_properties_with(&self.txn, self.info)
                .with_max_retries(0),
        )
        .with_actions(actions)
        .build(None, log_store, operation)
        .await
        .map(|c| c.version() as i64))
    }

    /// A commit on the table's current version: the files, the removal of every file they
    /// replace, and new metadata when a whole-table rewrite changes the schema or invariants.
    async fn over(
        &self,
        opened: &DeltaTable,
        mut actions: Vec<Action>,
        replace: &Replace,
    ) -> Result<Result<i64, DeltaTableError>, StorageError> {
        let to_error = delta_error(self.table);
        let predicate = match replace {
            Replace::Table => {
                if let Some(metadata) = self.changed_metadata(opened)? {
                    actions.push(Action::Metadata(metadata));
                }
                None
            }
            Replace::Partitions { predicate, .. } => {
                self.check_partition_rewrite(opened)?;
                Some(predicate.clone())
            }
        };
        let mut views = opened.get_active_add_actions_by_partitions(&[]);
        while let Some(view) = views.try_next().await.map_err(&to_error)? {
            let replaced = match replace {
                Replace::Table => true,
                Replace::Partitions { matches, .. } => matches(&view.partition_values_map()),
            };
            if replaced {
                actions.push(Action::Remove(view.remove_action(true)));
            }
        }
        drop(views);
        let operation = DeltaOperation::Write {
            mode: SaveMode::Overwrite,
            partition_by: None,
            predicate,
        };
        Ok(commit_on(self.lake, opened, &self.txn, actions, operation, self.info).await)
    }

    /// A whole-table rewrite records the written schema and invariants when they differ from
    /// the table's.
    fn changed_metadata(
        &self,
        opened: &DeltaTable,
    ) -> Result<Option<deltalake::kernel::Metadata>, StorageError> {
        use deltalake::kernel::MetadataExt;
        let state = opened.snapshot().map_err(delta_error(self.table))?;
        let recorded = state.metadata().configuration();
        let same_invariants = self
            .invariants
            .iter()
            .all(|(key, value)| recorded.get(*key).map(String::as_str) == Some(*value));
        if state.schema().as_ref() == &self.schema && same_invariants {
            return Ok(None);
        }
        let mut metadata = state
            .metadata()
            .clone()
            .with_schema(&self.schema)
            .map_err(|e| self.kernel_error(e))?;
        for (key, value) in self.invariants {
            metadata = metadata
                .add_config_key(key.to_string(), value.to_string())
                .map_err(|e| self.kernel_error(e))?;
        }
        Ok(Some(metadata))
    }

    /// Rewriting some partitions keeps the table's invariants (base currency, …) and columns:
    /// the other partitions were written under them.
    fn check_partition_rewrite(&self, opened: &DeltaTable) -> Result<(), StorageError> {
        let state = opened.snapshot().map_err(delta_error(self.table))?;
        let recorded = state.metadata().configuration();
        for (key, value) in self.invariants {
            match recorded.get(*key) {
                Some(theirs) if theirs != value => {
                    return Err(StorageError::Invariant {
                        table: self.table.sql_name().to_string(),
                        key: key.to_string(),
                        recorded: theirs.clone(),
                        written: value.to_string(),
                        version: opened.version().unwrap_or_default(),
                    })
                }
                _ => {}
            }
        }
        if columns_of(&state.schema()) != columns_of(&self.schema) {
            return Err(StorageError::SchemaMismatch {
                table: self.table.sql_name().to_string(),
                detail: "rewriting some partitions cannot change the table's columns; rewrite \
                         the whole table"
                    .to_string(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(path: &str) -> Add {
        serde_json::from_value(serde_json::json!({
            "path": path,
            "size": 4,
            "partitionValues": {},
            "modificationTime": 0,
            "dataChange": true
        }))
        .expect("an Add action")
    }

    /// A commit refuses files that are gone (a vacuum during the job), naming one.
    #[tokio::test]
    async fn files_to_commit_must_still_be_there() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(
            dir.path().join("lake").to_str().unwrap(),
            true,
            &crate::storage::S3Options::default(),
        )
        .await
        .unwrap();
        let table = Table::Processed;
        let folder = dir.path().join("lake").join(table.path()).join("year=2017");
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("part-1.parquet"), b"PAR1").unwrap();
        let present = add("year=2017/part-1.parquet");
        check_present(&lake, table, std::slice::from_ref(&present))
            .await
            .expect("the file is there");
        let gone = add("year=2017/part-2.parquet");
        match check_present(&lake, table, &[present, gone]).await {
            Err(StorageError::StagedFileMissing { path, .. }) => {
                assert_eq!(path, "year=2017/part-2.parquet")
            }
            other => panic!("expected StagedFileMissing, got {other:?}"),
        }
    }
}
