//! The engine seam: where plans run.
//!
//! Jobs get a [`SessionContext`] from an [`Engine`] and never ask how it was built:
//! [`Engine::embedded`] runs plans in this process, [`Engine::cluster`] on a Ballista cluster.
//! Jobs build the same plans for both, reading tables through the Delta log and writing them
//! through the write node ([`write`]), whose files the client commits once.

pub mod broadcast;
pub mod codec;
pub mod delta_files;
pub mod extensions;
pub mod functions;
pub mod meter;
pub mod node;
pub mod partition_files;
pub mod progress;
pub mod runaway;
pub mod scheduler_api;
pub mod serve;
pub mod tally;
pub mod tls;
pub mod write;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use arrow::array::RecordBatch;
use datafusion::logical_expr::LogicalPlan;

use datafusion::catalog::Session;
use datafusion::prelude::SessionContext;
use tracing::debug;

pub use extensions::Extensions;

use crate::storage::{delta, Lake, StorageError, Table};

/// A place to plan and run SQL, with fxpipe's functions installed.
#[derive(Clone)]
pub struct Engine {
    /// Where the job's plans run: this process, or the cluster.
    ctx: SessionContext,
    /// This process: delta-rs's own writes (small tables) and reads of local results. The
    /// same session as `ctx` when embedded.
    local: SessionContext,
    /// The scheduler's address when plans run on a Ballista cluster.
    cluster: Option<String>,
    /// Mutual TLS with the cluster (`--tls-dir`).
    tls: Option<tls::Tls>,
    /// The name this engine's cluster jobs carry (`ballista.job.name`), to follow them.
    job_name: Option<String>,
    /// Jobs the progress watcher cancelled: stalled after an executor loss, or stranded with
    /// no executor alive.
    rescues: Arc<progress::Rescues>,
    /// The stage bound of the running cluster job, and the job it stopped (see [`runaway`]).
    stages: runaway::StageGuard,
    /// How far the running job has got, for a progress bar.
    meter: Arc<meter::Meter>,
    /// Set by [`Engine::watch_progress`]: see [`Engine::settle_progress`].
    settler: Arc<std::sync::OnceLock<progress::Settler>>,
    /// The plan nodes, planners and codecs this engine was given.
    extensions: Extensions,
}

/// How many times [`Engine::collect`] submits a stalled job again.
pub const RESUBMISSIONS: usize = 2;

/// How long a job may make no progress after an executor loss before it is submitted again:
/// `FXPIPE_CLUSTER_STALL_SECONDS`, default 60 (well above Ballista's own re-run of a lost
/// executor's tasks once its heartbeat times out).
pub fn stall_timeout() -> std::time::Duration {
    let seconds = std::env::var("FXPIPE_CLUSTER_STALL_SECONDS")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(60);
    std::time::Duration::from_secs(seconds.max(1))
}

/// Ballista's partitions per stage when the executors' cores are unknown.
const BALLISTA_DEFAULT_PARTITIONS: usize = 16;

/// Partitions per cluster stage: the registered executors' cores together, so one wave of
/// tasks covers a stage. Each task costs ~27 ms to schedule and start (benches/README.md), and
/// with Ballista's fixed 16 a normalize on a two-executor cluster ran 181 tasks, most of its
/// time. With no answer (or no executor yet) it stays at Ballista's 16.
fn cluster_partitions(status: Result<scheduler_api::SchedulerStatus, EngineError>) -> usize {
    match status {
        Ok(status) if status.vcores > 0 => status.vcores,
        Ok(_) => {
            tracing::warn!(
                partitions = BALLISTA_DEFAULT_PARTITIONS,
                "no executor has registered with the scheduler yet; stages get the default partitions"
            );
            BALLISTA_DEFAULT_PARTITIONS
        }
        Err(error) => {
            tracing::warn!(
                %error,
                partitions = BALLISTA_DEFAULT_PARTITIONS,
                "cannot ask the scheduler for its executors' cores (--cluster-partitions sets them)"
            );
            BALLISTA_DEFAULT_PARTITIONS
        }
    }
}

/// Why an engine could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cluster address {0:?} is not df://HOST:PORT")]
    BadAddress(String),
    #[error("cannot reach the Ballista scheduler at {address}: {source}; is fxpipe-scheduler running there (--cluster / FXPIPE_CLUSTER)?")]
    Unreachable {
        address: String,
        source: std::io::Error,
    },
    #[error("the Ballista scheduler at {address} did not answer its REST API: {why}")]
    RestApi { address: String, why: String },
    #[error("setting up the cluster session: {0}")]
    Session(#[from] datafusion::error::DataFusionError),
}

/// `HOST:PORT` of a `df://HOST:PORT` cluster address.
pub fn host_port(address: &str) -> Result<&str, EngineError> {
    address
        .strip_prefix("df://")
        .filter(|rest| rest.contains(':'))
        .ok_or_else(|| EngineError::BadAddress(address.to_string()))
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
    pub fn embedded(extensions: &Extensions) -> Self {
        let delta: SessionContext = deltalake::delta_datafusion::create_session().into_inner();
        // delta-rs's session (its object-store handling, its nodes), planned by fxpipe's
        // planner so plans can end in the write node.
        let state = datafusion::execution::SessionStateBuilder::new_from_existing(delta.state())
            .with_query_planner(extensions.query_planner())
            .build();
        let ctx = SessionContext::new_with_state(state);
        ctx.state_ref()
            .write()
            .config_mut()
            .options_mut()
            .sql_parser
            .parse_float_as_decimal = true;
        ctx.register_udf(functions::FxConvert::udf());
        Self {
            local: ctx.clone(),
            ctx,
            cluster: None,
            tls: None,
            job_name: None,
            rescues: Arc::default(),
            stages: runaway::StageGuard::default(),
            meter: Arc::default(),
            settler: Arc::default(),
            extensions: extensions.clone(),
        }
    }

    /// Plans run on the Ballista cluster whose scheduler is at `address` (`df://HOST:PORT`).
    /// The session is the embedded one's (exact decimal literals, `fx_convert`), with fxpipe's
    /// codecs; the scheduler is checked to be reachable here, so a wrong address fails at
    /// once, naming it.
    ///
    /// Every stage runs in `partitions` tasks; by default as many as the executors have cores
    /// (Ballista's own default is 16 whatever the cluster: on a small cluster most of a job's
    /// time went to starting those tasks, see `cluster_partitions`).
    ///
    /// With `tls`, every connection (to the scheduler, its REST API and the executors) is made
    /// over mutual TLS with that certificate.
    pub async fn cluster(
        address: &str,
        partitions: Option<std::num::NonZeroUsize>,
        tls: Option<tls::Tls>,
        extensions: &Extensions,
    ) -> Result<Self, EngineError> {
        use ballista::prelude::SessionContextExt;
        let host_port = host_port(address)?;
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            tokio::net::TcpStream::connect(host_port),
        )
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out after 10 s"))
        .and_then(|connected| connected)
        .map_err(|source| EngineError::Unreachable {
            address: address.to_string(),
            source,
        })?;
        let job_name = format!("fxpipe-{:016x}", rand::random::<u64>());
        let status =
            match scheduler_api::status(address, std::time::Duration::from_secs(5), tls.as_ref())
                .await
            {
                // A TLS scheduler asked in plain text: say so now, not after a job fails with
                // an HTTP/2 protocol error.
                Err(EngineError::RestApi { why, address })
                    if why.contains(scheduler_api::NEEDS_TLS) =>
                {
                    return Err(EngineError::RestApi { why, address })
                }
                other => other,
            };
        let partitions = match partitions {
            Some(partitions) => partitions.get(),
            None => cluster_partitions(status),
        };
        tracing::debug!(partitions, "partitions per cluster stage");
        let mut config = node::session_config(extensions)
            .set_str("ballista.job.name", &job_name)
            .with_target_partitions(partitions);
        config.options_mut().sql_parser.parse_float_as_decimal = true;
        if let Some(tls) = &tls {
            config = tls.session_config(config);
        }
        let state = datafusion::execution::SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .build();
        let ctx = SessionContext::remote_with_state(address, state).await?;
        // After `remote_with_state`, which keeps only the functions it knows.
        ctx.register_udf(functions::FxConvert::udf());
        Ok(Self {
            ctx,
            local: Self::embedded(extensions).ctx,
            cluster: Some(address.to_string()),
            tls,
            job_name: Some(job_name),
            rescues: Arc::default(),
            stages: runaway::StageGuard::default(),
            meter: Arc::default(),
            settler: Arc::default(),
            extensions: extensions.clone(),
        })
    }

    /// How many times the progress watcher has seen the cluster lose an executor (0 when
    /// embedded or unwatched). A job whose result looks wrong after a loss may be one of
    /// Ballista 55's rolled-back stages reported twice (see `jobs::normalize`).
    pub fn executor_losses(&self) -> usize {
        self.rescues.losses.load(Ordering::SeqCst)
    }

    /// Follows this engine's jobs on the cluster (none when embedded); see [`progress`].
    /// Takes the cluster's progress bar off the terminal before this process writes to it
    /// between jobs (the SQL shell's prompt); nothing when no bar is watched.
    pub async fn settle_progress(&self) {
        if let Some(settler) = self.settler.get() {
            settler.settle().await;
        }
    }

    pub fn watch_progress(&self, show_bar: bool) -> Option<progress::Progress> {
        let host_port = self.cluster.as_deref()?.strip_prefix("df://")?;
        let progress = progress::Progress::start(
            host_port,
            self.tls.as_ref(),
            self.job_name.as_deref()?,
            stall_timeout(),
            self.rescues.clone(),
            self.stages.clone(),
            show_bar,
        );
        let _ = self.settler.set(progress.settler());
        Some(progress)
    }

    /// Runs `plan` to the end and returns its rows. On a cluster, a job the progress watcher
    /// cancelled because it stalled after an executor loss (see [`progress`]) is submitted
    /// again, at most [`RESUBMISSIONS`] times: only plans whose effects count once the
    /// client commits them (every fxpipe job) may come through here.
    pub async fn collect(
        &self,
        plan: LogicalPlan,
    ) -> Result<Vec<RecordBatch>, datafusion::error::DataFusionError> {
        let mut resubmitted = 0;
        loop {
            let before = self.rescues.stalled.load(Ordering::SeqCst);
            let stranded = self.rescues.stranded.load(Ordering::SeqCst);
            let outcome = self.collect_once(plan.clone()).await;
            match outcome {
                Err(_) if self.rescues.stranded.load(Ordering::SeqCst) > stranded => {
                    return Err(datafusion::error::DataFusionError::Execution(format!(
                        "no executor was alive on the cluster at {} for {} s, so the job was \
                         cancelled (nothing was committed); start executors (or check why they \
                         left: their logs, spot reclaims) and run the command again",
                        self.cluster.as_deref().unwrap_or("?"),
                        stall_timeout().as_secs()
                    )));
                }
                Err(e)
                    if self.rescues.stalled.load(Ordering::SeqCst) > before
                        && resubmitted < RESUBMISSIONS =>
                {
                    resubmitted += 1;
                    tracing::warn!(
                        attempt = resubmitted + 1,
                        "submitting the job again after an executor loss stalled it ({e})"
                    );
                }
                outcome => return outcome,
            }
        }
    }

    /// Runs a plan once; while it runs, its physical plan is the [`meter`]'s to read.
    async fn collect_once(
        &self,
        plan: LogicalPlan,
    ) -> Result<Vec<RecordBatch>, datafusion::error::DataFusionError> {
        self.guard_stages(&plan).await;
        let frame = self.ctx.execute_logical_plan(plan).await?;
        let task = Arc::new(frame.task_ctx());
        let physical = frame.create_physical_plan().await?;
        // `RUST_LOG=fxpipe::engine=debug` shows what each job runs (the first thing to read when
        // a job is slow).
        tracing::debug!(
            plan = %datafusion::physical_plan::displayable(physical.as_ref()).indent(true),
            "physical plan"
        );
        self.meter.set_plan(Some(physical.clone()));
        let outcome = datafusion::physical_plan::collect(physical, task).await;
        self.meter.set_plan(None);
        outcome
    }

    /// Sets the stage bound of the cluster job `plan` is about to become (see [`runaway`]);
    /// nothing when embedded. A plan that cannot be planned here gets the floor's bound.
    pub async fn guard_stages(&self, plan: &LogicalPlan) {
        if self.cluster.is_none() {
            return;
        }
        let planned = runaway::planned_stages(&self.ctx.state(), &self.extensions, plan)
            .await
            .unwrap_or_else(|error| {
                tracing::debug!(%error, "cannot count the plan's stages here");
                0
            });
        let bound = runaway::Bound::for_stages(planned);
        tracing::debug!(
            planned,
            limit = bound.limit,
            "stage bound of the cluster job"
        );
        self.stages.arm(bound);
    }

    /// The cluster job the runaway guard cancelled since the last [`Engine::guard_stages`]:
    /// the job itself fails only with Ballista's "cancelled", so callers say why with this.
    pub fn runaway(&self) -> Option<runaway::Runaway> {
        self.stages.tripped()
    }

    /// How far this engine's running job has got (see [`meter`]).
    pub fn meter(&self) -> Arc<meter::Meter> {
        self.meter.clone()
    }

    /// The scheduler's address, when plans run on a cluster.
    pub fn cluster_address(&self) -> Option<&str> {
        self.cluster.as_deref()
    }

    /// Partitions per stage: the cores of the cluster's executors, or of this machine.
    pub fn partitions(&self) -> usize {
        self.ctx.state().config().target_partitions()
    }

    /// Makes the lake's storage readable by URL in this session (`s3://bucket/…` or
    /// `file:///…`) through the lake's own store, so ad-hoc reads share its configuration.
    pub fn attach(&self, lake: &Lake) {
        let (url, store) = lake.root_store();
        self.ctx.register_object_store(&url, store.clone());
        self.local.register_object_store(&url, store);
    }

    pub fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    pub fn ctx(&self) -> &SessionContext {
        &self.ctx
    }

    /// The session of this process, even when plans run on a cluster: for small inputs a job
    /// computes itself (see [`Engine::collect_here`]). It has the tables [`Engine::register_table`]
    /// registered, at the same versions.
    pub fn local_ctx(&self) -> &SessionContext {
        &self.local
    }

    /// Runs `plan` (planned on [`Engine::local_ctx`]) in this process, never on the cluster.
    pub async fn collect_here(
        &self,
        plan: LogicalPlan,
    ) -> datafusion::error::Result<Vec<RecordBatch>> {
        self.local.execute_logical_plan(plan).await?.collect().await
    }

    /// The session state as delta-rs's writer wants it.
    pub fn session(&self) -> Arc<dyn Session> {
        Arc::new(self.local.state())
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
        Ok(self.register_table_version(lake, table).await?.is_some())
    }

    /// Registers one table and returns the Delta version registered (`None`: no such table
    /// yet), so a result can say which version of the table it was computed from.
    pub async fn register_table_version(
        &self,
        lake: &Lake,
        table: Table,
    ) -> Result<Option<u64>, StorageError> {
        let opened = self.register_table_opened(lake, table).await?;
        // delta::open loads the table, so it has a version; 0 is never shown for a missing one.
        Ok(opened.map(|opened| opened.version().unwrap_or_default()))
    }

    /// Registers one table and returns it as delta-rs opened it (its log at the version
    /// registered), for what the log alone can tell (`None`: no such table yet).
    pub async fn register_table_opened(
        &self,
        lake: &Lake,
        table: Table,
    ) -> Result<Option<deltalake::DeltaTable>, StorageError> {
        let Some(opened) = delta::open(lake, table).await? else {
            return Ok(None);
        };
        let to_storage = |source| StorageError::Delta {
            table: table.sql_name().to_string(),
            source,
        };
        // delta-rs's own scan in this process (on a cluster too, for what a job computes here:
        // `collect_here`, normalize's rate calendar). Embedded, `local` is `ctx`. Re-registering
        // replaces an older version's provider (after this process wrote).
        opened
            .update_datafusion_session(&self.local.state())
            .map_err(to_storage)?;
        let provider = opened
            .table_provider()
            .await
            .map_err(|e| to_storage(deltalake::DeltaTableError::from(e)))?;
        let schema = provider.schema();
        let _ = self.local.deregister_table(table.sql_name());
        self.local
            .register_table(table.sql_name(), provider)
            .map_err(|e| to_storage(deltalake::DeltaTableError::from(e)))?;
        if self.cluster.is_some() {
            // The version's exact files as a plain Parquet scan, which travels to the cluster;
            // the schema is delta-rs's, so columns and types are those of an embedded run.
            let files = delta_files::DeltaFiles::resolve(lake, table, &opened).await?;
            let provider = delta_files::DeltaFilesTable::new(files, &schema)
                .map_err(|e| to_storage(deltalake::DeltaTableError::from(e)))?;
            let _ = self.ctx.deregister_table(table.sql_name());
            self.ctx
                .register_table(table.sql_name(), Arc::new(provider))
                .map_err(|e| to_storage(deltalake::DeltaTableError::from(e)))?;
        }
        debug!(table = table.sql_name(), version = ?opened.version(), cluster = self.cluster.is_some(), "registered");
        Ok(Some(opened))
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::AsArray;

    use super::*;

    #[tokio::test]
    async fn decimal_literals_are_exact() -> datafusion::error::Result<()> {
        let engine = Engine::embedded(&Extensions::engine());
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
