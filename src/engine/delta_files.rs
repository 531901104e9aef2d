//! A Delta table version as a plain Parquet scan that any DataFusion process can run.
//!
//! delta-rs's own scan cannot be shipped to a cluster (its logical codec is `todo!()` and its
//! scan node has no physical codec, delta-rs #4171). So the client resolves the table's
//! snapshot into its exact data files, with Delta's partition values, and plans a
//! `DataSourceExec` over `ParquetSource`, which Ballista serialises natively. The file list
//! comes from the log, never from listing the folder, which also holds replaced and
//! uncommitted files.

use std::sync::Arc;

use arrow::datatypes::{Field, FieldRef, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::config::TableParquetOptions;
use datafusion::common::stats::Precision;
use datafusion::common::DFSchema;
use datafusion::common::{DataFusionError, ScalarValue, Statistics};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::{ExecutionPlan, Partitioning};
use deltalake::DeltaTable;
use futures::TryStreamExt;
use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};

use crate::storage::{Lake, StorageError, Table};

/// What a scan of one table version needs, small enough to travel in a plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeltaFiles {
    /// The table's SQL name (for messages).
    pub table: String,
    /// The Delta version these files are.
    pub version: i64,
    /// Root of the object store the paths are relative to (`s3://bucket` or `file:///`).
    pub store_url: String,
    pub partition_columns: Vec<String>,
    pub files: Vec<DataFile>,
    /// Read as one partition, never split into byte ranges: a small table every task reads
    /// whole, as the build side of its joins (see [`super::broadcast`]). Split, it would need
    /// a shuffle stage to gather it again.
    #[serde(default)]
    pub one_partition: bool,
    /// Rows and in-memory bytes, when known exactly (a broadcast): Ballista makes a join
    /// build from a side it knows to be small (`ballista.optimizer.broadcast_join_threshold_*`)
    /// instead of shuffling both sides, and a scan without statistics is never known small.
    #[serde(default)]
    pub size: Option<(u64, u64)>,
}

/// One data file of the version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DataFile {
    /// Object store path from the store root.
    pub path: String,
    pub size: u64,
    /// In the order of `partition_columns`; `None` is a null partition value.
    pub partition_values: Vec<Option<String>>,
}

impl DeltaFiles {
    /// The files of `opened`'s version. Tables whose files a plain Parquet reader cannot read
    /// as they are (deletion vectors, column mapping) are refused.
    pub async fn resolve(
        lake: &Lake,
        table: Table,
        opened: &DeltaTable,
    ) -> Result<Self, StorageError> {
        let to_error = |source| StorageError::Delta {
            table: table.sql_name().to_string(),
            source,
        };
        let snapshot = opened.snapshot().map_err(to_error)?;
        let protocol = snapshot.protocol();
        let features: Vec<String> = protocol
            .reader_features()
            .map(|f| f.iter().map(|f| f.to_string()).collect())
            .unwrap_or_default();
        let mapping = snapshot
            .metadata()
            .configuration()
            .get("delta.columnMapping.mode")
            .is_some_and(|mode| mode != "none");
        if mapping
            || features
                .iter()
                .any(|f| f == "deletionVectors" || f == "columnMapping")
        {
            return Err(StorageError::Unreadable {
                table: table.sql_name().to_string(),
                detail: "it uses deletion vectors or column mapping, which the cluster's \
                         plain Parquet scan cannot read; rewrite it without them (fxpipe \
                         never writes them)"
                    .to_string(),
            });
        }
        let partition_columns: Vec<String> = snapshot.metadata().partition_columns().to_vec();
        let (store_url, _) = lake.root_store();
        let table_url = lake.table_url(table);
        let table_path = percent_decode_str(table_url.path())
            .decode_utf8_lossy()
            .trim_start_matches('/')
            .to_string();
        let mut files = Vec::new();
        let mut views = opened.get_active_add_actions_by_partitions(&[]);
        while let Some(view) = views.try_next().await.map_err(to_error)? {
            if view.deletion_vector_descriptor().is_some() {
                return Err(StorageError::Unreadable {
                    table: table.sql_name().to_string(),
                    detail: "a data file has a deletion vector".to_string(),
                });
            }
            let values = view.partition_values_map();
            files.push(DataFile {
                path: format!("{table_path}{}", view.path()),
                size: view.size().max(0) as u64,
                partition_values: partition_columns
                    .iter()
                    .map(|c| values.get(c).cloned().flatten())
                    .collect(),
            });
        }
        let mut store_url = store_url.to_string();
        if store_url.starts_with("s3") {
            store_url = store_url.trim_end_matches('/').to_string();
        }
        Ok(Self {
            table: table.sql_name().to_string(),
            version: opened.version().unwrap_or_default() as i64,
            store_url,
            partition_columns,
            files,
            one_partition: false,
            size: None,
        })
    }

    /// One Parquet file of the lake (`relative` to its root, `size` bytes) holding `rows` rows
    /// of `bytes` in memory, read as one partition: a broadcast table.
    pub fn broadcast(
        lake: &Lake,
        name: &str,
        relative: &str,
        size: u64,
        (rows, bytes): (u64, u64),
    ) -> Self {
        let (store_url, _) = lake.root_store();
        let mut store_url = store_url.to_string();
        if store_url.starts_with("s3") {
            store_url = store_url.trim_end_matches('/').to_string();
        }
        let path = percent_decode_str(lake.url_of(relative).path())
            .decode_utf8_lossy()
            .trim_start_matches('/')
            .to_string();
        Self {
            table: name.to_string(),
            version: 0,
            store_url,
            partition_columns: Vec::new(),
            files: vec![DataFile {
                path,
                size,
                partition_values: Vec::new(),
            }],
            one_partition: true,
            size: Some((rows, bytes)),
        }
    }
}

/// The scan of a [`DeltaFiles`]: the table schema is the data files' columns, then the
/// partition columns (as Delta readers present them).
#[derive(Debug, Clone)]
pub struct DeltaFilesTable {
    files: DeltaFiles,
    schema: SchemaRef,
    file_schema: SchemaRef,
    partition_fields: Vec<FieldRef>,
}

impl DeltaFilesTable {
    /// Over `files`, with the columns of `table_schema` (the Delta table's, in any order).
    pub fn new(files: DeltaFiles, table_schema: &Schema) -> Result<Self, DataFusionError> {
        let is_partition = |f: &Field| files.partition_columns.iter().any(|c| c == f.name());
        let file_fields: Vec<FieldRef> = table_schema
            .fields()
            .iter()
            .filter(|f| !is_partition(f))
            .cloned()
            .collect();
        let partition_fields = files
            .partition_columns
            .iter()
            .map(|c| table_schema.field_with_name(c).map(|f| Arc::new(f.clone())))
            .collect::<Result<Vec<_>, _>>()?;
        let file_schema = Arc::new(Schema::new(file_fields.clone()));
        let mut all = file_fields;
        all.extend(partition_fields.iter().cloned());
        Ok(Self {
            files,
            schema: Arc::new(Schema::new(all)),
            file_schema,
            partition_fields,
        })
    }

    pub fn files(&self) -> &DeltaFiles {
        &self.files
    }

    fn partitioned_file(&self, file: &DataFile) -> Result<PartitionedFile, DataFusionError> {
        let values = self
            .partition_fields
            .iter()
            .zip(&file.partition_values)
            .map(|(field, value)| match value {
                Some(text) => ScalarValue::try_from_string(text.clone(), field.data_type()),
                None => ScalarValue::try_from(field.data_type()),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PartitionedFile::new(file.path.clone(), file.size).with_partition_values(values))
    }
}

#[async_trait]
impl TableProvider for DeltaFilesTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// Every filter reaches the Parquet scan (row groups and pages skipped by their statistics,
    /// and with `execution.parquet.pushdown_filters` rows filtered while decoding), and is
    /// applied again above it: the scan may return rows a filter rejects, never drop one.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        // Spread the files over the session's partitions, largest first, each to the
        // lightest group, so tasks get similar amounts of data.
        let groups_wanted = if self.files.one_partition {
            1
        } else {
            state.config().target_partitions().max(1)
        };
        let mut order: Vec<&DataFile> = self.files.files.iter().collect();
        order.sort_by_key(|f| std::cmp::Reverse(f.size));
        let mut groups: Vec<(u64, Vec<PartitionedFile>)> = Vec::new();
        for file in order {
            let partitioned = self.partitioned_file(file)?;
            if groups.len() < groups_wanted {
                groups.push((file.size, vec![partitioned]));
                continue;
            }
            if let Some(lightest) = groups.iter_mut().min_by_key(|(size, _)| *size) {
                lightest.0 += file.size;
                lightest.1.push(partitioned);
            }
        }
        // The session's Parquet settings, as DataFusion's own tables take them.
        let options = TableParquetOptions {
            global: state.config_options().execution.parquet.clone(),
            ..Default::default()
        };
        let mut source = ParquetSource::new(
            TableSchema::builder(self.file_schema.clone())
                .with_table_partition_cols(self.partition_fields.clone())
                .build(),
        )
        .with_table_parquet_options(options);
        if let Some(filter) = conjunction(filters.iter().cloned()) {
            let schema = DFSchema::try_from(self.schema.as_ref().clone())?;
            source = source.with_predicate(state.create_physical_expr(filter, &schema)?);
        }
        let source = Arc::new(source);
        let mut config =
            FileScanConfigBuilder::new(ObjectStoreUrl::parse(&self.files.store_url)?, source);
        if let Some((rows, bytes)) = self.files.size {
            let mut statistics = Statistics::new_unknown(&self.schema);
            statistics.num_rows = Precision::Exact(rows as usize);
            statistics.total_byte_size = Precision::Exact(bytes as usize);
            config = config.with_statistics(statistics);
        }
        let config = config
            .with_file_groups(
                groups
                    .into_iter()
                    .map(|(_, files)| FileGroup::new(files))
                    .collect(),
            )
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            // A declared partitioning is one DataFusion's optimizer does not split.
            .with_output_partitioning(
                self.files
                    .one_partition
                    .then_some(Partitioning::UnknownPartitioning(1)),
            )
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}

/// Marks a [`DeltaFilesTable`] in an encoded plan.
const DELTA_FILES_TAG: &[u8] = b"fxpipe.delta-files.v1:";

/// The codec of [`DeltaFilesTable`]: the version's file list as tagged JSON; the schema
/// travels beside it in the plan.
#[derive(Debug, Default)]
pub struct DeltaFilesCodec;

impl datafusion_proto::logical_plan::LogicalExtensionCodec for DeltaFilesCodec {
    fn try_decode(
        &self,
        _buf: &[u8],
        _inputs: &[datafusion::logical_expr::LogicalPlan],
        _ctx: &datafusion::execution::TaskContext,
    ) -> datafusion::common::Result<datafusion::logical_expr::Extension> {
        Err(super::codec::not_ours("plan node"))
    }

    fn try_encode(
        &self,
        _node: &datafusion::logical_expr::Extension,
        _buf: &mut Vec<u8>,
    ) -> datafusion::common::Result<()> {
        Err(super::codec::not_ours("plan node"))
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        _table_ref: &datafusion::common::TableReference,
        schema: SchemaRef,
        _ctx: &datafusion::execution::TaskContext,
    ) -> datafusion::common::Result<Arc<dyn TableProvider>> {
        let files: DeltaFiles = super::codec::decode_tagged(DELTA_FILES_TAG, buf)?;
        Ok(Arc::new(DeltaFilesTable::new(files, &schema)?))
    }

    fn try_encode_table_provider(
        &self,
        _table_ref: &datafusion::common::TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> datafusion::common::Result<()> {
        let any: &dyn std::any::Any = node.as_ref();
        match any.downcast_ref::<DeltaFilesTable>() {
            Some(table) => super::codec::encode_tagged(DELTA_FILES_TAG, table.files(), buf),
            None => Err(super::codec::not_ours("table provider")),
        }
    }
}
