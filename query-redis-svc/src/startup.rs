//! Builds the service from its configuration and runs it until a shutdown signal.

use std::future::Future;

use anyhow::Context;
use course_proto::v1::catalog_query_service_server::CatalogQueryServiceServer;
use platform::server::{Access, Policy};
use projection::host::QueryHost;
use tonic::service::Routes;

use crate::config::Config;
use crate::grpc::CatalogApi;
use crate::store::RedisReadModel;

/// Names under which `grpc.health.v1` reports.
pub const HEALTH_NAMES: &[&str] = &["", "course.v1.CatalogQueryService"];

/// Who may call what. Summaries and counts are public; who is in a course is for its
/// instructor and participants (checked by the handler); a user's enrolments for that user;
/// the admin RPCs for operators (added by the host).
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
}

/// A bound, ready-to-run query-redis-svc.
pub struct Application {
    host: QueryHost<RedisReadModel>,
}

impl Application {
    /// Validates the configuration and binds the listeners. Redis, RabbitMQ and command-svc are
    /// reached lazily: the service starts (NOT_SERVING) while they are down.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let model = RedisReadModel::connect(&config.redis_url, &config.redis_key_prefix)
            .context("invalid REDIS_URL")?;
        let host = QueryHost::bind(model, "query-redis-svc", HEALTH_NAMES, &config.service).await?;
        Ok(Self { host })
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.host.port()
    }

    /// The port of the metrics endpoint.
    pub fn metrics_port(&self) -> u16 {
        self.host.metrics_port()
    }

    /// The read model (tests inspect it).
    pub fn model(&self) -> &RedisReadModel {
        self.host.model()
    }

    /// The projection's progress (tests read its per-replica counts: events consumed,
    /// partitions owned, gap fills).
    pub fn progress(&self) -> &projection::Progress {
        self.host.progress()
    }

    /// Serves until `shutdown`; then stops consuming (finishing and acknowledging the batch
    /// in hand), reports NOT_SERVING and drains in-flight calls.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let host = self.host;
        let api = CatalogApi::new(host.read_side());
        let routes = Routes::new(
            CatalogQueryServiceServer::new(api).max_decoding_message_size(host.max_request_bytes()),
        );
        host.serve(routes, policy(), shutdown).await
    }
}
