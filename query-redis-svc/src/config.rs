//! Command-line and environment configuration.

use clap::Parser;
use projection::host::{ServiceArgs, default_to};

/// The course catalog read model in Redis.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "query-redis-svc",
    version,
    about,
    mut_arg("queue_name", default_to("query-redis.course-events")),
    mut_arg("grpc_listen", default_to("0.0.0.0:50052")),
    mut_arg("metrics_listen", default_to("0.0.0.0:9091"))
)]
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

    /// Queue, listen addresses, events, server and log format, as every query service.
    #[command(flatten)]
    pub service: ServiceArgs,
}
