//! Small tables a job computes once, in this process, and joins with its big input.
//!
//! normalize's rate calendar (one row per currency and day a transaction can use: ~320k rows
//! for five years) is the build side of both of its joins. Left inside the plan it was computed
//! twice (DataFusion inlines a CTE at each use), and on a cluster its window and joins were ten
//! shuffle stages of their own, most of the job's time. Computed once here from the rates
//! table, it is a `MemTable` embedded, and one Parquet file in the lake on a cluster, scanned as
//! one partition that every task reads whole, so the joins build from it without a shuffle.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::datasource::MemTable;
use datafusion::error::{DataFusionError, Result};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;
use object_store::path::Path as StorePath;
use object_store::ObjectStoreExt;

use super::delta_files::{DeltaFiles, DeltaFilesTable};
use super::Engine;
use crate::storage::Lake;

/// Where a cluster job's broadcast files live in the lake while it runs (a `_` folder, like
/// `_reports`: no table reads it). Deleted when the job ends; `fxpipe vacuum` deletes what a
/// killed run left.
pub const SCRATCH_PREFIX: &str = "_scratch";

/// A table registered for one job; [`Broadcast::remove`] it when the job is done.
#[derive(Debug)]
#[must_use = "remove the broadcast table when the job is done"]
pub struct Broadcast {
    name: String,
    /// The Parquet file in the lake (cluster only).
    file: Option<(Lake, String)>,
}

impl Engine {
    /// Registers `batches` as table `name` for the plans of this engine: in memory when
    /// embedded, as one Parquet file under [`SCRATCH_PREFIX`] on a cluster.
    pub async fn broadcast(
        &self,
        lake: &Lake,
        name: &str,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    ) -> Result<Broadcast> {
        let _ = self.ctx.deregister_table(name);
        if self.cluster.is_none() {
            self.ctx
                .register_table(name, Arc::new(MemTable::try_new(schema, vec![batches])?))?;
            return Ok(Broadcast {
                name: name.to_string(),
                file: None,
            });
        }
        let relative = format!(
            "{SCRATCH_PREFIX}/{:032x}-{name}.parquet",
            rand::random::<u128>()
        );
        let mut bytes = Vec::new();
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let mut writer = ArrowWriter::try_new(&mut bytes, schema.clone(), Some(properties))?;
        for batch in &batches {
            writer.write(batch)?;
        }
        writer.close()?;
        let size = bytes.len() as u64;
        let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
        let memory = batches
            .iter()
            .map(|b| b.get_array_memory_size() as u64)
            .sum();
        lake.put(&relative, bytes)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let broadcast = Broadcast {
            name: name.to_string(),
            file: Some((lake.clone(), relative.clone())),
        };
        // Our Parquet scan (the codec carries it): one partition, never split.
        let table = DeltaFilesTable::new(
            DeltaFiles::broadcast(lake, name, &relative, size, (rows, memory)),
            &schema,
        )
        .and_then(|table| self.ctx.register_table(name, Arc::new(table)));
        if let Err(error) = table {
            broadcast.remove(self).await;
            return Err(error);
        }
        Ok(broadcast)
    }
}

impl Broadcast {
    /// Unregisters the table and deletes its file (a failed delete is only a warning: the file
    /// is no table's, and vacuum deletes it).
    pub async fn remove(self, engine: &Engine) {
        let _ = engine.ctx().deregister_table(self.name.as_str());
        if let Some((lake, relative)) = self.file {
            if let Err(error) = lake
                .store()
                .delete(&StorePath::from(relative.as_str()))
                .await
            {
                tracing::warn!(%error, file = %lake.url_of(&relative), "could not delete a job's broadcast file (vacuum will)");
            }
        }
    }
}

/// Deletes the broadcast files older than `retention_hours` that killed runs left behind
/// (part of `fxpipe vacuum`; a running job's file is younger than any sensible retention).
/// Returns them (the ones that would be deleted, with `dry_run`).
pub async fn vacuum_scratch(
    lake: &Lake,
    retention_hours: u64,
    dry_run: bool,
) -> Result<Vec<String>, crate::storage::StorageError> {
    use futures::TryStreamExt;
    let cutoff = chrono::Utc::now()
        - chrono::Duration::hours(i64::try_from(retention_hours).unwrap_or(i64::MAX / 3600));
    let prefix = StorePath::from(SCRATCH_PREFIX);
    let objects: Vec<_> = lake
        .store()
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(|source| lake.store_error("list", &format!("{SCRATCH_PREFIX}/"), source))?;
    let mut stale = Vec::new();
    for object in objects.into_iter().filter(|o| o.last_modified < cutoff) {
        let relative = object.location.to_string();
        if !dry_run {
            lake.store()
                .delete(&object.location)
                .await
                .map_err(|source| lake.store_error("delete", &relative, source))?;
        }
        stale.push(relative);
    }
    Ok(stale)
}
