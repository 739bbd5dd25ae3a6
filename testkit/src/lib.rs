//! The tests' shared vocabulary: services running in-process ([`Running`], [`CommandSvc`]),
//! the command driver ([`driver`]), event-store readers ([`events`]), tokens and health waits,
//! a cuttable TCP proxy and a private Redis Cluster.

pub mod driver;
pub mod events;
mod proxy;
mod redis_cluster;
mod running;
mod tamper;

use std::time::Duration;

use command_svc::Application;
use command_svc::config::Config;
use course_proto::v1::course_command_service_client::CourseCommandServiceClient;
use course_proto::v1::event_store_service_client::EventStoreServiceClient;
pub use driver::Commands;
pub use events::{EventStore, EventStoreClient};
use futures::StreamExt;
use platform::auth::{AuthArgs, Credential, ROLE_OPERATOR, ROLE_SERVICE, mint_hs256_with_roles};
use platform::server::ServerArgs;
use platform::telemetry::LogFormat;
use projection::ProjectionArgs;
use projection::host::ServiceArgs;
pub use proxy::TcpProxy;
pub use redis_cluster::RedisCluster;
pub use running::{Running, Shutdown, audit_caught_up, wait_until_shared};
use sea_orm::{ConnectionTrait, Database};
use tonic::Request;
use tonic::transport::Channel;
pub use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use uuid::Uuid;

/// The HS256 secret every test service shares.
pub const SECRET: &str = "test-secret-0123456789abcdef";

/// PostgreSQL admin URL (`TEST_DATABASE_URL`).
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// RabbitMQ URL (`TEST_RABBITMQ_URL`).
pub fn rabbitmq_url() -> String {
    std::env::var("TEST_RABBITMQ_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// A name unique to this test: `<prefix>.<uuid>`.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}.{}", Uuid::new_v4().simple())
}

/// Creates an empty database (named `cmd_test_*`, dropped by `make test` next time).
pub async fn fresh_database() -> String {
    let admin = admin_url();
    let name = format!("cmd_test_{}", Uuid::new_v4().simple());
    let mut options = sea_orm::ConnectOptions::new(admin.clone());
    options.sqlx_logging(false);
    let conn = Database::connect(options).await.expect("PostgreSQL answers at TEST_DATABASE_URL");
    conn.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("create database");
    conn.close().await.expect("close");
    let (base, _) = admin.rsplit_once('/').expect("url has a database");
    format!("{base}/{name}")
}

/// The configuration of a test command-svc on port 0: `database_url`, publishing to `exchange`.
pub fn command_config(database_url: &str, exchange: &str) -> Config {
    Config {
        database_url: database_url.to_owned(),
        database_max_connections: 16,
        grpc_listen: "127.0.0.1:0".parse().expect("addr"),
        server: server_args(),
        log_format: LogFormat::Text,
        event_store_read_connections: 4,
        max_follow_streams: 64,
        follow_idle_timeout_secs: 300,
        batching: Default::default(),
        broker: messaging::BrokerArgs::new(&rabbitmq_url(), exchange),
        relay_batch_size: 500,
        metrics_listen: "127.0.0.1:0".parse().expect("addr"),
    }
}

/// A real command-svc running in this process.
pub struct CommandSvc {
    /// `http://127.0.0.1:<port>`, for EVENT_STORE_URL.
    pub url: String,
    /// Its configuration (database, exchange).
    pub config: Config,
    running: Running,
}

/// Starts command-svc on port 0 with a fresh database, publishing to `exchange`.
pub async fn spawn_command_svc(exchange: &str) -> CommandSvc {
    let config = command_config(&fresh_database().await, exchange);
    start_command_svc(config).await
}

/// Starts command-svc with `config` and waits until it serves.
pub async fn start_command_svc(config: Config) -> CommandSvc {
    platform::telemetry::init(LogFormat::Text);
    let app = Application::build(config.clone()).await.expect("command-svc builds");
    let running = Running::start(app.port(), |shutdown| app.run_until_stopped(shutdown));
    running.wait_for("course.v1.CourseCommandService", ServingStatus::Serving).await;
    CommandSvc { url: running.url(), config, running }
}

impl CommandSvc {
    /// A command client.
    pub fn commands(&self) -> CourseCommandServiceClient<Channel> {
        CourseCommandServiceClient::new(self.channel())
    }

    /// An event store client with a service's credential.
    pub fn event_store(&self) -> EventStoreClient {
        EventStoreServiceClient::with_interceptor(
            self.channel(),
            Credential::Token(service_token()),
        )
    }

    /// A (lazily connecting) channel to it.
    pub fn channel(&self) -> Channel {
        self.running.channel()
    }

    /// Graceful stop; it must exit cleanly.
    pub async fn stop(self) {
        self.running.stop().await
    }
}

impl Commands for CommandSvc {
    fn commands(&self) -> CourseCommandServiceClient<Channel> {
        CommandSvc::commands(self)
    }
}

impl EventStore for CommandSvc {
    fn event_store(&self) -> EventStoreClient {
        CommandSvc::event_store(self)
    }
}

/// The server settings every test service uses: the defaults, HS256 with [`SECRET`], and a
/// generous request timeout for the slow shared test machine.
pub fn server_args() -> ServerArgs {
    ServerArgs { request_timeout_ms: 30_000, ..ServerArgs::with_auth(AuthArgs::hs256(SECRET)) }
}

/// A query service's own settings in a test: `queue_name`, `projection`, both listeners on a
/// free port, [`server_args`] and text logs.
pub fn service_args(queue_name: String, projection: ProjectionArgs) -> ServiceArgs {
    ServiceArgs {
        queue_name,
        grpc_listen: "127.0.0.1:0".parse().expect("addr"),
        metrics_listen: "127.0.0.1:0".parse().expect("addr"),
        projection,
        server: server_args(),
        log_format: LogFormat::Text,
    }
}

/// A token with the `service` role, as a query service's EVENT_STORE_TOKEN.
pub fn service_token() -> String {
    mint_hs256_with_roles(
        SECRET.as_bytes(),
        "test-projection",
        &[ROLE_SERVICE],
        Duration::from_secs(3600),
    )
    .expect("token")
}

/// A token with the `operator` role.
pub fn operator_token() -> String {
    mint_hs256_with_roles(
        SECRET.as_bytes(),
        "test-operator",
        &[ROLE_OPERATOR],
        Duration::from_secs(600),
    )
    .expect("token")
}

/// An operator's credential, for clients that send it with every request.
pub fn operator_credential() -> Credential {
    Credential::Token(operator_token())
}

/// `message` with `token` as its bearer token.
pub fn with_token<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
    request
}

/// A request carrying an operator's bearer token.
pub fn as_operator<T>(message: T) -> Request<T> {
    with_token(&operator_token(), message)
}

/// A bearer token for `user`.
pub fn token(user: Uuid) -> String {
    platform::auth::mint_hs256(SECRET.as_bytes(), user, Duration::from_secs(600)).expect("token")
}

/// A request carrying `user`'s bearer token.
pub fn as_user<T>(user: Uuid, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {}", token(user)).parse().expect("ascii"));
    request
}

/// Waits (through the health Watch stream) until `service` reports `wanted`; 60 s at most.
pub async fn wait_for_health(channel: &Channel, service: &str, wanted: ServingStatus) {
    let watch = async {
        loop {
            let mut client = HealthClient::new(channel.clone());
            let Ok(response) = client.watch(HealthCheckRequest { service: service.into() }).await
            else {
                // Not listening yet: back off briefly before reconnecting.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let mut stream = response.into_inner();
            while let Some(Ok(update)) = stream.next().await {
                if update.status == wanted as i32 {
                    return;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), watch)
        .await
        .unwrap_or_else(|_| panic!("{service} never became {wanted:?}"));
}

/// Asserts that `result` failed with `code`; returns the status.
pub fn assert_code<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: tonic::Code,
) -> tonic::Status {
    match result {
        Ok(value) => panic!("expected {code:?}, got Ok({value:?})"),
        Err(status) => {
            assert_eq!(status.code(), code, "unexpected status: {status:?}");
            status
        }
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// The Prometheus text a service's metrics endpoint on `port` serves.
pub async fn scrape(port: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket =
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("metrics port");
    socket.write_all(b"GET /metrics HTTP/1.1\r\nhost: test\r\n\r\n").await.expect("request");
    let mut response = String::new();
    socket.read_to_string(&mut response).await.expect("response");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

/// The sum of every sample of the counter or gauge `name` in `text` (0 when it has none yet).
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| line.strip_prefix(name).is_some_and(|rest| rest.starts_with([' ', '{'])))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Calls `probe` every 20 ms until `done` holds for what it gave or `limit` has passed, and
/// returns what it gave last, for the caller to assert on: for effects that show some time
/// after what the test waited for (a counter moved after its confirm, a span closed after the
/// write it covers).
pub async fn poll_until<T, Fut>(
    limit: Duration,
    mut probe: impl FnMut() -> Fut,
    done: impl Fn(&T) -> bool,
) -> T
where
    Fut: std::future::Future<Output = T>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let value = probe().await;
        if done(&value) || tokio::time::Instant::now() >= deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Calls a read with `min_version` / `min_position` until it answers, again (every 100 ms,
/// 120 s in all) while the server's wait ran out with the read model behind: a slow machine
/// makes a read model late. Any other answer, UNAVAILABLE for another reason included, fails
/// the test.
pub async fn until_caught_up<T, F, Fut>(mut read: F) -> tonic::Response<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        match read().await {
            Ok(response) => return response,
            Err(status)
                if status.code() == tonic::Code::Unavailable
                    && status.message().starts_with("the read model is behind")
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(status) => panic!("the read failed: {status:?}"),
        }
    }
}
