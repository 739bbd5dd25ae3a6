//! Command-line and environment configuration.

use clap::Parser;
use projection::host::{ServiceArgs, default_to};

/// Course documents, search and statistics from the MongoDB read model.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "query-mongo-svc",
    version,
    about,
    mut_arg("queue_name", default_to("query-mongo.course-events")),
    mut_arg("grpc_listen", default_to("0.0.0.0:50053")),
    mut_arg("metrics_listen", default_to("0.0.0.0:9092"))
)]
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
    /// Queue, listen addresses, events, server and log format, as every query service.
    #[command(flatten)]
    pub service: ServiceArgs,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
            "AUTH_JWKS_FILE",
            "AUTH_ISSUER",
            "AUTH_AUDIENCE",
            "AUTH_LEEWAY_SECS",
            "AUTH_ROLES_CLAIM",
            "EVENT_STORE_TOKEN",
            "EVENT_STORE_TOKEN_FILE",
            "REQUEST_TIMEOUT_MS",
            "MAX_REQUEST_BYTES",
            "MAX_CONCURRENT_REQUESTS",
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
        assert_eq!(config.service.queue_name, "query-mongo.course-events");
        assert_eq!(config.service.grpc_listen.port(), 50053);
        assert_eq!(
            (config.service.projection.delivery_limit, config.service.projection.prefetch),
            (5, 1024)
        );
        assert_eq!(config.service.projection.read_your_writes_timeout(), Duration::from_secs(2));
        assert!(!config.service.projection.rebuild_on_start);
        let config = Config::try_parse_from(["query-mongo-svc", "--rebuild-on-start"]).expect("ok");
        assert!(config.service.projection.rebuild_on_start);
    }

    #[test]
    fn a_missing_event_store_credential_is_refused_at_start_up() {
        let config = Config::try_parse_from(["query-mongo-svc"]).expect("parses");
        assert!(config.service.projection.runtime("q").is_err());
        let config =
            Config::try_parse_from(["query-mongo-svc", "--event-store-token", "t"]).expect("ok");
        assert!(config.service.projection.runtime("q").is_ok());
    }
}
