//! `spawn_app()`: a real command-svc on port 0 against its own fresh PostgreSQL database.

use std::net::SocketAddr;

pub use testkit::{SECRET, admin_url, as_user, fresh_database, rabbitmq_url};

use command_svc::Application;
use command_svc::config::Config;
use course_proto::v1::course_command_service_client::CourseCommandServiceClient;
use course_proto::v1::event_store_service_client::EventStoreServiceClient;
use course_proto::v1::{self, EventEnvelope};
use futures::StreamExt;
use platform::telemetry::LogFormat;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::Status;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use uuid::Uuid;

/// A configuration with its own exchange, on `database_url`.
pub fn config(database_url: &str) -> Config {
    Config {
        database_url: database_url.to_owned(),
        database_max_connections: 16,
        grpc_listen: "127.0.0.1:0".parse().expect("addr"),
        server: testkit::server_args(),
        log_format: LogFormat::Text,
        event_store_read_connections: 4,
        max_follow_streams: 64,
        follow_idle_timeout_secs: 300,
        batching: Default::default(),
        broker: messaging::BrokerArgs::new(
            &rabbitmq_url(),
            &format!("test.events.{}", Uuid::new_v4().simple()),
        ),
        relay_batch_size: 200,
        metrics_listen: "127.0.0.1:0".parse().expect("addr"),
    }
}

pub struct TestApp {
    pub database_url: String,
    pub config: Config,
    channel: Channel,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
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
    let channel = Channel::from_shared(format!("http://{addr}")).expect("uri").connect_lazy();
    TestApp { database_url: config.database_url.clone(), config, channel, stop: None, task: None }
}

/// Starts the app without waiting for readiness.
pub async fn spawn_unready(config: Config) -> TestApp {
    platform::telemetry::init(LogFormat::Text);
    let database_url = config.database_url.clone();
    let app = Application::build(config.clone()).await.expect("app builds");
    let addr: SocketAddr = format!("127.0.0.1:{}", app.port()).parse().expect("addr");
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until_stopped(async move {
        let _ = stop_rx.await;
    }));
    let channel = Channel::from_shared(format!("http://{addr}")).expect("uri").connect_lazy();
    TestApp { database_url, config, channel, stop: Some(stop_tx), task: Some(task) }
}

impl TestApp {
    pub fn commands(&self) -> CourseCommandServiceClient<Channel> {
        CourseCommandServiceClient::new(self.channel.clone())
    }

    /// An event store client with a service's credential.
    pub fn event_store(
        &self,
    ) -> EventStoreServiceClient<InterceptedService<Channel, platform::auth::Credential>> {
        EventStoreServiceClient::with_interceptor(
            self.channel.clone(),
            platform::auth::Credential::Token(testkit::service_token()),
        )
    }

    /// An event store client without a credential, or with `token`.
    pub fn event_store_as(
        &self,
        token: Option<String>,
    ) -> EventStoreServiceClient<InterceptedService<Channel, platform::auth::Credential>> {
        let credential =
            token.map_or(platform::auth::Credential::None, platform::auth::Credential::Token);
        EventStoreServiceClient::with_interceptor(self.channel.clone(), credential)
    }

    /// The raw channel (for calls no generated client makes).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// Waits until the command service's health reports `wanted`.
    pub async fn wait_for_health(&self, wanted: ServingStatus) {
        self.wait_for_service_health("course.v1.CourseCommandService", wanted).await
    }

    /// Waits (through the health Watch stream) until `service` reports `wanted`.
    pub async fn wait_for_service_health(&self, service: &str, wanted: ServingStatus) {
        testkit::wait_for_health(&self.channel, service, wanted).await
    }

    /// Graceful stop: resolves when the server has drained.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("app task").expect("app ran cleanly");
        }
    }

    /// Stops this instance and starts a new one with the same configuration.
    pub async fn restart(self) -> TestApp {
        let config = self.config.clone();
        self.stop().await;
        spawn_app_on(config).await
    }

    /// All events of one course through ReadStream.
    pub async fn stream(&self, course_id: &str) -> Vec<EventEnvelope> {
        let response = self
            .event_store()
            .read_stream(v1::ReadStreamRequest {
                course_id: course_id.to_owned(),
                from_version: 0,
                max_count: 0,
            })
            .await
            .expect("read stream");
        collect(response.into_inner()).await
    }

    /// Every sequenced event, in global order, through ReadAll.
    pub async fn all(&self, from_position: u64) -> Vec<EventEnvelope> {
        let response = self
            .event_store()
            .read_all(v1::ReadAllRequest { from_position, max_count: 0, follow: false })
            .await
            .expect("read all");
        let mut stream = response.into_inner();
        let mut out = Vec::new();
        while let Some(item) = stream.next().await {
            out.push(item.expect("event").event.expect("envelope"));
        }
        out
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub async fn collect(mut stream: tonic::Streaming<v1::ReadStreamResponse>) -> Vec<EventEnvelope> {
    let mut out = Vec::new();
    while let Some(item) = stream.next().await {
        out.push(item.expect("event").event.expect("envelope"));
    }
    out
}

pub fn create_request(max_participants: u32) -> v1::CreateCourseRequest {
    v1::CreateCourseRequest {
        command_id: None,
        title: "Event sourcing in Rust".into(),
        description: "Aggregates, projections and the outbox".into(),
        category: "Programming".into(),
        max_participants,
        expected_version: None,
    }
}

/// Creates a course as `instructor` and returns its id.
pub async fn create_course(app: &TestApp, instructor: Uuid, max_participants: u32) -> String {
    app.commands()
        .create_course(as_user(instructor, create_request(max_participants)))
        .await
        .expect("course created")
        .into_inner()
        .course_id
}

/// Creates a course and moves it to Presenting (or Active when `activate`).
pub async fn open_course(app: &TestApp, instructor: Uuid, max: u32, activate: bool) -> String {
    let id = create_course(app, instructor, max).await;
    let mut commands = app.commands();
    commands
        .present_course(as_user(
            instructor,
            v1::PresentCourseRequest { course_id: id.clone(), ..Default::default() },
        ))
        .await
        .expect("presented");
    if activate {
        commands
            .activate_course(as_user(
                instructor,
                v1::ActivateCourseRequest { course_id: id.clone(), ..Default::default() },
            ))
            .await
            .expect("activated");
    }
    id
}

pub fn join(course_id: &str) -> v1::JoinCourseRequest {
    v1::JoinCourseRequest { course_id: course_id.to_owned(), ..Default::default() }
}

pub fn assert_code<T: std::fmt::Debug>(result: Result<T, Status>, code: tonic::Code) -> Status {
    match result {
        Ok(value) => panic!("expected {code:?}, got Ok({value:?})"),
        Err(status) => {
            assert_eq!(status.code(), code, "unexpected status: {status:?}");
            status
        }
    }
}
