//! Command-line and environment configuration.

use std::net::SocketAddr;

use clap::{Parser, Subcommand};
use messaging::BrokerArgs;
use platform::server::ServerArgs;
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
    /// Print a development token for `--sub`, signed with AUTH_JWT_SECRET (HS256) or
    /// `--private-key-file` (RS256/ES256), carrying
    /// `--role`s in the `roles` claim (`service` for a query service's EVENT_STORE_TOKEN,
    /// `operator` for admin RPCs).
    Token(TokenArgs),
}

/// `command-svc token`: a development token.
#[derive(Debug, Clone, clap::Args)]
pub struct TokenArgs {
    /// The subject: a user's UUID (a new random one when omitted), or a service's name.
    #[arg(long)]
    pub sub: Option<String>,
    /// A role to grant (repeatable): `user` (implied by a UUID subject), `service`,
    /// `operator`.
    #[arg(long = "role")]
    pub roles: Vec<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 86_400)]
    pub ttl_secs: u64,
    /// Sign with this PEM private key (RS256 for RSA, ES256 for P-256) instead of
    /// AUTH_JWT_SECRET: for services that verify with the public key
    /// (AUTH_JWT_PUBLIC_KEY_FILE), e.g. the development key of deploy/.
    #[arg(long)]
    pub private_key_file: Option<std::path::PathBuf>,
}

impl TokenArgs {
    /// Signs the token, with the private key when one is given, else with `secret`.
    pub fn mint(&self, secret: Option<&str>) -> anyhow::Result<String> {
        use platform::auth;
        let sub = self.sub.clone().unwrap_or_else(|| Uuid::now_v7().to_string());
        let mut roles: Vec<&str> = self.roles.iter().map(String::as_str).collect();
        if roles.is_empty() && Uuid::parse_str(&sub).is_ok() {
            roles.push(auth::ROLE_USER);
        }
        let ttl = std::time::Duration::from_secs(self.ttl_secs);
        match (&self.private_key_file, secret) {
            (Some(path), _) => std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))
                .and_then(|pem| auth::mint_pem_with_roles(&pem, &sub, &roles, ttl)),
            (None, Some(secret)) => {
                auth::mint_hs256_with_roles(secret.as_bytes(), &sub, &roles, ttl)
            }
            (None, None) => {
                Err(anyhow::anyhow!("set AUTH_JWT_SECRET or --private-key-file to mint a token"))
            }
        }
    }
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
    /// The gRPC server: limits, keep-alive, bearer-token verification (`token` signs with
    /// AUTH_JWT_SECRET).
    #[command(flatten)]
    pub server: ServerArgs,
    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// PostgreSQL connections of EventStoreService's readers: a pool of their own, so that
    /// readers can never take the connections commands need.
    #[arg(long, env = "EVENT_STORE_READ_CONNECTIONS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub event_store_read_connections: u32,
    /// Most concurrent `ReadAll {follow: true}` streams; more are refused with
    /// RESOURCE_EXHAUSTED.
    #[arg(long, env = "MAX_FOLLOW_STREAMS", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_follow_streams: u64,
    /// A follow stream that has had nothing to send for this long ends with UNAVAILABLE
    /// (resume from the last global_position), seconds.
    #[arg(long, env = "FOLLOW_IDLE_TIMEOUT_SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub follow_idle_timeout_secs: u64,
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
    /// 0: one per CPU (measured: fewer, larger commits beat more, smaller ones).
    #[arg(long, env = "COMMAND_WRITERS", default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=256))]
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
    /// A course is snapshotted when this many events were appended since its last snapshot
    /// (or a tenth of its participant count, when that is more).
    #[arg(long, env = "SNAPSHOT_EVERY", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub snapshot_every: u64,
    /// Courses kept in memory per replica (spread over the writers).
    #[arg(long, env = "CACHED_COURSES", default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub cached_courses: u64,
}

impl BatchArgs {
    /// The number of writers to start.
    pub fn writers(&self) -> usize {
        match self.command_writers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => usize::from(n),
        }
    }
}

impl Default for BatchArgs {
    fn default() -> Self {
        Self {
            command_writers: 0,
            command_batch_max: 256,
            command_batch_linger_us: 0,
            command_retries: 10,
            snapshot_every: 100,
            cached_courses: 50_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::BatchArgs;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        batching: BatchArgs,
    }

    #[test]
    fn the_batching_defaults_in_code_are_the_documented_flag_defaults() {
        let parsed = Flags::parse_from(["command-svc"]).batching;
        assert_eq!(format!("{parsed:?}"), format!("{:?}", BatchArgs::default()));
    }
}
