//! Compaction of a table's small data files (Delta's OPTIMIZE, bin-packing per partition),
//! done by fxpipe rather than by delta-rs's optimize.
//!
//! Why not delta-rs's: its optimize commits with its own retries and its conflict checker
//! ignores removals marked `dataChange = false` (delta-io/delta-rs#3982), so two compactions of
//! the same files both land, each adding its copy of the rows: two `fxpipe optimize` at once
//! doubled `rates` (tests/concurrency_matrix.rs). It also drops the commit's application
//! transaction, so a commit whose answer was lost could not be recognised. Here the files are
//! rewritten through [`StagedWriter`] and committed only on the snapshot they were read from
//! (no delta-rs retries), carrying the run's application transaction; a compaction that loses
//! the race is read and planned again on the newer version.

use std::collections::BTreeMap;

use arrow::array::AsArray;
use arrow::datatypes::DataType;
use datafusion::prelude::{col, lit, DataFrame, Expr, SessionContext};
use deltalake::kernel::transaction::{CommitBuilder, TableReference};
use deltalake::kernel::{Action, Remove, Transaction};
use deltalake::protocol::DeltaOperation;
use deltalake::{DeltaTable, DeltaTableError};
use futures::{StreamExt, TryStreamExt};
use percent_encoding::percent_decode_str;
use tracing::warn;

use super::delta;
use super::staged::{self, delta_error, StagedWriter};
use super::{Lake, StorageError, Table};

/// What `optimize` did to one table.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Compaction {
    /// `None` when the commit's answer was lost (the log holds it, its metrics are unknown).
    pub files_removed: Option<u64>,
    pub files_added: Option<u64>,
    pub partitions: Option<u64>,
    /// The table's version after the compaction (unchanged when there was nothing to do).
    pub version: i64,
}

/// The column delta-rs's scan fills with each row's data file.
const FILE_COLUMN: &str = "__fxpipe_compacted_file";

/// Rewrites the files of `table` smaller than `target_bytes` into files of about that size,
/// partition by partition (a partition with fewer than two small files is left alone), in one
/// commit. `Ok(None)`: no table. A compaction with nothing to do commits nothing and returns
/// the table's version.
pub async fn optimize(
    lake: &Lake,
    table: Table,
    ctx: &SessionContext,
    target_bytes: u64,
) -> Result<Option<Compaction>, StorageError> {
    let target = std::num::NonZeroU64::new(target_bytes).unwrap_or(staged::TARGET_FILE_BYTES);
    let txn = lake.next_transaction();
    let mut attempt = 1;
    loop {
        let Some(opened) = delta::open(lake, table).await? else {
            return Ok(None);
        };
        let version = opened.version().unwrap_or_default() as i64;
        let Some(rewritten) = rewrite(lake, table, ctx, &opened, target).await? else {
            return Ok(Some(Compaction {
                files_removed: Some(0),
                files_added: Some(0),
                partitions: Some(0),
                version,
            }));
        };
        let error = match commit(lake, table, &opened, &txn, &rewritten, target).await {
            Ok(version) => {
                return Ok(Some(Compaction {
                    files_removed: Some(rewritten.removes.len() as u64),
                    files_added: Some(rewritten.written.adds().len() as u64),
                    partitions: Some(rewritten.partitions),
                    version,
                }))
            }
            Err(error) => error,
        };
        if let Some(landed) = delta::resolve_outcome(lake, table, &txn).await? {
            // The answer was lost: the commit is in the log, its counts are not known here.
            return Ok(Some(Compaction {
                version: landed.version().unwrap_or_default() as i64,
                ..Compaction::default()
            }));
        }
        // Known not to have landed: the rewritten files go. (An unknown outcome returned
        // above and leaves them for vacuum.)
        rewritten.written.discard().await?;
        if !delta::is_conflict(&error) || attempt >= delta::COMMIT_ATTEMPTS {
            return Err(delta::conflict_in_words(lake, table, error, attempt).await);
        }
        warn!(
            table = table.sql_name(),
            attempt, "another writer committed to the table first; compacting its version"
        );
        delta::backoff(attempt).await;
        attempt += 1;
    }
}

/// A partition's small files: the partition's values (column, value as the log writes it)
/// and the files' `Remove` actions (no data change: compaction keeps the rows).
struct Bin {
    partition: Vec<(String, Option<String>)>,
    removes: Vec<Remove>,
}

impl Bin {
    /// The rows of this bin's partition.
    fn partition_filter(&self, scan: &DataFrame) -> datafusion::error::Result<Expr> {
        let mut filter = lit(true);
        for (column, value) in &self.partition {
            let field = scan.schema().field_with_unqualified_name(column)?;
            filter = filter.and(match value {
                None => col(column.as_str()).is_null(),
                Some(text) => col(column.as_str()).eq(datafusion::logical_expr::cast(
                    lit(text.clone()),
                    field.data_type().clone(),
                )),
            });
        }
        Ok(filter)
    }

    /// The names the scan gives this bin's files (of the partition's, those to rewrite), as
    /// literals to filter on.
    async fn files_to_rewrite(
        &self,
        in_partition: DataFrame,
    ) -> datafusion::error::Result<Vec<Expr>> {
        let names = in_partition
            .aggregate(vec![col(FILE_COLUMN)], vec![])?
            .collect()
            .await?;
        let wanted: Vec<String> = self.removes.iter().map(|r| decoded(&r.path)).collect();
        let mut chosen: Vec<Expr> = Vec::new();
        for batch in &names {
            let column = arrow::compute::cast(batch.column(0), &DataType::Utf8)?;
            for name in column.as_string::<i32>().iter().flatten() {
                let plain = decoded(name);
                if wanted
                    .iter()
                    .any(|w| plain == *w || plain.ends_with(&format!("/{w}")))
                {
                    chosen.push(lit(name.to_string()));
                }
            }
        }
        Ok(chosen)
    }
}

/// The small files of one version, written again and not yet committed.
struct Rewritten {
    written: staged::StagedFiles,
    removes: Vec<Remove>,
    partitions: u64,
}

/// Reads the small files of `opened`'s version and writes their rows again as staged files
/// of about `target` bytes; `None` when no partition has two small files.
async fn rewrite(
    lake: &Lake,
    table: Table,
    ctx: &SessionContext,
    opened: &DeltaTable,
    target: std::num::NonZeroU64,
) -> Result<Option<Rewritten>, StorageError> {
    let bins = small_files(table, opened, target.get()).await?;
    if bins.is_empty() {
        return Ok(None);
    }
    let partitions = bins.len() as u64;
    let df_error =
        |e: datafusion::error::DataFusionError| delta_error(table)(DeltaTableError::from(e));
    let provider = opened
        .table_provider()
        .with_file_column(FILE_COLUMN)
        .await
        .map_err(df_error)?;
    let scan = ctx.read_table(provider).map_err(df_error)?;
    let schema = scan
        .clone()
        .drop_columns(&[FILE_COLUMN])
        .map_err(df_error)?
        .schema()
        .inner()
        .clone();
    let mut writer = StagedWriter::begin_sized(lake, table, opened, schema, target).await?;
    let mut removes = Vec::new();
    for bin in bins {
        // The scan names each row's file as the log does or as a URL, encoded or not: the
        // names of this partition's files, matched to the ones to rewrite.
        let in_partition = scan
            .clone()
            .filter(bin.partition_filter(&scan).map_err(df_error)?)
            .map_err(df_error)?;
        let chosen = bin
            .files_to_rewrite(in_partition.clone())
            .await
            .map_err(df_error)?;
        let rows = in_partition
            .filter(
                datafusion::logical_expr::cast(col(FILE_COLUMN), DataType::Utf8)
                    .in_list(chosen, false),
            )
            .and_then(|f| f.drop_columns(&[FILE_COLUMN]))
            .map_err(df_error)?;
        let mut stream = rows.execute_stream().await.map_err(df_error)?;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(df_error)?;
            if let Err(error) = writer.write(&batch).await {
                writer.abort().await;
                return Err(error);
            }
        }
        removes.extend(bin.removes);
    }
    let mut written = writer.finish().await?;
    written.mark_no_data_change();
    Ok(Some(Rewritten {
        written,
        removes,
        partitions,
    }))
}

/// Commits `rewritten` on `opened`'s version only (no delta-rs retries, see the module's
/// header), carrying `txn`. Returns the new version.
async fn commit(
    lake: &Lake,
    table: Table,
    opened: &DeltaTable,
    txn: &Transaction,
    rewritten: &Rewritten,
    target: std::num::NonZeroU64,
) -> Result<i64, StorageError> {
    staged::check_present(lake, table, rewritten.written.adds()).await?;
    let mut actions: Vec<Action> = rewritten
        .written
        .adds()
        .iter()
        .cloned()
        .map(Action::Add)
        .collect();
    actions.extend(rewritten.removes.iter().cloned().map(Action::Remove));
    let state = opened.snapshot().map_err(delta_error(table))?;
    let committed = CommitBuilder::from(lake.commit_properties(txn).with_max_retries(0))
        .with_actions(actions)
        .build(
            Some(state as &dyn TableReference),
            opened.log_store(),
            DeltaOperation::Optimize {
                predicate: None,
                target_size: target.get() as i64,
            },
        )
        .await
        .map_err(delta_error(table))?;
    Ok(committed.version() as i64)
}

/// The partitions of `opened` with at least two files smaller than `target` bytes, and those
/// files.
async fn small_files(
    table: Table,
    opened: &DeltaTable,
    target: u64,
) -> Result<Vec<Bin>, StorageError> {
    let mut by_partition: BTreeMap<Vec<(String, Option<String>)>, Vec<Remove>> = BTreeMap::new();
    let mut views = opened.get_active_add_actions_by_partitions(&[]);
    while let Some(view) = views.try_next().await.map_err(delta_error(table))? {
        if view.size() as u64 >= target {
            continue;
        }
        let key = table
            .partition_columns()
            .iter()
            .map(|c| {
                let value = view.partition_values_map().get(*c).cloned().flatten();
                (c.to_string(), value)
            })
            .collect();
        by_partition
            .entry(key)
            .or_default()
            .push(view.remove_action(false));
    }
    Ok(by_partition
        .into_iter()
        .filter(|(_, removes)| removes.len() >= 2)
        .map(|(partition, removes)| Bin { partition, removes })
        .collect())
}

fn decoded(path: &str) -> String {
    percent_decode_str(path).decode_utf8_lossy().to_string()
}
