//! Builds the service from its configuration and runs it until a shutdown signal.

use std::future::Future;

use anyhow::Context;
use course_proto::v1::catalog_query_service_server::CatalogQueryServiceServer;
use platform::auth::ROLE_OPERATOR;
use platform::server::{Access, GrpcServer, Policy};
use projection::runtime::Runtime;
use tokio::net::TcpListener;
use tonic::service::Routes;

use crate::config::Config;
use crate::grpc::CatalogApi;
use crate::store::RedisReadModel;

/// Names under which `grpc.health.v1` reports.
pub const HEALTH_NAMES: &[&str] = &["", "course.v1.CatalogQueryService"];

/// Who may call what. Summaries and counts are public; who is in a course is for its
/// instructor and participants (checked by the handler); a user's enrolments for that user;
/// the admin RPCs for operators.
pub fn policy() -> Policy {
    Policy::new()
        .service(
            "course.v1.CatalogQueryService",
            &["GetCourse", "ListCourses", "ListPopularCourses"],
            Access::Public,
        )
        .service(
            "course.v1.CatalogQueryService",
            &["ListCourseParticipants", "ListUserCourses"],
            Access::Authenticated,
        )
        .service(
            "course.v1.ProjectionAdminService",
            &["GetProjectionStatus", "RebuildReadModel", "ListDeadLetters", "ReplayDeadLetters"],
            Access::Roles(&[ROLE_OPERATOR]),
        )
}

/// A bound, ready-to-run query-redis-svc.
pub struct Application {
    server: GrpcServer,
    config: Config,
    model: RedisReadModel,
    runtime: Runtime<RedisReadModel>,
    metrics: TcpListener,
}

impl Application {
    /// Validates the configuration and binds the listener. Redis, RabbitMQ and command-svc are
    /// reached lazily: the service starts (NOT_SERVING) while they are down.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let model = RedisReadModel::connect(&config.redis_url, &config.redis_key_prefix)
            .context("invalid REDIS_URL")?;
        let runtime = Runtime::new(model.clone(), config.projection.runtime(&config.queue_name)?)?;
        let server =
            GrpcServer::bind(config.grpc_listen, config.server.clone(), HEALTH_NAMES).await?;
        let metrics = platform::metrics::bind(config.metrics_listen).await.with_context(|| {
            format!("cannot listen on METRICS_LISTEN {}", config.metrics_listen)
        })?;
        platform::metrics::recorder();
        Ok(Self { server, config, model, runtime, metrics })
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// The port of the metrics endpoint.
    pub fn metrics_port(&self) -> u16 {
        self.metrics.local_addr().map(|a| a.port()).unwrap_or_default()
    }

    /// The read model (tests inspect it).
    pub fn model(&self) -> &RedisReadModel {
        &self.model
    }

    /// Serves until `shutdown`; then stops consuming (finishing and acknowledging the message
    /// in hand), reports NOT_SERVING and drains in-flight calls.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Self { server, config, model, mut runtime, metrics } = self;
        runtime.start(server.health(), HEALTH_NAMES);
        let api = CatalogApi::new(
            model,
            runtime.projector().progress().clone(),
            config.projection.read_your_writes_timeout(),
        );
        let routes = Routes::new(
            CatalogQueryServiceServer::new(api)
                .max_decoding_message_size(config.server.max_request_bytes),
        )
        .add_service(runtime.admin_service());
        tracing::info!(addr = %server.local_addr()?, "query-redis-svc listening");
        let stop = runtime.stop_token();
        let metrics_task = tokio::spawn(platform::metrics::serve(metrics, stop.clone()));
        let drain = async move {
            shutdown.await;
            stop.cancel();
        };
        let served =
            server.serve(routes, policy(), &[course_proto::FILE_DESCRIPTOR_SET], drain).await;
        // Also when the server failed: the projection stops cleanly.
        runtime.shutdown().await;
        let _ = metrics_task.await;
        tracing::info!("query-redis-svc stopped");
        served
    }
}
