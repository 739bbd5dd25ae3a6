//! Builds the application from its configuration and runs it until a shutdown signal.

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use course_proto::v1::course_query_service_server::CourseQueryServiceServer;
use platform::auth::Authenticator;
use projection::runtime::Runtime;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::config::Config;
use crate::grpc::CourseQueryApi;
use crate::store::MongoReadModel;

/// Names under which `grpc.health.v1` reports.
const HEALTH_NAMES: &[&str] = &["", "course.v1.CourseQueryService"];

/// A bound, ready-to-run query service.
pub struct Application {
    listener: TcpListener,
    config: Config,
    model: MongoReadModel,
    auth: Authenticator,
    runtime: Runtime<MongoReadModel>,
    metrics: TcpListener,
}

impl Application {
    /// Validates the configuration, binds the listener and prepares the clients (lazily: a
    /// MongoDB, RabbitMQ or command-svc that is down does not stop the service from starting;
    /// it reports NOT_SERVING until it can work).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let auth = config.auth.authenticator()?;
        let model = MongoReadModel::connect(&config.mongodb_uri, &config.mongodb_database)
            .await
            .context("invalid MONGODB_URI")?;
        let runtime = Runtime::new(model.clone(), config.projection.runtime(&config.queue_name))?;
        let listener = TcpListener::bind(config.grpc_listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.grpc_listen))?;
        let metrics = platform::metrics::bind(config.metrics_listen).await.with_context(|| {
            format!("cannot listen on METRICS_LISTEN {}", config.metrics_listen)
        })?;
        platform::metrics::recorder();
        Ok(Self { listener, config, model, auth, runtime, metrics })
    }

    /// The port actually bound (useful with port 0).
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or_default()
    }

    /// The port of the metrics endpoint.
    pub fn metrics_port(&self) -> u16 {
        self.metrics.local_addr().map(|a| a.port()).unwrap_or_default()
    }

    /// The read model's storage.
    pub fn model(&self) -> &MongoReadModel {
        &self.model
    }

    /// Serves until `shutdown` resolves, then reports NOT_SERVING, drains in-flight calls and
    /// stops the consumer (the message in hand is finished and acknowledged).
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Self { listener, config, model, auth, mut runtime, metrics } = self;
        let (health, health_service) = tonic_health::server::health_reporter();
        set_health(&health, ServingStatus::NotServing).await;
        runtime.start(health.clone(), HEALTH_NAMES);
        let prepare = tokio::spawn(prepare(model.clone(), runtime.stop_token()));
        let metrics = tokio::spawn(platform::metrics::serve(metrics, runtime.stop_token()));

        let api = CourseQueryApi::new(
            model,
            runtime.projector().progress().clone(),
            auth,
            config.projection.read_your_writes_timeout(),
        );
        let (reflection_v1, reflection_v1alpha) =
            platform::grpc::reflection_services(&[course_proto::FILE_DESCRIPTOR_SET])?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, database = %config.mongodb_database, queue = %config.queue_name, "query-mongo-svc listening");
        let drain = {
            let health = health.clone();
            let stop = runtime.stop_token();
            async move {
                shutdown.await;
                // Stop consuming first (the message in hand is finished and acknowledged).
                stop.cancel();
                set_health(&health, ServingStatus::NotServing).await;
                tracing::info!("draining in-flight calls");
            }
        };
        let served = Server::builder()
            .concurrency_limit_per_connection(256)
            .trace_fn(platform::grpc::request_span)
            .layer(platform::metrics::GrpcMetricsLayer)
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(CourseQueryServiceServer::new(api))
            .add_service(runtime.admin_service())
            .serve_with_incoming_shutdown(platform::grpc::incoming(listener), drain)
            .await
            .context("gRPC server failed");
        runtime.shutdown().await;
        let _ = prepare.await;
        let _ = metrics.await;
        tracing::info!("query-mongo-svc stopped");
        served
    }
}

async fn set_health(health: &HealthReporter, status: ServingStatus) {
    platform::grpc::set_health(health, HEALTH_NAMES, status).await;
}

/// Creates the indexes as soon as MongoDB answers (new generations get theirs when they are
/// reserved or first written).
async fn prepare(model: MongoReadModel, stop: CancellationToken) {
    let mut delay = Duration::from_millis(200);
    loop {
        match model.prepare().await {
            Ok(()) => {
                tracing::info!("MongoDB answers; indexes in place");
                return;
            }
            Err(err) => tracing::warn!(error = %err, retry_in = ?delay, "MongoDB not ready"),
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => return,
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
