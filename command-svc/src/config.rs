//! Command-line and environment configuration.

use std::net::SocketAddr;

use clap::{Parser, Subcommand};
use messaging::BrokerArgs;
use platform::auth::AuthArgs;
use platform::telemetry::LogFormat;
use uuid::Uuid;

/// The command side of the course platform.
#[derive(Debug, Parser)]
#[command(name = "command-svc", version, about)]
pub struct Cli {
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Action>,
    #[command(flatten)]
    pub config: Config,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Action {
    /// Run the gRPC service (the default).
    Serve,
    /// Apply event-store migrations and exit.
    Migrate,
    /// Print a development HS256 token for `--sub`, signed with AUTH_JWT_SECRET.
    Token {
        /// The user id the token names (a new random one when omitted).
        #[arg(long)]
        sub: Option<Uuid>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 86_400)]
        ttl_secs: u64,
    },
}

/// Service settings. Every flag has an environment-variable fallback.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// PostgreSQL URL of the event store.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/courses",
        hide_env_values = true
    )]
    pub database_url: String,
    /// Largest number of PostgreSQL connections.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 32, value_parser = clap::value_parser!(u32).range(2..=1000))]
    pub database_max_connections: u32,
    /// Address the gRPC server listens on.
    #[arg(long, env = "GRPC_LISTEN", default_value = "0.0.0.0:50051")]
    pub grpc_listen: SocketAddr,
    /// Address of the Prometheus metrics endpoint (`GET /metrics`).
    #[arg(long, env = "METRICS_LISTEN", default_value = "0.0.0.0:9090")]
    pub metrics_listen: SocketAddr,
    /// Bearer-token verification (`token` signs with AUTH_JWT_SECRET).
    #[command(flatten)]
    pub auth: AuthArgs,
    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Longest a request may run before it is cancelled (milliseconds); a shorter client
    /// deadline (grpc-timeout) wins.
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    pub request_timeout_ms: u64,
    /// Largest accepted request message, in bytes.
    #[arg(long, env = "MAX_REQUEST_BYTES", default_value_t = 64 * 1024)]
    pub max_request_bytes: usize,
    /// Where the outbox relay publishes.
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Most events the relay publishes per batch (one confirm round and one checkpoint update).
    #[arg(long, env = "RELAY_BATCH_SIZE", default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub relay_batch_size: u64,
    /// Group commit: writers, batch bounds, retries, snapshots.
    #[command(flatten)]
    pub batching: BatchArgs,
}

/// How commands are batched into group commits.
#[derive(Debug, Clone, clap::Args)]
pub struct BatchArgs {
    /// Command writers; each owns a share of the courses and has one group commit in flight.
    #[arg(long, env = "COMMAND_WRITERS", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub command_writers: u16,
    /// Most commands decided and written in one group commit.
    #[arg(long, env = "COMMAND_BATCH_MAX", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub command_batch_max: u32,
    /// How long a writer that found fewer than COMMAND_BATCH_MAX commands waiting lets more
    /// arrive before writing (microseconds; 0 writes at once). Idle latency grows by this much.
    #[arg(long, env = "COMMAND_BATCH_LINGER_US", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=5_000))]
    pub command_batch_linger_us: u64,
    /// How many times a command is decided again after another replica appended to its course
    /// first (when the request has no expected_version).
    #[arg(long, env = "COMMAND_RETRIES", default_value_t = 10)]
    pub command_retries: u32,
    /// A course is snapshotted when this many events were appended since its last snapshot.
    #[arg(long, env = "SNAPSHOT_EVERY", default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    pub snapshot_every: u64,
    /// Courses kept in memory per replica (spread over the writers).
    #[arg(long, env = "CACHED_COURSES", default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub cached_courses: u64,
}

impl Default for BatchArgs {
    fn default() -> Self {
        Self {
            command_writers: 8,
            command_batch_max: 256,
            command_batch_linger_us: 0,
            command_retries: 10,
            snapshot_every: 500,
            cached_courses: 50_000,
        }
    }
}
