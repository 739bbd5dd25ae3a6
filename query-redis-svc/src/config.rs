//! Command-line and environment configuration.

use std::net::SocketAddr;

use clap::Parser;
use platform::auth::AuthArgs;
use platform::telemetry::LogFormat;

/// The course catalog read model in Redis.
#[derive(Debug, Clone, Parser)]
#[command(name = "query-redis-svc", version, about)]
pub struct Config {
    /// Redis URL.
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        hide_env_values = true
    )]
    pub redis_url: String,
    /// Prefix of every key this service writes.
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value = "catalog:")]
    pub redis_key_prefix: String,
    /// RabbitMQ URL.
    #[arg(
        long,
        env = "RABBITMQ_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true
    )]
    pub rabbitmq_url: String,
    /// The events exchange command-svc publishes to.
    #[arg(long, env = "RABBITMQ_EXCHANGE", default_value = "course.events")]
    pub rabbitmq_exchange: String,
    /// This read model's durable queue (`<queue>.dlq` holds dead letters).
    #[arg(long, env = "QUEUE_NAME", default_value = "query-redis.course-events")]
    pub queue_name: String,
    /// Deliveries of a failing message before it is dead-lettered.
    #[arg(long, env = "DELIVERY_LIMIT", default_value_t = 5)]
    pub delivery_limit: u32,
    /// Unacknowledged messages in flight.
    #[arg(long, env = "PREFETCH", default_value_t = 64)]
    pub prefetch: u16,
    /// command-svc's gRPC URL (EventStoreService), for gap filling and rebuilds.
    #[arg(long, env = "EVENT_STORE_URL", default_value = "http://127.0.0.1:50051")]
    pub event_store_url: String,
    /// Address the gRPC server listens on.
    #[arg(long, env = "GRPC_LISTEN", default_value = "0.0.0.0:50052")]
    pub grpc_listen: SocketAddr,
    /// Address of the Prometheus metrics endpoint (`GET /metrics`).
    #[arg(long, env = "METRICS_LISTEN", default_value = "0.0.0.0:9091")]
    pub metrics_listen: SocketAddr,
    /// Bearer-token verification for ListUserCourses.
    #[command(flatten)]
    pub auth: AuthArgs,
    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Longest a query waits for `min_version` / `min_position` (milliseconds).
    #[arg(long, env = "READ_YOUR_WRITES_TIMEOUT_MS", default_value_t = 2_000)]
    pub read_your_writes_timeout_ms: u64,
    /// Rebuild the read model from the event store at start-up, even when it has data.
    #[arg(long, env = "REBUILD_ON_START", default_value_t = false)]
    pub rebuild_on_start: bool,
}
