//! What every query service runs around its own read RPCs: the server shell (bound through
//! [`platform::server`]), the metrics endpoint, the projection [`Runtime`] with its admin
//! service, and the order in which they start and stop. A query service's `startup.rs` only
//! connects its storage and names its RPCs and their policy.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use platform::auth::ROLE_OPERATOR;
use platform::server::{Access, GrpcServer, Policy, ServerArgs};
use platform::telemetry::LogFormat;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

use crate::args::ProjectionArgs;
use crate::progress::Progress;
use crate::read_model::ReadModel;
use crate::read_side::ReadSide;
use crate::runtime::Runtime;

/// The gRPC service every query service also serves.
pub const ADMIN_SERVICE: &str = "course.v1.ProjectionAdminService";
/// Its RPCs, all for operators.
pub const ADMIN_METHODS: &[&str] = &[
    "GetProjectionStatus",
    "RebuildReadModel",
    "AuditReadModel",
    "ListDeadLetters",
    "ReplayDeadLetters",
];

/// The settings every query service takes, flattened into its `Config`. Each service gives
/// the listen addresses and the queue defaults of its own with [`default_to`]:
/// `#[command(mut_arg("grpc_listen", default_to("0.0.0.0:50052")))]`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceArgs {
    /// This read model's durable queue, shared by its replicas (dead letters go to
    /// `<queue>.dlq`).
    #[arg(long, env = "QUEUE_NAME")]
    pub queue_name: String,
    /// Address the gRPC server listens on.
    #[arg(long, env = "GRPC_LISTEN")]
    pub grpc_listen: SocketAddr,
    /// Address of the Prometheus metrics endpoint (`GET /metrics`).
    #[arg(long, env = "METRICS_LISTEN")]
    pub metrics_listen: SocketAddr,
    /// Where the events come from and how they are consumed.
    #[command(flatten)]
    pub projection: ProjectionArgs,
    /// The gRPC server: limits, keep-alive, bearer-token verification.
    #[command(flatten)]
    pub server: ServerArgs,
    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// A service's default for one of the [`ServiceArgs`] that have none of their own.
pub fn default_to(value: &'static str) -> impl FnOnce(clap::Arg) -> clap::Arg {
    move |arg| arg.default_value(value).required(false)
}

/// A bound query service, not yet serving.
pub struct QueryHost<M: ReadModel> {
    name: &'static str,
    server: GrpcServer,
    runtime: Runtime<M>,
    metrics: TcpListener,
    health_names: &'static [&'static str],
    read_your_writes_timeout: Duration,
}

impl<M: ReadModel> QueryHost<M> {
    /// Validates the settings and binds both listeners. The storage, RabbitMQ and the event
    /// store are reached lazily: the service starts (NOT_SERVING) while they are down.
    /// `name` is the process's name, for logs; `health_names` the names under which
    /// `grpc.health.v1` reports (the service's own, and "").
    pub async fn bind(
        model: M,
        name: &'static str,
        health_names: &'static [&'static str],
        config: &ServiceArgs,
    ) -> anyhow::Result<Self> {
        let runtime = Runtime::new(model, config.projection.runtime(&config.queue_name)?)?;
        let server =
            GrpcServer::bind(config.grpc_listen, config.server.clone(), health_names).await?;
        let metrics = platform::metrics::bind(config.metrics_listen).await.with_context(|| {
            format!("cannot listen on METRICS_LISTEN {}", config.metrics_listen)
        })?;
        platform::metrics::recorder();
        Ok(Self {
            name,
            server,
            runtime,
            metrics,
            health_names,
            read_your_writes_timeout: config.projection.read_your_writes_timeout(),
        })
    }

    /// The gRPC port actually bound (useful with port 0).
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// The metrics port actually bound.
    pub fn metrics_port(&self) -> u16 {
        self.metrics.local_addr().map(|a| a.port()).unwrap_or_default()
    }

    /// The read model's storage.
    pub fn model(&self) -> &M {
        self.runtime.projector().model()
    }

    /// The projection's progress (read-your-writes waits use it).
    pub fn progress(&self) -> &Progress {
        self.runtime.projector().progress()
    }

    /// How long a `min_version` / `min_position` read may wait.
    pub fn read_your_writes_timeout(&self) -> Duration {
        self.read_your_writes_timeout
    }

    /// The read-side edge of the service's read RPCs: the served generation, the
    /// read-your-writes waits (bounded by `READ_YOUR_WRITES_TIMEOUT_MS`), paging and errors.
    pub fn read_side(&self) -> ReadSide<M> {
        self.runtime.read_side(self.read_your_writes_timeout)
    }

    /// The largest request a read RPC decodes.
    pub fn max_request_bytes(&self) -> usize {
        self.server.args().max_request_bytes
    }

    /// A token cancelled when the service stops (for the service's own background work).
    pub fn stop_token(&self) -> CancellationToken {
        self.runtime.stop_token()
    }

    /// Starts the projection, serves `routes` plus the admin service under `policy` (the
    /// admin rows are added here) until `shutdown`; then stops consuming (the batch in hand is
    /// finished and acknowledged), reports NOT_SERVING and drains in-flight calls. The
    /// projection stops cleanly also when the server failed.
    pub async fn serve(
        self,
        routes: Routes,
        policy: Policy,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let Self { name, server, mut runtime, metrics, health_names, .. } = self;
        runtime.start(server.health(), health_names);
        let routes = routes.add_service(runtime.admin_service());
        let policy = policy.service(ADMIN_SERVICE, ADMIN_METHODS, Access::Roles(&[ROLE_OPERATOR]));
        tracing::info!(addr = %server.local_addr()?, "{name} listening");
        let stop = runtime.stop_token();
        let metrics_task = tokio::spawn(platform::metrics::serve(metrics, stop.clone()));
        let drain = async move {
            shutdown.await;
            stop.cancel();
        };
        let served =
            server.serve(routes, policy, &[course_proto::FILE_DESCRIPTOR_SET], drain).await;
        runtime.shutdown().await;
        let _ = metrics_task.await;
        tracing::info!("{name} stopped");
        served
    }
}
