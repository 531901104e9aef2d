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
use std::sync::Arc;

use arrow::array::AsArray;
use arrow::datatypes::DataType;
use datafusion::prelude::{col, lit, Expr, SessionContext};
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
    let target = std::num::NonZeroU64::new(target_bytes)
        .unwrap_or(std::num::NonZeroU64::new(staged::TARGET_FILE_BYTES).expect("not zero"));
    let txn = lake.next_transaction();
    let mut attempt = 1;
    loop {
        let Some(opened) = delta::open(lake, table).await? else {
            return Ok(None);
        };
        let error = match compact_once(lake, table, ctx, &opened, target, &txn).await {
            Ok(done) => return Ok(Some(done)),
            Err(error) => error,
        };
        if let Some(landed) = delta::resolve_outcome(lake, table, &txn).await? {
            // The answer was lost: the commit is in the log, its counts are not known here.
            return Ok(Some(Compaction {
                version: landed.version().unwrap_or_default() as i64,
                ..Compaction::default()
            }));
        }
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

/// One attempt: read the small files of `opened`'s version, write them again, commit on that
/// version only. On failure the written files are deleted unless the commit may have landed.
async fn compact_once(
    lake: &Lake,
    table: Table,
    ctx: &SessionContext,
    opened: &DeltaTable,
    target: std::num::NonZeroU64,
    txn: &Transaction,
) -> Result<Compaction, StorageError> {
    let to_error = delta_error(table);
    let version = opened.version().unwrap_or_default() as i64;
    let bins = small_files(table, opened, target.get()).await?;
    if bins.is_empty() {
        return Ok(Compaction {
            files_removed: Some(0),
            files_added: Some(0),
            partitions: Some(0),
            version,
        });
    }
    let df_error = |e: datafusion::error::DataFusionError| to_error(DeltaTableError::from(e));
    let provider = opened
        .table_provider()
        .with_file_column(FILE_COLUMN)
        .await
        .map_err(df_error)?;
    let scan = ctx.read_table(provider).map_err(df_error)?;
    let columns: Vec<Expr> = scan
        .schema()
        .fields()
        .iter()
        .filter(|f| f.name() != FILE_COLUMN)
        .map(|f| col(f.name().as_str()))
        .collect();
    let schema = Arc::new(
        scan.schema()
            .as_arrow()
            .clone()
            .project(
                &(0..scan.schema().fields().len())
                    .filter(|i| scan.schema().field(*i).name() != FILE_COLUMN)
                    .collect::<Vec<_>>(),
            )
            .map_err(|e| df_error(e.into()))?,
    );
    let mut writer = StagedWriter::begin_sized(lake, table, opened, schema, target).await?;
    let mut removes = Vec::new();
    for bin in bins {
        // The scan names each row's file as the log does or as a URL, encoded or not: the
        // names of this partition's files, matched to the ones to rewrite.
        let mut filter = lit(true);
        for (column, value) in &bin.partition {
            let field = scan
                .schema()
                .field_with_unqualified_name(column)
                .map_err(df_error)?;
            filter = filter.and(match value {
                None => col(column.as_str()).is_null(),
                Some(text) => col(column.as_str()).eq(datafusion::logical_expr::cast(
                    lit(text.clone()),
                    field.data_type().clone(),
                )),
            });
        }
        let in_partition = scan.clone().filter(filter).map_err(df_error)?;
        let names = in_partition
            .clone()
            .aggregate(vec![col(FILE_COLUMN)], vec![])
            .map_err(df_error)?
            .collect()
            .await
            .map_err(df_error)?;
        let wanted: Vec<String> = bin.removes.iter().map(|r| decoded(&r.path)).collect();
        let mut chosen = Vec::new();
        for batch in &names {
            let column = arrow::compute::cast(batch.column(0), &DataType::Utf8)
                .map_err(|e| df_error(e.into()))?;
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
        let rows = in_partition
            .filter(
                datafusion::logical_expr::cast(col(FILE_COLUMN), DataType::Utf8)
                    .in_list(chosen, false),
            )
            .and_then(|f| f.select(columns.clone()))
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
    staged::check_present(lake, table, written.adds()).await?;
    let partitions = removes
        .iter()
        .map(|r| {
            r.partition_values
                .iter()
                .flatten()
                .collect::<BTreeMap<_, _>>()
        })
        .collect::<std::collections::BTreeSet<_>>()
        .len() as u64;
    let files_removed = removes.len() as u64;
    let files_added = written.adds().len() as u64;
    let mut actions: Vec<Action> = written.adds().iter().cloned().map(Action::Add).collect();
    actions.extend(removes.into_iter().map(Action::Remove));
    let state = opened.snapshot().map_err(&to_error)?;
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
        .await;
    match committed {
        Ok(committed) => Ok(Compaction {
            files_removed: Some(files_removed),
            files_added: Some(files_added),
            partitions: Some(partitions),
            version: committed.version() as i64,
        }),
        Err(error) => {
            let error = to_error(error);
            // Known not to have landed (a lost race): the rewritten files go. Otherwise the
            // caller learns the outcome first, and leaves them for vacuum if it cannot.
            if delta::is_conflict(&error) && delta::landed(lake, table, txn).await?.is_none() {
                written.discard().await?;
            }
            Err(error)
        }
    }
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
