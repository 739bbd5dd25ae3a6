//! Builds the application from its configuration and runs it until a shutdown signal.

use std::future::Future;

use anyhow::Context;
use course_proto::v1::course_query_service_server::CourseQueryServiceServer;
use platform::retry::{next_delay, reconnect_backoff};
use platform::server::{Access, Policy};
use projection::host::QueryHost;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

use crate::config::Config;
use crate::grpc::CourseQueryApi;
use crate::store::MongoReadModel;

/// Names under which `grpc.health.v1` reports.
const HEALTH_NAMES: &[&str] = &["", "course.v1.CourseQueryService"];

/// Who may call what. Documents, search, participant pages and counts are public (who is in a
/// course only for its instructor, participants and operators: the handler omits it otherwise);
/// comments are for the instructor and participants (checked by the handler); a user's
/// enrolments for that user; the admin RPCs for operators (added by the host).
pub fn policy() -> Policy {
    Policy::new()
        .service(
            "course.v1.CourseQueryService",
            &["GetCourseDetails", "ListParticipants", "SearchCourses", "GetPlatformStats"],
            Access::Public,
        )
        .service(
            "course.v1.CourseQueryService",
            &["ListCourseComments", "ListUserEnrollments"],
            Access::Authenticated,
        )
}

/// A bound, ready-to-run query service.
pub struct Application {
    host: QueryHost<MongoReadModel>,
}

impl Application {
    /// Validates the configuration, binds the listeners and prepares the clients (lazily: a
    /// MongoDB, RabbitMQ or command-svc that is down does not stop the service from starting;
    /// it reports NOT_SERVING until it can work).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let model = MongoReadModel::connect(&config.mongodb_uri, &config.mongodb_database)
            .await
            .context("invalid MONGODB_URI")?;
        let host = QueryHost::bind(model, "query-mongo-svc", HEALTH_NAMES, &config.service).await?;
        tracing::info!(database = %config.mongodb_database, queue = %config.service.queue_name, "read model in MongoDB");
        Ok(Self { host })
    }

    /// The port actually bound (useful with port 0).
    pub fn port(&self) -> u16 {
        self.host.port()
    }

    /// The port of the metrics endpoint.
    pub fn metrics_port(&self) -> u16 {
        self.host.metrics_port()
    }

    /// The read model's storage.
    pub fn model(&self) -> &MongoReadModel {
        self.host.model()
    }

    /// The projection's progress (tests read its per-replica counts: events consumed,
    /// partitions owned, gap fills).
    pub fn progress(&self) -> &projection::Progress {
        self.host.progress()
    }

    /// Serves until `shutdown` resolves, then stops the consumer (the batch in hand is
    /// finished and acknowledged), reports NOT_SERVING and drains in-flight calls.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let host = self.host;
        let prepare = tokio::spawn(prepare(host.model().clone(), host.stop_token()));
        let api = CourseQueryApi::new(host.read_side());
        let routes = Routes::new(
            CourseQueryServiceServer::new(api).max_decoding_message_size(host.max_request_bytes()),
        );
        let served = host.serve(routes, policy(), shutdown).await;
        let _ = prepare.await;
        served
    }
}

/// Creates the indexes as soon as MongoDB answers (new generations get theirs when they are
/// reserved or first written).
async fn prepare(model: MongoReadModel, stop: CancellationToken) {
    let mut backoff = reconnect_backoff();
    loop {
        let delay = match model.prepare().await {
            Ok(()) => {
                tracing::info!("MongoDB answers; indexes in place");
                return;
            }
            Err(err) => {
                let delay = next_delay(&mut backoff);
                tracing::warn!(error = %err, retry_in = ?delay, "MongoDB not ready");
                delay
            }
        };
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => return,
        }
    }
}
