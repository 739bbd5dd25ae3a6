//! Builds the application from its configuration and runs it until a shutdown signal.

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use course_proto::v1::course_query_service_server::CourseQueryServiceServer;
use platform::auth::ROLE_OPERATOR;
use platform::server::{Access, GrpcServer, Policy};
use projection::runtime::Runtime;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

use crate::config::Config;
use crate::grpc::CourseQueryApi;
use crate::store::MongoReadModel;

/// Names under which `grpc.health.v1` reports.
const HEALTH_NAMES: &[&str] = &["", "course.v1.CourseQueryService"];

/// Who may call what. Documents, search and counts are public (a document's participant list
/// only for its instructor, participants and operators: the handler omits it otherwise);
/// comments are for the instructor and participants (checked by the handler); a user's
/// enrolments for that user; the admin RPCs for operators.
pub fn policy() -> Policy {
    Policy::new()
        .service(
            "course.v1.CourseQueryService",
            &["GetCourseDetails", "SearchCourses", "GetPlatformStats"],
            Access::Public,
        )
        .service(
            "course.v1.CourseQueryService",
            &["ListCourseComments", "ListUserEnrollments"],
            Access::Authenticated,
        )
        .service(
            "course.v1.ProjectionAdminService",
            &["GetProjectionStatus", "RebuildReadModel", "ListDeadLetters", "ReplayDeadLetters"],
            Access::Roles(&[ROLE_OPERATOR]),
        )
}

/// A bound, ready-to-run query service.
pub struct Application {
    server: GrpcServer,
    config: Config,
    model: MongoReadModel,
    runtime: Runtime<MongoReadModel>,
    metrics: TcpListener,
}

impl Application {
    /// Validates the configuration, binds the listener and prepares the clients (lazily: a
    /// MongoDB, RabbitMQ or command-svc that is down does not stop the service from starting;
    /// it reports NOT_SERVING until it can work).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let model = MongoReadModel::connect(&config.mongodb_uri, &config.mongodb_database)
            .await
            .context("invalid MONGODB_URI")?;
        let runtime = Runtime::new(model.clone(), config.projection.runtime(&config.queue_name)?)?;
        let server =
            GrpcServer::bind(config.grpc_listen, config.server.clone(), HEALTH_NAMES).await?;
        let metrics = platform::metrics::bind(config.metrics_listen).await.with_context(|| {
            format!("cannot listen on METRICS_LISTEN {}", config.metrics_listen)
        })?;
        platform::metrics::recorder();
        Ok(Self { server, config, model, runtime, metrics })
    }

    /// The port actually bound (useful with port 0).
    pub fn port(&self) -> u16 {
        self.server.port()
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
        let Self { server, config, model, mut runtime, metrics } = self;
        runtime.start(server.health(), HEALTH_NAMES);
        let prepare = tokio::spawn(prepare(model.clone(), runtime.stop_token()));
        let metrics = tokio::spawn(platform::metrics::serve(metrics, runtime.stop_token()));

        let api = CourseQueryApi::new(
            model,
            runtime.projector().progress().clone(),
            config.projection.read_your_writes_timeout(),
        );
        let routes = Routes::new(
            CourseQueryServiceServer::new(api)
                .max_decoding_message_size(config.server.max_request_bytes),
        )
        .add_service(runtime.admin_service());
        tracing::info!(addr = %server.local_addr()?, database = %config.mongodb_database, queue = %config.queue_name, "query-mongo-svc listening");
        let drain = {
            let stop = runtime.stop_token();
            async move {
                shutdown.await;
                // Stop consuming first (the message in hand is finished and acknowledged).
                stop.cancel();
            }
        };
        let served =
            server.serve(routes, policy(), &[course_proto::FILE_DESCRIPTOR_SET], drain).await;
        runtime.shutdown().await;
        let _ = prepare.await;
        let _ = metrics.await;
        tracing::info!("query-mongo-svc stopped");
        served
    }
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
