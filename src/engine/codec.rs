//! How fxpipe's plan pieces travel between client, scheduler and executors: the helpers each
//! node's own codec is written with, and the composition of those codecs.
//!
//! Ballista serialises plans with DataFusion's protobuf codecs; a node of ours needs a codec
//! that knows it. Each node carries its codec beside its code (`write.rs`, `delta_files.rs`,
//! `jobs/load_tasks.rs`), and [`super::Extensions`] composes them with Ballista's, last, the
//! way DataFusion's `ComposedPhysicalExtensionCodec` does: a codec that does not know a node
//! says so with an error, the next one is tried, and the encoded node starts with the position
//! of the codec that wrote it. DataFusion 55 has no logical counterpart, so
//! [`ComposedLogicalCodec`] is that, for logical plans and table providers.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::common::{DataFusionError, Result, TableReference};
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Extension, LogicalPlan};
use datafusion_proto::logical_plan::LogicalExtensionCodec;

/// `tag` then `value` as JSON: how fxpipe's nodes and tables travel in a plan (the tag names
/// the node and its format's version in errors and dumps).
pub fn encode_tagged(tag: &[u8], value: &impl serde::Serialize, buf: &mut Vec<u8>) -> Result<()> {
    buf.extend_from_slice(tag);
    serde_json::to_writer(&mut *buf, value).map_err(|e| {
        DataFusionError::Internal(format!("encoding {}: {e}", String::from_utf8_lossy(tag)))
    })
}

/// The value [`encode_tagged`] wrote under `tag`; an error for anything else.
pub fn decode_tagged<T: serde::de::DeserializeOwned>(tag: &[u8], buf: &[u8]) -> Result<T> {
    let json = buf.strip_prefix(tag).ok_or_else(|| {
        DataFusionError::Internal(format!(
            "expected a node tagged {}",
            String::from_utf8_lossy(tag)
        ))
    })?;
    serde_json::from_slice(json).map_err(|e| {
        DataFusionError::Internal(format!("decoding {}: {e}", String::from_utf8_lossy(tag)))
    })
}

/// The error a node's codec gives for a node (or table) that is not its own: the composed
/// codec then asks the next one.
pub fn not_ours(what: &str) -> DataFusionError {
    DataFusionError::NotImplemented(format!("not this codec's {what}"))
}

/// The table-provider half of a `LogicalExtensionCodec` for a codec of plan nodes only: every
/// table provider is another codec's (the composed codec asks the next one). Written inside the
/// `impl` block.
#[macro_export]
macro_rules! no_table_providers {
    () => {
        fn try_decode_table_provider(
            &self,
            _buf: &[u8],
            _table_ref: &datafusion::common::TableReference,
            _schema: arrow::datatypes::SchemaRef,
            _ctx: &datafusion::execution::TaskContext,
        ) -> datafusion::common::Result<std::sync::Arc<dyn datafusion::catalog::TableProvider>> {
            Err($crate::engine::codec::not_ours("table provider"))
        }

        fn try_encode_table_provider(
            &self,
            _table_ref: &datafusion::common::TableReference,
            _node: std::sync::Arc<dyn datafusion::catalog::TableProvider>,
            _buf: &mut Vec<u8>,
        ) -> datafusion::common::Result<()> {
            Err($crate::engine::codec::not_ours("table provider"))
        }
    };
}

/// The single input of a `node` (its name, for the error).
pub fn one_input<T: Clone>(node: &str, inputs: &[T]) -> Result<T> {
    match inputs {
        [input] => Ok(input.clone()),
        _ => Err(DataFusionError::Internal(format!(
            "{node} has one input, the plan gave {}",
            inputs.len()
        ))),
    }
}

/// Logical codecs tried in order; the first that encodes a node (or table provider, or file
/// format) wins, and its position travels as the first byte, so decoding goes straight to it.
#[derive(Debug)]
pub struct ComposedLogicalCodec {
    codecs: Vec<Arc<dyn LogicalExtensionCodec>>,
}

impl ComposedLogicalCodec {
    /// Position matters: every process must compose the same codecs in the same order.
    pub fn new(codecs: Vec<Arc<dyn LogicalExtensionCodec>>) -> Self {
        assert!(codecs.len() <= usize::from(u8::MAX), "too many codecs");
        Self { codecs }
    }

    fn encode(
        &self,
        buf: &mut Vec<u8>,
        mut encode: impl FnMut(&dyn LogicalExtensionCodec, &mut Vec<u8>) -> Result<()>,
    ) -> Result<()> {
        let mut last = None;
        let mut nothing_to_write = false;
        for (position, codec) in self.codecs.iter().enumerate() {
            let mut data = Vec::new();
            match encode(codec.as_ref(), &mut data) {
                // DataFusion's defaults "encode" file formats and functions as nothing (read
                // back by name): that is no claim on the value, so the next codec is asked.
                Ok(()) if data.is_empty() => nothing_to_write = true,
                Ok(()) => {
                    buf.push(position as u8);
                    buf.extend_from_slice(&data);
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
        }
        if nothing_to_write {
            return Ok(());
        }
        Err(last.unwrap_or_else(|| not_ours("node: no codecs")))
    }

    fn decode<R>(
        &self,
        buf: &[u8],
        decode: impl FnOnce(&dyn LogicalExtensionCodec, &[u8]) -> Result<R>,
    ) -> Result<R> {
        let (position, data) = buf
            .split_first()
            .ok_or_else(|| DataFusionError::Internal("an empty encoded node".to_string()))?;
        let codec = self.codecs.get(usize::from(*position)).ok_or_else(|| {
            DataFusionError::Internal(format!(
                "a node encoded by codec {position}, of {}: the processes run different builds",
                self.codecs.len()
            ))
        })?;
        decode(codec.as_ref(), data)
    }
}

impl LogicalExtensionCodec for ComposedLogicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension> {
        self.decode(buf, |codec, data| codec.try_decode(data, inputs, ctx))
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        self.encode(buf, |codec, data| codec.try_encode(node, data))
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        self.decode(buf, |codec, data| {
            codec.try_decode_table_provider(data, table_ref, schema, ctx)
        })
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        self.encode(buf, |codec, data| {
            codec.try_encode_table_provider(table_ref, Arc::clone(&node), data)
        })
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn FileFormatFactory>> {
        self.decode(buf, |codec, data| codec.try_decode_file_format(data, ctx))
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> Result<()> {
        self.encode(buf, |codec, data| {
            codec.try_encode_file_format(data, Arc::clone(&node))
        })
    }
}

#[cfg(test)]
mod tests {
    use ballista_core::serde::BallistaLogicalExtensionCodec;
    use datafusion::datasource::file_format::parquet::ParquetFormatFactory;

    use super::*;
    use crate::engine::delta_files::DeltaFilesCodec;

    fn task_ctx() -> Arc<TaskContext> {
        datafusion::prelude::SessionContext::new().task_ctx()
    }

    /// DataFusion's default "encodes" a file format as nothing: that must not win over
    /// Ballista's codec, which really encodes it.
    #[test]
    fn a_value_no_node_codec_claims_goes_to_the_next_and_back() {
        let composed = ComposedLogicalCodec::new(vec![
            Arc::new(DeltaFilesCodec),
            Arc::new(BallistaLogicalExtensionCodec::default()),
        ]);
        let mut buf = Vec::new();
        composed
            .try_encode_file_format(&mut buf, Arc::new(ParquetFormatFactory::new()))
            .unwrap();
        assert_eq!(
            buf.first(),
            Some(&1),
            "encoded by Ballista's codec, the second"
        );
        let format = composed.try_decode_file_format(&buf, &task_ctx()).unwrap();
        assert_eq!(format.get_ext(), "parquet");
    }

    #[test]
    fn a_position_past_the_codecs_says_the_builds_differ() {
        let composed = ComposedLogicalCodec::new(vec![Arc::new(DeltaFilesCodec)]);
        let error = composed
            .try_decode_file_format(&[7, 1, 2], &task_ctx())
            .unwrap_err();
        assert!(error.to_string().contains("different builds"), "{error}");
        let error = composed
            .try_decode_file_format(&[], &task_ctx())
            .unwrap_err();
        assert!(error.to_string().contains("empty"), "{error}");
    }
}
