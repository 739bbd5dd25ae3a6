//! Builds the service from its configuration and runs it until a shutdown signal.

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use course_proto::v1::catalog_query_service_server::CatalogQueryServiceServer;
use platform::auth::Authenticator;
use projection::runtime::Runtime;
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic_health::ServingStatus;

use crate::config::Config;
use crate::grpc::CatalogApi;
use crate::store::RedisReadModel;

/// Names under which `grpc.health.v1` reports.
pub const HEALTH_NAMES: &[&str] = &["", "course.v1.CatalogQueryService"];

/// A bound, ready-to-run query-redis-svc.
pub struct Application {
    listener: TcpListener,
    config: Config,
    model: RedisReadModel,
    auth: Authenticator,
    metrics: TcpListener,
}

impl Application {
    /// Validates the configuration and binds the listener. Redis, RabbitMQ and command-svc are
    /// reached lazily: the service starts (NOT_SERVING) while they are down.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let auth = config.auth.authenticator()?;
        let model = RedisReadModel::connect(&config.redis_url, &config.redis_key_prefix)
            .context("invalid REDIS_URL")?;
        let listener = TcpListener::bind(config.grpc_listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.grpc_listen))?;
        let metrics = platform::metrics::bind(config.metrics_listen).await.with_context(|| {
            format!("cannot listen on METRICS_LISTEN {}", config.metrics_listen)
        })?;
        platform::metrics::recorder();
        Ok(Self { listener, config, model, auth, metrics })
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or_default()
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
        let Self { listener, config, model, auth, metrics } = self;
        let (health, health_service) = tonic_health::server::health_reporter();
        platform::grpc::set_health(&health, HEALTH_NAMES, ServingStatus::NotServing).await;
        let mut runtime =
            Runtime::new(model.clone(), config.projection.runtime(&config.queue_name))?;
        runtime.start(health.clone(), HEALTH_NAMES);
        let api = CatalogApi::new(
            model,
            runtime.projector().progress().clone(),
            auth,
            config.projection.read_your_writes_timeout(),
        );
        let (reflection_v1, reflection_v1alpha) =
            platform::grpc::reflection_services(&[course_proto::FILE_DESCRIPTOR_SET])?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "query-redis-svc listening");
        let stop = runtime.stop_token();
        let metrics_task = tokio::spawn(platform::metrics::serve(metrics, stop.clone()));
        let drain = async move {
            shutdown.await;
            stop.cancel();
            platform::grpc::set_health(&health, HEALTH_NAMES, ServingStatus::NotServing).await;
            tracing::info!("draining in-flight calls");
        };
        Server::builder()
            .timeout(Duration::from_secs(30))
            .trace_fn(platform::grpc::request_span)
            .layer(platform::metrics::GrpcMetricsLayer)
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(CatalogQueryServiceServer::new(api).max_decoding_message_size(64 * 1024))
            .add_service(runtime.admin_service())
            .serve_with_incoming_shutdown(platform::grpc::incoming(listener), drain)
            .await
            .context("gRPC server failed")?;
        runtime.shutdown().await;
        let _ = metrics_task.await;
        tracing::info!("query-redis-svc stopped");
        Ok(())
    }
}
