//! The outbox relay: publishes every committed event to RabbitMQ, in global order, at least once.
//!
//! The events table *is* the outbox: events get a gap-free global position right after commit
//! (see [`crate::sequencer`]) and the relay keeps a checkpoint (`outbox_checkpoint`) of the last
//! position the broker confirmed. Each batch runs inside a lease — a transaction holding the
//! checkpoint row with `FOR UPDATE SKIP LOCKED` — so with several replicas exactly one publishes
//! at a time, in order. Messages are published with publisher confirms, and the checkpoint moves
//! only after every message of the batch was confirmed: a crash in between republishes the batch
//! (consumers deduplicate by event id and version), it never skips one.

use std::time::{Duration, Instant};

use messaging::{BrokerError, Pool};
use platform::retry::{next_delay, reconnect_backoff};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::envelope::envelope;
use crate::readiness::Readiness;
use crate::store::{EventStore, StoreError};

/// Health name that reports whether the relay can reach the broker.
pub const RELAY_HEALTH: &str = "course.v1.EventRelay";
/// The relay re-checks the outbox at least this often without a wake-up.
const POLL: Duration = Duration::from_secs(1);
/// How long the broker may take to confirm a batch.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a non-empty backlog is logged while the broker is unreachable.
const BACKLOG_LOG_EVERY: Duration = Duration::from_secs(10);

/// Relay settings.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Exchange to publish to.
    pub exchange: String,
    /// Most events per batch (and per transaction).
    pub batch_size: u64,
}

impl RelayConfig {
    /// Checkpoint row name: one per exchange.
    pub fn checkpoint_name(&self) -> String {
        format!("rabbitmq:{}", self.exchange)
    }
}

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Runs until `stop`: (re)connects, publishes whatever is pending, waits for the head to move.
pub async fn run_relay(
    store: EventStore,
    pool: Pool,
    config: RelayConfig,
    mut head: watch::Receiver<u64>,
    health: HealthReporter,
    readiness: Readiness,
    stop: CancellationToken,
) {
    health.set_service_status(RELAY_HEALTH, ServingStatus::NotServing).await;
    tokio::select! {
        () = readiness.wait() => {}
        () = stop.cancelled() => return,
    }
    let name = config.checkpoint_name();
    let mut delays = reconnect_backoff();
    let mut last_backlog_log = Instant::now() - BACKLOG_LOG_EVERY;
    'session: loop {
        if stop.is_cancelled() {
            return;
        }
        let result: Result<(), RelayError> = async {
            store.ensure_outbox(&name).await?;
            let channel = messaging::publisher_channel(&pool, &config.exchange).await?;
            health.set_service_status(RELAY_HEALTH, ServingStatus::Serving).await;
            tracing::info!(exchange = %config.exchange, "relay connected to RabbitMQ");
            delays = reconnect_backoff();
            loop {
                // Read the head before looking at the outbox: an event sequenced while the batch
                // is published then still wakes the wait below.
                let seen = *head.borrow_and_update();
                let published = publish_batch(&store, &channel, &config, &name).await?;
                if published > 0 {
                    continue;
                }
                tokio::select! {
                    _ = head.wait_for(|h| *h > seen) => {}
                    () = tokio::time::sleep(POLL) => {}
                    () = stop.cancelled() => return Ok(()),
                }
            }
        }
        .await;
        match result {
            Ok(()) => return,
            Err(err) => {
                if matches!(err, RelayError::Broker(_)) {
                    health.set_service_status(RELAY_HEALTH, ServingStatus::NotServing).await;
                }
                let delay = next_delay(&mut delays);
                let backlog = store.outbox_backlog(&name).await.unwrap_or_default();
                if last_backlog_log.elapsed() >= BACKLOG_LOG_EVERY || backlog.events == 0 {
                    last_backlog_log = Instant::now();
                    tracing::warn!(
                        error = %err,
                        backlog_events = backlog.events,
                        oldest_unpublished_secs = backlog.oldest_age_secs,
                        retry_in = ?delay,
                        "relay cannot publish; commands keep succeeding and the backlog will drain in order"
                    );
                }
                tokio::select! {
                    () = tokio::time::sleep(delay) => continue 'session,
                    () = stop.cancelled() => return,
                }
            }
        }
    }
}

/// Publishes the next batch under the lease. Returns how many events went out (0 when there
/// was nothing to do, or another replica holds the lease).
#[tracing::instrument(skip_all, err)]
async fn publish_batch(
    store: &EventStore,
    channel: &messaging::lapin::Channel,
    config: &RelayConfig,
    name: &str,
) -> Result<usize, RelayError> {
    let Some(lease) = store.lease_outbox(name).await? else {
        return Ok(0);
    };
    let events = lease.pending(config.batch_size).await?;
    let Some(last) = events.last().and_then(|e| e.global_position) else {
        lease.release().await?;
        return Ok(0);
    };
    let envelopes: Vec<_> = events.iter().map(envelope).collect();
    messaging::publish_confirmed(channel, &config.exchange, &envelopes, CONFIRM_TIMEOUT).await?;
    lease.advance(last).await?;
    metrics::counter!("events_published_total").increment(envelopes.len() as u64);
    tracing::debug!(count = envelopes.len(), position = last, "published");
    Ok(envelopes.len())
}
