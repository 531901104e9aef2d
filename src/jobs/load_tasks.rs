//! `load` on a cluster: a plan node that parses export files on the executors, one task per
//! file, and stages their rows and rejects as data files there.
//!
//! Each task opens its file with its node's own stores (a path every node sees, or an S3
//! object), hashes and parses it exactly as an embedded load does, writes the rows to
//! `transactions` files and the rejects to `rejects` files (uncommitted), and returns one row:
//! the file's `Add` actions, counts and content hash, or the error that stopped it. The client
//! then commits file by file, in order, with the load's crash-safety rules
//! (`jobs::load`). The node lives with the job it serves, with its planner and codec;
//! [`extend`] adds them to the engine's (`fxpipe::extensions()`).

use std::any::Any;
use std::fmt;
use std::sync::{Arc, LazyLock};

use arrow::array::{AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DFSchema, DFSchemaRef, DataFusionError, Result};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{
    Expr, Extension, LogicalPlan, UserDefinedLogicalNode, UserDefinedLogicalNodeCore,
};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties,
};
use datafusion::physical_planner::{ExtensionPlanner, PhysicalPlanner};
use deltalake::kernel::Add;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::load::{open_export, parse_and_stage, Content, LoadOptions};
use crate::engine::write::WriteTarget;
use crate::engine::{codec, Extensions};
use crate::storage::inputs::{Input, InputRef};
use crate::storage::staged::StagedWriter;
use crate::storage::Table;
use crate::transactions::csv::LoadCounts;
use crate::transactions::rejects_schema;

/// The columns of the node's output: one row per file.
pub const SOURCE_FILE_COLUMN: &str = "source_file";
pub const OUTCOME_COLUMN: &str = "outcome";

static OUTPUT_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new(SOURCE_FILE_COLUMN, DataType::Utf8, false),
        Field::new(OUTCOME_COLUMN, DataType::Utf8, false),
    ]))
});

/// One file to parse.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Serialize, Deserialize)]
pub struct ParseFile {
    pub input: InputRef,
    /// The file's identity (its canonical path or `s3://bucket/key`), on every row.
    pub source_file: String,
}

/// What the tasks parse and where they stage it. No credentials: nodes use their own.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Serialize, Deserialize)]
pub struct ParseSpec {
    pub files: Vec<ParseFile>,
    /// `auto`, `.` or `,`.
    pub decimal_separator: String,
    pub transactions: WriteTarget,
    pub rejects: WriteTarget,
}

/// What a task made of its file.
#[derive(Debug, Serialize, Deserialize)]
pub struct ParsedFile {
    pub content: Content,
    pub counts: LoadCounts,
    pub rows: Vec<Add>,
    pub rejects: Vec<Add>,
}

/// A task's row: the file staged, or why not (the error a local load would give).
pub type Outcome = std::result::Result<ParsedFile, String>;

/// The logical node (a leaf).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ParseNode {
    spec: ParseSpec,
    schema: DFSchemaRef,
}

impl ParseNode {
    pub fn new(spec: ParseSpec) -> Result<Self> {
        Ok(Self {
            spec,
            schema: Arc::new(DFSchema::try_from(OUTPUT_SCHEMA.as_ref().clone())?),
        })
    }

    pub fn into_plan(self) -> LogicalPlan {
        LogicalPlan::Extension(Extension {
            node: Arc::new(self),
        })
    }

    pub fn spec(&self) -> &ParseSpec {
        &self.spec
    }
}

impl PartialOrd for ParseNode {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        self.spec.partial_cmp(&other.spec)
    }
}

impl UserDefinedLogicalNodeCore for ParseNode {
    fn name(&self) -> &str {
        "FxpipeParse"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        Vec::new()
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "FxpipeParse: {} files", self.spec.files.len())
    }

    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, _inputs: Vec<LogicalPlan>) -> Result<Self> {
        Ok(self.clone())
    }
}

/// The column of the carrier's rows: one file to parse (JSON).
const FILE_COLUMN: &str = "file";

/// The physical node. Its input carries the files, one per partition (an in-memory scan,
/// which Ballista's scheduler restricts to the partitions of each task it sends: a custom
/// leaf would reach every task whole, and each would parse the first file). Each row of its
/// input is a file to parse.
#[derive(Debug)]
pub struct ParseExec {
    spec: ParseSpec,
    input: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
}

impl ParseExec {
    /// The node over a carrier of `spec`'s files.
    pub fn new(spec: ParseSpec) -> Result<Self> {
        let schema = Arc::new(Schema::new(vec![Field::new(
            FILE_COLUMN,
            DataType::Utf8,
            false,
        )]));
        let mut partitions = Vec::new();
        for file in &spec.files {
            let json = serde_json::to_string(file)
                .map_err(|e| DataFusionError::Internal(format!("encoding a file to parse: {e}")))?;
            partitions.push(vec![RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(StringArray::from(vec![json]))],
            )?]);
        }
        let carrier = MemorySourceConfig::try_new(&partitions, schema, None)?;
        Ok(Self::with_input(
            spec,
            DataSourceExec::from_data_source(carrier),
        ))
    }

    pub fn with_input(spec: ParseSpec, input: Arc<dyn ExecutionPlan>) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(OUTPUT_SCHEMA.clone()),
            Partitioning::UnknownPartitioning(input.output_partitioning().partition_count()),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Self {
            spec,
            input,
            properties,
        }
    }

    pub fn spec(&self) -> &ParseSpec {
        &self.spec
    }
}

impl DisplayAs for ParseExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "FxpipeParseExec: {} files", self.spec.files.len())
    }
}

impl ExecutionPlan for ParseExec {
    fn name(&self) -> &'static str {
        "FxpipeParseExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    /// One file per partition, as given: no repartitioning of the carrier.
    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
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
                "FxpipeParseExec has exactly one input".to_string(),
            ));
        }
        Ok(Arc::new(Self::with_input(
            self.spec.clone(),
            children.swap_remove(0),
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let spec = self.spec.clone();
        let runtime = context.runtime_env();
        let mut files = self.input.execute(partition, context)?;
        let parsed = futures::stream::once(async move {
            let mut names = Vec::new();
            let mut texts = Vec::new();
            while let Some(batch) = files.next().await {
                let batch = batch?;
                let column = arrow::compute::cast(batch.column(0), &DataType::Utf8)?;
                let column = column.as_string::<i32>();
                for json in column.iter().flatten() {
                    let file: ParseFile = serde_json::from_str(json).map_err(|e| {
                        DataFusionError::Internal(format!("decoding a file to parse: {e}"))
                    })?;
                    let outcome = parse_file(&spec, &file, &runtime).await;
                    tracing::info!(
                        source_file = %file.source_file,
                        ok = outcome.is_ok(),
                        "parsed and staged an export (uncommitted)"
                    );
                    texts.push(serde_json::to_string(&outcome).map_err(|e| {
                        DataFusionError::Internal(format!("encoding a parse outcome: {e}"))
                    })?);
                    names.push(file.source_file);
                }
            }
            Ok(RecordBatch::try_new(
                OUTPUT_SCHEMA.clone(),
                vec![
                    Arc::new(StringArray::from(names)),
                    Arc::new(StringArray::from(texts)),
                ],
            )?)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            OUTPUT_SCHEMA.clone(),
            parsed,
        )))
    }
}

/// Parses and stages one file with this node's stores.
async fn parse_file(spec: &ParseSpec, file: &ParseFile, runtime: &RuntimeEnv) -> Outcome {
    let store = match &file.input {
        InputRef::Local(_) => None,
        InputRef::Object { bucket, .. } => {
            let url = ObjectStoreUrl::parse(format!("s3://{bucket}")).map_err(|e| e.to_string())?;
            Some(runtime.object_store(&url).map_err(|e| e.to_string())?)
        }
    };
    let input = Input::from_reference(&file.input, store)
        .ok_or_else(|| format!("{}: not a readable input on this node", file.source_file))?;
    let options = LoadOptions {
        decimal_separator: spec.decimal_separator.parse()?,
        ..LoadOptions::default()
    };
    let (reader, hasher) = open_export(&input, &file.source_file, &options, &Default::default())
        .await
        .map_err(|e| e.to_string())?;
    let rows = StagedWriter::with_store(
        Table::Transactions,
        spec.transactions
            .store_on(runtime)
            .map_err(|e| e.to_string())?,
        crate::transactions::schema(),
    );
    let rejects = StagedWriter::with_store(
        Table::Rejects,
        spec.rejects.store_on(runtime).map_err(|e| e.to_string())?,
        rejects_schema(),
    );
    let parsed = parse_and_stage(reader, hasher, rows, rejects)
        .await
        .map_err(|e| e.to_string())?;
    Ok(ParsedFile {
        content: parsed.content,
        counts: parsed.counts,
        rows: parsed.rows.adds().to_vec(),
        rejects: parsed.rejects.adds().to_vec(),
    })
}

/// Reads the node's output: each file's outcome, by identity.
pub fn outcomes(batches: &[RecordBatch]) -> Result<Vec<(String, Outcome)>> {
    let mut found = Vec::new();
    for batch in batches {
        let text = |i: usize| arrow::compute::cast(batch.column(i), &DataType::Utf8);
        let (files, outcomes) = (text(0)?, text(1)?);
        let files = files
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| DataFusionError::Internal("parse output is not text".to_string()))?;
        let outcomes = outcomes
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| DataFusionError::Internal("parse output is not text".to_string()))?;
        for (file, outcome) in files.iter().zip(outcomes.iter()) {
            let (Some(file), Some(outcome)) = (file, outcome) else {
                continue;
            };
            let outcome: Outcome = serde_json::from_str(outcome).map_err(|e| {
                DataFusionError::Internal(format!("decoding the outcome of {file}: {e}"))
            })?;
            found.push((file.to_string(), outcome));
        }
    }
    Ok(found)
}

/// Plans [`ParseNode`]s as [`ParseExec`]s.
#[derive(Debug, Default)]
pub struct ParsePlanner;

#[async_trait]
impl ExtensionPlanner for ParsePlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        _physical_inputs: &[Arc<dyn ExecutionPlan>],
        _session: &dyn Session,
        _planning_ctx: &PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let any: &dyn Any = node.as_any();
        match any.downcast_ref::<ParseNode>() {
            Some(parse) => Ok(Some(Arc::new(ParseExec::new(parse.spec.clone())?))),
            None => Ok(None),
        }
    }
}

/// Marks `load`'s parse node (logical or physical) in an encoded plan.
const PARSE_TAG: &[u8] = b"fxpipe.parse.v1:";

/// The parse node's codec, logical and physical: its [`ParseSpec`] as tagged JSON.
#[derive(Debug, Default)]
pub struct ParseCodec;

impl datafusion_proto::logical_plan::LogicalExtensionCodec for ParseCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        _inputs: &[LogicalPlan],
        _ctx: &TaskContext,
    ) -> Result<Extension> {
        let spec = codec::decode_tagged(PARSE_TAG, buf)?;
        Ok(Extension {
            node: Arc::new(ParseNode::new(spec)?),
        })
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        let any: &dyn Any = node.node.as_any();
        match any.downcast_ref::<ParseNode>() {
            Some(parse) => codec::encode_tagged(PARSE_TAG, parse.spec(), buf),
            None => Err(codec::not_ours("plan node")),
        }
    }

    crate::no_table_providers!();
}

impl datafusion_proto::physical_plan::PhysicalExtensionCodec for ParseCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        _ctx: &TaskContext,
        _converter: &dyn datafusion_proto::physical_plan::PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let spec = codec::decode_tagged(PARSE_TAG, buf)?;
        let input = codec::one_input("the parse node", inputs)?;
        Ok(Arc::new(ParseExec::with_input(spec, input)))
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        _converter: &dyn datafusion_proto::physical_plan::PhysicalProtoConverterExtension,
    ) -> Result<()> {
        match node.downcast_ref::<ParseExec>() {
            Some(parse) => codec::encode_tagged(PARSE_TAG, parse.spec(), buf),
            None => Err(codec::not_ours("plan node")),
        }
    }
}

/// `extensions` with the parse node's planner and codecs.
pub fn extend(extensions: Extensions) -> Extensions {
    extensions
        .with_planner(Arc::new(ParsePlanner))
        .with_logical_codec(Arc::new(ParseCodec))
        .with_physical_codec(Arc::new(ParseCodec))
}
