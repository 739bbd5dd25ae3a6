use std::collections::BTreeMap;
use std::time::Duration;

use course_proto::v1::catalog_query_service_client::CatalogQueryServiceClient;
use course_proto::v1::{self, CourseSummary};
use platform::auth::Credential;
use projection::ProjectionArgs;
use query_redis_svc::Application;
use query_redis_svc::config::Config;
pub use testkit::driver::{
    activate, add_section, comment, create_course, create_request, join, leave, present,
};
use testkit::{CommandSvc, Running, ServingStatus, as_user, spawn_command_svc, unique};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use uuid::Uuid;

pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Configuration of a query-redis-svc with its own key prefix and queue.
pub fn config(command: &CommandSvc, exchange: &str) -> Config {
    config_for(&command.url, exchange)
}

/// [`config`] with the event store at `event_store_url`.
pub fn config_for(event_store_url: &str, exchange: &str) -> Config {
    Config {
        redis_url: redis_url(),
        redis_key_prefix: format!("{}:", unique("test")),
        service: testkit::service_args(
            unique("test.catalog"),
            ProjectionArgs {
                delivery_limit: 3,
                prefetch: 32,
                read_your_writes_timeout_ms: 10_000,
                event_store_token: Some(testkit::service_token()),
                ..ProjectionArgs::new(&testkit::rabbitmq_url(), exchange, event_store_url)
            },
        ),
    }
}

/// [`config`] with its own batching: `size` events at most, waiting `linger_ms` for more.
pub fn batched_config(command: &CommandSvc, exchange: &str, size: u16, linger_ms: u64) -> Config {
    let mut config = config(command, exchange);
    config.service.projection.batch_size = size;
    config.service.projection.batch_linger_ms = linger_ms;
    config.service.projection.prefetch = size.saturating_mul(2).max(2);
    config
}

/// A query-redis-svc running in this process (the admin RPCs and health waits come from
/// [`Running`]).
pub struct Catalog {
    pub config: Config,
    /// The replica's own progress: events consumed, partitions owned, gap fills.
    pub progress: projection::Progress,
    pub metrics_port: u16,
    pub port: u16,
    running: Running,
}

impl std::ops::Deref for Catalog {
    type Target = Running;
    fn deref(&self) -> &Running {
        &self.running
    }
}

/// Starts query-redis-svc with `config` and waits until it serves.
pub async fn spawn_catalog(config: Config) -> Catalog {
    start_catalog(config, ServingStatus::Serving).await
}

/// Starts query-redis-svc with `config` and waits until its health reports `status`.
pub async fn start_catalog(config: Config, status: ServingStatus) -> Catalog {
    let app = Application::build(config.clone()).await.expect("query-redis-svc builds");
    let (port, metrics_port) = (app.port(), app.metrics_port());
    let progress = app.progress().clone();
    let running = Running::start(port, |shutdown| app.run_until_stopped(shutdown));
    running.wait_for("course.v1.CatalogQueryService", status).await;
    Catalog { config, progress, metrics_port, port, running }
}

/// A query-redis-svc with a tokio runtime of its own, which [`Crashable::crash`] shuts down
/// at once: every task of the service stops where it is, as if its process were killed.
pub struct Crashable {
    pub catalog: Catalog,
    runtime: tokio::runtime::Runtime,
}

impl Crashable {
    pub fn crash(self) {
        self.runtime.shutdown_background();
    }
}

/// Starts query-redis-svc with `config` in a runtime of its own and waits until it serves.
pub async fn spawn_crashable_catalog(config: Config) -> Crashable {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (ports, bound) = tokio::sync::oneshot::channel();
    let app_config = config.clone();
    runtime.spawn(async move {
        let app = Application::build(app_config).await.expect("query-redis-svc builds");
        let _ = ports.send((app.port(), app.metrics_port(), app.progress().clone()));
        app.run_until_stopped(std::future::pending()).await
    });
    let (port, metrics_port, progress) = bound.await.expect("built");
    let running = Running::remote(port);
    running.wait_for("course.v1.CatalogQueryService", ServingStatus::Serving).await;
    Crashable { catalog: Catalog { config, progress, metrics_port, port, running }, runtime }
}

/// command-svc publishing to a fresh exchange, and a catalog consuming it.
pub async fn spawn_mesh() -> (CommandSvc, Catalog) {
    let exchange = unique("test.events");
    let command = spawn_command_svc(&exchange).await;
    let catalog = spawn_catalog(config(&command, &exchange)).await;
    (command, catalog)
}

impl Catalog {
    /// Stops the service as SIGTERM does (drain, batches in hand finished) and waits for it.
    pub async fn stop(self) {
        self.running.stop().await;
    }

    /// A client that sends an operator's token unless a request carries its own.
    pub fn client(&self) -> CatalogQueryServiceClient<InterceptedService<Channel, Credential>> {
        CatalogQueryServiceClient::with_interceptor(self.channel(), testkit::operator_credential())
    }

    /// A client that sends no token unless a request carries its own.
    pub fn anonymous(&self) -> CatalogQueryServiceClient<Channel> {
        CatalogQueryServiceClient::new(self.channel())
    }

    /// The course once the catalog has applied `version` of it.
    pub async fn course_at(&self, course_id: &str, version: u64) -> CourseSummary {
        let request =
            v1::GetCourseRequest { course_id: course_id.to_owned(), min_version: Some(version) };
        testkit::until_caught_up(|| {
            let (mut client, request) = (self.client(), request.clone());
            async move { client.get_course(request).await }
        })
        .await
        .into_inner()
        .course
        .expect("course")
    }

    /// Waits until this catalog serves the same as `other` (partitions apply their batches
    /// independently, so one course caught up says nothing of the others); fails with the
    /// difference after 60 s.
    pub async fn assert_agrees_with(&self, other: &Catalog) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let (mine, theirs) = (self.snapshot().await, other.snapshot().await);
            if mine == theirs {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                assert_eq!(mine, theirs, "the two catalogs never agreed");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Everything the catalog serves, through its RPCs, for comparing read models.
    pub async fn snapshot(&self) -> Snapshot {
        let mut client = self.client();
        let mut courses = BTreeMap::new();
        let mut token = String::new();
        loop {
            let page = client
                .list_courses(v1::ListCoursesRequest {
                    page_size: 100,
                    page_token: token.clone(),
                    ..Default::default()
                })
                .await
                .expect("list")
                .into_inner();
            for course in page.courses {
                courses.insert(course.course_id.clone(), course);
            }
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        let mut participants = BTreeMap::new();
        let mut enrolments: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for id in courses.keys() {
            let users: Vec<String> =
                self.participants(id).await.into_iter().map(|p| p.user_id).collect();
            for user in &users {
                if !enrolments.contains_key(user) {
                    let user_id = Uuid::parse_str(user).expect("uuid");
                    let mine = client
                        .list_user_courses(as_user(
                            user_id,
                            v1::ListUserCoursesRequest { page_size: 100, ..Default::default() },
                        ))
                        .await
                        .expect("user courses")
                        .into_inner();
                    enrolments.insert(
                        user.clone(),
                        mine.courses
                            .into_iter()
                            .filter_map(|c| c.course.map(|c| c.course_id))
                            .collect(),
                    );
                }
            }
            participants.insert(id.clone(), users);
        }
        let popular = client
            .list_popular_courses(v1::ListPopularCoursesRequest {
                limit: 100,
                ..Default::default()
            })
            .await
            .expect("popular")
            .into_inner()
            .courses
            .into_iter()
            .map(|c| (c.participant_count, c.course_id))
            .collect();
        Snapshot { courses, participants, enrolments, popular }
    }

    pub async fn participants(&self, course_id: &str) -> Vec<v1::Participant> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let page = self
                .client()
                .list_course_participants(v1::ListCourseParticipantsRequest {
                    course_id: course_id.to_owned(),
                    page_size: 7,
                    page_token: token.clone(),
                    min_version: None,
                })
                .await
                .expect("participants")
                .into_inner();
            out.extend(page.participants);
            if page.next_page_token.is_empty() {
                return out;
            }
            token = page.next_page_token;
        }
    }
}

/// What a catalog serves.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    pub courses: BTreeMap<String, CourseSummary>,
    pub participants: BTreeMap<String, Vec<String>>,
    pub enrolments: BTreeMap<String, Vec<String>>,
    pub popular: Vec<(u32, String)>,
}

/// A small mixed workload; returns (course id, final version) of each course.
pub async fn workload(command: &CommandSvc, courses: usize, users: usize) -> Vec<(String, u64)> {
    let instructor = Uuid::now_v7();
    let members: Vec<Uuid> = (0..users).map(|_| Uuid::now_v7()).collect();
    let mut out = Vec::new();
    for i in 0..courses {
        let mut request = create_request(0);
        request.title = format!("Course {i}");
        let id = create_course(command, instructor, request).await;
        let mut version = present(command, instructor, &id).await;
        for (n, user) in members.iter().enumerate().filter(|(n, _)| n % (i + 1) == 0) {
            version = join(command, *user, &id).await;
            if n % 3 == 0 {
                version = leave(command, *user, &id).await;
            }
        }
        out.push((id, version));
    }
    out
}

pub const WAIT: Duration = Duration::from_secs(60);
