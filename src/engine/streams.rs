//! Plans over streams this process produces (a CSV being parsed, a join being tallied).
//!
//! delta-rs's writer takes a logical plan; a [`StreamingTable`] of one-shot partitions turns
//! streams we already hold into one, so data flows from producer to Parquet without being
//! collected.

use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;

/// A table over streams that are already running; each partition can be read once.
pub fn table(
    schema: SchemaRef,
    streams: Vec<SendableRecordBatchStream>,
) -> Result<StreamingTable, DataFusionError> {
    let partitions: Vec<Arc<dyn PartitionStream>> = streams
        .into_iter()
        .map(|stream| Arc::new(OneShotStream::new(schema.clone(), stream)) as _)
        .collect();
    StreamingTable::try_new(schema, partitions)
}

/// A stream that can be executed once: one partition of a plan over a running producer.
struct OneShotStream {
    schema: SchemaRef,
    stream: Mutex<Option<SendableRecordBatchStream>>,
}

impl OneShotStream {
    fn new(schema: SchemaRef, stream: SendableRecordBatchStream) -> Self {
        Self {
            schema,
            stream: Mutex::new(Some(stream)),
        }
    }
}

impl std::fmt::Debug for OneShotStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OneShotStream")
    }
}

impl PartitionStream for OneShotStream {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let taken = self.stream.lock().ok().and_then(|mut s| s.take());
        match taken {
            Some(stream) => stream,
            None => Box::pin(RecordBatchStreamAdapter::new(
                self.schema.clone(),
                futures::stream::once(async {
                    Err(DataFusionError::Internal(
                        "a one-shot input stream can be read only once".to_string(),
                    ))
                }),
            )),
        }
    }
}
