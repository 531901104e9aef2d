//! The write node: many tasks write a table's data files at once, one client commits them.
//!
//! DataFusion's own sinks (`INSERT`, `COPY`) want a single partition and write straight to
//! final paths, and delta-rs's writer runs in the process that calls it. So a job that writes
//! a table ends its plan in a [`WriteNode`]. It is planned (on the scheduler of a cluster, or
//! in this process when embedded: one protocol, not two) as a [`WriteExec`] under a hash
//! repartition on the table's partition columns, so each Hive partition is written by one
//! task. Each task writes its own uniquely named Parquet files with delta-rs's data-file
//! writer and returns their `Add` actions (with statistics) and a [`Tally`] of its rows, as
//! rows. Nothing is visible until the client checks the tallies and commits exactly those
//! files in one Delta transaction. A task that fails, or is re-run after an executor is lost,
//! leaves files no version references; `vacuum` removes them.

use std::any::Any;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, AsArray, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DFSchema, DFSchemaRef, DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{
    Expr, Extension, LogicalPlan, UserDefinedLogicalNode, UserDefinedLogicalNodeCore,
};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, ExecutionPlanProperties,
    Partitioning, PlanProperties,
};
use datafusion::physical_planner::{ExtensionPlanner, PhysicalPlanner};
use deltalake::kernel::Add;
use deltalake::logstore::ObjectStoreRef;
use futures::StreamExt;
use object_store::prefix::PrefixStore;
use serde::{Deserialize, Serialize};

use super::partition_files::{PartitionFiles, DEFAULT_MAX_OPEN_FILES};
use super::tally::Tally;
use crate::storage::staged::writer_config;
use crate::storage::{Lake, Table};
use percent_encoding::percent_decode_str;

/// The column of a write node's output holding one `Add` action (JSON) per row.
pub const ADD_COLUMN: &str = "add";
/// The column of a write node's output holding one task's [`Tally`] (JSON).
pub const TALLY_COLUMN: &str = "tally";

static OUTPUT_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new(ADD_COLUMN, DataType::Utf8, true),
        Field::new(TALLY_COLUMN, DataType::Utf8, true),
    ]))
});

/// Where a write's tasks put their files. It travels in the plan, so it holds no
/// credentials: every node reaches the store with its own (e.g. the instance profile).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Serialize, Deserialize)]
pub struct WriteTarget {
    /// The table's SQL name (for messages).
    pub table: String,
    /// Root of the object store (`s3://bucket` or `file:///`), as registered on every node.
    pub store_url: String,
    /// The table's folder from the store root (`prefix/processed`).
    pub table_path: String,
    pub partition_columns: Vec<String>,
    /// Count normalize's conversions too: the middle of its converted columns (`sgd`).
    pub converted_suffix: Option<String>,
    /// Hash-repartition the rows on the partition columns first, so each Hive partition is
    /// written by one task. On a cluster of many tasks that keeps a month to a few files; in
    /// one process, with as many partitions as cores, it would only add a shuffle (about 10%
    /// of normalize's time at 10M rows), so each partition writes its own files there.
    pub one_task_per_partition: bool,
    /// The most partitions each task keeps a file open for; rows of the others wait in
    /// local spill files ([`super::partition_files`]). Older plans lack it: the default.
    #[serde(default = "default_max_open_files")]
    pub max_open_files: usize,
}

fn default_max_open_files() -> usize {
    DEFAULT_MAX_OPEN_FILES
}

impl WriteTarget {
    /// Where `table` of `lake` lives, as every node names it.
    pub fn of(
        lake: &Lake,
        table: Table,
        converted_suffix: Option<String>,
        one_task_per_partition: bool,
    ) -> Self {
        let (store_url, _) = lake.root_store();
        let table_path = percent_decode_str(lake.table_url(table).path())
            .decode_utf8_lossy()
            .trim_matches('/')
            .to_string();
        Self {
            table: table.sql_name().to_string(),
            store_url: ObjectStoreUrl::parse(store_url.as_str())
                .map(|url| url.as_str().to_string())
                .unwrap_or_else(|_| store_url.to_string()),
            table_path,
            partition_columns: table
                .partition_columns()
                .iter()
                .map(|c| c.to_string())
                .collect(),
            converted_suffix,
            one_task_per_partition,
            max_open_files: DEFAULT_MAX_OPEN_FILES,
        }
    }
}

impl WriteTarget {
    /// The table's folder as a store, through this node's own store of the bucket (or `/`).
    pub fn store_on(
        &self,
        runtime: &datafusion::execution::runtime_env::RuntimeEnv,
    ) -> Result<ObjectStoreRef> {
        let url = ObjectStoreUrl::parse(&self.store_url)?;
        let root = runtime.object_store(&url)?;
        Ok(Arc::new(PrefixStore::new(root, self.table_path.as_str())))
    }
}

/// Whether a write's rows are hash-repartitioned on the table's partition columns first, so
/// each Hive partition (a month) is written by one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriteShuffle {
    /// Shuffle only on a cluster with more than [`MAX_WRITERS_PER_PARTITION`] partitions per
    /// stage: below that, each task writes every month it sees, as in one process.
    #[default]
    Auto,
    /// Always shuffle on a cluster: one task, so fewer and larger files, per month.
    Always,
    /// Never shuffle: each task writes every month it sees (at most one file per task and
    /// month, until a file reaches the target size).
    Never,
}

/// The most tasks that write one month without a shuffle ([`WriteShuffle::Auto`]): a month
/// then gets at most this many files per target size. The (year, month) shuffle moves every
/// row once more, and hashing a few dozen months onto a few tasks leaves some tasks with far
/// more rows than others (with 6 months on 2 tasks, one task wrote every row); one process
/// never shuffles for the same reason. Measured on a loopback cluster of 4 partitions
/// (release, 5 years of data): without it normalize took 13.2 s instead of 19.0 s at 10M rows
/// and 2.6 s instead of 3.2 s at 1M (docs/cluster.md, "What the cluster costs").
pub const MAX_WRITERS_PER_PARTITION: usize = 8;

impl WriteShuffle {
    /// Whether a write on a cluster (`on_cluster`) of `partitions` per stage shuffles.
    pub fn applies(self, on_cluster: bool, partitions: usize) -> bool {
        on_cluster
            && match self {
                WriteShuffle::Always => true,
                WriteShuffle::Never => false,
                WriteShuffle::Auto => partitions > MAX_WRITERS_PER_PARTITION,
            }
    }
}

/// The logical node: write the input's rows as data files of `target`.
#[derive(Debug, Clone)]
pub struct WriteNode {
    input: LogicalPlan,
    target: WriteTarget,
    schema: DFSchemaRef,
}

impl WriteNode {
    pub fn new(input: LogicalPlan, target: WriteTarget) -> Result<Self> {
        let schema = Arc::new(DFSchema::try_from(OUTPUT_SCHEMA.as_ref().clone())?);
        Ok(Self {
            input,
            target,
            schema,
        })
    }

    /// The node as a plan to run.
    pub fn into_plan(self) -> LogicalPlan {
        LogicalPlan::Extension(Extension {
            node: Arc::new(self),
        })
    }

    pub fn target(&self) -> &WriteTarget {
        &self.target
    }
}

impl PartialEq for WriteNode {
    fn eq(&self, other: &Self) -> bool {
        self.target == other.target && self.input == other.input
    }
}

impl Eq for WriteNode {}

impl PartialOrd for WriteNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match self.target.partial_cmp(&other.target) {
            Some(Ordering::Equal) => self.input.partial_cmp(&other.input),
            order => order,
        }
    }
}

impl Hash for WriteNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.target.hash(state);
        self.input.hash(state);
    }
}

impl UserDefinedLogicalNodeCore for WriteNode {
    fn name(&self) -> &str {
        "FxpipeWrite"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "FxpipeWrite: table={} partitioned by {:?}",
            self.target.table, self.target.partition_columns
        )
    }

    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> Result<Self> {
        if inputs.len() != 1 {
            return Err(DataFusionError::Internal(
                "FxpipeWrite has exactly one input".to_string(),
            ));
        }
        Self::new(inputs.swap_remove(0), self.target.clone())
    }
}

/// The physical node: each partition writes its rows' files and returns their actions.
#[derive(Debug)]
pub struct WriteExec {
    input: Arc<dyn ExecutionPlan>,
    target: WriteTarget,
    properties: Arc<PlanProperties>,
}

impl WriteExec {
    pub fn new(input: Arc<dyn ExecutionPlan>, target: WriteTarget) -> Self {
        let partitions = input.output_partitioning().partition_count();
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(OUTPUT_SCHEMA.clone()),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Self {
            input,
            target,
            properties,
        }
    }

    pub fn target(&self) -> &WriteTarget {
        &self.target
    }

    pub fn input(&self) -> &Arc<dyn ExecutionPlan> {
        &self.input
    }
}

impl DisplayAs for WriteExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "FxpipeWriteExec: table={} partitioned by {:?}",
            self.target.table, self.target.partition_columns
        )
    }
}

impl ExecutionPlan for WriteExec {
    fn name(&self) -> &'static str {
        "FxpipeWriteExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    /// Rows of one Hive partition go to one task, so a partition gets one set of files (the
    /// planner inserts the repartition; never `SinglePartition`, which makes one task), when
    /// the target asks for it.
    fn required_input_distribution(&self) -> Vec<Distribution> {
        let schema = self.input.schema();
        let columns: Option<Vec<Arc<dyn PhysicalExpr>>> = self
            .target
            .partition_columns
            .iter()
            .map(|name| datafusion::physical_expr::expressions::col(name, &schema).ok())
            .collect();
        if !self.target.one_task_per_partition {
            return vec![Distribution::UnspecifiedDistribution];
        }
        match columns {
            Some(columns) if !columns.is_empty() => vec![Distribution::KeyPartitioned(columns)],
            _ => vec![Distribution::UnspecifiedDistribution],
        }
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![true]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(DataFusionError::Internal(
                "FxpipeWriteExec has exactly one input".to_string(),
            ));
        }
        Ok(Arc::new(Self::new(
            children.swap_remove(0),
            self.target.clone(),
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context.clone())?;
        let url = ObjectStoreUrl::parse(&self.target.store_url)?;
        let root = context.runtime_env().object_store(&url)?;
        let store: ObjectStoreRef =
            Arc::new(PrefixStore::new(root, self.target.table_path.as_str()));
        let target = self.target.clone();
        let task = context
            .task_id()
            .unwrap_or_else(|| format!("partition {partition}"));
        let disk = context.runtime_env().disk_manager.clone();
        let written = futures::stream::once(write_partition(input, store, target, task, disk));
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            OUTPUT_SCHEMA.clone(),
            written,
        )))
    }
}

/// Writes one partition's rows; returns its `Add` actions and tally as rows.
async fn write_partition(
    mut input: SendableRecordBatchStream,
    store: ObjectStoreRef,
    target: WriteTarget,
    task: String,
    disk: Arc<datafusion::execution::DiskManager>,
) -> Result<RecordBatch> {
    // The batches are written as they come (string views included, as delta-rs's own writer
    // did): a cast to plain strings copied every string and cost about 6% of normalize.
    let schema = input.schema();
    let config = writer_config(
        schema.clone(),
        target.partition_columns.clone(),
        &Default::default(),
    );
    let mut writer = PartitionFiles::new(
        store,
        config,
        schema,
        &target.partition_columns,
        target.max_open_files,
        disk,
    )?;
    let mut tally = Tally::default();
    let suffix = target.converted_suffix.as_deref();
    while let Some(batch) = input.next().await {
        let written = async {
            let batch = batch?;
            tally.add(&batch, &target.partition_columns, suffix)?;
            writer.write(&batch).await
        }
        .await;
        if let Err(error) = written {
            writer.abort().await;
            return Err(error);
        }
    }
    tally.spilled_partitions = writer.spilled_partitions() as u64;
    let adds = writer.close().await?;
    tracing::info!(
        table = %target.table,
        task = %task,
        files = adds.len(),
        spilled_partitions = tally.spilled_partitions,
        rows = tally.rows,
        "wrote data files (uncommitted)"
    );
    let mut add_column = StringBuilder::new();
    let mut tally_column = StringBuilder::new();
    let json = |e: serde_json::Error| DataFusionError::Internal(format!("encoding an action: {e}"));
    for add in &adds {
        add_column.append_value(serde_json::to_string(add).map_err(json)?);
        tally_column.append_null();
    }
    add_column.append_null();
    tally_column.append_value(serde_json::to_string(&tally).map_err(json)?);
    Ok(RecordBatch::try_new(
        OUTPUT_SCHEMA.clone(),
        vec![
            Arc::new(add_column.finish()),
            Arc::new(tally_column.finish()),
        ],
    )?)
}

/// What the tasks of a write wrote, gathered by the client.
#[derive(Debug, Default)]
pub struct Written {
    pub adds: Vec<Add>,
    pub tally: Tally,
    /// How many tasks reported (one tally each).
    pub tasks: usize,
}

impl Written {
    /// Reads a write node's output rows.
    pub fn from_batches(batches: &[RecordBatch]) -> Result<Self> {
        let mut written = Self::default();
        let json = |e: serde_json::Error| {
            DataFusionError::Internal(format!("decoding a write task's report: {e}"))
        };
        for batch in batches {
            let text = |name: &str| -> Result<ArrayRef> {
                let column = batch.column_by_name(name).ok_or_else(|| {
                    DataFusionError::Internal(format!("a write's output has no column {name}"))
                })?;
                Ok(arrow::compute::cast(column, &DataType::Utf8)?)
            };
            let adds = text(ADD_COLUMN)?;
            let tallies = text(TALLY_COLUMN)?;
            for add in adds.as_string::<i32>().iter().flatten() {
                written.adds.push(serde_json::from_str(add).map_err(json)?);
            }
            for tally in tallies.as_string::<i32>().iter().flatten() {
                written
                    .tally
                    .merge(&serde_json::from_str(tally).map_err(json)?);
                written.tasks += 1;
            }
        }
        Ok(written)
    }
}

/// Plans [`WriteNode`]s as [`WriteExec`]s.
#[derive(Debug, Default)]
pub struct WritePlanner;

#[async_trait]
impl ExtensionPlanner for WritePlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        _session: &dyn Session,
        _planning_ctx: &PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let any: &dyn Any = node.as_any();
        let Some(write) = any.downcast_ref::<WriteNode>() else {
            return Ok(None);
        };
        let [input] = physical_inputs else {
            return Err(DataFusionError::Internal(
                "FxpipeWrite has exactly one input".to_string(),
            ));
        };
        Ok(Some(Arc::new(WriteExec::new(
            input.clone(),
            write.target.clone(),
        ))))
    }
}

/// Marks a write node (logical or physical) in an encoded plan.
const WRITE_TAG: &[u8] = b"fxpipe.write.v1:";

/// The write node's codec, logical and physical: its [`WriteTarget`] as tagged JSON; the input
/// travels as the node's child in the plan.
#[derive(Debug, Default)]
pub struct WriteCodec;

impl datafusion_proto::logical_plan::LogicalExtensionCodec for WriteCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        _ctx: &TaskContext,
    ) -> Result<Extension> {
        let target = super::codec::decode_tagged(WRITE_TAG, buf)?;
        let input = super::codec::one_input("the write node", inputs)?;
        Ok(Extension {
            node: Arc::new(WriteNode::new(input, target)?),
        })
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        let any: &dyn Any = node.node.as_any();
        match any.downcast_ref::<WriteNode>() {
            Some(write) => super::codec::encode_tagged(WRITE_TAG, write.target(), buf),
            None => Err(super::codec::not_ours("plan node")),
        }
    }

    crate::no_table_providers!();
}

impl datafusion_proto::physical_plan::PhysicalExtensionCodec for WriteCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        _ctx: &TaskContext,
        _converter: &dyn datafusion_proto::physical_plan::PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let target = super::codec::decode_tagged(WRITE_TAG, buf)?;
        let input = super::codec::one_input("the write node", inputs)?;
        Ok(Arc::new(WriteExec::new(input, target)))
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        _converter: &dyn datafusion_proto::physical_plan::PhysicalProtoConverterExtension,
    ) -> Result<()> {
        match node.downcast_ref::<WriteExec>() {
            Some(write) => super::codec::encode_tagged(WRITE_TAG, write.target(), buf),
            None => Err(super::codec::not_ours("plan node")),
        }
    }
}
