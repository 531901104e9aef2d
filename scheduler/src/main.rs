//! `fxpipe-scheduler`: Ballista's scheduler with fxpipe's functions, object stores and codecs.
//! Every Ballista scheduler flag works as documented upstream (`--bind-port`,
//! `--executor-timeout-seconds`, …), plus `--tls-dir` and `--insecure-plaintext`; it binds
//! 127.0.0.1 unless given TLS. S3 settings come from this node's own environment.

use std::sync::Arc;

use ballista_scheduler::config::{Config, SchedulerConfig};
use fxpipe::engine::{node, serve, tls};
use fxpipe::storage::registry::NodeStores;
use fxpipe::storage::S3Options;

fn main() -> anyhow::Result<()> {
    // Ballista's scheduler plans deep trees recursively: its own binary uses a 32 MiB stack.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(32 * 1024 * 1024)
        .build()?;
    runtime.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let (config, flags): (Config, _) = node::parse_flags("scheduler_policy");
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log_level_setting));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .init();
    tls::install_crypto_provider();
    let security = flags.security()?;
    serve::check_bind(
        "fxpipe-scheduler",
        &config.bind_host,
        config.bind_port,
        &security,
    )?;
    let allowed = flags.allowed()?;
    let address = format!("{}:{}", config.bind_host, config.bind_port).parse()?;
    let stores = Arc::new(NodeStores::from_environment(&S3Options::from_env(), allowed).await);
    let config: SchedulerConfig = config.try_into()?;
    let extensions = fxpipe::extensions();
    let for_sessions = extensions.clone();
    let for_configs = extensions.clone();
    let mut config = config
        .with_override_config_producer(Arc::new(move || node::session_config(&for_configs)))
        .with_override_session_builder(Arc::new(move |session_config| {
            node::scheduler_session(session_config, stores.clone(), &for_sessions)
        }));
    config.override_logical_codec = Some(extensions.logical_codec());
    config.override_physical_codec = Some(extensions.physical_codec());
    serve::run_scheduler(config, address, security).await?;
    Ok(())
}
