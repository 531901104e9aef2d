//! `fxpipe-executor`: Ballista's executor with fxpipe's functions, object stores and codecs.
//! Every Ballista executor flag works as documented upstream (`--scheduler-host`,
//! `--scheduler-port`, `--work-dir`, `--vcores`, …), plus `--tls-dir` and
//! `--insecure-plaintext`; it binds 127.0.0.1 unless given TLS. S3 credentials come from this
//! node's own AWS chain (e.g. the EMR instance profile), never from the client.

use std::sync::Arc;

use ballista_executor::config::Config;
use ballista_executor::executor_process::ExecutorProcessConfig;
use fxpipe::engine::{node, serve, tls};
use fxpipe::storage::registry::NodeStores;
use fxpipe::storage::S3Options;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (config, flags): (Config, _) = node::parse_flags("task_scheduling_policy");
    let mut config: ExecutorProcessConfig = config.try_into()?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.special_mod_log_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .init();
    tls::install_crypto_provider();
    let security = flags.security()?;
    serve::check_bind("fxpipe-executor", &config.bind_host, config.port, &security)?;
    let allowed = flags.allowed()?;
    let stores = Arc::new(NodeStores::from_environment(&S3Options::from_env(), allowed).await);
    // Overriding the runtime drops Ballista's default spill directory (the work dir): set it.
    let work_dir = config.work_dir.clone().map(std::path::PathBuf::from);
    let extensions = fxpipe::extensions();
    let for_configs = extensions.clone();
    config.override_config_producer = Some(Arc::new(move || node::session_config(&for_configs)));
    config.override_runtime_producer = Some(Arc::new(move |_session_config| {
        node::runtime(stores.clone(), work_dir.clone())
    }));
    config.override_function_registry = Some(Arc::new(node::function_registry()));
    config.override_logical_codec = Some(extensions.logical_codec());
    config.override_physical_codec = Some(extensions.physical_codec());
    serve::run_executor(config, security, &extensions).await?;
    Ok(())
}
