//! The RabbitMQ consumer loop, one per partition this replica owns: deliveries taken in batches (bounded by the prefetch, a batch
//! size and a short linger), applied together, then settled — poison messages and events that
//! do not fit are rejected one by one, everything else acknowledged with one multiple-ack after
//! the batch's writes. Reconnection after outages, graceful stop.
//!
//! A message given up on (a body that does not decode; an event that still fails on its last
//! permitted delivery, counted by the quorum queue's `x-delivery-count`) is recorded as a
//! dead letter in the read model, so that its position counts as applied (`dead_letter`), and
//! then rejected into the broker's dead-letter queue.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use messaging::lapin::Channel;
use messaging::lapin::message::Delivery;
use messaging::lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions};
use messaging::lapin::types::FieldTable;
use messaging::{ConsumerTopology, Pool};
use platform::retry::{next_delay, reconnect_backoff};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::dead_letter::{self, DeadLetter};
use crate::decode::decode_body;
use crate::fold::StoredEvent;
use crate::projector::Projector;
use crate::read_model::ReadModel;

/// How long a session's partition consumers may take to finish their batches in hand once the
/// session ends.
const RELEASE_WAIT: Duration = Duration::from_secs(10);

/// How deliveries are grouped.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    /// Most deliveries in a batch.
    pub size: usize,
    /// How long a batch waits for more deliveries after its first.
    pub linger: Duration,
}

/// Consumes the partitions named by `owned` (see `partitions`) until `stop`, one channel and
/// one subscription per partition on one connection, each batching on its own. A partition
/// that leaves `owned` is released: it takes no new batch, finishes and acknowledges the batch
/// in hand, then closes its channel, which puts the messages still prefetched back at the
/// head of the queue for the next (single active) consumer: nothing is lost, doubled or
/// reordered. A subscription to a partition that another replica still consumes waits behind
/// it. On stop every partition is released the same way. Reconnects after outages.
pub async fn run_consumer<M: ReadModel>(
    pool: Pool,
    topology: ConsumerTopology,
    batching: Batching,
    projector: Projector<M>,
    mut owned: watch::Receiver<BTreeSet<u16>>,
    stop: CancellationToken,
) {
    let mut delays = reconnect_backoff();
    loop {
        let result: Result<(), messaging::BrokerError> = async {
            let connection = pool.get().await?;
            let setup = connection.create_channel().await?;
            topology.declare(&setup).await?;
            let _ = setup.close(200, "declared".into()).await;
            projector.progress().set_consuming(true);
            tracing::info!(queue = %topology.queue, partitions = topology.partitions, "consuming events");
            delays = reconnect_backoff();
            // Partition → (worker number, its release token).
            let mut workers: HashMap<u16, (u64, CancellationToken)> = HashMap::new();
            let mut tasks: JoinSet<(u16, u64, Result<(), messaging::BrokerError>)> = JoinSet::new();
            let mut next_worker = 0u64;
            let outcome = loop {
                let wanted = owned.borrow_and_update().clone();
                let released: Vec<u16> =
                    workers.keys().copied().filter(|k| !wanted.contains(k)).collect();
                for partition in released {
                    if let Some((_, release)) = workers.remove(&partition) {
                        tracing::info!(partition, "releasing partition");
                        release.cancel();
                    }
                }
                for partition in wanted.iter().copied() {
                    if workers.contains_key(&partition) {
                        continue;
                    }
                    let channel = connection.create_channel().await?;
                    topology.prepare_consumer(&channel).await?;
                    let release = stop.child_token();
                    next_worker += 1;
                    workers.insert(partition, (next_worker, release.clone()));
                    let worker = next_worker;
                    let (topology, projector) = (topology.clone(), projector.clone());
                    tasks.spawn(async move {
                        let result = consume_partition(
                            channel, &topology, partition, batching, &projector, release,
                        )
                        .await;
                        (partition, worker, result)
                    });
                }
                projector.progress().set_partitions_owned(wanted.len());
                tokio::select! {
                    () = stop.cancelled() => break Ok(()),
                    changed = owned.changed() => if changed.is_err() {
                        break Ok(());
                    },
                    Some(joined) = tasks.join_next() => match joined {
                        // A worker that was released ends Ok; one still wanted ended because
                        // its channel or the connection failed, or the broker cancelled it.
                        Ok((partition, worker, result)) => {
                            if workers.get(&partition).is_some_and(|(w, _)| *w == worker) {
                                break result;
                            }
                        }
                        // A worker that panicked (a cancelled one: the runtime is going away).
                        Err(err) => {
                            if err.is_panic() {
                                tracing::error!(error = %err, "partition consumer panicked");
                                break Ok(());
                            }
                        }
                    },
                }
            };
            // A failed session consumes nothing from here on: say so at once (health), not
            // after the other partitions have wound down.
            if outcome.is_err() {
                projector.progress().set_consuming(false);
            }
            // Release everything: each worker finishes and acknowledges its batch in hand. On a
            // broken connection that cannot always end (a channel that never answers): after
            // RELEASE_WAIT the rest is dropped, its messages return with the connection.
            for (_, release) in workers.values() {
                release.cancel();
            }
            let drained = tokio::time::timeout(RELEASE_WAIT, async {
                while tasks.join_next().await.is_some() {}
            })
            .await;
            if drained.is_err() {
                tracing::warn!(
                    still_running = tasks.len(),
                    "partition consumers did not finish their batches in time; dropping them"
                );
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
            }
            projector.progress().set_partitions_owned(0);
            // Whatever a failed worker left open (its channel, its unacknowledged messages) goes
            // back to the broker with the connection; the next session opens a fresh one.
            let _ = connection.close(200, "consumer session over".into()).await;
            outcome
        }
        .await;
        projector.progress().set_consuming(false);
        if stop.is_cancelled() {
            tracing::info!("consumer stopped");
            return;
        }
        let delay = next_delay(&mut delays);
        match result {
            Err(err) => {
                tracing::warn!(error = %err, retry_in = ?delay, "consumer disconnected; reconnecting")
            }
            Ok(()) => {
                tracing::warn!(retry_in = ?delay, "subscription ended by the broker; resubscribing")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// Consumes one partition on `channel` until `release` (or a failure): batches as configured;
/// on release finishes the batch in hand and closes the channel, which returns what is still
/// prefetched to the head of the queue.
async fn consume_partition<M: ReadModel>(
    channel: Channel,
    topology: &ConsumerTopology,
    partition: u16,
    batching: Batching,
    projector: &Projector<M>,
    release: CancellationToken,
) -> Result<(), messaging::BrokerError> {
    let queue = topology.partition_queue(partition);
    let tag = format!("projection-{}-p{partition}", std::process::id());
    let mut deliveries = channel
        .basic_consume(
            queue.as_str().into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    tracing::info!(partition, %queue, "partition taken (consuming once no other replica is)");
    let result = async {
        loop {
            let first = tokio::select! {
                biased;
                () = release.cancelled() => return Ok(()),
                delivery = deliveries.next() => match delivery {
                    Some(Ok(delivery)) => delivery,
                    Some(Err(err)) => return Err(err.into()),
                    None => return Ok(()),
                },
            };
            let mut batch = vec![first];
            let deadline = tokio::time::Instant::now() + batching.linger;
            let mut ended = None;
            while batch.len() < batching.size {
                // What has already arrived, then (until the linger is over) what arrives.
                let next = match deliveries.next().now_or_never() {
                    Some(next) => next,
                    None if batching.linger.is_zero() => break,
                    None => match tokio::time::timeout_at(deadline, deliveries.next()).await {
                        Ok(next) => next,
                        Err(_) => break,
                    },
                };
                match next {
                    Some(Ok(delivery)) => batch.push(delivery),
                    Some(Err(err)) => {
                        ended = Some(Err(err.into()));
                        break;
                    }
                    None => {
                        ended = Some(Ok(()));
                        break;
                    }
                }
            }
            projector.progress().consumed(partition, batch.len() as u64);
            // The batch in hand is finished even when the subscription ended meanwhile:
            // its acknowledgements fail harmlessly on a dead channel (redelivery).
            handle_batch(projector, batch, topology.delivery_limit, &release).await?;
            if let Some(ended) = ended {
                return ended;
            }
        }
    }
    .await;
    // Closing (not cancelling) hands what is prefetched back in order: a cancelled single
    // active consumer would keep its unacknowledged messages while the next one already
    // receives later ones.
    let _ = channel.close(200, "partition released".into()).await;
    if release.is_cancelled() {
        tracing::info!(partition, "partition released");
    }
    result
}

/// Applies a batch and settles every delivery in it. A message is acknowledged only after its
/// write; the batch's acknowledgements go out as one multiple-ack after the rejections.
async fn handle_batch<M: ReadModel>(
    projector: &Projector<M>,
    batch: Vec<Delivery>,
    delivery_limit: u32,
    stop: &CancellationToken,
) -> Result<(), messaging::BrokerError> {
    let mut events: Vec<StoredEvent> = Vec::with_capacity(batch.len());
    // Index in `batch` of each event.
    let mut origin: Vec<usize> = Vec::with_capacity(batch.len());
    // Settled one by one (rejected); never covered by the multiple-ack.
    let mut rejected = vec![false; batch.len()];
    // One span per message, continuing the command's trace; each ends when the batch is
    // written, so its duration is the message's time in the consumer.
    let mut spans = Vec::with_capacity(batch.len());
    for (index, delivery) in batch.iter().enumerate() {
        match decode_body(&delivery.data) {
            Ok(event) => {
                projector.progress().received(event.global_position);
                let span = tracing::info_span!(
                    "projection.consume",
                    otel.kind = "consumer",
                    messaging.system = "rabbitmq",
                    event_type = event.event.event_type(),
                    course_id = %event.course_id,
                    version = event.version,
                );
                if let Some(traceparent) = header(delivery, "traceparent") {
                    platform::propagation::set_parent_from_traceparent(&span, &traceparent);
                }
                spans.push(span);
                events.push(event);
                origin.push(index);
            }
            Err(err) => {
                tracing::error!(error = %err, "poison message: dead-lettering it");
                let letter = DeadLetter::of_message(
                    &delivery.data,
                    |name| header_text(delivery, name),
                    err.to_string(),
                );
                if let Some(letter) = letter
                    && !record(projector, &letter, stop).await
                {
                    // Stopping with storage down: redelivered later.
                    return Ok(());
                }
                projector.progress().dead_lettered();
                delivery
                    .acker
                    .nack(BasicNackOptions { requeue: false, ..Default::default() })
                    .await?;
                rejected[index] = true;
            }
        }
    }
    if !events.is_empty() {
        let span = tracing::info_span!(parent: spans.first().and_then(|s| s.id()), "projection.batch", events = events.len());
        for other in spans.iter().skip(1) {
            span.follows_from(other);
        }
        let applied = apply(projector, &events, stop).instrument(span).await;
        // The messages' spans end with their writes.
        spans.clear();
        let Some(failed) = applied else {
            // Stopping with storage down: leave the batch unacknowledged for redelivery.
            return Ok(());
        };
        for (index, err) in failed {
            let at = origin[index];
            // The quorum queue counts deliveries; the last permitted one is recorded and
            // dead-lettered here (the broker would park it without a record).
            if delivery_count(&batch[at]) + 1 >= u64::from(delivery_limit) {
                tracing::error!(error = %err, "event failed on its last delivery; dead-lettering it");
                let letter = DeadLetter::of_event(&events[index], err.to_string());
                if !record(projector, &letter, stop).await {
                    return Ok(());
                }
                projector.progress().dead_lettered();
                batch[at]
                    .acker
                    .nack(BasicNackOptions { requeue: false, ..Default::default() })
                    .await?;
            } else {
                tracing::warn!(error = %err, "event failed; requeueing (dead-lettered after the delivery limit)");
                batch[at]
                    .acker
                    .nack(BasicNackOptions { requeue: true, ..Default::default() })
                    .await?;
            }
            rejected[at] = true;
        }
    }
    // Deliveries arrive in tag order and every earlier batch is settled, so acknowledging the
    // last accepted tag with `multiple` settles exactly this batch's accepted messages.
    if let Some(last) = batch.iter().zip(&rejected).rev().find(|(_, r)| !**r).map(|(d, _)| d) {
        last.acker.ack(BasicAckOptions { multiple: true }).await?;
    }
    Ok(())
}

/// Records a dead letter, retrying while storage is down; false when stopped first.
async fn record<M: ReadModel>(
    projector: &Projector<M>,
    letter: &DeadLetter,
    stop: &CancellationToken,
) -> bool {
    let mut delays = reconnect_backoff();
    loop {
        match dead_letter::record(projector, letter).await {
            Ok(()) => return true,
            Err(err) => {
                let delay = next_delay(&mut delays);
                tracing::warn!(error = %err, retry_in = ?delay, "cannot record a dead letter yet");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = stop.cancelled() => return false,
                }
            }
        }
    }
}

/// Earlier deliveries of this message (the quorum queue's `x-delivery-count`; absent on the
/// first).
fn delivery_count(delivery: &Delivery) -> u64 {
    use messaging::lapin::types::AMQPValue;
    let Some(headers) = delivery.properties.headers().as_ref() else { return 0 };
    match headers.inner().get("x-delivery-count") {
        Some(AMQPValue::LongLongInt(n)) => u64::try_from(*n).unwrap_or(0),
        Some(AMQPValue::LongInt(n)) => u64::try_from(*n).unwrap_or(0),
        Some(AMQPValue::LongUInt(n)) => u64::from(*n),
        Some(AMQPValue::ShortInt(n)) => u64::try_from(*n).unwrap_or(0),
        Some(AMQPValue::ShortUInt(n)) => u64::from(*n),
        Some(AMQPValue::ShortShortInt(n)) => u64::try_from(*n).unwrap_or(0),
        Some(AMQPValue::ShortShortUInt(n)) => u64::from(*n),
        _ => 0,
    }
}

/// A header as text, whether sent as a string or an integer.
fn header_text(delivery: &Delivery, name: &str) -> Option<String> {
    use messaging::lapin::types::AMQPValue;
    let headers = delivery.properties.headers().as_ref()?;
    match headers.inner().get(name)? {
        AMQPValue::LongString(value) => Some(value.to_string()),
        AMQPValue::LongLongInt(n) => Some(n.to_string()),
        AMQPValue::LongInt(n) => Some(n.to_string()),
        AMQPValue::LongUInt(n) => Some(n.to_string()),
        _ => None,
    }
}

fn header(delivery: &Delivery, name: &str) -> Option<String> {
    let headers = delivery.properties.headers().as_ref()?;
    match headers.inner().get(name)? {
        messaging::lapin::types::AMQPValue::LongString(value) => Some(value.to_string()),
        _ => None,
    }
}

/// Applies the batch, retrying while storage or the event store is down. Returns the events
/// that failed for good (by index), or `None` when stopped before the batch could be applied.
async fn apply<M: ReadModel>(
    projector: &Projector<M>,
    events: &[StoredEvent],
    stop: &CancellationToken,
) -> Option<Vec<(usize, crate::projector::ProjectError)>> {
    let mut delays = reconnect_backoff();
    loop {
        match projector.handle_batch(events).await {
            Ok(report) => return Some(report.failed),
            Err(err) if err.is_transient() => {
                // Hold the batch and retry (every write is guarded, so a partly applied
                // batch is safe to apply again), rather than burning delivery attempts.
                let delay = next_delay(&mut delays);
                tracing::warn!(error = %err, retry_in = ?delay, "cannot apply events yet");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = stop.cancelled() => return None,
                }
            }
            Err(err) => {
                // Not transient, yet not tied to one event (an unusable answer of the event
                // store while filling a gap): requeue the whole batch.
                tracing::error!(error = %err, "batch failed; requeueing it");
                let failed = (0..events.len())
                    .map(|i| (i, crate::projector::ProjectError::Unapplicable(err.to_string())))
                    .collect();
                return Some(failed);
            }
        }
    }
}
