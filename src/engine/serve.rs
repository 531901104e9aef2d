//! The cluster's servers: a Ballista scheduler and executor with fxpipe's settings, bound
//! safely. The binaries (`scheduler/`, `executor/`) only parse flags and call in here.
//!
//! Why the wiring is ours: Ballista 55's `start_server` and `start_executor_process` serve in
//! plain text only. With a TLS directory ([`super::tls`]) the scheduler serves Ballista's own
//! router (gRPC and the REST API, which also cancels jobs) behind a rustls acceptor that
//! requires a client certificate, and the executor serves its Flight service (shuffle files
//! and results) through tonic's TLS, through Ballista's `override_arrow_flight_service` hook.
//! Without TLS a node binds loopback only unless told `--insecure-plaintext`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use ballista_core::error::BallistaError;
use ballista_core::serde::protobuf::scheduler_grpc_server::SchedulerGrpcServer;
use ballista_executor::executor_process::{start_executor_process, ExecutorProcessConfig};
use ballista_executor::flight_service::BallistaFlightService;
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::{create_scheduler, start_server};
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::node;
use super::tls::{Tls, TlsError};

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{role}: binding {host} without TLS would let anyone who can reach port {port} run any plan on the cluster and read what it can read; give --tls-dir DIR (`fxpipe cluster certs` makes one), or bind 127.0.0.1, or pass --insecure-plaintext on a network only the cluster can reach")]
    PlaintextBind {
        role: &'static str,
        host: String,
        port: u16,
    },
    #[error("{role}: TLS needs pull-staged scheduling (the push-staged executor's gRPC service has no TLS hook in Ballista 55)")]
    PushStagedTls { role: &'static str },
    #[error("{role}: cannot bind {address}: {source}")]
    Bind {
        role: &'static str,
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("{role}: {source}")]
    Ballista {
        role: &'static str,
        source: BallistaError,
    },
}

/// How a node is secured: its TLS material, or the explicit choice of plain text.
#[derive(Debug, Clone, Default)]
pub struct Security {
    pub tls: Option<Tls>,
    pub insecure_plaintext: bool,
}

/// Whether `host` names this machine's loopback interface only.
pub fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Refuses a non-loopback bind without TLS unless plain text was asked for. Call it before
/// anything slow, so a refused node says why at once.
pub fn check_bind(
    role: &'static str,
    host: &str,
    port: u16,
    security: &Security,
) -> Result<(), NodeError> {
    if security.tls.is_some() || is_loopback(host) || security.insecure_plaintext {
        return Ok(());
    }
    Err(NodeError::PlaintextBind {
        role,
        host: host.to_string(),
        port,
    })
}

/// A node serving a non-loopback address in plain text says so now and every minute, so
/// nobody forgets that the cluster is open.
fn warn_while_open(role: &'static str, host: &str, port: u16, security: &Security) {
    if security.tls.is_some() || is_loopback(host) {
        return;
    }
    let host = host.to_string();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        loop {
            every.tick().await;
            tracing::warn!(
                %host, port,
                "{role} serves without TLS (--insecure-plaintext): anyone who reaches this port can run any plan"
            );
        }
    });
}

/// Runs a scheduler at `address` with `config` (fxpipe's session, codecs and planner already
/// set) until it fails.
pub async fn run_scheduler(
    mut config: SchedulerConfig,
    address: SocketAddr,
    security: Security,
) -> Result<(), NodeError> {
    let role = "fxpipe-scheduler";
    let ballista = |source| NodeError::Ballista { role, source };
    check_bind(role, &config.bind_host, config.bind_port, &security)?;
    warn_while_open(role, &config.bind_host, config.bind_port, &security);
    let Some(tls) = security.tls else {
        let cluster = BallistaCluster::new_from_config(&config)
            .await
            .map_err(ballista)?;
        tracing::info!(%address, "fxpipe-scheduler listening (plain text)");
        return start_server(cluster, address, Arc::new(config))
            .await
            .map_err(ballista);
    };
    if matches!(
        config.scheduling_policy,
        ballista_core::config::TaskSchedulingPolicy::PushStaged
    ) {
        return Err(NodeError::PushStagedTls { role });
    }
    config.override_create_grpc_client_endpoint = Some(tls.endpoint_override());
    config.use_tls = true;
    let acceptor = TlsAcceptor::from(tls.rustls_server()?);
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| NodeError::Bind {
            role,
            address,
            source,
        })?;
    let max_decoding = config.grpc_server_max_decoding_message_size as usize;
    let max_encoding = config.grpc_server_max_encoding_message_size as usize;
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(ballista)?;
    let scheduler =
        create_scheduler::<LogicalPlanNode, PhysicalPlanNode>(cluster, Arc::new(config))
            .await
            .map_err(ballista)?;
    let grpc = SchedulerGrpcServer::new(scheduler.clone())
        .max_decoding_message_size(max_decoding)
        .max_encoding_message_size(max_encoding);
    let mut routes = tonic::service::RoutesBuilder::default();
    routes.add_service(grpc);
    let router = ballista_scheduler::api::get_routes(Arc::new(scheduler))
        .merge(routes.routes().into_axum_router());
    tracing::info!(%address, tls = %tls.dir().display(), "fxpipe-scheduler listening (mutual TLS)");
    axum::serve(
        TlsListener::start(listener, acceptor),
        router.into_make_service(),
    )
    .await
    .map_err(|e| ballista(BallistaError::from(e)))
}

/// Runs an executor with `config` (fxpipe's session, runtime, functions and codecs already
/// set) until it stops.
pub async fn run_executor(
    mut config: ExecutorProcessConfig,
    security: Security,
    extensions: &super::Extensions,
) -> Result<(), NodeError> {
    let role = "fxpipe-executor";
    check_bind(role, &config.bind_host, config.port, &security)?;
    warn_while_open(role, &config.bind_host, config.port, &security);
    if let Some(tls) = security.tls {
        if matches!(
            config.task_scheduling_policy,
            ballista_core::config::TaskSchedulingPolicy::PushStaged
        ) {
            return Err(NodeError::PushStagedTls { role });
        }
        // Calls to the scheduler, and shuffle fetches from other executors.
        config.override_create_grpc_client_endpoint = Some(tls.endpoint_override());
        let for_tasks = tls.clone();
        let extensions = extensions.clone();
        config.override_config_producer = Some(Arc::new(move || {
            for_tasks.session_config(node::session_config(&extensions))
        }));
        // The Flight service: shuffle files and results, only to members of the cluster.
        let max_decoding = config.grpc_max_decoding_message_size as usize;
        let max_encoding = config.grpc_max_encoding_message_size as usize;
        let server_tls = tls.tonic_server();
        config.override_arrow_flight_service = Some(Arc::new(
            move |work_dir, address, mut shutdown, grpc_config| {
                let server_tls = server_tls.clone();
                tokio::spawn(async move {
                    tracing::info!(%address, "executor Flight service listening (mutual TLS)");
                    ballista_core::utils::create_grpc_server(&grpc_config)
                        .tls_config(server_tls)
                        .map_err(BallistaError::TonicError)?
                        .add_service(
                            FlightServiceServer::new(BallistaFlightService::new(work_dir))
                                .max_decoding_message_size(max_decoding)
                                .max_encoding_message_size(max_encoding),
                        )
                        .serve_with_shutdown(address, shutdown.recv())
                        .await
                        .map_err(BallistaError::TonicError)
                })
            },
        ));
    }
    start_executor_process(Arc::new(config))
        .await
        .map_err(|source| NodeError::Ballista { role, source })
}

/// A listener whose connections have completed a TLS handshake with a client certificate the
/// CA signed. Handshakes run in their own tasks (bounded by a timeout), so a slow or hostile
/// client cannot hold up the others; failed ones are logged at debug level and dropped.
struct TlsListener {
    local: SocketAddr,
    ready: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    fn start(listener: TcpListener, acceptor: TlsAcceptor) -> Self {
        let local = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let (sender, ready) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::debug!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let sender = sender.clone();
                tokio::spawn(async move {
                    let handshake =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(tls)) => {
                            let _ = sender.send((tls, peer)).await;
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(%peer, %error, "TLS handshake refused")
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Self { local, ready }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept loop never ends while the listener lives.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
