//! What fxpipe adds to a Ballista scheduler or executor: its functions, its object stores and
//! its codecs. The binaries (`scheduler/`, `executor/`) are Ballista's own with these installed.

use std::path::PathBuf;
use std::sync::Arc;

use ballista_core::extension::SessionConfigExt;
use ballista_core::registry::BallistaFunctionRegistry;
use datafusion::execution::context::SessionState;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::{FunctionRegistry, SessionStateBuilder};
use datafusion::prelude::SessionConfig;

use super::functions::FxConvert;
use super::Extensions;
use crate::storage::registry::NodeStores;

/// The session config every node starts from: Ballista's, with fxpipe's codecs, planned by
/// Ballista's static distributed planner instead of its adaptive one (AQE).
///
/// Why not AQE: in Ballista 55 a job with an empty input never ends under it. When a stage
/// measures 0 rows, `PropagateEmptyExecRule` (which ignores its own
/// `ballista.planner.propagate_empty.enabled` key) replaces the stage's exchange with an
/// `EmptyExec`; on the next replan `SelectJoinRule` finds no exchange under the join and wraps
/// the `EmptyExec` in a new one, which runs as a new stage, measures 0 rows, and so on: one
/// new stage per replan, for ever (issue 20: a normalize with no usable rate, a month range
/// with no transaction, any join with an empty side). Replans also drop stages whose tasks
/// are in flight, which Ballista cannot cancel (apache/datafusion-ballista#2063). The static
/// planner plans each job once, from the statistics fxpipe's scans give (exact row counts
/// and sizes: the rate calendar is broadcast from them), so its stages are known when the job
/// is submitted. The client sends this setting with every job, and the scheduler's own
/// sessions start from it, so a job from a stock Ballista client is planned statically too
/// unless it asks otherwise.
pub fn session_config(extensions: &Extensions) -> SessionConfig {
    SessionConfig::new_with_ballista()
        .with_ballista_logical_extension_codec(extensions.logical_codec())
        .with_ballista_physical_extension_codec(extensions.physical_codec())
        .with_ballista_adaptive_query_planner(false)
}

/// A runtime over the node's object stores; spill files go to `work_dir` when given.
pub fn runtime(
    stores: Arc<NodeStores>,
    work_dir: Option<PathBuf>,
) -> datafusion::error::Result<Arc<RuntimeEnv>> {
    let mut builder = RuntimeEnvBuilder::new().with_object_store_registry(stores);
    if let Some(dir) = work_dir {
        builder = builder.with_disk_manager_builder(
            DiskManagerBuilder::default().with_mode(DiskManagerMode::Directories(vec![dir])),
        );
    }
    Ok(Arc::new(builder.build()?))
}

/// The scheduler's session: it plans (and reads file metadata) with fxpipe's functions, object
/// stores and write node. Functions are registered after `build()`: the builder's function list would
/// replace the defaults.
pub fn scheduler_session(
    config: SessionConfig,
    stores: Arc<NodeStores>,
    extensions: &Extensions,
) -> datafusion::error::Result<SessionState> {
    let mut state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime(stores, None)?)
        .with_default_features()
        .with_query_planner(extensions.query_planner())
        .build();
    state.register_udf(Arc::new(FxConvert::udf()))?;
    Ok(state)
}

/// The functions an executor can run: every function a client's session knows (DataFusion's
/// defaults, including the nested ones such as `generate_series` that Ballista's default
/// registry lacks), plus fxpipe's. A plan naming a function the executor lacks cannot be
/// decoded there.
pub fn function_registry() -> BallistaFunctionRegistry {
    let state = SessionStateBuilder::new().with_default_features().build();
    let mut registry = BallistaFunctionRegistry::default();
    for (name, function) in state.scalar_functions() {
        registry
            .scalar_functions
            .insert(name.clone(), function.clone());
    }
    for (name, function) in state.aggregate_functions() {
        registry
            .aggregate_functions
            .insert(name.clone(), function.clone());
    }
    for (name, function) in state.window_functions() {
        registry
            .window_functions
            .insert(name.clone(), function.clone());
    }
    let convert = Arc::new(FxConvert::udf());
    registry
        .scalar_functions
        .insert(convert.name().to_string(), convert);
    registry
}

/// A node's own flags, beside Ballista's.
#[derive(Debug, Clone, Default)]
pub struct NodeFlags {
    /// `--tls-dir` / `FXPIPE_TLS_DIR`: mutual TLS with the certificates there.
    pub tls_dir: Option<PathBuf>,
    /// `--insecure-plaintext` / `FXPIPE_INSECURE_PLAINTEXT`: serve a non-loopback address
    /// without TLS.
    pub insecure_plaintext: bool,
    /// `--lake` / `FXPIPE_LAKE` and `--allow` / `FXPIPE_ALLOW`: the only locations this node's
    /// plans may touch.
    pub lake: Option<String>,
    pub allow: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AllowedError {
    #[error("give --lake URL (the lake this cluster serves, FXPIPE_LAKE) and --allow URL for each input prefix (FXPIPE_ALLOW, comma-separated): a node touches only those, so a submitted plan cannot read the node's own files or other buckets")]
    Nothing,
    #[error(transparent)]
    Unusable(#[from] crate::storage::allow::AllowError),
}

impl NodeFlags {
    /// The locations this node's plans may touch: the lake and the `--allow` prefixes.
    pub fn allowed(&self) -> Result<crate::storage::allow::Allowed, AllowedError> {
        let locations: Vec<&str> = self
            .lake
            .iter()
            .chain(&self.allow)
            .map(String::as_str)
            .collect();
        if locations.is_empty() {
            return Err(AllowedError::Nothing);
        }
        Ok(crate::storage::allow::Allowed::new(&locations)?)
    }

    /// The node's security: its TLS material loaded (an error names the missing file).
    pub fn security(&self) -> Result<super::serve::Security, super::tls::TlsError> {
        Ok(super::serve::Security {
            tls: self
                .tls_dir
                .as_deref()
                .map(super::tls::Tls::load)
                .transpose()?,
            insecure_plaintext: self.insecure_plaintext,
        })
    }
}

/// Parses a Ballista scheduler or executor `Config` (`policy_arg` names its scheduling-policy
/// flag) with fxpipe's defaults and flags:
///
/// - pull-staged scheduling instead of Ballista's push-staged. Under push-staged, Ballista
///   55's scheduler keeps the vcores of a task it cancelled when it rolled back a stage after
///   an executor loss, so the surviving executors run out of slots and the job waits forever.
///   Under pull-staged, each executor reports its own free slots on every poll and nothing
///   leaks. `--scheduler-policy push-staged` (and the executors' `--task-scheduling-policy
///   push-staged`) still select Ballista's default, without TLS.
/// - `--bind-host 127.0.0.1` instead of Ballista's 0.0.0.0: Ballista authenticates nobody, so
///   a node is reachable from elsewhere only with `--tls-dir`, or with `--insecure-plaintext`.
pub fn parse_flags<C: clap::Parser>(policy_arg: &str) -> (C, NodeFlags) {
    let command = C::command()
        .mut_arg(policy_arg, |arg| arg.default_value("pull-staged"))
        .mut_arg("bind_host", |arg| {
            arg.default_value("127.0.0.1")
                .help("Local IP address to bind to: loopback unless --tls-dir (or --insecure-plaintext) is given.")
        })
        .arg(
            clap::Arg::new("tls_dir")
                .long("tls-dir")
                .env("FXPIPE_TLS_DIR")
                .value_name("DIR")
                .value_parser(clap::value_parser!(PathBuf))
                .help("Mutual TLS: DIR holds ca.pem, cert.pem and key.pem (`fxpipe cluster certs` makes them); only peers the CA signed are served or called."),
        )
        .arg(
            clap::Arg::new("lake")
                .long("lake")
                .env("FXPIPE_LAKE")
                .value_name("URL")
                .help("The lake this cluster serves (a folder or s3://bucket/prefix): the node's plans may touch it."),
        )
        .arg(
            clap::Arg::new("allow")
                .long("allow")
                .env("FXPIPE_ALLOW")
                .value_name("URL")
                .value_delimiter(',')
                .action(clap::ArgAction::Append)
                .help("Another prefix the node's plans may touch (e.g. s3://bank/exports/ or /data/exports), repeatable; nothing else is opened."),
        )
        .arg(
            clap::Arg::new("insecure_plaintext")
                .long("insecure-plaintext")
                .env("FXPIPE_INSECURE_PLAINTEXT")
                .action(clap::ArgAction::SetTrue)
                .help("Serve a non-loopback --bind-host without TLS (anyone who reaches the port can run any plan); warns every minute."),
        );
    let matches = command.get_matches();
    let flags = NodeFlags {
        tls_dir: matches.get_one::<PathBuf>("tls_dir").cloned(),
        insecure_plaintext: matches.get_flag("insecure_plaintext"),
        lake: matches.get_one::<String>("lake").cloned(),
        allow: matches
            .get_many::<String>("allow")
            .map(|values| values.cloned().collect())
            .unwrap_or_default(),
    };
    let config = C::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    (config, flags)
}
