//! Command-line and environment configuration.

use std::net::SocketAddr;

use clap::Parser;
use platform::server::ServerArgs;
use platform::telemetry::LogFormat;
use projection::ProjectionArgs;

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
    /// This read model's durable queue (`<queue>.dlq` holds dead letters).
    #[arg(long, env = "QUEUE_NAME", default_value = "query-redis.course-events")]
    pub queue_name: String,
    /// Address the gRPC server listens on.
    #[arg(long, env = "GRPC_LISTEN", default_value = "0.0.0.0:50052")]
    pub grpc_listen: SocketAddr,
    /// Address of the Prometheus metrics endpoint (`GET /metrics`).
    #[arg(long, env = "METRICS_LISTEN", default_value = "0.0.0.0:9091")]
    pub metrics_listen: SocketAddr,
    /// Where the events come from and how they are consumed.
    #[command(flatten)]
    pub projection: ProjectionArgs,
    /// The gRPC server: limits, keep-alive, bearer-token verification.
    #[command(flatten)]
    pub server: ServerArgs,
    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}
