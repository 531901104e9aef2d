//! How fxpipe's plan pieces travel between client, scheduler and executors.
//!
//! Ballista serialises plans with DataFusion's protobuf codecs; anything of ours needs a codec
//! that handles it and hands everything else to Ballista's own codecs (which know the shuffle
//! nodes and the file formats). The same codec types are installed on the client, the
//! scheduler and the executors.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use datafusion::catalog::TableProvider;
use datafusion::common::{DataFusionError, Result, TableReference};
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Extension, LogicalPlan};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};

use super::delta_files::{DeltaFiles, DeltaFilesTable};
use super::write::{WriteExec, WriteNode, WriteTarget};
use crate::jobs::parse_node::{ParseExec, ParseNode, ParseSpec};

/// Marks a table provider of ours in an encoded plan.
const DELTA_FILES_TAG: &[u8] = b"fxpipe.delta-files.v1:";
/// Marks a write node (logical or physical) of ours in an encoded plan.
const WRITE_TAG: &[u8] = b"fxpipe.write.v1:";
/// Marks `load`'s parse node (logical or physical) in an encoded plan.
const PARSE_TAG: &[u8] = b"fxpipe.parse.v1:";

fn encode_spec(spec: &ParseSpec, buf: &mut Vec<u8>) -> Result<()> {
    buf.extend_from_slice(PARSE_TAG);
    serde_json::to_writer(&mut *buf, spec)
        .map_err(|e| DataFusionError::Internal(format!("encoding a parse node: {e}")))
}

fn decode_spec(buf: &[u8]) -> Result<Option<ParseSpec>> {
    buf.strip_prefix(PARSE_TAG)
        .map(|json| {
            serde_json::from_slice(json)
                .map_err(|e| DataFusionError::Internal(format!("decoding a parse node: {e}")))
        })
        .transpose()
}

fn encode_target(target: &WriteTarget, buf: &mut Vec<u8>) -> Result<()> {
    buf.extend_from_slice(WRITE_TAG);
    serde_json::to_writer(&mut *buf, target).map_err(|e| {
        DataFusionError::Internal(format!("encoding a write of {}: {e}", target.table))
    })
}

/// The write target of an encoded write node; `None` when `buf` is not ours.
fn decode_target(buf: &[u8]) -> Result<Option<WriteTarget>> {
    buf.strip_prefix(WRITE_TAG)
        .map(|json| {
            serde_json::from_slice(json)
                .map_err(|e| DataFusionError::Internal(format!("decoding a write node: {e}")))
        })
        .transpose()
}

fn one_input<T: Clone>(inputs: &[T]) -> Result<T> {
    match inputs {
        [input] => Ok(input.clone()),
        _ => Err(DataFusionError::Internal(format!(
            "a write node has one input, the plan gave {}",
            inputs.len()
        ))),
    }
}

/// The logical codec: Delta table versions as [`DeltaFilesTable`]s, the rest Ballista's.
#[derive(Debug, Default)]
pub struct FxLogicalCodec {
    ballista: BallistaLogicalExtensionCodec,
}

impl LogicalExtensionCodec for FxLogicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension> {
        if let Some(spec) = decode_spec(buf)? {
            return Ok(Extension {
                node: Arc::new(ParseNode::new(spec)?),
            });
        }
        match decode_target(buf)? {
            Some(target) => Ok(Extension {
                node: Arc::new(WriteNode::new(one_input(inputs)?, target)?),
            }),
            None => self.ballista.try_decode(buf, inputs, ctx),
        }
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        let any: &dyn std::any::Any = node.node.as_any();
        if let Some(parse) = any.downcast_ref::<ParseNode>() {
            return encode_spec(parse.spec(), buf);
        }
        match any.downcast_ref::<WriteNode>() {
            Some(write) => encode_target(write.target(), buf),
            None => self.ballista.try_encode(node, buf),
        }
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        match buf.strip_prefix(DELTA_FILES_TAG) {
            Some(json) => {
                let files: DeltaFiles = serde_json::from_slice(json).map_err(|e| {
                    DataFusionError::Internal(format!("decoding the files of {table_ref}: {e}"))
                })?;
                Ok(Arc::new(DeltaFilesTable::new(files, &schema)?))
            }
            None => self
                .ballista
                .try_decode_table_provider(buf, table_ref, schema, ctx),
        }
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let any: &dyn std::any::Any = node.as_ref();
        match any.downcast_ref::<DeltaFilesTable>() {
            Some(table) => {
                buf.extend_from_slice(DELTA_FILES_TAG);
                serde_json::to_writer(&mut *buf, table.files()).map_err(|e| {
                    DataFusionError::Internal(format!("encoding the files of {table_ref}: {e}"))
                })
            }
            None => self
                .ballista
                .try_encode_table_provider(table_ref, node, buf),
        }
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn FileFormatFactory>> {
        self.ballista.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> Result<()> {
        self.ballista.try_encode_file_format(buf, node)
    }
}

/// The physical codec: fxpipe's write and parse nodes, and Ballista's for the rest (its shuffle nodes,
/// DataFusion's own nodes).
#[derive(Debug, Default)]
pub struct FxPhysicalCodec {
    ballista: BallistaPhysicalExtensionCodec,
}

impl PhysicalExtensionCodec for FxPhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if let Some(spec) = decode_spec(buf)? {
            return Ok(Arc::new(ParseExec::with_input(spec, one_input(inputs)?)));
        }
        match decode_target(buf)? {
            Some(target) => Ok(Arc::new(WriteExec::new(one_input(inputs)?, target))),
            None => self.ballista.try_decode(buf, inputs, ctx, converter),
        }
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        if let Some(parse) = node.downcast_ref::<ParseExec>() {
            return encode_spec(parse.spec(), buf);
        }
        match node.downcast_ref::<WriteExec>() {
            Some(write) => encode_target(write.target(), buf),
            None => self.ballista.try_encode(node, buf, converter),
        }
    }
}
