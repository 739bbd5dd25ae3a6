//! The outbox relay: publishes every committed event to RabbitMQ, in global order, at least once.
//!
//! The events table *is* the outbox: events get a gap-free global position when they commit
//! (see [`crate::sequencer`]) and the relay keeps a checkpoint (`outbox_checkpoint`) of the last
//! position the broker confirmed. One replica at a time publishes: the one holding the relay's
//! lease (see [`crate::store::RelayLease`]); the others stand by and ask again every [`POLL`].
//! The holder keeps up to [`WINDOW`] batches in flight: it publishes the next batch while the
//! broker still confirms the earlier ones, and moves the checkpoint past a batch only once it and
//! every batch before it were confirmed. Any failure drops what is in flight and starts again
//! from the checkpoint: a crash republishes (consumers deduplicate by event id and version), it
//! never skips an event.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::FutureExt;

use messaging::{BrokerError, Pool};
use platform::retry::{next_delay, reconnect_backoff};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::envelope::envelope;
use crate::readiness::Readiness;
use crate::store::{EventStore, Leased, RelayLease, StoreError};

/// Health name that reports whether the relay can reach the broker.
pub const RELAY_HEALTH: &str = "course.v1.EventRelay";
/// The relay re-checks the outbox at least this often without a wake-up.
const POLL: Duration = Duration::from_secs(1);
/// Most batches published and not yet confirmed.
const WINDOW: usize = 8;
/// Under load the checkpoint is stored at most this often (and whenever nothing is in
/// flight) rather than once per confirmed batch (~200 statements/s under load): a checkpoint
/// only saves republishing after a crash.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);
/// On stop, how long the batches in flight may take to be confirmed.
const STOP_DRAIN: Duration = Duration::from_secs(3);
/// How long the broker may take to confirm a batch, from its publication.
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

/// Runs until `stop`: (re)connects, takes the lease (or stands by), publishes whatever is pending.
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
    loop {
        if stop.is_cancelled() {
            return;
        }
        let result: Result<(), RelayError> = async {
            store.ensure_outbox(&name).await?;
            let channel = messaging::publisher_channel(&pool, &config.exchange).await?;
            health.set_service_status(RELAY_HEALTH, ServingStatus::Serving).await;
            tracing::info!(exchange = %config.exchange, "relay connected to RabbitMQ");
            delays = reconnect_backoff();
            let Some(lease) = take_lease(&store, &name, &stop).await? else {
                return Ok(());
            };
            tracing::info!(checkpoint = lease.position, "relay holds the lease; publishing");
            Publisher::new(&store, &channel, &config, lease).run(&mut head, &stop).await
        }
        .await;
        let Err(err) = result else { return };
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
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// Waits until this replica holds the lease; `None` when stopped first.
async fn take_lease(
    store: &EventStore,
    name: &str,
    stop: &CancellationToken,
) -> Result<Option<RelayLease>, RelayError> {
    let mut candidate = store.outbox_lease_candidate(name).await?;
    let mut standing_by = false;
    loop {
        match candidate.try_lease().await? {
            Leased::Held(lease) => return Ok(Some(lease)),
            Leased::Standby(again) => candidate = again,
        }
        if !standing_by {
            standing_by = true;
            tracing::info!("another replica publishes the events; this one stands by");
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = stop.cancelled() => return Ok(None),
        }
    }
}

/// A batch published and not yet known to be confirmed.
struct InFlight {
    /// Global position of its last event.
    last: u64,
    /// When each of its events was decided.
    decided: Vec<DateTime<Utc>>,
    /// Resolves when the broker confirmed all of it.
    confirmed: Pin<Box<dyn Future<Output = Result<(), BrokerError>> + Send>>,
}

/// What woke the publisher up.
enum Wake {
    Confirmed(Result<(), BrokerError>),
    Stop,
    MaybeMore,
}

/// The lease holder's loop.
struct Publisher<'a> {
    store: &'a EventStore,
    channel: &'a messaging::lapin::Channel,
    config: &'a RelayConfig,
    lease: RelayLease,
    /// Everything up to here was confirmed (the stored checkpoint may be behind by up to
    /// [`CHECKPOINT_EVERY`]).
    confirmed_to: u64,
    checkpointed_at: Instant,
}

impl<'a> Publisher<'a> {
    fn new(
        store: &'a EventStore,
        channel: &'a messaging::lapin::Channel,
        config: &'a RelayConfig,
        lease: RelayLease,
    ) -> Self {
        let confirmed_to = lease.position;
        Self { store, channel, config, lease, confirmed_to, checkpointed_at: Instant::now() }
    }

    async fn run(
        mut self,
        head: &mut watch::Receiver<u64>,
        stop: &CancellationToken,
    ) -> Result<(), RelayError> {
        let mut read = self.lease.position;
        let mut in_flight: VecDeque<InFlight> = VecDeque::with_capacity(WINDOW);
        loop {
            // Read the head before looking at the outbox: an event sequenced meanwhile still
            // wakes the wait below.
            let seen = *head.borrow_and_update();
            while in_flight.len() < WINDOW {
                let Some(batch) = self.publish_next(read).await? else { break };
                read = batch.last;
                let full = batch.decided.len() as u64 >= self.config.batch_size;
                in_flight.push_back(batch);
                if !full {
                    break;
                }
            }
            let wake = tokio::select! {
                biased;
                () = stop.cancelled() => Wake::Stop,
                result = async { in_flight.front_mut().expect("checked").confirmed.as_mut().await },
                    if !in_flight.is_empty() => Wake::Confirmed(result),
                _ = head.wait_for(|h| *h > seen), if in_flight.len() < WINDOW => Wake::MaybeMore,
                () = tokio::time::sleep(POLL), if in_flight.is_empty() => Wake::MaybeMore,
            };
            match wake {
                Wake::Confirmed(result) => {
                    result?;
                    self.confirmed(in_flight.pop_front().expect("checked"));
                    // Batches confirmed meanwhile are settled in the same pass.
                    while let Some(done) =
                        in_flight.front_mut().and_then(|b| b.confirmed.as_mut().now_or_never())
                    {
                        done?;
                        self.confirmed(in_flight.pop_front().expect("checked"));
                    }
                    if in_flight.is_empty() || self.checkpointed_at.elapsed() >= CHECKPOINT_EVERY {
                        self.checkpoint().await?;
                    }
                }
                Wake::Stop => return self.drain(in_flight).await,
                Wake::MaybeMore => {}
            }
        }
    }

    /// Publishes the batch after position `after`, or `None` when there is none yet.
    async fn publish_next(&self, after: u64) -> Result<Option<InFlight>, RelayError> {
        let events = self.store.read_all(after, self.config.batch_size).await?;
        let Some(last) = events.last().and_then(|e| e.global_position) else {
            return Ok(None);
        };
        let envelopes: Vec<_> = events.iter().map(envelope).collect();
        record_lag("relay_publish_lag_seconds", events.iter().map(|e| e.occurred_at));
        let confirms = messaging::publish(self.channel, &self.config.exchange, &envelopes).await?;
        Ok(Some(InFlight {
            last,
            decided: events.iter().map(|e| e.occurred_at).collect(),
            confirmed: Box::pin(confirms.wait(CONFIRM_TIMEOUT)),
        }))
    }

    /// Records a confirmed batch (every batch before it is confirmed too).
    fn confirmed(&mut self, batch: InFlight) {
        self.confirmed_to = batch.last;
        record_lag("relay_event_lag_seconds", batch.decided.iter().copied());
        metrics::counter!("events_published_total").increment(batch.decided.len() as u64);
        tracing::debug!(count = batch.decided.len(), position = batch.last, "published");
    }

    /// Moves the stored checkpoint to the last confirmed position.
    async fn checkpoint(&mut self) -> Result<(), RelayError> {
        if self.confirmed_to > self.lease.position {
            self.lease.advance(self.confirmed_to).await?;
        }
        self.checkpointed_at = Instant::now();
        Ok(())
    }

    /// On stop: lets the batches in flight be confirmed (for at most [`STOP_DRAIN`]) so that the
    /// next holder does not publish them again, then gives the lease up.
    async fn drain(mut self, mut in_flight: VecDeque<InFlight>) -> Result<(), RelayError> {
        let drained = tokio::time::timeout(STOP_DRAIN, async {
            while let Some(mut batch) = in_flight.pop_front() {
                batch.confirmed.as_mut().await?;
                self.confirmed(batch);
            }
            Ok::<(), RelayError>(())
        })
        .await;
        match drained {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "relay stopped with batches unconfirmed"),
            Err(_) => tracing::warn!(
                ?STOP_DRAIN,
                "relay stopped before the broker confirmed its last batches; the next holder publishes them again"
            ),
        }
        if let Err(err) = self.checkpoint().await {
            tracing::warn!(error = %err, "relay stopped without storing its last checkpoint");
        }
        self.lease.close().await;
        Ok(())
    }
}

/// Records, in histogram `name`, how long ago each event was decided.
fn record_lag(name: &'static str, decided: impl Iterator<Item = DateTime<Utc>>) {
    let now = Utc::now();
    let histogram = metrics::histogram!(name);
    for decided in decided {
        histogram.record((now - decided).to_std().unwrap_or_default().as_secs_f64());
    }
}
