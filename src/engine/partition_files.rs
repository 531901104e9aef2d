//! One write task's data files, with a bounded number of them open at once.
//!
//! A task of normalize sees rows of every month in nearly every batch: a bank export is one
//! account's months, then the next account's. An open Parquet file holds its current row group
//! and up to one upload part (5 MiB, S3's smallest) in memory, about 16 MB at 100M rows. One
//! open file per month and task made memory grow with the months and with the rows: 2.3 GB for
//! 60 months at 100M rows. Closing a file early instead would give a month one small file per
//! account on such input.
//!
//! So at most `max_open` partitions have an open file. Rows of the others go, as they arrive,
//! to a spill file per partition (Arrow IPC, in the runtime's temporary directory, which
//! executors put in their work directory), and those partitions are written one at a time once
//! the input ends. Each partition still gets one file per task (per target size), and memory
//! follows `max_open`, not the data: DuckDB's `partitioned_write_max_open_files` bounds the
//! same thing by closing files, which this input shape would turn into thousands of files.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, RecordBatch, UInt32Array};
use arrow::compute::take;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow::ipc::CompressionType;
use arrow::row::{RowConverter, SortField};
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::{DiskManager, SpillFile, SpillWriter};
use delta_kernel::expressions::Scalar;
use deltalake::datafile::writer::{DeltaWriter, WriterConfig};
use deltalake::kernel::scalars::ScalarExt;
use deltalake::kernel::Add;
use deltalake::logstore::ObjectStoreRef;
use indexmap::IndexMap;

/// How many partitions a write task keeps a file open for, unless told otherwise. With the
/// ~16 MB an open file holds at 100M rows, 2 tasks stay near 0.4 GB of open files, leaving room
/// for the join under normalize's 1 GB bound (benches/README.md, "Memory").
pub const DEFAULT_MAX_OPEN_FILES: usize = 12;

/// Open files closed at once when the input ends.
const CLOSING_AT_ONCE: usize = 16;

/// Spilled months written at once after that.
const DRAINING_AT_ONCE: usize = 2;

/// Values of a partition, as delta-rs writes them into the `Add` action.
type Values = IndexMap<String, Scalar>;

/// A partition whose rows wait on local disk.
struct Spill {
    values: Values,
    file: Arc<dyn SpillFile>,
    writer: StreamWriter<BufWriter<Box<dyn SpillWriter>>>,
    rows: usize,
}

/// The data files one task writes, at most `max_open` of them open (see the module header).
pub struct PartitionFiles {
    store: ObjectStoreRef,
    config: WriterConfig,
    schema: SchemaRef,
    /// Indices of the partition columns in the input.
    partition_indices: Vec<usize>,
    max_open: usize,
    /// Encodes the partition values of a row as bytes that sort as the values do.
    keys: Option<RowConverter>,
    /// The one writer of an unpartitioned table.
    whole: Option<DeltaWriter>,
    open: HashMap<Vec<u8>, DeltaWriter>,
    spilled: HashMap<Vec<u8>, Spill>,
    disk: Arc<DiskManager>,
}

impl PartitionFiles {
    pub fn new(
        store: ObjectStoreRef,
        config: WriterConfig,
        schema: SchemaRef,
        partition_columns: &[String],
        max_open: usize,
        disk: Arc<DiskManager>,
    ) -> Result<Self> {
        let partition_indices = partition_columns
            .iter()
            .map(|name| schema.index_of(name))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let keys = if partition_indices.is_empty() {
            None
        } else {
            Some(RowConverter::new(
                partition_indices
                    .iter()
                    .map(|&i| SortField::new(schema.field(i).data_type().clone()))
                    .collect(),
            )?)
        };
        Ok(Self {
            store,
            config,
            schema,
            partition_indices,
            max_open: max_open.max(1),
            keys,
            whole: None,
            open: HashMap::new(),
            spilled: HashMap::new(),
            disk,
        })
    }

    /// How many partitions have waited, or wait, on local disk.
    pub fn spilled_partitions(&self) -> usize {
        self.spilled.len()
    }

    /// Writes `batch`'s rows to their partitions' files or spill files.
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let Some(keys) = &self.keys else {
            // Unpartitioned: one file at a time, nothing to bound.
            let writer = self
                .whole
                .get_or_insert_with(|| DeltaWriter::new(self.store.clone(), self.config.clone()));
            return writer.write(batch).await.map_err(delta_error);
        };
        let columns: Vec<ArrayRef> = self
            .partition_indices
            .iter()
            .map(|&i| batch.column(i).clone())
            .collect();
        let rows = keys.convert_columns(&columns)?;
        let mut groups: HashMap<_, Vec<u32>> = HashMap::new();
        for (index, row) in rows.iter().enumerate() {
            groups.entry(row).or_default().push(index as u32);
        }
        let mut groups: Vec<_> = groups.into_iter().collect();
        groups.sort_unstable_by_key(|(key, _)| *key);
        for (key, indices) in groups {
            let indices = UInt32Array::from(indices);
            // Under the stream's schema, as delta-rs's own split does: its file writer refuses
            // a batch whose schema differs in the least (a field's nullability, metadata).
            let part = RecordBatch::try_new(
                self.schema.clone(),
                batch
                    .columns()
                    .iter()
                    .map(|column| take(column.as_ref(), &indices, None))
                    .collect::<std::result::Result<_, _>>()?,
            )?;
            if let Some(writer) = self.open.get_mut(key.as_ref()) {
                let values = values_of(&self.schema, &self.partition_indices, &part)?;
                writer
                    .write_partition(part, &values)
                    .await
                    .map_err(delta_error)?;
            } else if let Some(spill) = self.spilled.get_mut(key.as_ref()) {
                spill.append(&part)?;
            } else if self.open.len() < self.max_open {
                let values = values_of(&self.schema, &self.partition_indices, &part)?;
                let mut writer = DeltaWriter::new(self.store.clone(), self.config.clone());
                if let Err(error) = writer.write_partition(part, &values).await {
                    let _ = writer.abort().await;
                    return Err(delta_error(error));
                }
                self.open.insert(key.as_ref().to_vec(), writer);
            } else {
                let mut spill = Spill::create(
                    &self.disk,
                    &self.schema,
                    values_of(&self.schema, &self.partition_indices, &part)?,
                )?;
                spill.append(&part)?;
                self.spilled.insert(key.as_ref().to_vec(), spill);
            }
        }
        Ok(())
    }

    /// Closes the open files, then writes the spilled partitions, [`DRAINING_AT_ONCE`] at a
    /// time; returns every file's `Add` action.
    pub async fn close(mut self) -> Result<Vec<Add>> {
        use futures::StreamExt;
        // The open files end at once, as delta-rs ends its partitions' files: on S3 each
        // close waits for its last part and the upload's completion.
        let open: Vec<_> = std::mem::take(&mut self.open)
            .into_values()
            .chain(self.whole.take())
            .collect();
        let mut closes = futures::stream::iter(open)
            .map(|writer| writer.close())
            .buffer_unordered(CLOSING_AT_ONCE);
        let mut adds = Vec::new();
        let mut first_error = None;
        while let Some(closed) = closes.next().await {
            match closed {
                Ok(more) => adds.extend(more),
                // The others still finish: a close cut short would leave upload parts that
                // vacuum cannot see, while a finished file is an orphan it removes.
                Err(error) => {
                    first_error.get_or_insert(delta_error(error));
                }
            }
        }
        drop(closes);
        if let Some(error) = first_error {
            return Err(error);
        }
        // Then the months that waited, a few at a time: one is encoded while another's
        // upload ends, and memory stays that of a few open files.
        let mut spilled: Vec<_> = std::mem::take(&mut self.spilled).into_iter().collect();
        spilled.sort_unstable_by(|(a, _), (b, _)| a.cmp(b));
        let (store, config) = (&self.store, &self.config);
        let mut drains = futures::stream::iter(spilled)
            .map(|(_, spill)| spill.drain(store, config))
            .buffered(DRAINING_AT_ONCE);
        while let Some(drained) = drains.next().await {
            match drained {
                Ok(more) => adds.extend(more),
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        drop(drains);
        if let Some(error) = first_error {
            return Err(error);
        }
        Ok(adds)
    }

    /// Abandons the write: aborts the open files' uploads; spill files go with their handles.
    pub async fn abort(self) {
        for writer in self.open.into_values().chain(self.whole) {
            let _ = writer.abort().await;
        }
    }
}

impl Spill {
    fn create(disk: &Arc<DiskManager>, schema: &SchemaRef, values: Values) -> Result<Self> {
        let file = disk.create_tmp_file("fxpipe write: a partition beyond the open-file bound")?;
        let sink = BufWriter::with_capacity(64 * 1024, file.open_writer()?);
        // LZ4: uncompressed, a row took about 250 bytes of disk at 100M rows (15 GB spilled);
        // the file paths, currencies and amounts repeat, and LZ4 is cheap beside Parquet's own
        // encoding.
        let options =
            IpcWriteOptions::default().try_with_compression(Some(CompressionType::LZ4_FRAME))?;
        let writer = StreamWriter::try_new_with_options(sink, schema, options)?;
        Ok(Self {
            values,
            file,
            writer,
            rows: 0,
        })
    }

    fn append(&mut self, part: &RecordBatch) -> Result<()> {
        // A part taken from a batch keeps string views into the whole batch's buffers: write
        // only the bytes it uses.
        let columns: Vec<ArrayRef> = part.columns().iter().map(compact_views).collect();
        let part = RecordBatch::try_new(part.schema(), columns)?;
        self.writer.write(&part)?;
        self.rows += part.num_rows();
        Ok(())
    }

    /// Reads the partition back and writes it as this task's file(s) of the partition.
    async fn drain(self, store: &ObjectStoreRef, config: &WriterConfig) -> Result<Vec<Add>> {
        let mut sink = self
            .writer
            .into_inner()?
            .into_inner()
            .map_err(|error| DataFusionError::IoError(error.into_error()))?;
        sink.finish()?;
        drop(sink);
        let path = self.file.path().ok_or_else(|| {
            DataFusionError::Internal("a write's spill file has no local path".to_string())
        })?;
        let reader = StreamReader::try_new(BufReader::new(File::open(path)?), None)?;
        // SAFETY: this task wrote the file moments ago from valid arrays, into a directory of
        // its own runtime; checking every string's UTF-8 again took about 3% of normalize.
        let reader = unsafe { reader.with_skip_validation(true) };
        // The parts are written as they were spilled, a few hundred rows each: coalescing
        // them first measured no faster at 10M rows (farm-bench, 5 pairs).
        let mut writer = DeltaWriter::new(store.clone(), config.clone());
        let mut rows = 0;
        let written: Result<()> = async {
            for part in reader {
                let part = part?;
                rows += part.num_rows();
                writer
                    .write_partition(part, &self.values)
                    .await
                    .map_err(delta_error)?;
            }
            Ok(())
        }
        .await;
        if let Err(error) = written {
            let _ = writer.abort().await;
            return Err(error);
        }
        if rows != self.rows {
            let _ = writer.abort().await;
            return Err(DataFusionError::Internal(format!(
                "a spilled partition read back {rows} rows of {}",
                self.rows
            )));
        }
        writer.close().await.map_err(delta_error)
    }
}

/// The partition values of `part` (the columns at `indices` of `schema`), whose rows share them.
fn values_of(schema: &SchemaRef, indices: &[usize], part: &RecordBatch) -> Result<Values> {
    indices
        .iter()
        .map(|&i| {
            let name = schema.field(i).name().clone();
            let value = Scalar::from_array(part.column(i).as_ref(), 0).ok_or_else(|| {
                DataFusionError::Internal(format!(
                    "partition column {name} has a value Delta cannot hold"
                ))
            })?;
            Ok((name, value))
        })
        .collect()
}

/// `column` with its string or binary views' buffers cut to the bytes it uses.
fn compact_views(column: &ArrayRef) -> ArrayRef {
    match column.data_type() {
        DataType::Utf8View => Arc::new(column.as_string_view().gc()),
        DataType::BinaryView => Arc::new(column.as_binary_view().gc()),
        _ => column.clone(),
    }
}

fn delta_error(error: deltalake::DeltaTableError) -> DataFusionError {
    DataFusionError::External(Box::new(error))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, Int64Array, StringViewArray};
    use arrow::datatypes::{Field, Schema};
    use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use object_store::local::LocalFileSystem;

    /// Batches of rows from months 1..=`months` of 2017, each batch holding every month
    /// (as a bank export's runs of accounts do), with a string column of views into the batch.
    fn batches(months: i32, per_month: i32) -> (SchemaRef, Vec<RecordBatch>) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("amount", DataType::Int64, false),
            Field::new("details", DataType::Utf8View, false),
            Field::new("year", DataType::Int32, false),
            Field::new("month", DataType::Int32, false),
        ]));
        let batches = (0..3)
            .map(|b| {
                let rows: Vec<(i64, i32)> = (0..per_month)
                    .flat_map(|r| (1..=months).map(move |m| (i64::from(b * 1000 + r), m)))
                    .collect();
                RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                        Arc::new(StringViewArray::from_iter_values(
                            rows.iter()
                                .map(|r| format!("a detail longer than twelve {}", r.0)),
                        )),
                        Arc::new(Int32Array::from(vec![2017; rows.len()])),
                        Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.1))),
                    ],
                )
                .unwrap()
            })
            .collect();
        (schema, batches)
    }

    /// Writes `batches` with at most `max_open` files open; returns the adds, how many
    /// partitions spilled, and each file's (partition path, rows, sum of amounts) as read back.
    async fn write(
        max_open: usize,
        schema: SchemaRef,
        batches: &[RecordBatch],
    ) -> (Vec<Add>, usize, Vec<(String, usize, i64)>) {
        let dir = tempfile::tempdir().unwrap();
        let store: ObjectStoreRef = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        let partitions = vec!["year".to_string(), "month".to_string()];
        let config = crate::storage::staged::writer_config(
            schema.clone(),
            partitions.clone(),
            &Default::default(),
        );
        let disk = datafusion::execution::disk_manager::DiskManagerBuilder::default()
            .build()
            .map(Arc::new)
            .unwrap();
        let mut files =
            PartitionFiles::new(store, config, schema, &partitions, max_open, disk).unwrap();
        for batch in batches {
            files.write(batch).await.unwrap();
        }
        let spilled = files.spilled_partitions();
        let adds = files.close().await.unwrap();
        let mut read: Vec<(String, usize, i64)> = adds
            .iter()
            .map(|add| {
                let file = std::fs::File::open(dir.path().join(&add.path)).unwrap();
                let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                    .unwrap()
                    .build()
                    .unwrap();
                let (mut rows, mut sum) = (0, 0);
                for batch in reader {
                    let batch = batch.unwrap();
                    rows += batch.num_rows();
                    let amounts = batch
                        .column(0)
                        .as_primitive::<arrow::datatypes::Int64Type>();
                    sum += amounts.values().iter().sum::<i64>();
                }
                let (partition, _) = add.path.rsplit_once('/').unwrap();
                (partition.to_string(), rows, sum)
            })
            .collect();
        read.sort();
        (adds, spilled, read)
    }

    #[tokio::test]
    async fn partitions_beyond_the_bound_wait_on_disk_and_get_one_file_each() {
        let (schema, batches) = batches(5, 400);
        let (open_adds, open_spilled, all_open) = write(12, schema.clone(), &batches).await;
        assert_eq!(open_spilled, 0);
        assert_eq!(open_adds.len(), 5);

        let (adds, spilled, bounded) = write(2, schema, &batches).await;
        // Months 1 and 2 (the first seen, in partition order) stay open; 3, 4 and 5 wait on
        // disk; each month still gets one file, with every row and the same values.
        assert_eq!(spilled, 3);
        assert_eq!(adds.len(), 5, "{bounded:?}");
        assert_eq!(bounded, all_open);
        assert_eq!(bounded.iter().map(|f| f.1).sum::<usize>(), 5 * 400 * 3);
        assert_eq!(bounded[4].0, "year=2017/month=5");
        for add in &adds {
            let month = add.partition_values.get("month").cloned().flatten();
            assert!(add.path.contains(&format!("month={}", month.unwrap())));
        }
    }

    #[tokio::test]
    async fn a_spilled_part_keeps_only_the_strings_it_uses() {
        let (_, batches) = batches(5, 400);
        let part = batches[0].slice(0, 10);
        let before = part.column(1).get_buffer_memory_size();
        let after = compact_views(part.column(1)).get_buffer_memory_size();
        assert!(after * 10 < before, "{after} of {before}");
    }
}
