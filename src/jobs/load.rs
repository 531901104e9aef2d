//! `fxpipe load`: raw CSV exports → the typed transactions table, faults → the rejects table.
//!
//! Idempotent per file: a file whose content (BLAKE3 hash) was loaded before is skipped; a file
//! loaded before under the same name with other content replaces its earlier rows. Each table
//! changes in one commit; the `loads` row is committed last, so a run killed half-way is simply
//! redone by the next run (its replace-by-source-file writes never duplicate rows).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use datafusion::common::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::{col, lit, ParquetReadOptions};
use futures::StreamExt;
use tracing::{info, info_span, Instrument};

use super::JobError;
use crate::engine::Engine;
use crate::report::{FileLoad, LoadReport};
use crate::storage::delta::{self, WriteMode};
use crate::storage::{Lake, Table};
use crate::transactions::csv::{CsvOutcome, TransactionCsv};
use crate::transactions::{loads_schema, rejects_schema};

/// Loads each file in turn (one set of commits per file).
pub async fn load(engine: &Engine, lake: &Lake, files: &[PathBuf]) -> Result<LoadReport, JobError> {
    let started = Instant::now();
    let mut report = LoadReport::default();
    for path in files {
        let span = info_span!("load", file = %path.display());
        let file = load_file(engine, lake, path).instrument(span).await?;
        report.add(file);
    }
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

async fn load_file(engine: &Engine, lake: &Lake, path: &Path) -> Result<FileLoad, JobError> {
    let started = Instant::now();
    let source_file = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| path.display().to_string());
    let hash = content_hash(path).await?;
    let ctx = engine.ctx();

    if engine.register_table(lake, Table::Loads).await? {
        let earlier = ctx
            .table(Table::Loads.sql_name())
            .await?
            .filter(col("source_hash").eq(lit(hash.clone())))?
            .select_columns(&["source_file"])?
            .collect()
            .await?;
        if let Some(batch) = earlier.iter().find(|b| b.num_rows() > 0) {
            let as_name = batch
                .column(0)
                .as_any()
                .downcast_ref::<StringArray>()
                .map(|a| a.value(0).to_string())
                .unwrap_or_default();
            info!(%source_file, %as_name, "same content already loaded, skipping");
            return Ok(FileLoad::skipped(source_file, hash, as_name));
        }
    }

    // Parse on a blocking thread, stream batches into the Delta write.
    let reader = TransactionCsv::open(path, &source_file)?;
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<RecordBatch, DataFusionError>>(2);
    let parser = tokio::task::spawn_blocking(move || {
        let mut reader = reader;
        loop {
            match reader.next_batch() {
                Ok(Some(batch)) => {
                    if sender.blocking_send(Ok(batch)).is_err() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let message = e.to_string();
                    let _ = sender.blocking_send(Err(DataFusionError::External(message.into())));
                    return Err(e);
                }
            }
        }
        reader.finish()
    });
    let batches: SendableRecordBatchStream = Box::pin(RecordBatchStreamAdapter::new(
        crate::transactions::schema(),
        tokio_stream_from(receiver),
    ));
    let plan = engine
        .frame_from_streams(crate::transactions::schema(), vec![batches])?
        .into_unoptimized_plan();
    let same_file = col("source_file").eq(lit(source_file.clone()));
    let written = delta::write(
        lake,
        Table::Transactions,
        engine.session(),
        plan,
        WriteMode::ReplaceWhere(same_file.clone()),
    )
    .await;
    let parsed = parser
        .await
        .map_err(|e| JobError::Invalid(format!("CSV parser task failed: {e}")))?;
    // A parse error is the root cause of a failed write: report it first.
    let CsvOutcome { counts, rejects } = parsed?;
    let transactions = written?;

    // Rejects of this file replace its earlier rejects (none now means none left; the table
    // exists from the first load on, so `SELECT … FROM rejects` always works).
    let rejects_plan = match &rejects {
        Some(spill) => ctx
            .read_parquet(
                spill.path().to_string_lossy().as_ref(),
                ParquetReadOptions::default(),
            )
            .await?
            .into_unoptimized_plan(),
        None => ctx
            .read_batch(RecordBatch::new_empty(rejects_schema()))?
            .into_unoptimized_plan(),
    };
    delta::write(
        lake,
        Table::Rejects,
        engine.session(),
        rejects_plan,
        WriteMode::ReplaceWhere(same_file.clone()),
    )
    .await?;
    drop(rejects);

    let loaded_at = chrono::Utc::now().timestamp_micros();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![source_file.clone()])),
        Arc::new(StringArray::from(vec![hash.clone()])),
        Arc::new(Int64Array::from(vec![counts.rows_read as i64])),
        Arc::new(Int64Array::from(vec![counts.rows_loaded as i64])),
        Arc::new(Int64Array::from(vec![counts.rows_rejected as i64])),
        Arc::new(TimestampMicrosecondArray::from(vec![loaded_at]).with_timezone("UTC")),
    ];
    let row = RecordBatch::try_new(loads_schema(), columns).map_err(DataFusionError::from)?;
    let plan = ctx.read_batch(row)?.into_unoptimized_plan();
    delta::write(
        lake,
        Table::Loads,
        engine.session(),
        plan,
        WriteMode::ReplaceWhere(same_file),
    )
    .await?;

    info!(%source_file, rows_read = counts.rows_read, rows_loaded = counts.rows_loaded,
          rows_rejected = counts.rows_rejected, "loaded");
    Ok(FileLoad::loaded(
        source_file,
        hash,
        counts,
        transactions.version().unwrap_or_default() as i64,
        started.elapsed().as_millis() as u64,
    ))
}

/// BLAKE3 of the file's bytes: the identity that makes re-loads idempotent.
async fn content_hash(path: &Path) -> Result<String, JobError> {
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let io = |source| JobError::Io {
            path: owned.clone(),
            source,
        };
        let mut file = std::fs::File::open(&owned).map_err(io)?;
        let mut hasher = blake3::Hasher::new();
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buffer).map_err(io)?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
        }
        Ok(hasher.finalize().to_hex().to_string())
    })
    .await
    .map_err(|e| JobError::Invalid(format!("hashing task failed: {e}")))?
}

fn tokio_stream_from<T: Send + 'static>(
    mut receiver: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx)).boxed()
}
