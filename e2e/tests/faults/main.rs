//! The fault test: mixed commands from several clients while every service is killed and
//! restarted and every connection to the broker, the database and the read models' storages
//! is cut; afterwards both read models must agree with the event store (the audit reports no
//! difference), every acknowledged command must be in the store, and no refused command may
//! have been logged at ERROR.
//!
//! What "killed" models: each service runs in a tokio runtime of its own and reaches
//! PostgreSQL, RabbitMQ, Redis and MongoDB through TCP proxies of its own. A kill cuts those
//! proxies (every connection of the "process" drops at once, as the kernel does for a SIGKILLed
//! process: the broker requeues unacknowledged deliveries, PostgreSQL aborts open
//! transactions) and shuts the runtime down without any graceful drain (in-flight RPCs and
//! consumers are dropped mid-await; no shutdown code runs). The restart builds a new instance
//! on the same database, queue and (for command-svc) port. Not modelled: the loss of data the
//! operating system had not yet written (the servers' own durability covers that).
//!
//! The clients behave as the README asks: every command carries a `command_id`, and a command
//! that fails with a transient status (UNAVAILABLE, or an answer lost with the connection) is
//! sent again with the same id, which yields the first outcome if it had been committed.
//!
//! This test has its own binary: it installs the process's tracing subscriber to see every
//! ERROR event.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use course_proto::v1;
use course_proto::v1::course_command_service_client::CourseCommandServiceClient;
use futures::StreamExt;
use platform::auth::Credential;
use platform::telemetry::LogFormat;
use projection::ProjectionArgs;
use sea_orm::{ConnectionTrait, Database};
use testkit::{ServingStatus, TcpProxy, as_user, unique, wait_for_health};
use tokio::sync::{oneshot, watch};
use tonic::transport::Channel;
use tonic::{Code, Status};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use uuid::Uuid;

// ---- ERROR events of the whole process ---------------------------------------------------

/// Every ERROR event, as `target: field=value ...`.
#[derive(Clone, Default)]
struct ErrorEvents(Arc<Mutex<Vec<String>>>);

struct Fields<'a>(&'a mut String);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, "{}={value:?} ", field.name());
    }
}

impl<S: tracing::Subscriber> Layer<S> for ErrorEvents {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if *event.metadata().level() == tracing::Level::ERROR {
            let mut text = format!("{}: ", event.metadata().target());
            event.record(&mut Fields(&mut text));
            if let Ok(mut events) = self.0.lock() {
                events.push(text);
            }
        }
    }
}

impl ErrorEvents {
    /// Installs the process's subscriber: this layer sees every event; the printed log is
    /// filtered by RUST_LOG (default `warn`).
    fn install() -> Self {
        let events = ErrorEvents::default();
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        tracing_subscriber::registry()
            .with(events.clone())
            .with(tracing_subscriber::fmt::layer().with_filter(filter))
            .try_init()
            .expect("this test binary installs the only subscriber");
        events
    }

    fn lines(&self) -> Vec<String> {
        self.0.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

// ---- services as killable "processes" ----------------------------------------------------

/// A service in a runtime of its own, with the proxies its connections go through.
struct Process {
    name: &'static str,
    runtime: Option<tokio::runtime::Runtime>,
    proxies: Vec<Arc<TcpProxy>>,
}

impl Process {
    /// Builds and runs a service in a fresh runtime; `run` sends the bound port and serves.
    async fn start<F, Fut>(name: &'static str, proxies: Vec<Arc<TcpProxy>>, run: F) -> (Self, u16)
    where
        F: FnOnce(oneshot::Sender<u16>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(name)
            .enable_all()
            .build()
            .expect("runtime");
        let (port_tx, port_rx) = oneshot::channel();
        runtime.spawn(run(port_tx));
        let port = port_rx.await.unwrap_or_else(|_| panic!("{name} did not start"));
        (Self { name, runtime: Some(runtime), proxies }, port)
    }

    /// SIGKILL, as far as a process can do it to a part of itself: every connection drops at
    /// once, then every task is dropped where it stands.
    async fn kill(&mut self) {
        for proxy in &self.proxies {
            proxy.cut();
        }
        if let Some(runtime) = self.runtime.take() {
            tokio::task::spawn_blocking(move || runtime.shutdown_timeout(Duration::from_secs(10)))
                .await
                .expect("runtime shut down");
        }
        for proxy in &self.proxies {
            proxy.restore();
        }
        tracing::info!(service = self.name, "killed");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// `url` with its `host:port` replaced by `addr`, and the `host:port` it named.
async fn through(url: &str, proxy: &TcpProxy) -> String {
    let (scheme, rest) = url.split_once("://").expect("scheme");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host = authority.rsplit('@').next().unwrap_or(authority);
    let user = &authority[..authority.len() - host.len()];
    format!("{scheme}://{user}{}{}", proxy.addr, &rest[end..])
}

async fn target(url: &str) -> SocketAddr {
    let rest = url.split_once("://").expect("scheme").1;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let host = rest[..end].rsplit('@').next().expect("host");
    tokio::net::lookup_host(host).await.expect("resolves").next().expect("an address")
}

async fn proxy_for(url: &str) -> (Arc<TcpProxy>, String) {
    let proxy = Arc::new(TcpProxy::start(target(url).await).await);
    let url = through(url, &proxy).await;
    (proxy, url)
}

fn channel(port: u16) -> Channel {
    Channel::from_shared(format!("http://127.0.0.1:{port}")).expect("uri").connect_lazy()
}

/// Everything the test starts, and how to start it again.
struct Mesh {
    command_config: command_svc::config::Config,
    command_port: u16,
    command: Process,
    redis_config: query_redis_svc::config::Config,
    redis_port: u16,
    redis: Process,
    mongo_config: query_mongo_svc::config::Config,
    mongo_port: u16,
    mongo: Process,
    /// RabbitMQ, per service: command-svc, query-redis-svc, query-mongo-svc.
    brokers: [Arc<TcpProxy>; 3],
    redis_storage: Arc<TcpProxy>,
    mongo_storage: Arc<TcpProxy>,
}

async fn start_command(
    config: command_svc::config::Config,
    proxies: Vec<Arc<TcpProxy>>,
) -> (Process, u16) {
    let (process, port) = Process::start("command-svc", proxies, |port| async move {
        let app = command_svc::Application::build(config).await.expect("command-svc builds");
        let _ = port.send(app.port());
        let _ = app.run_until_stopped(std::future::pending()).await;
    })
    .await;
    wait_for_health(&channel(port), "course.v1.CourseCommandService", ServingStatus::Serving).await;
    (process, port)
}

async fn start_redis(
    config: query_redis_svc::config::Config,
    proxies: Vec<Arc<TcpProxy>>,
) -> (Process, u16) {
    let (process, port) = Process::start("query-redis-svc", proxies, |port| async move {
        let app = query_redis_svc::Application::build(config).await.expect("builds");
        let _ = port.send(app.port());
        let _ = app.run_until_stopped(std::future::pending()).await;
    })
    .await;
    wait_for_health(&channel(port), "course.v1.CatalogQueryService", ServingStatus::Serving).await;
    (process, port)
}

async fn start_mongo(
    config: query_mongo_svc::config::Config,
    proxies: Vec<Arc<TcpProxy>>,
) -> (Process, u16) {
    let (process, port) = Process::start("query-mongo-svc", proxies, |port| async move {
        let app = query_mongo_svc::Application::build(config).await.expect("builds");
        let _ = port.send(app.port());
        let _ = app.run_until_stopped(std::future::pending()).await;
    })
    .await;
    wait_for_health(&channel(port), "course.v1.CourseQueryService", ServingStatus::Serving).await;
    (process, port)
}

impl Mesh {
    async fn start(database_url: &str) -> Mesh {
        let exchange = unique("e2e.faults");
        let broker_url = testkit::rabbitmq_url();
        let (command_broker, command_broker_url) = proxy_for(&broker_url).await;
        let (database, database_url) = proxy_for(database_url).await;
        let command_config = command_svc::config::Config {
            database_url,
            database_max_connections: 16,
            grpc_listen: "127.0.0.1:0".parse().expect("addr"),
            server: testkit::server_args(),
            log_format: LogFormat::Text,
            event_store_read_connections: 4,
            max_follow_streams: 64,
            follow_idle_timeout_secs: 300,
            batching: Default::default(),
            broker: messaging::BrokerArgs::new(&command_broker_url, &exchange),
            relay_batch_size: 500,
            metrics_listen: "127.0.0.1:0".parse().expect("addr"),
        };
        let (command, command_port) =
            start_command(command_config.clone(), vec![command_broker.clone(), database]).await;
        // Restarts bind the same port, so that clients and the query services find it again.
        let command_config = command_svc::config::Config {
            grpc_listen: format!("127.0.0.1:{command_port}").parse().expect("addr"),
            ..command_config
        };
        let event_store_url = format!("http://127.0.0.1:{command_port}");
        let projection = |broker: &str| ProjectionArgs {
            read_your_writes_timeout_ms: 30_000,
            event_store_token: Some(testkit::service_token()),
            ..ProjectionArgs::new(broker, &exchange, &event_store_url)
        };

        let (redis_broker, redis_broker_url) = proxy_for(&broker_url).await;
        let redis_url =
            std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let (redis_storage, redis_url) = proxy_for(&redis_url).await;
        let redis_config = query_redis_svc::config::Config {
            redis_url,
            redis_key_prefix: format!("{}:", unique("e2e.faults")),
            service: testkit::service_args(
                unique("e2e.faults.catalog"),
                projection(&redis_broker_url),
            ),
        };
        let (redis, redis_port) =
            start_redis(redis_config.clone(), vec![redis_broker.clone(), redis_storage.clone()])
                .await;

        let (mongo_broker, mongo_broker_url) = proxy_for(&broker_url).await;
        let mongo_uri = std::env::var("TEST_MONGODB_URI")
            .unwrap_or_else(|_| "mongodb://127.0.0.1:27017".into());
        let (mongo_storage, mongo_uri) = proxy_for(&mongo_uri).await;
        let mut mongo_config =
            <query_mongo_svc::config::Config as clap::Parser>::parse_from(["query-mongo-svc"]);
        mongo_config.mongodb_uri = format!(
            "{}/?directConnection=true&serverSelectionTimeoutMS=2000&connectTimeoutMS=2000",
            mongo_uri.trim_end_matches('/')
        );
        mongo_config.mongodb_database = format!("e2e_faults_{}", Uuid::new_v4().simple());
        mongo_config.service =
            testkit::service_args(unique("e2e.faults.courses"), projection(&mongo_broker_url));
        let (mongo, mongo_port) =
            start_mongo(mongo_config.clone(), vec![mongo_broker.clone(), mongo_storage.clone()])
                .await;

        Mesh {
            command_config,
            command_port,
            command,
            redis_config,
            redis_port,
            redis,
            mongo_config,
            mongo_port,
            mongo,
            brokers: [command_broker, redis_broker, mongo_broker],
            redis_storage,
            mongo_storage,
        }
    }

    async fn restart_command(&mut self) {
        self.command.kill().await;
        let proxies = std::mem::take(&mut self.command.proxies);
        (self.command, self.command_port) =
            start_command(self.command_config.clone(), proxies).await;
    }

    async fn restart_redis(&mut self) {
        self.redis.kill().await;
        let proxies = std::mem::take(&mut self.redis.proxies);
        (self.redis, self.redis_port) = start_redis(self.redis_config.clone(), proxies).await;
    }

    async fn restart_mongo(&mut self) {
        self.mongo.kill().await;
        let proxies = std::mem::take(&mut self.mongo.proxies);
        (self.mongo, self.mongo_port) = start_mongo(self.mongo_config.clone(), proxies).await;
    }

    async fn query_health(&self, wanted: ServingStatus) {
        wait_for_health(&channel(self.redis_port), "course.v1.CatalogQueryService", wanted).await;
        wait_for_health(&channel(self.mongo_port), "course.v1.CourseQueryService", wanted).await;
    }

    fn commands(&self) -> CourseCommandServiceClient<Channel> {
        CourseCommandServiceClient::new(channel(self.command_port))
    }

    async fn audit(&self, port: u16) -> v1::AuditReadModelResponse {
        testkit::audit_caught_up(channel(port), 20).await
    }
}

// ---- clients ------------------------------------------------------------------------------

/// A command the service acknowledged: the course, the version it produced, the event type.
#[derive(Debug, Clone)]
struct Acknowledged {
    course_id: String,
    version: u64,
    event_type: &'static str,
}

/// What the clients saw.
#[derive(Default)]
struct Outcomes {
    acknowledged: Vec<Acknowledged>,
    /// Texts of the refusals (business rules), to look for in the ERROR log.
    refusals: BTreeSet<String>,
    retries: usize,
}

/// Statuses after which the outcome is unknown: the same command is sent again.
fn transient(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable
            | Code::Unknown
            | Code::Cancelled
            | Code::DeadlineExceeded
            | Code::Aborted
    ) || (status.code() == Code::Internal && status.message().contains("transport"))
}

/// Sends a command until it has an outcome; transient failures are retried with the same
/// request (and so the same `command_id`) for up to a minute.
async fn send<F, Fut>(outcomes: &Mutex<Outcomes>, mut call: F) -> Result<(String, u64), Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(String, u64), Status>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match call().await {
            Err(status) if transient(&status) && tokio::time::Instant::now() < deadline => {
                if let Ok(mut outcomes) = outcomes.lock() {
                    outcomes.retries += 1;
                }
                // A client's backoff before sending again.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

macro_rules! command {
    ($outcomes:expr, $client:expr, $actor:expr, $method:ident, $request:expr) => {{
        let request = $request;
        let client = $client.clone();
        let actor = $actor;
        send($outcomes, move || {
            let mut client = client.clone();
            let request = as_user(actor, request.clone());
            async move {
                client.$method(request).await.map(|r| {
                    let r = r.into_inner();
                    (r.course_id, r.version)
                })
            }
        })
        .await
    }};
}

fn id() -> Option<String> {
    Some(Uuid::now_v7().to_string())
}

/// What the clients share.
#[derive(Clone)]
struct Shared {
    commands: CourseCommandServiceClient<Channel>,
    instructor: Uuid,
    users: Arc<Vec<Uuid>>,
    courses: Arc<Mutex<Vec<String>>>,
    outcomes: Arc<Mutex<Outcomes>>,
    acked: watch::Sender<usize>,
    stop: Arc<AtomicBool>,
}

/// One client: mixed commands over the shared courses until `stop`.
async fn client(worker: usize, shared: Shared) {
    let Shared { commands, instructor, users, courses, outcomes, acked, stop } = shared;
    let mut step = worker;
    while !stop.load(Ordering::SeqCst) {
        step += 7;
        let known = courses.lock().map(|c| c.clone()).unwrap_or_default();
        let course_id = known.get((step / 3) % known.len().max(1)).cloned().unwrap_or_default();
        let user = users[step % users.len()];
        let o = &*outcomes;
        let c = &commands;
        let (result, event_type) = match (known.len() < 12, step % 11) {
            (true, _) | (_, 0) => {
                let request = v1::CreateCourseRequest {
                    command_id: id(),
                    title: format!("Course {step}"),
                    description: format!("Learn topic {step}"),
                    category: ["Programming", "Design", "Data"][step % 3].into(),
                    max_participants: [0, 5, 20][step % 3],
                    expected_version: None,
                };
                (command!(o, c, instructor, create_course, request), "CourseCreated")
            }
            (_, 1) => {
                let request =
                    v1::PresentCourseRequest { command_id: id(), course_id, ..Default::default() };
                (command!(o, c, instructor, present_course, request), "CoursePresented")
            }
            (_, 2) => {
                let request =
                    v1::ActivateCourseRequest { command_id: id(), course_id, ..Default::default() };
                (command!(o, c, instructor, activate_course, request), "CourseActivated")
            }
            (_, 3) if step.is_multiple_of(5) => {
                let request =
                    v1::CompleteCourseRequest { command_id: id(), course_id, ..Default::default() };
                (command!(o, c, instructor, complete_course, request), "CourseCompleted")
            }
            (_, 4) => {
                let request = v1::AddSectionRequest {
                    command_id: id(),
                    course_id,
                    title: format!("Part {step}"),
                    video_url: format!("https://v.example/{step}"),
                    ..Default::default()
                };
                (command!(o, c, instructor, add_section, request), "SectionAdded")
            }
            (_, 5) => {
                let request =
                    v1::LeaveCourseRequest { command_id: id(), course_id, ..Default::default() };
                (command!(o, c, user, leave_course, request), "UserLeftCourse")
            }
            (_, 6) => {
                let request = v1::CommentCourseRequest {
                    command_id: id(),
                    course_id,
                    text: format!("Comment {step}"),
                    ..Default::default()
                };
                (command!(o, c, user, comment_course, request), "CourseCommented")
            }
            (_, 7) => {
                let request = v1::ChangeCourseTitleRequest {
                    command_id: id(),
                    course_id,
                    title: format!("Renamed {step}"),
                    ..Default::default()
                };
                (command!(o, c, instructor, change_course_title, request), "CourseTitleChanged")
            }
            _ => {
                let request =
                    v1::JoinCourseRequest { command_id: id(), course_id, ..Default::default() };
                (command!(o, c, user, join_course, request), "UserJoinedCourse")
            }
        };
        match result {
            Ok((course_id, version)) => {
                if event_type == "CourseCreated"
                    && let Ok(mut courses) = courses.lock()
                {
                    courses.push(course_id.clone());
                }
                if let Ok(mut outcomes) = outcomes.lock() {
                    outcomes.acknowledged.push(Acknowledged { course_id, version, event_type });
                }
                acked.send_modify(|n| *n += 1);
            }
            Err(status)
                if matches!(status.code(), Code::FailedPrecondition | Code::PermissionDenied) =>
            {
                if let Ok(mut outcomes) = outcomes.lock() {
                    outcomes.refusals.insert(status.message().to_owned());
                }
            }
            Err(status) => panic!("only rule refusals may remain after retries: {status:?}"),
        }
    }
}

// ---- the test -----------------------------------------------------------------------------

/// Terminates every PostgreSQL backend of `database` (what a database failover or restart
/// does to the service's connections).
async fn terminate_backends(database: &str) {
    let admin = Database::connect(testkit::admin_url()).await.expect("PostgreSQL");
    admin
        .execute_unprepared(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{database}' AND pid <> pg_backend_pid()"
        ))
        .await
        .expect("terminate backends");
    let _ = admin.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_models_agree_with_the_store_after_kills_and_cut_connections_under_load() {
    let errors = ErrorEvents::install();
    tracing::error!(check = "capture", "the fault test sees ERROR events");
    assert_eq!(errors.lines().len(), 1, "ERROR events are captured");
    let started = std::time::Instant::now();
    let database_url = testkit::fresh_database().await;
    let database = database_url.rsplit('/').next().expect("database name").to_owned();
    let mut mesh = Mesh::start(&database_url).await;

    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let (acked_tx, mut acked) = watch::channel(0usize);
    let stop = Arc::new(AtomicBool::new(false));
    let instructor = Uuid::now_v7();
    let users: Arc<Vec<Uuid>> = Arc::new((0..30).map(|_| Uuid::now_v7()).collect());
    let courses = Arc::new(Mutex::new(Vec::new()));
    let shared = Shared {
        commands: mesh.commands(),
        instructor,
        users,
        courses,
        outcomes: outcomes.clone(),
        acked: acked_tx,
        stop: stop.clone(),
    };
    let clients: Vec<_> =
        (0..6).map(|worker| tokio::spawn(client(worker, shared.clone()))).collect();
    // Each fault comes after this many more acknowledged commands.
    let mut more = async |n: usize| {
        let target = *acked.borrow() + n;
        tokio::time::timeout(Duration::from_secs(60), acked.wait_for(|a| *a >= target))
            .await
            .expect("commands keep being acknowledged")
            .expect("clients running");
    };
    const BETWEEN: usize = 40;

    more(BETWEEN).await;
    // The broker drops every connection: the relay and both consumers reconnect.
    for broker in &mesh.brokers {
        broker.cut();
    }
    mesh.query_health(ServingStatus::NotServing).await;
    for broker in &mesh.brokers {
        broker.restore();
    }
    mesh.query_health(ServingStatus::Serving).await;

    more(BETWEEN).await;
    terminate_backends(&database).await;

    more(BETWEEN).await;
    // Redis and MongoDB drop every client connection.
    mesh.redis_storage.cut();
    mesh.mongo_storage.cut();
    more(BETWEEN / 4).await;
    mesh.redis_storage.restore();
    mesh.mongo_storage.restore();

    more(BETWEEN).await;
    mesh.restart_redis().await;
    more(BETWEEN).await;
    mesh.restart_mongo().await;
    more(BETWEEN).await;
    mesh.restart_command().await;
    more(BETWEEN).await;

    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.expect("client");
    }
    let outcomes = std::mem::take(&mut *outcomes.lock().expect("outcomes"));
    let acknowledged = outcomes.acknowledged.len();
    assert!(acknowledged >= 7 * BETWEEN, "{acknowledged} commands acknowledged");
    assert!(outcomes.retries > 0, "the faults hit commands in flight");

    // Every acknowledged command is in the store, as the event it answered for.
    let mut by_course: BTreeMap<String, Vec<Acknowledged>> = BTreeMap::new();
    for ack in outcomes.acknowledged {
        by_course.entry(ack.course_id.clone()).or_default().push(ack);
    }
    let mut store = v1::event_store_service_client::EventStoreServiceClient::with_interceptor(
        channel(mesh.command_port),
        Credential::Token(testkit::service_token()),
    );
    for (course_id, acks) in &by_course {
        let mut stream = store
            .read_stream(v1::ReadStreamRequest {
                course_id: course_id.clone(),
                from_version: 0,
                max_count: 0,
            })
            .await
            .expect("stream")
            .into_inner();
        let mut types = BTreeMap::new();
        while let Some(item) = stream.next().await {
            let event = item.expect("event").event.expect("envelope");
            types.insert(event.version, event.event_type);
        }
        for ack in acks {
            assert_eq!(
                types.get(&ack.version).map(String::as_str),
                Some(ack.event_type),
                "acknowledged command in the store: {ack:?}"
            );
        }
    }

    // Both read models agree with the store.
    for (name, port) in [("query-redis-svc", mesh.redis_port), ("query-mongo-svc", mesh.mongo_port)]
    {
        let report = mesh.audit(port).await;
        assert_eq!(report.difference_count, 0, "{name}: {report:?}");
        assert_eq!(report.read_model_position, report.audited_position, "{name} caught up");
        assert_eq!(report.courses_in_store, by_course.len() as u64, "{name}");
        assert_eq!(report.courses_in_read_model, report.courses_in_store, "{name}");
    }

    // No refused command was logged at ERROR.
    assert!(!outcomes.refusals.is_empty(), "the mix has refusals");
    let errors = errors.lines();
    let refusal_errors: Vec<&String> = errors
        .iter()
        .filter(|line| {
            outcomes.refusals.iter().any(|refusal| line.contains(refusal.as_str()))
                || ["FailedPrecondition", "PermissionDenied"].iter().any(|c| line.contains(c))
        })
        .collect();
    assert!(refusal_errors.is_empty(), "refusals logged at ERROR: {refusal_errors:#?}");
    eprintln!(
        "fault test: {acknowledged} acknowledged, {} retried, {} refusal kinds, {} ERROR events, {:.1?}",
        outcomes.retries,
        outcomes.refusals.len(),
        errors.len(),
        started.elapsed()
    );
}
