//! The configuration every query service shares: where the events come from, how they are
//! consumed, and how long read-your-writes waits. Flattened into each service's clap `Config`.

use std::time::Duration;

use messaging::BrokerArgs;
use platform::auth::Credential;

use crate::runtime::RuntimeConfig;

/// Flags (with environment fallbacks) of a projection. The queue name is the service's own.
#[derive(Debug, Clone, clap::Args)]
pub struct ProjectionArgs {
    /// Where the events come from.
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Deliveries of a failing message before it is dead-lettered.
    #[arg(long, env = "DELIVERY_LIMIT", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub delivery_limit: u32,
    /// Unacknowledged messages in flight per consumer (at least twice the batch size keeps
    /// the next batch arriving while one is written).
    #[arg(long, env = "PREFETCH", default_value_t = 1024, value_parser = clap::value_parser!(u16).range(1..))]
    pub prefetch: u16,
    /// Most events applied together: folded per course in memory, written in one round trip
    /// and acknowledged with one multiple-ack.
    #[arg(long, env = "BATCH_SIZE", default_value_t = 512, value_parser = clap::value_parser!(u16).range(1..))]
    pub batch_size: u16,
    /// How long a batch waits for more events after its first (milliseconds). 0 (the default)
    /// takes only what has already arrived: under load, deliveries pile up while a batch is
    /// written, so batches grow by themselves, and an idle system pays no wait.
    #[arg(long, env = "BATCH_LINGER_MS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub batch_linger_ms: u64,
    /// How many partitions the events are split into by course (one queue `<queue>.p<k>`
    /// each, consumed by one replica at a time; the replicas share them). More partitions than
    /// replicas lets every replica take a share; changing it on a running system needs the
    /// steps in the README.
    #[arg(long, env = "PARTITIONS", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=i64::from(messaging::MAX_PARTITIONS)))]
    pub partitions: u16,
    /// A replica not heard from for this long (milliseconds) is considered gone and its
    /// partitions move to the others; heartbeats go out every third of it.
    #[arg(long, env = "PARTITION_MEMBER_TTL_MS", default_value_t = 3000, value_parser = clap::value_parser!(u64).range(300..=60_000))]
    pub partition_member_ttl_ms: u64,
    /// command-svc's gRPC URL (EventStoreService), read to fill version gaps and to rebuild.
    #[arg(long, env = "EVENT_STORE_URL", default_value = "http://127.0.0.1:50051")]
    pub event_store_url: String,
    /// Bearer token this service sends to EventStoreService: one issued to it with the
    /// `service` role (never minted here).
    #[arg(long, env = "EVENT_STORE_TOKEN", hide_env_values = true)]
    pub event_store_token: Option<String>,
    /// File holding that token, read at every call (a rotated token is picked up).
    #[arg(long, env = "EVENT_STORE_TOKEN_FILE")]
    pub event_store_token_file: Option<std::path::PathBuf>,
    /// Longest a read with `min_version`/`min_position` waits for the read model to catch up
    /// (milliseconds) before answering UNAVAILABLE.
    #[arg(long, env = "READ_YOUR_WRITES_TIMEOUT_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub read_your_writes_timeout_ms: u64,
    /// Rebuild the read model from the event store into a fresh generation at start-up, even
    /// when data exists (the current data stays served meanwhile).
    #[arg(long, env = "REBUILD_ON_START")]
    pub rebuild_on_start: bool,
    /// How long a rebuild's lease lasts without renewal (milliseconds; renewed every third of
    /// it). A building generation whose lease has expired is abandoned: its owner is gone.
    /// Keep it well above the clock skew between replicas.
    #[arg(long, env = "REBUILD_LEASE_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(300..=3_600_000))]
    pub rebuild_lease_ms: u64,
}

impl ProjectionArgs {
    /// Test and embedding defaults: the documented defaults, with `exchange` and
    /// `event_store_url`.
    pub fn new(rabbitmq_url: &str, exchange: &str, event_store_url: &str) -> Self {
        Self {
            broker: BrokerArgs::new(rabbitmq_url, exchange),
            delivery_limit: 5,
            prefetch: 1024,
            batch_size: 512,
            batch_linger_ms: 0,
            partitions: 4,
            partition_member_ttl_ms: 3000,
            event_store_url: event_store_url.to_owned(),
            event_store_token: None,
            event_store_token_file: None,
            read_your_writes_timeout_ms: 2000,
            rebuild_on_start: false,
            rebuild_lease_ms: 30_000,
        }
    }

    /// The bounded read-your-writes wait.
    pub fn read_your_writes_timeout(&self) -> Duration {
        Duration::from_millis(self.read_your_writes_timeout_ms)
    }

    /// The runtime settings for the consumer of `queue`; an error when the event-store
    /// credential is missing or unreadable.
    pub fn runtime(&self, queue: &str) -> anyhow::Result<RuntimeConfig> {
        let credential = Credential::from_settings(
            self.event_store_token.as_deref(),
            self.event_store_token_file.as_deref(),
        )
        .map_err(|e| anyhow::anyhow!("EVENT_STORE_TOKEN / EVENT_STORE_TOKEN_FILE: {e}"))?;
        if !(1..=messaging::MAX_PARTITIONS).contains(&self.partitions) {
            anyhow::bail!(
                "PARTITIONS must be 1-{} (got {})",
                messaging::MAX_PARTITIONS,
                self.partitions
            );
        }
        if matches!(credential, Credential::None) {
            anyhow::bail!(
                "set EVENT_STORE_TOKEN or EVENT_STORE_TOKEN_FILE: EventStoreService needs a token with the `service` role"
            );
        }
        Ok(RuntimeConfig {
            rabbitmq_url: self.broker.rabbitmq_url.clone(),
            exchange: self.broker.rabbitmq_exchange.clone(),
            queue: queue.to_owned(),
            delivery_limit: self.delivery_limit,
            prefetch: self.prefetch,
            batch_size: usize::from(self.batch_size),
            batch_linger: Duration::from_millis(self.batch_linger_ms),
            partitions: self.partitions,
            member_ttl: Duration::from_millis(self.partition_member_ttl_ms),
            event_store_url: self.event_store_url.clone(),
            event_store_credential: credential,
            rebuild_on_start: self.rebuild_on_start,
            rebuild_lease: Duration::from_millis(self.rebuild_lease_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: super::ProjectionArgs,
    }

    #[test]
    fn partitions_default_to_four_and_stay_within_one_to_sixty_four() {
        let parse = |extra: &[&str]| Cli::try_parse_from(["svc"].iter().chain(extra));
        assert_eq!(parse(&[]).expect("defaults").args.partitions, 4);
        assert_eq!(parse(&["--partitions", "64"]).expect("64").args.partitions, 64);
        for bad in ["0", "65"] {
            let err = parse(&["--partitions", bad]).err().expect("refused");
            assert!(err.to_string().contains("1..=64"), "{err}");
        }
    }
}
