//! `spawn_env()`: a real command-svc (own PostgreSQL database and exchange) and a real
//! query-mongo-svc (own queue and Mongo database) in this process, driven by their tonic
//! clients.

use course_proto::v1;
use course_proto::v1::course_query_service_client::CourseQueryServiceClient;
use platform::auth::Credential;
use projection::ProjectionArgs;
use query_mongo_svc::Application;
use query_mongo_svc::config::Config;
use query_mongo_svc::store::MongoReadModel;
pub use testkit::assert_code;
pub use testkit::driver::{activate, add_section, comment, complete, join, leave, present};
pub use testkit::events::{position_of, stream};
use testkit::{CommandSvc, Running, ServingStatus, unique};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use tonic::Status;
use uuid::Uuid;

/// MongoDB for the tests (`TEST_MONGODB_URI`).
pub fn mongo_uri() -> String {
    std::env::var("TEST_MONGODB_URI").unwrap_or_else(|_| "mongodb://127.0.0.1:27017".to_owned())
}

/// `host:port` of the test MongoDB.
pub async fn mongo_addr() -> std::net::SocketAddr {
    let uri = mongo_uri();
    let hosts = uri.trim_start_matches("mongodb://");
    let host = hosts.split(['/', '?', ',']).next().unwrap_or(hosts);
    let host = host.rsplit('@').next().unwrap_or(host);
    tokio::net::lookup_host(host).await.expect("resolve").next().expect("an address")
}

/// A database name of its own for one test.
pub fn fresh_database() -> String {
    format!("qm_test_{}", Uuid::new_v4().simple())
}

/// Where a query service reads from.
#[derive(Debug, Clone)]
pub struct QuerySetup {
    pub exchange: String,
    pub queue: String,
    pub database: String,
    pub mongodb_uri: String,
    pub read_your_writes_timeout_ms: u64,
    pub rebuild_lease_ms: u64,
    /// Events per batch at most (prefetch: twice as many).
    pub batch_size: u16,
}

impl QuerySetup {
    /// Its own queue and database on `exchange`.
    pub fn on(exchange: &str) -> Self {
        Self {
            exchange: exchange.to_owned(),
            queue: unique("query-mongo"),
            database: fresh_database(),
            mongodb_uri: mongo_uri(),
            read_your_writes_timeout_ms: 10_000,
            rebuild_lease_ms: 30_000,
            batch_size: ProjectionArgs::new("", "", "").batch_size,
        }
    }
}

/// A query-mongo-svc running in this process (the admin RPCs and health waits come from
/// [`Running`]).
pub struct QueryApp {
    pub setup: QuerySetup,
    /// The replica's own progress: events consumed, partitions owned.
    pub progress: projection::Progress,
    running: Running,
}

impl std::ops::Deref for QueryApp {
    type Target = Running;
    fn deref(&self) -> &Running {
        &self.running
    }
}

impl QueryApp {
    /// A client that sends an operator's token unless a request carries its own.
    pub fn client(&self) -> CourseQueryServiceClient<InterceptedService<Channel, Credential>> {
        CourseQueryServiceClient::with_interceptor(self.channel(), testkit::operator_credential())
    }

    /// A client that sends no token unless a request carries its own.
    pub fn anonymous(&self) -> CourseQueryServiceClient<Channel> {
        CourseQueryServiceClient::new(self.channel())
    }

    /// Graceful stop; the server must exit cleanly.
    pub async fn stop(self) {
        self.running.stop().await
    }

    /// Stops cleanly, then removes what the test created (see [`remove_resources`]).
    pub async fn finish(self) {
        let setup = self.setup.clone();
        self.stop().await;
        remove_resources(&setup).await;
    }
}

/// Removes a query service's queues, exchanges and Mongo database, once every replica using
/// them has stopped.
pub async fn remove_resources(setup: &QuerySetup) {
    if let Ok(model) = MongoReadModel::connect(&setup.mongodb_uri, &setup.database).await {
        let _ = model.database().drop().await;
    }
    let Ok(pool) = messaging::pool(&testkit::rabbitmq_url(), 1) else { return };
    let Ok(connection) = pool.get().await else { return };
    for queue in [setup.queue.clone(), format!("{}.dlq", setup.queue)] {
        if let Ok(channel) = connection.create_channel().await {
            let _ = channel.queue_delete(queue.as_str().into(), Default::default()).await;
        }
    }
    let mut exchanges = vec![format!("{}.dlx", setup.queue), format!("{}.progress", setup.queue)];
    if setup.exchange.starts_with("test.private.") {
        exchanges.push(setup.exchange.clone());
    }
    for exchange in exchanges {
        if let Ok(channel) = connection.create_channel().await {
            let _ = channel.exchange_delete(exchange.as_str().into(), Default::default()).await;
        }
    }
}

/// Starts query-mongo-svc on port 0 and waits until it reports SERVING (consuming, and a
/// generation built).
pub async fn spawn_query(event_store_url: &str, setup: QuerySetup) -> QueryApp {
    start_query(event_store_url, setup, ServingStatus::Serving).await
}

/// Starts query-mongo-svc on port 0 and waits until its health reports `status`.
pub async fn start_query(
    event_store_url: &str,
    setup: QuerySetup,
    status: ServingStatus,
) -> QueryApp {
    let app = Application::build(query_config(event_store_url, &setup))
        .await
        .expect("query-mongo-svc builds");
    let progress = app.progress().clone();
    let running = Running::start(app.port(), |shutdown| app.run_until_stopped(shutdown));
    running.wait_for("course.v1.CourseQueryService", status).await;
    QueryApp { setup, progress, running }
}

/// A query-mongo-svc with a tokio runtime of its own, which [`Crashable::crash`] shuts down at
/// once: every task of the service stops where it is, as if its process were killed.
pub struct Crashable {
    pub query: QueryApp,
    runtime: tokio::runtime::Runtime,
}

impl Crashable {
    pub fn crash(self) {
        self.runtime.shutdown_background();
    }
}

/// [`spawn_query`] in a runtime of its own.
pub async fn spawn_crashable_query(event_store_url: &str, setup: QuerySetup) -> Crashable {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (bound, port) = tokio::sync::oneshot::channel();
    let config = query_config(event_store_url, &setup);
    runtime.spawn(async move {
        let app = Application::build(config).await.expect("query-mongo-svc builds");
        let _ = bound.send((app.port(), app.progress().clone()));
        app.run_until_stopped(std::future::pending()).await
    });
    let (port, progress) = port.await.expect("built");
    let running = Running::remote(port);
    running.wait_for("course.v1.CourseQueryService", ServingStatus::Serving).await;
    Crashable { query: QueryApp { setup, progress, running }, runtime }
}

fn query_config(event_store_url: &str, setup: &QuerySetup) -> Config {
    Config {
        mongodb_uri: setup.mongodb_uri.clone(),
        mongodb_database: setup.database.clone(),
        service: testkit::service_args(
            setup.queue.clone(),
            ProjectionArgs {
                read_your_writes_timeout_ms: setup.read_your_writes_timeout_ms,
                rebuild_lease_ms: setup.rebuild_lease_ms,
                batch_size: setup.batch_size,
                prefetch: setup.batch_size.saturating_mul(2),
                event_store_token: Some(testkit::service_token()),
                ..ProjectionArgs::new(&testkit::rabbitmq_url(), &setup.exchange, event_store_url)
            },
        ),
    }
}

/// command-svc and one query service on its exchange.
pub struct TestEnv {
    pub command: CommandSvc,
    pub query: QueryApp,
}

impl TestEnv {
    /// Stops both services and removes the query service's queues and database.
    pub async fn finish(self) {
        self.query.finish().await;
        self.command.stop().await;
    }
}

pub async fn spawn_env() -> TestEnv {
    let exchange = unique("test.events");
    let command = testkit::spawn_command_svc(&exchange).await;
    let query = spawn_query(&command.url, QuerySetup::on(&exchange)).await;
    TestEnv { command, query }
}

// ---- commands ---------------------------------------------------------------------------

/// Creates a course and returns its id.
pub async fn create(env: &CommandSvc, instructor: Uuid, title: &str, category: &str) -> String {
    create_full(env, instructor, title, "A course", category).await
}

pub async fn create_full(
    env: &CommandSvc,
    instructor: Uuid,
    title: &str,
    description: &str,
    category: &str,
) -> String {
    let request = v1::CreateCourseRequest {
        title: title.into(),
        description: description.into(),
        category: category.into(),
        max_participants: 0,
        ..Default::default()
    };
    testkit::driver::create_course(env, instructor, request).await
}

// ---- reads --------------------------------------------------------------------------------

pub async fn details(query: &QueryApp, course_id: &str, min_version: u64) -> v1::CourseDetails {
    let request =
        v1::GetCourseDetailsRequest { course_id: course_id.into(), min_version: Some(min_version) };
    testkit::until_caught_up(|| {
        let (mut client, request) = (query.client(), request.clone());
        async move { client.get_course_details(request).await }
    })
    .await
    .into_inner()
    .course
    .expect("course")
}

/// Every page of a search; returns the courses in order and the number of pages.
pub async fn search_all(
    query: &QueryApp,
    request: v1::SearchCoursesRequest,
) -> (Vec<v1::CourseDetails>, usize) {
    let mut out = Vec::new();
    let mut pages = 0;
    let mut request = request;
    loop {
        let page =
            query.client().search_courses(request.clone()).await.expect("search").into_inner();
        pages += 1;
        out.extend(page.courses);
        if page.next_page_token.is_empty() {
            return (out, pages);
        }
        request.page_token = page.next_page_token;
        request.min_position = None;
        assert!(pages < 1000, "paging does not end");
    }
}

/// Every comment of a course, page by page.
pub async fn comments_all(
    query: &QueryApp,
    course_id: &str,
    page_size: u32,
    min_version: u64,
) -> (Vec<v1::Comment>, usize) {
    let mut out = Vec::new();
    let mut pages = 0;
    let mut token = String::new();
    loop {
        let page = query
            .client()
            .list_course_comments(v1::ListCourseCommentsRequest {
                course_id: course_id.into(),
                page_size,
                page_token: token,
                min_version: Some(min_version),
            })
            .await
            .expect("comments")
            .into_inner();
        pages += 1;
        out.extend(page.comments);
        if page.next_page_token.is_empty() {
            return (out, pages);
        }
        token = page.next_page_token;
        assert!(pages < 1000, "paging does not end");
    }
}

pub async fn stats(query: &QueryApp, min_position: u64) -> v1::GetPlatformStatsResponse {
    testkit::until_caught_up(|| {
        let mut client = query.client();
        async move {
            let request = v1::GetPlatformStatsRequest { min_position: Some(min_position) };
            client.get_platform_stats(request).await
        }
    })
    .await
    .into_inner()
}

/// Everything a client can read about `course_ids`, for comparing two read models.
#[derive(Debug, PartialEq)]
pub struct Dump {
    pub courses: Vec<v1::CourseDetails>,
    pub comments: Vec<Vec<v1::Comment>>,
    pub search: Vec<v1::CourseDetails>,
    pub stats: v1::GetPlatformStatsResponse,
}

/// Reads everything once the read model has applied `min_position`.
pub async fn dump(query: &QueryApp, course_ids: &[String], min_position: u64) -> Dump {
    let stats = stats(query, min_position).await;
    let mut courses = Vec::new();
    let mut comments = Vec::new();
    for id in course_ids {
        courses.push(details(query, id, 0).await);
        comments.push(comments_all(query, id, 7, 0).await.0);
    }
    let search =
        search_all(query, v1::SearchCoursesRequest { page_size: 7, ..Default::default() }).await.0;
    Dump { courses, comments, search, stats }
}

/// The fields named by a status's `google.rpc.BadRequest`.
pub fn violated_fields(status: &Status) -> Vec<String> {
    use tonic_types::StatusExt;
    let mut fields: Vec<String> = status
        .get_details_bad_request()
        .expect("INVALID_ARGUMENT carries a BadRequest")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    fields.sort();
    fields
}
