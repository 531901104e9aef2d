//! The engine seam: where plans run.
//!
//! Jobs get a [`SessionContext`] from an [`Engine`] and never ask how it was built. Today that is
//! DataFusion embedded in this process (with delta-rs's planner, so plans can end in a Delta
//! write); the Ballista cluster becomes a second constructor here, not an `if` in the jobs.

pub mod functions;
pub mod streams;

use std::sync::Arc;

use datafusion::catalog::Session;
use datafusion::prelude::SessionContext;
use tracing::debug;

use crate::storage::{delta, Lake, StorageError, Table};

/// A place to plan and run SQL, with fxpipe's functions installed.
#[derive(Clone)]
pub struct Engine {
    ctx: SessionContext,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("session", &self.ctx.session_id())
            .finish()
    }
}

impl Engine {
    /// DataFusion in this process, using every core.
    ///
    /// SQL literals with a decimal point (`1.5`, `0.1`) are parsed as exact decimals, not as
    /// Float64: money compared with `withdrawals * 1.5` or summed with `0.1 + 0.2` in an ad-hoc
    /// query stays exact (`0.1 + 0.2 = 0.3` is true). `CAST(x AS DOUBLE)` still gives a float.
    pub fn embedded() -> Self {
        let ctx: SessionContext = deltalake::delta_datafusion::create_session().into_inner();
        ctx.state_ref()
            .write()
            .config_mut()
            .options_mut()
            .sql_parser
            .parse_float_as_decimal = true;
        ctx.register_udf(functions::FxConvert::udf());
        Self { ctx }
    }

    /// Makes the lake's storage readable by URL in this session (`s3://bucket/…` or
    /// `file:///…`) through the lake's own store, so ad-hoc reads share its configuration.
    pub fn attach(&self, lake: &Lake) {
        let (url, store) = lake.root_store();
        self.ctx.register_object_store(&url, store);
    }

    pub fn ctx(&self) -> &SessionContext {
        &self.ctx
    }

    /// A frame over streams this process already runs (read once), for writing them to a
    /// table without collecting them.
    pub fn frame_from_streams(
        &self,
        schema: arrow::datatypes::SchemaRef,
        streams: Vec<datafusion::execution::SendableRecordBatchStream>,
    ) -> datafusion::error::Result<datafusion::dataframe::DataFrame> {
        let table = streams::table(schema, streams)?;
        self.ctx.read_table(Arc::new(table))
    }

    /// The session state as delta-rs's writer wants it.
    pub fn session(&self) -> Arc<dyn Session> {
        Arc::new(self.ctx.state())
    }

    /// Registers every table the lake holds under its SQL name, read through the Delta log at
    /// its latest version (so uncommitted or removed files are never seen). Returns the names
    /// registered.
    pub async fn register_lake(&self, lake: &Lake) -> Result<Vec<&'static str>, StorageError> {
        let mut registered = Vec::new();
        for table in Table::ALL {
            if self.register_table(lake, table).await? {
                registered.push(table.sql_name());
            }
        }
        Ok(registered)
    }

    /// Registers one table; `false` when the lake has no such table yet.
    pub async fn register_table(&self, lake: &Lake, table: Table) -> Result<bool, StorageError> {
        let Some(opened) = delta::open(lake, table).await? else {
            return Ok(false);
        };
        let to_storage = |source| StorageError::Delta {
            table: table.sql_name().to_string(),
            source,
        };
        opened
            .update_datafusion_session(&self.ctx.state())
            .map_err(to_storage)?;
        let provider = opened
            .table_provider()
            .await
            .map_err(|e| to_storage(deltalake::DeltaTableError::from(e)))?;
        // Re-registering replaces an older version's provider (after this process wrote).
        let _ = self.ctx.deregister_table(table.sql_name());
        self.ctx
            .register_table(table.sql_name(), provider)
            .map_err(|e| to_storage(deltalake::DeltaTableError::from(e)))?;
        debug!(table = table.sql_name(), version = ?opened.version(), "registered");
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::AsArray;

    use super::*;

    #[tokio::test]
    async fn decimal_literals_are_exact() -> datafusion::error::Result<()> {
        let engine = Engine::embedded();
        let batches = engine
            .ctx()
            .sql(
                "SELECT arrow_typeof(1.5), CAST(0.1 + 0.2 = 0.3 AS VARCHAR), \
                 CAST(CAST(3.30 AS DECIMAL(38, 2)) * 1.5 AS VARCHAR), \
                 CAST(fx_convert(100, 1.35, 63) AS VARCHAR)",
            )
            .await?
            .collect()
            .await?;
        let row: Vec<String> = batches[0]
            .columns()
            .iter()
            .map(|c| {
                let text = arrow::compute::cast(c, &arrow::datatypes::DataType::Utf8)?;
                Ok(text.as_string::<i32>().value(0).to_string())
            })
            .collect::<datafusion::error::Result<_>>()?;
        assert_eq!(row, ["Decimal128(2, 1)", "true", "4.950", "2.14"]);
        Ok(())
    }
}
