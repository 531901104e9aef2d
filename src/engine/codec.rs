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

/// `tag` then `value` as JSON: how fxpipe's nodes and tables travel in a plan.
fn encode_tagged(tag: &[u8], value: &impl serde::Serialize, buf: &mut Vec<u8>) -> Result<()> {
    buf.extend_from_slice(tag);
    serde_json::to_writer(&mut *buf, value).map_err(|e| {
        DataFusionError::Internal(format!("encoding {}: {e}", String::from_utf8_lossy(tag)))
    })
}

/// The value [`encode_tagged`] wrote; `None` when `buf` does not start with `tag`.
fn decode_tagged<T: serde::de::DeserializeOwned>(tag: &[u8], buf: &[u8]) -> Result<Option<T>> {
    buf.strip_prefix(tag)
        .map(|json| {
            serde_json::from_slice(json).map_err(|e| {
                DataFusionError::Internal(format!("decoding {}: {e}", String::from_utf8_lossy(tag)))
            })
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
        if let Some(spec) = decode_tagged::<ParseSpec>(PARSE_TAG, buf)? {
            return Ok(Extension {
                node: Arc::new(ParseNode::new(spec)?),
            });
        }
        match decode_tagged::<WriteTarget>(WRITE_TAG, buf)? {
            Some(target) => Ok(Extension {
                node: Arc::new(WriteNode::new(one_input(inputs)?, target)?),
            }),
            None => self.ballista.try_decode(buf, inputs, ctx),
        }
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        let any: &dyn std::any::Any = node.node.as_any();
        if let Some(parse) = any.downcast_ref::<ParseNode>() {
            return encode_tagged(PARSE_TAG, parse.spec(), buf);
        }
        match any.downcast_ref::<WriteNode>() {
            Some(write) => encode_tagged(WRITE_TAG, write.target(), buf),
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
        match decode_tagged::<DeltaFiles>(DELTA_FILES_TAG, buf)? {
            Some(files) => Ok(Arc::new(DeltaFilesTable::new(files, &schema)?)),
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
            Some(table) => encode_tagged(DELTA_FILES_TAG, table.files(), buf),
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
        if let Some(spec) = decode_tagged::<ParseSpec>(PARSE_TAG, buf)? {
            return Ok(Arc::new(ParseExec::with_input(spec, one_input(inputs)?)));
        }
        match decode_tagged::<WriteTarget>(WRITE_TAG, buf)? {
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
            return encode_tagged(PARSE_TAG, parse.spec(), buf);
        }
        match node.downcast_ref::<WriteExec>() {
            Some(write) => encode_tagged(WRITE_TAG, write.target(), buf),
            None => self.ballista.try_encode(node, buf, converter),
        }
    }
}
