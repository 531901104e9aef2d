//! `fxpipe-executor`: Ballista's executor with fxpipe's functions, object stores and codecs.
//! Every Ballista executor flag works as documented upstream (`--scheduler-host`,
//! `--scheduler-port`, `--work-dir`, `--vcores`, …); S3 credentials come from this node's own
//! AWS chain (e.g. the EMR instance profile), never from the client.

use std::sync::Arc;

use ballista_executor::config::Config;
use ballista_executor::executor_process::{start_executor_process, ExecutorProcessConfig};
use fxpipe::engine::node;
use fxpipe::storage::registry::NodeStores;
use fxpipe::storage::S3Options;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: Config = node::parse_node_config("task_scheduling_policy");
    let mut config: ExecutorProcessConfig = config.try_into()?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.special_mod_log_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .init();
    let stores = Arc::new(NodeStores::from_environment(&S3Options::from_env()).await);
    // Overriding the runtime drops Ballista's default spill directory (the work dir): set it.
    let work_dir = config.work_dir.clone().map(std::path::PathBuf::from);
    config.override_config_producer = Some(Arc::new(node::session_config));
    config.override_runtime_producer = Some(Arc::new(move |_session_config| {
        node::runtime(stores.clone(), work_dir.clone())
    }));
    config.override_function_registry = Some(Arc::new(node::function_registry()));
    config.override_logical_codec = Some(node::logical_codec());
    config.override_physical_codec = Some(node::physical_codec());
    start_executor_process(Arc::new(config)).await?;
    Ok(())
}
