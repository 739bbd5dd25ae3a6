//! `spawn_env()`: a real command-svc (own PostgreSQL database and exchange) and a real
//! query-mongo-svc (own queue and Mongo database) in this process, driven by their tonic
//! clients.

use std::time::Duration;

use course_proto::v1::course_query_service_client::CourseQueryServiceClient;
use course_proto::v1::projection_admin_service_client::ProjectionAdminServiceClient;
use course_proto::v1::{self, EventEnvelope};
use futures::StreamExt;
use platform::auth::Credential;
use platform::telemetry::LogFormat;
use projection::ProjectionArgs;
use query_mongo_svc::Application;
use query_mongo_svc::config::Config;
use query_mongo_svc::store::MongoReadModel;
use testkit::{CommandSvc, ServingStatus, as_user, unique, wait_for_health};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

fn operator() -> Credential {
    Credential::Token(testkit::operator_token())
}
use tonic::{Code, Status};
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
        }
    }
}

/// A query-mongo-svc running in this process.
pub struct QueryApp {
    pub setup: QuerySetup,
    channel: Channel,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl QueryApp {
    /// A client that sends an operator's token unless a request carries its own.
    pub fn client(&self) -> CourseQueryServiceClient<InterceptedService<Channel, Credential>> {
        CourseQueryServiceClient::with_interceptor(self.channel.clone(), operator())
    }

    /// A client that sends no token unless a request carries its own.
    pub fn anonymous(&self) -> CourseQueryServiceClient<Channel> {
        CourseQueryServiceClient::new(self.channel.clone())
    }

    /// The admin RPCs, as an operator.
    pub fn admin(&self) -> ProjectionAdminServiceClient<InterceptedService<Channel, Credential>> {
        ProjectionAdminServiceClient::with_interceptor(self.channel.clone(), operator())
    }

    /// The admin RPCs with no token.
    pub fn anonymous_admin(&self) -> ProjectionAdminServiceClient<Channel> {
        ProjectionAdminServiceClient::new(self.channel.clone())
    }

    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Graceful stop; the server must exit cleanly.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("query task").expect("query-mongo-svc ran cleanly");
        }
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

impl Drop for QueryApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts query-mongo-svc on port 0 and waits until it reports SERVING (consuming, and a
/// generation built).
pub async fn spawn_query(event_store_url: &str, setup: QuerySetup) -> QueryApp {
    let app = Application::build(query_config(event_store_url, &setup))
        .await
        .expect("query-mongo-svc builds");

    let url = format!("http://127.0.0.1:{}", app.port());
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until_stopped(async move {
        let _ = stop_rx.await;
    }));
    let channel = Channel::from_shared(url).expect("uri").connect_lazy();
    wait_for_health(&channel, "course.v1.CourseQueryService", ServingStatus::Serving).await;
    QueryApp { setup, channel, stop: Some(stop_tx), task: Some(task) }
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
    let (bound, port) = oneshot::channel();
    let config = query_config(event_store_url, &setup);
    runtime.spawn(async move {
        let app = Application::build(config).await.expect("query-mongo-svc builds");
        let _ = bound.send(app.port());
        app.run_until_stopped(std::future::pending()).await
    });
    let url = format!("http://127.0.0.1:{}", port.await.expect("built"));
    let channel = Channel::from_shared(url).expect("uri").connect_lazy();
    wait_for_health(&channel, "course.v1.CourseQueryService", ServingStatus::Serving).await;
    Crashable { query: QueryApp { setup, channel, stop: None, task: None }, runtime }
}

fn query_config(event_store_url: &str, setup: &QuerySetup) -> Config {
    Config {
        mongodb_uri: setup.mongodb_uri.clone(),
        mongodb_database: setup.database.clone(),
        queue_name: setup.queue.clone(),
        grpc_listen: "127.0.0.1:0".parse().expect("addr"),
        server: testkit::server_args(),
        log_format: LogFormat::Text,
        projection: ProjectionArgs {
            read_your_writes_timeout_ms: setup.read_your_writes_timeout_ms,
            rebuild_lease_ms: setup.rebuild_lease_ms,
            event_store_token: Some(testkit::service_token()),
            ..ProjectionArgs::new(&testkit::rabbitmq_url(), &setup.exchange, event_store_url)
        },
        metrics_listen: "127.0.0.1:0".parse().expect("addr"),
    }
}

/// Polls the projection status until `done` holds for it (two minutes at most).
pub async fn status_until(
    query: &QueryApp,
    what: &str,
    done: impl Fn(&v1::GetProjectionStatusResponse) -> bool,
) -> v1::GetProjectionStatusResponse {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let status = query
            .admin()
            .get_projection_status(v1::GetProjectionStatusRequest {})
            .await
            .expect("status")
            .into_inner();
        if done(&status) {
            return status;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: still {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
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

/// command-svc, and a query service on a private exchange that only the test publishes to:
/// the test decides what the consumer receives, and in which order.
pub async fn spawn_private_env() -> TestEnv {
    let command = testkit::spawn_command_svc(&unique("test.events")).await;
    let query = spawn_query(&command.url, QuerySetup::on(&unique("test.private"))).await;
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
    env.commands()
        .create_course(as_user(
            instructor,
            v1::CreateCourseRequest {
                title: title.into(),
                description: description.into(),
                category: category.into(),
                max_participants: 0,
                ..Default::default()
            },
        ))
        .await
        .expect("course created")
        .into_inner()
        .course_id
}

pub async fn present(env: &CommandSvc, instructor: Uuid, course_id: &str) -> u64 {
    env.commands()
        .present_course(as_user(
            instructor,
            v1::PresentCourseRequest { course_id: course_id.into(), ..Default::default() },
        ))
        .await
        .expect("presented")
        .into_inner()
        .version
}

pub async fn activate(env: &CommandSvc, instructor: Uuid, course_id: &str) -> u64 {
    env.commands()
        .activate_course(as_user(
            instructor,
            v1::ActivateCourseRequest { course_id: course_id.into(), ..Default::default() },
        ))
        .await
        .expect("activated")
        .into_inner()
        .version
}

pub async fn complete(env: &CommandSvc, instructor: Uuid, course_id: &str) -> u64 {
    env.commands()
        .complete_course(as_user(
            instructor,
            v1::CompleteCourseRequest { course_id: course_id.into(), ..Default::default() },
        ))
        .await
        .expect("completed")
        .into_inner()
        .version
}

pub async fn join(env: &CommandSvc, user: Uuid, course_id: &str) -> u64 {
    env.commands()
        .join_course(as_user(
            user,
            v1::JoinCourseRequest { course_id: course_id.into(), ..Default::default() },
        ))
        .await
        .expect("joined")
        .into_inner()
        .version
}

pub async fn leave(env: &CommandSvc, user: Uuid, course_id: &str) -> u64 {
    env.commands()
        .leave_course(as_user(
            user,
            v1::LeaveCourseRequest { course_id: course_id.into(), ..Default::default() },
        ))
        .await
        .expect("left")
        .into_inner()
        .version
}

/// Posts a comment; returns (version, comment id).
pub async fn comment(env: &CommandSvc, user: Uuid, course_id: &str, text: &str) -> (u64, String) {
    let response = env
        .commands()
        .comment_course(as_user(
            user,
            v1::CommentCourseRequest {
                course_id: course_id.into(),
                text: text.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("commented")
        .into_inner();
    (response.version, response.comment_id)
}

pub async fn add_section(env: &CommandSvc, instructor: Uuid, course_id: &str, title: &str) -> u64 {
    env.commands()
        .add_section(as_user(
            instructor,
            v1::AddSectionRequest {
                course_id: course_id.into(),
                title: title.into(),
                description: format!("About {title}"),
                video_url: format!("https://videos.example/{}.mp4", title.replace(' ', "-")),
                ..Default::default()
            },
        ))
        .await
        .expect("section added")
        .into_inner()
        .version
}

// ---- the event store ----------------------------------------------------------------------

/// Every event up to and including (course_id, version), once it is sequenced (followed
/// through ReadAll, so there is no polling).
pub async fn events_until(env: &CommandSvc, course_id: &str, version: u64) -> Vec<EventEnvelope> {
    let read = async {
        let mut stream = env
            .event_store()
            .read_all(v1::ReadAllRequest { from_position: 0, max_count: 0, follow: true })
            .await
            .expect("read all")
            .into_inner();
        let mut out = Vec::new();
        while let Some(item) = stream.next().await {
            let envelope = item.expect("event").event.expect("envelope");
            let last = envelope.course_id == course_id && envelope.version == version;
            out.push(envelope);
            if last {
                return out;
            }
        }
        panic!("ReadAll ended before {course_id} v{version}");
    };
    tokio::time::timeout(Duration::from_secs(30), read).await.expect("event sequenced in time")
}

/// The global position of (course_id, version): a `min_position` that covers it and
/// everything committed before it.
pub async fn position_of(env: &CommandSvc, course_id: &str, version: u64) -> u64 {
    events_until(env, course_id, version).await.last().map(|e| e.global_position).unwrap_or(0)
}

/// Every event of a course.
pub async fn stream(env: &CommandSvc, course_id: &str) -> Vec<EventEnvelope> {
    let mut stream = env
        .event_store()
        .read_stream(v1::ReadStreamRequest {
            course_id: course_id.into(),
            from_version: 0,
            max_count: 0,
        })
        .await
        .expect("read stream")
        .into_inner();
    let mut out = Vec::new();
    while let Some(item) = stream.next().await {
        out.push(item.expect("event").event.expect("envelope"));
    }
    out
}

// ---- reads --------------------------------------------------------------------------------

pub async fn details(query: &QueryApp, course_id: &str, min_version: u64) -> v1::CourseDetails {
    query
        .client()
        .get_course_details(v1::GetCourseDetailsRequest {
            course_id: course_id.into(),
            min_version: Some(min_version),
        })
        .await
        .expect("course details")
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
    query
        .client()
        .get_platform_stats(v1::GetPlatformStatsRequest { min_position: Some(min_position) })
        .await
        .expect("stats")
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

/// Asserts the gRPC code.
pub fn assert_code<T: std::fmt::Debug>(result: Result<T, Status>, code: Code) -> Status {
    match result {
        Ok(value) => panic!("expected {code:?}, got Ok({value:?})"),
        Err(status) => {
            assert_eq!(status.code(), code, "unexpected status: {status:?}");
            status
        }
    }
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

/// Waits until a rebuild into `generation` has switched readers over (the projection status
/// is polled: the switch has no notification of its own).
pub async fn wait_for_switch(query: &QueryApp, generation: u32) {
    let poll = async {
        loop {
            let status = query
                .admin()
                .get_projection_status(v1::GetProjectionStatusRequest {})
                .await
                .expect("status")
                .into_inner();
            if status.active_generation == generation && status.building_generation == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(120), poll).await.expect("rebuild switched over");
}
