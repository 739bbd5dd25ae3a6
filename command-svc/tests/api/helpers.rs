//! `spawn_app()`: a real command-svc on port 0 against its own fresh PostgreSQL database,
//! driven with testkit's vocabulary (commands in `testkit::driver`, reads in `testkit::events`).

pub use testkit::driver::{create_request, join_request, open_course};
pub use testkit::events::collect;
pub use testkit::{
    SECRET, admin_url, as_user, assert_code, free_port, fresh_database, rabbitmq_url, unique,
};

use std::time::Duration;

use command_svc::Application;
use command_svc::config::Config;
use course_proto::v1::EventEnvelope;
use course_proto::v1::course_command_service_client::CourseCommandServiceClient;
use course_proto::v1::event_store_service_client::EventStoreServiceClient;
use platform::auth::Credential;
use platform::telemetry::LogFormat;
use testkit::{Commands, EventStore, EventStoreClient, Running, ServingStatus};
use tonic::transport::Channel;
use uuid::Uuid;

/// A configuration with its own exchange, on `database_url`.
pub fn config(database_url: &str) -> Config {
    Config {
        relay_batch_size: 200,
        ..testkit::command_config(database_url, &unique("test.events"))
    }
}

/// A command-svc of this process, or a handle to one in a child process.
pub struct TestApp {
    pub database_url: String,
    pub config: Config,
    running: Running,
}

pub async fn spawn_app() -> TestApp {
    let database_url = fresh_database().await;
    spawn_app_on(config(&database_url)).await
}

/// Starts the app with `config` and waits until its health says SERVING.
pub async fn spawn_app_on(config: Config) -> TestApp {
    let app = spawn_unready(config).await;
    app.wait_for_health(ServingStatus::Serving).await;
    app
}

/// A client-only handle to a server that runs elsewhere (a child process).
pub fn connect(addr: &str, config: Config) -> TestApp {
    let port = addr.rsplit(':').next().and_then(|p| p.parse().ok()).expect("host:port");
    TestApp { database_url: config.database_url.clone(), config, running: Running::remote(port) }
}

/// [`spawn_app_on`], also returning the pool its `EventStoreService` reads on.
pub async fn spawn_app_with_readers(config: Config) -> (TestApp, command_svc::store::EventStore) {
    platform::telemetry::init(LogFormat::Text);
    let app = Application::build(config.clone()).await.expect("app builds");
    let readers = app.event_store_readers();
    let running = Running::start(app.port(), |shutdown| app.run_until_stopped(shutdown));
    let app = TestApp { database_url: config.database_url.clone(), config, running };
    app.wait_for_health(ServingStatus::Serving).await;
    (app, readers)
}

/// Starts the app without waiting for readiness.
pub async fn spawn_unready(config: Config) -> TestApp {
    platform::telemetry::init(LogFormat::Text);
    let app = Application::build(config.clone()).await.expect("app builds");
    let running = Running::start(app.port(), |shutdown| app.run_until_stopped(shutdown));
    TestApp { database_url: config.database_url.clone(), config, running }
}

impl TestApp {
    pub fn commands(&self) -> CourseCommandServiceClient<Channel> {
        Commands::commands(self)
    }

    /// An event store client with a service's credential.
    pub fn event_store(&self) -> EventStoreClient {
        EventStore::event_store(self)
    }

    /// An event store client without a credential, or with `token`.
    pub fn event_store_as(&self, token: Option<String>) -> EventStoreClient {
        let credential = token.map_or(Credential::None, Credential::Token);
        EventStoreServiceClient::with_interceptor(self.channel(), credential)
    }

    /// The raw channel (for calls no generated client makes).
    pub fn channel(&self) -> Channel {
        self.running.channel()
    }

    /// Waits until the command service's health reports `wanted`.
    pub async fn wait_for_health(&self, wanted: ServingStatus) {
        self.wait_for_service_health("course.v1.CourseCommandService", wanted).await
    }

    /// Waits (through the health Watch stream) until `service` reports `wanted`.
    pub async fn wait_for_service_health(&self, service: &str, wanted: ServingStatus) {
        self.running.wait_for(service, wanted).await
    }

    /// Graceful stop: resolves when the server has drained.
    pub async fn stop(self) {
        self.running.stop().await
    }

    /// Stops this instance and starts a new one with the same configuration.
    pub async fn restart(self) -> TestApp {
        let config = self.config.clone();
        self.stop().await;
        spawn_app_on(config).await
    }

    /// All events of one course through ReadStream.
    pub async fn stream(&self, course_id: &str) -> Vec<EventEnvelope> {
        testkit::events::stream(self, course_id).await
    }

    /// Every sequenced event, in global order, through ReadAll.
    pub async fn all(&self, from_position: u64) -> Vec<EventEnvelope> {
        testkit::events::all(self, from_position).await
    }
}

impl Commands for TestApp {
    fn commands(&self) -> CourseCommandServiceClient<Channel> {
        CourseCommandServiceClient::new(self.channel())
    }
}

impl EventStore for TestApp {
    fn event_store(&self) -> EventStoreClient {
        self.event_store_as(Some(testkit::service_token()))
    }
}

/// Creates a course (with [`create_request`]) as `instructor` and returns its id.
pub async fn create_course(app: &TestApp, instructor: Uuid, max_participants: u32) -> String {
    testkit::driver::create_course(app, instructor, create_request(max_participants)).await
}

/// command-svc as a real child process (its own metrics, killable), for crash and
/// several-replica tests.
pub struct Process {
    child: tokio::process::Child,
    pub port: u16,
    pub metrics_port: u16,
    config: Config,
}

impl Process {
    pub async fn start(database_url: &str, rabbitmq_url: &str, exchange: &str) -> Process {
        let (port, metrics_port) = (free_port(), free_port());
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_command-svc"))
            .env("DATABASE_URL", database_url)
            .env("GRPC_LISTEN", format!("127.0.0.1:{port}"))
            .env("AUTH_JWT_SECRET", SECRET)
            .env("RABBITMQ_URL", rabbitmq_url)
            .env("RABBITMQ_EXCHANGE", exchange)
            .env("METRICS_LISTEN", format!("127.0.0.1:{metrics_port}"))
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .spawn()
            .expect("command-svc starts");
        let mut config = config(database_url);
        config.broker.rabbitmq_exchange = exchange.to_owned();
        let process = Process { child, port, metrics_port, config };
        process.client().wait_for_health(ServingStatus::Serving).await;
        process
    }

    pub fn client(&self) -> TestApp {
        connect(&format!("127.0.0.1:{}", self.port), self.config.clone())
    }

    /// The sum of a metric's samples on this process's endpoint.
    pub async fn metric(&self, name: &str) -> f64 {
        testkit::metric_sum(&testkit::scrape(self.metrics_port).await, name)
    }

    /// Waits until a metric reaches `at_least` (for at most `timeout`) and returns its value, which
    /// the caller asserts on: a counter moves after the work it counts is visible elsewhere (a
    /// broker delivers a message before its publisher has processed the confirm).
    pub async fn metric_reaching(&self, name: &str, at_least: f64, timeout: Duration) -> f64 {
        testkit::poll_until(timeout, || self.metric(name), |value| *value >= at_least).await
    }

    pub async fn kill(&mut self) {
        self.child.start_kill().expect("SIGKILL");
        self.child.wait().await.expect("killed");
    }
}
