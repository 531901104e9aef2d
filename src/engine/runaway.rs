//! The runaway guard of cluster jobs: a job whose stage count passes a bound fixed before it
//! runs is cancelled, and fails naming the job, instead of running forever.
//!
//! Why: Ballista 55's adaptive planner replanned a job with an empty input for ever
//! (thousands of one-task stages; the mechanism is in [`super::node::session_config`]).
//! fxpipe's nodes plan with the static planner, which has no replan, but any other way a job
//! could spin costs a whole fleet until someone notices: the bound makes it an error.
//!
//! The bound is [`FACTOR`] × the stages the job's plan has when planned in this process (its
//! exchanges, broadcasts and merges, plus the final stage), never less than [`FLOOR`];
//! `FXPIPE_CLUSTER_MAX_STAGES` replaces it (the tests trip it on a real plan with 1). The
//! progress watcher ([`super::progress`]) reads each running job's stage count from the
//! scheduler and cancels the job that passes it.

use std::sync::{Arc, Mutex};

use datafusion::execution::context::SessionState;
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::ExecutionPlan;

use super::Extensions;

/// How many times its planned stages a job may create before it is a runaway.
pub const FACTOR: usize = 4;

/// The least bound: a cheap plan keeps some room for a scheduler that splits stages its own way.
pub const FLOOR: usize = 16;

/// The bound a job runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    /// Stages of the plan as planned in this process (0 when it could not be planned here).
    pub planned: usize,
    /// Stages the job may have on the cluster.
    pub limit: usize,
}

impl Bound {
    /// The bound for a plan of `planned` stages (`FXPIPE_CLUSTER_MAX_STAGES` when set).
    pub fn for_stages(planned: usize) -> Self {
        let fixed = std::env::var("FXPIPE_CLUSTER_MAX_STAGES")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .filter(|limit| *limit > 0);
        let limit = fixed.unwrap_or_else(|| (FACTOR * planned.max(1)).max(FLOOR));
        Self { planned, limit }
    }
}

/// A job the guard stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "cluster job {job_id} was cancelled after it created {stages} stages, more than the {limit} \
     its plan allows ({planned} planned stages; FXPIPE_CLUSTER_MAX_STAGES sets the bound): the \
     scheduler kept replanning it. Nothing was written; the scheduler's log names the stages"
)]
pub struct Runaway {
    pub job_id: String,
    pub stages: usize,
    pub limit: usize,
    pub planned: usize,
}

/// The bound of the job this engine runs now, and the job it stopped, shared by the engine
/// and its progress watcher.
#[derive(Debug, Clone, Default)]
pub struct StageGuard(Arc<Mutex<GuardState>>);

#[derive(Debug, Default)]
struct GuardState {
    bound: Option<Bound>,
    tripped: Option<Runaway>,
}

impl StageGuard {
    /// Sets the bound for the jobs that start from now on, and forgets an earlier runaway.
    pub fn arm(&self, bound: Bound) {
        if let Ok(mut state) = self.0.lock() {
            state.bound = Some(bound);
            state.tripped = None;
        }
    }

    /// Whether a running job with `stages` stages passed the bound: the runaway to report.
    pub fn check(&self, job_id: &str, stages: usize) -> Option<Runaway> {
        let state = self.0.lock().ok()?;
        let bound = state.bound?;
        (stages > bound.limit).then(|| Runaway {
            job_id: job_id.to_string(),
            stages,
            limit: bound.limit,
            planned: bound.planned,
        })
    }

    /// Records that the watcher cancelled `runaway`.
    pub fn trip(&self, runaway: Runaway) {
        if let Ok(mut state) = self.0.lock() {
            state.tripped = Some(runaway);
        }
    }

    /// The job the guard cancelled since the last [`StageGuard::arm`], if any.
    pub fn tripped(&self) -> Option<Runaway> {
        self.0.lock().ok()?.tripped.clone()
    }
}

/// The stages `plan` has when planned with `state`'s settings (target partitions, tables) by
/// DataFusion's own planner, as a Ballista scheduler cuts them: one per exchange, broadcast
/// build side and merge, plus the final stage.
pub async fn planned_stages(
    state: &SessionState,
    extensions: &Extensions,
    plan: &LogicalPlan,
) -> datafusion::error::Result<usize> {
    let local = SessionStateBuilder::new_from_existing(state.clone())
        .with_query_planner(extensions.query_planner())
        .build();
    let physical = local.create_physical_plan(plan).await?;
    Ok(1 + boundaries(&physical))
}

/// Stage boundaries in a physical plan.
fn boundaries(plan: &Arc<dyn ExecutionPlan>) -> usize {
    let here = plan.downcast_ref::<RepartitionExec>().is_some()
        || plan.downcast_ref::<CoalescePartitionsExec>().is_some()
        || plan.downcast_ref::<SortPreservingMergeExec>().is_some()
        || plan
            .downcast_ref::<HashJoinExec>()
            .is_some_and(|join| *join.partition_mode() == PartitionMode::CollectLeft);
    usize::from(here) + plan.children().into_iter().map(boundaries).sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_is_a_multiple_of_the_plan_with_a_floor() {
        // FXPIPE_CLUSTER_MAX_STAGES is not set in unit tests.
        assert_eq!(Bound::for_stages(2).limit, FLOOR);
        assert_eq!(Bound::for_stages(10).limit, 40);
        let guard = StageGuard::default();
        assert_eq!(guard.check("j", 1_000), None, "no bound, no runaway");
        guard.arm(Bound::for_stages(10));
        assert_eq!(guard.check("j", 40), None);
        let runaway = guard.check("j", 41).expect("past the bound");
        assert_eq!(
            (runaway.stages, runaway.limit, runaway.planned),
            (41, 40, 10)
        );
        guard.trip(runaway.clone());
        assert_eq!(guard.tripped(), Some(runaway));
        guard.arm(Bound::for_stages(10));
        assert_eq!(guard.tripped(), None, "a new job starts clean");
    }

    #[tokio::test]
    async fn stages_are_counted_at_exchanges_and_broadcasts() -> datafusion::error::Result<()> {
        let ctx = datafusion::prelude::SessionContext::new_with_config(
            datafusion::prelude::SessionConfig::new().with_target_partitions(4),
        );
        ctx.sql("CREATE TABLE a (k INT, v INT) AS VALUES (1, 2), (3, 4)")
            .await?;
        let plan = ctx.sql("SELECT 1").await?.into_optimized_plan()?;
        assert_eq!(
            planned_stages(&ctx.state(), &Extensions::engine(), &plan).await?,
            1
        );
        let plan = ctx
            .sql("SELECT k, sum(v) FROM a GROUP BY k ORDER BY k")
            .await?
            .into_optimized_plan()?;
        assert!(planned_stages(&ctx.state(), &Extensions::engine(), &plan).await? >= 3);
        Ok(())
    }
}
