//! The plan pieces fxpipe adds to DataFusion and Ballista, composed in one place.
//!
//! A plan node of ours brings, beside its code, an extension planner (its logical node to its
//! physical node) and its codecs (how it travels from the client to the scheduler and on to
//! the executors). The engine's own are the write node (`write.rs`) and Delta file scans
//! (`delta_files.rs`), in [`Extensions::engine`]; a job adds its own (`load`'s parse node)
//! through `fxpipe::extensions()`, so the engine knows no job. The client, the scheduler and
//! the executors are all handed the same `Extensions`, which compose the codecs in one order,
//! Ballista's last, so a position written by one process means the same codec in the others.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use datafusion::catalog::Session;
use datafusion::common::Result;
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{ComposedPhysicalExtensionCodec, PhysicalExtensionCodec};

use super::codec::ComposedLogicalCodec;
use super::delta_files::DeltaFilesCodec;
use super::write::{WriteCodec, WritePlanner};

type Planner = Arc<dyn ExtensionPlanner + Send + Sync>;

/// Extension planners and codecs, in the order every process composes them.
#[derive(Clone, Default)]
pub struct Extensions {
    planners: Vec<Planner>,
    logical: Vec<Arc<dyn LogicalExtensionCodec>>,
    physical: Vec<Arc<dyn PhysicalExtensionCodec>>,
}

impl fmt::Debug for Extensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Extensions")
            .field("planners", &self.planners.len())
            .field("logical_codecs", &self.logical)
            .field("physical_codecs", &self.physical)
            .finish()
    }
}

impl Extensions {
    /// The engine's own nodes: the write node and Delta file scans.
    pub fn engine() -> Self {
        Self::default()
            .with_planner(Arc::new(WritePlanner))
            .with_logical_codec(Arc::new(WriteCodec))
            .with_physical_codec(Arc::new(WriteCodec))
            .with_logical_codec(Arc::new(DeltaFilesCodec))
    }

    /// Adds a node's planner (tried after the ones before it).
    pub fn with_planner(mut self, planner: Planner) -> Self {
        self.planners.push(planner);
        self
    }

    /// Adds a node's logical codec: it must refuse (with an error) what is not its own.
    pub fn with_logical_codec(mut self, codec: Arc<dyn LogicalExtensionCodec>) -> Self {
        self.logical.push(codec);
        self
    }

    /// Adds a node's physical codec: it must refuse (with an error) what is not its own.
    pub fn with_physical_codec(mut self, codec: Arc<dyn PhysicalExtensionCodec>) -> Self {
        self.physical.push(codec);
        self
    }

    /// The query planner of fxpipe's sessions (embedded, and the scheduler's).
    pub fn query_planner(&self) -> Arc<dyn QueryPlanner + Send + Sync> {
        Arc::new(FxQueryPlanner {
            planners: self.planners.clone(),
        })
    }

    /// Every node's logical codec, then Ballista's.
    pub fn logical_codec(&self) -> Arc<dyn LogicalExtensionCodec> {
        let mut codecs = self.logical.clone();
        codecs.push(Arc::new(BallistaLogicalExtensionCodec::default()));
        Arc::new(ComposedLogicalCodec::new(codecs))
    }

    /// Every node's physical codec, then Ballista's (its shuffle nodes, DataFusion's own).
    pub fn physical_codec(&self) -> Arc<dyn PhysicalExtensionCodec> {
        let mut codecs = self.physical.clone();
        codecs.push(Arc::new(BallistaPhysicalExtensionCodec::default()));
        Arc::new(ComposedPhysicalExtensionCodec::new(codecs))
    }
}

/// DataFusion's physical planner with the extensions' planners and delta-rs's own nodes.
struct FxQueryPlanner {
    planners: Vec<Planner>,
}

impl fmt::Debug for FxQueryPlanner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FxQueryPlanner")
            .field("planners", &self.planners.len())
            .finish()
    }
}

#[async_trait]
impl QueryPlanner for FxQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut planners = self.planners.clone();
        planners.push(deltalake::delta_datafusion::planner::DeltaExtensionPlanner::new());
        DefaultPhysicalPlanner::with_extension_planners(planners)
            .create_physical_plan(logical_plan, session)
            .await
    }
}
