//! Command-line and environment configuration.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use platform::auth::AuthArgs;
use platform::telemetry::LogFormat;

/// Course documents, search and statistics from the MongoDB read model.
#[derive(Debug, Clone, Parser)]
#[command(name = "query-mongo-svc", version, about)]
pub struct Config {
    /// MongoDB connection string (a replica set in production).
    #[arg(
        long,
        env = "MONGODB_URI",
        default_value = "mongodb://127.0.0.1:27017",
        hide_env_values = true
    )]
    pub mongodb_uri: String,
    /// Database that holds the read model.
    #[arg(long, env = "MONGODB_DATABASE", default_value = "course_read")]
    pub mongodb_database: String,
    /// RabbitMQ URL the events are consumed from.
    #[arg(
        long,
        env = "RABBITMQ_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true
    )]
    pub rabbitmq_url: String,
    /// Durable topic exchange command-svc publishes the events to.
    #[arg(long, env = "RABBITMQ_EXCHANGE", default_value = "course.events")]
    pub rabbitmq_exchange: String,
    /// This read model's durable queue, shared by its replicas (dead letters go to
    /// `<queue>.dlq`).
    #[arg(long, env = "QUEUE_NAME", default_value = "query-mongo.course-events")]
    pub queue_name: String,
    /// command-svc's gRPC address, read to fill version gaps and to rebuild.
    #[arg(long, env = "EVENT_STORE_URL", default_value = "http://127.0.0.1:50051")]
    pub event_store_url: String,
    /// Address the gRPC server listens on.
    #[arg(long, env = "GRPC_LISTEN", default_value = "0.0.0.0:50053")]
    pub grpc_listen: SocketAddr,
    /// Address of the Prometheus metrics endpoint (`GET /metrics`).
    #[arg(long, env = "METRICS_LISTEN", default_value = "0.0.0.0:9092")]
    pub metrics_listen: SocketAddr,
    /// How bearer tokens are verified (AUTH_JWT_SECRET or AUTH_JWT_PUBLIC_KEY_FILE).
    #[command(flatten)]
    pub auth: AuthArgs,
    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Deliveries of a failing message before it is dead-lettered.
    #[arg(long, env = "DELIVERY_LIMIT", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub delivery_limit: u32,
    /// Unacknowledged messages in flight per consumer.
    #[arg(long, env = "PREFETCH", default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    pub prefetch: u16,
    /// Longest a read with `min_version`/`min_position` waits for the read model to catch up
    /// (milliseconds) before answering UNAVAILABLE.
    #[arg(long, env = "READ_YOUR_WRITES_TIMEOUT_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub read_your_writes_timeout_ms: u64,
    /// Rebuild the read model from the event store into a fresh generation at start-up, even
    /// when data exists (the current data stays served meanwhile).
    #[arg(long, env = "REBUILD_ON_START")]
    pub rebuild_on_start: bool,
}

impl Config {
    /// The bounded read-your-writes wait.
    pub fn read_your_writes_timeout(&self) -> Duration {
        Duration::from_millis(self.read_your_writes_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn help_documents_every_environment_variable() {
        let help = Config::command().render_long_help().to_string();
        for env in [
            "MONGODB_URI",
            "MONGODB_DATABASE",
            "RABBITMQ_URL",
            "RABBITMQ_EXCHANGE",
            "QUEUE_NAME",
            "EVENT_STORE_URL",
            "GRPC_LISTEN",
            "AUTH_JWT_SECRET",
            "AUTH_JWT_PUBLIC_KEY_FILE",
            "LOG_FORMAT",
            "DELIVERY_LIMIT",
            "PREFETCH",
            "READ_YOUR_WRITES_TIMEOUT_MS",
            "REBUILD_ON_START",
        ] {
            assert!(help.contains(env), "--help does not mention {env}");
        }
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let config = Config::try_parse_from(["query-mongo-svc"]).expect("parses");
        assert_eq!(config.mongodb_database, "course_read");
        assert_eq!(config.queue_name, "query-mongo.course-events");
        assert_eq!(config.grpc_listen.port(), 50053);
        assert_eq!((config.delivery_limit, config.prefetch), (5, 64));
        assert_eq!(config.read_your_writes_timeout(), Duration::from_secs(2));
        assert!(!config.rebuild_on_start);
        let config = Config::try_parse_from(["query-mongo-svc", "--rebuild-on-start"]).expect("ok");
        assert!(config.rebuild_on_start);
    }

    #[test]
    fn a_short_secret_or_no_verifier_is_refused_at_start_up() {
        assert!(AuthArgs::default().authenticator().is_err());
        assert!(AuthArgs::hs256("short").authenticator().is_err());
        assert!(AuthArgs::hs256("long-enough-secret-0123").authenticator().is_ok());
    }
}
