//! Where the projection stands, and notifications of what it applied — in this process and,
//! through a fanout exchange, in every replica of the same read model.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use messaging::Pool;
use messaging::lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use messaging::lapin::types::FieldTable;
use messaging::lapin::{BasicProperties, Channel, ExchangeKind};
use tokio::sync::{Mutex, broadcast};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// What one batch applied to one generation, as announced to waiters: one notice per batch,
/// not per event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Generation it was applied to.
    pub generation: u32,
    /// The generation's contiguous watermark after the batch.
    pub watermark: u64,
    /// The courses the batch wrote (or found already written) and their versions now.
    pub courses: Arc<[(Uuid, u64)]>,
}

impl Applied {
    /// True when the notice says `course` has reached `version`.
    pub fn has(&self, course: Uuid, version: u64) -> bool {
        self.courses.iter().any(|(c, v)| *c == course && *v >= version)
    }

    fn encode(&self) -> String {
        let mut out = format!("{}:{}:", self.generation, self.watermark);
        for (i, (course, version)) in self.courses.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&format!("{course}={version}"));
        }
        out
    }

    fn decode(raw: &str) -> Option<Applied> {
        let mut parts = raw.splitn(3, ':');
        let generation = parts.next()?.parse().ok()?;
        let watermark = parts.next()?.parse().ok()?;
        let list = parts.next()?;
        let courses = if list.is_empty() {
            Vec::new()
        } else {
            list.split(',')
                .map(|item| {
                    let (course, version) = item.split_once('=')?;
                    Some((course.parse().ok()?, version.parse().ok()?))
                })
                .collect::<Option<Vec<_>>>()?
        };
        Some(Applied { generation, watermark, courses: courses.into() })
    }
}

/// The AMQP `type` of a membership notice on the progress bus. Applied notices carry no type;
/// a replica of an earlier version, which knows no members, fails to decode a membership
/// notice as an applied one and ignores it.
const MEMBER_TYPE: &str = "member";

/// A replica of the read model announcing itself (every heartbeat) or saying farewell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberNotice {
    /// The replica's member id.
    pub member: Uuid,
    /// False for a farewell.
    pub alive: bool,
}

impl MemberNotice {
    fn encode(&self) -> String {
        format!("{} {}", if self.alive { "alive" } else { "leave" }, self.member)
    }

    fn decode(raw: &str) -> Option<MemberNotice> {
        let (state, member) = raw.split_once(' ')?;
        let alive = match state {
            "alive" => true,
            "leave" => false,
            _ => return None,
        };
        Some(MemberNotice { member: member.parse().ok()?, alive })
    }
}

/// Shared progress state of one service.
#[derive(Clone)]
pub struct Progress {
    inner: Arc<Inner>,
}

struct Inner {
    applied: broadcast::Sender<Applied>,
    members: broadcast::Sender<MemberNotice>,
    events_consumed: AtomicU64,
    partitions_owned: AtomicU64,
    received_position: AtomicU64,
    applied_position: AtomicU64,
    lag_millis: AtomicU64,
    consuming: AtomicBool,
    rebuilding: AtomicBool,
    duplicates: AtomicU64,
    gaps_filled: AtomicU64,
    dead_lettered: AtomicU64,
    bus: Mutex<Option<(Channel, String)>>,
}

/// A snapshot for status RPCs and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProgressSnapshot {
    /// Highest global position received from the broker.
    pub received_position: u64,
    /// Highest watermark this replica saw for the active generation.
    pub applied_position: u64,
    /// Seconds from occurrence to application of the last event.
    pub lag_seconds: f64,
    /// Consumer connected.
    pub consuming: bool,
    /// A rebuild runs in this replica.
    pub rebuilding: bool,
    /// Redeliveries and replays skipped.
    pub duplicates: u64,
    /// Events fetched from the event store to fill gaps.
    pub gaps_filled: u64,
    /// Poison messages sent to the dead-letter queue.
    pub dead_lettered: u64,
    /// Messages taken from the broker by this replica (every partition).
    pub events_consumed: u64,
    /// Partitions this replica is assigned now.
    pub partitions_owned: u64,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    /// Fresh state.
    pub fn new() -> Self {
        let (applied, _) = broadcast::channel(4096);
        let (members, _) = broadcast::channel(256);
        Self {
            inner: Arc::new(Inner {
                applied,
                members,
                events_consumed: AtomicU64::new(0),
                partitions_owned: AtomicU64::new(0),
                received_position: AtomicU64::new(0),
                applied_position: AtomicU64::new(0),
                lag_millis: AtomicU64::new(0),
                consuming: AtomicBool::new(false),
                rebuilding: AtomicBool::new(false),
                duplicates: AtomicU64::new(0),
                gaps_filled: AtomicU64::new(0),
                dead_lettered: AtomicU64::new(0),
                bus: Mutex::new(None),
            }),
        }
    }

    /// Subscribe before checking the store, so that nothing applied in between is missed.
    pub fn subscribe(&self) -> broadcast::Receiver<Applied> {
        self.inner.applied.subscribe()
    }

    /// Announces what a batch of `events` applied, locally and to the other replicas: one
    /// notice, whatever the batch size.
    pub async fn announce(&self, applied: Applied, lag: Duration, events: u64) {
        let previous = self.inner.applied_position.fetch_max(applied.watermark, Ordering::Relaxed);
        self.inner.lag_millis.store(lag.as_millis() as u64, Ordering::Relaxed);
        let received = self.inner.received_position.load(Ordering::Relaxed);
        metrics::gauge!("projection_applied_position").set(previous.max(applied.watermark) as f64);
        metrics::gauge!("projection_lag_events")
            .set(received.saturating_sub(previous.max(applied.watermark)) as f64);
        metrics::gauge!("projection_lag_seconds").set(lag.as_secs_f64());
        metrics::counter!("projection_events_applied_total").increment(events);
        // A lost notice only makes a waiter wait for the next one.
        self.publish(applied.encode().as_bytes(), BasicProperties::default()).await;
        // Local waiters last: from here on the caller finishes its work without yielding.
        let _ = self.inner.applied.send(applied);
    }

    fn heard(&self, applied: Applied) {
        let _ = self.inner.applied.send(applied);
    }

    /// Records a message received from the broker.
    pub fn received(&self, position: u64) {
        self.inner.received_position.fetch_max(position, Ordering::Relaxed);
        metrics::gauge!("projection_received_position")
            .set(self.inner.received_position.load(Ordering::Relaxed) as f64);
    }

    /// Whether the consumer is connected.
    pub fn set_consuming(&self, consuming: bool) {
        self.inner.consuming.store(consuming, Ordering::Relaxed);
        metrics::gauge!("projection_consuming").set(if consuming { 1.0 } else { 0.0 });
    }

    /// Whether a rebuild runs here.
    pub fn set_rebuilding(&self, rebuilding: bool) {
        self.inner.rebuilding.store(rebuilding, Ordering::Relaxed);
    }

    /// Counts a skipped duplicate.
    pub fn duplicate(&self) {
        self.inner.duplicates.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("projection_duplicates_skipped_total").increment(1);
    }

    /// Counts events fetched to fill a gap.
    pub fn gap_filled(&self, events: u64) {
        self.inner.gaps_filled.fetch_add(events, Ordering::Relaxed);
        metrics::counter!("projection_gap_events_filled_total").increment(events);
    }

    /// Membership notices heard from the bus (this replica's own included).
    pub fn member_notices(&self) -> broadcast::Receiver<MemberNotice> {
        self.inner.members.subscribe()
    }

    /// Sends a membership notice to every replica (fire and forget: a lost heartbeat is
    /// covered by the next).
    pub async fn publish_member(&self, notice: MemberNotice) {
        let properties = BasicProperties::default().with_type(MEMBER_TYPE.into());
        self.publish(notice.encode().as_bytes(), properties).await;
    }

    /// Publishes `body` to every replica over the bus, fire and forget (nothing while the bus
    /// is down).
    async fn publish(&self, body: &[u8], properties: BasicProperties) {
        let bus = self.inner.bus.lock().await;
        if let Some((channel, exchange)) = bus.as_ref() {
            let _ = channel
                .basic_publish(
                    exchange.as_str().into(),
                    "".into(),
                    BasicPublishOptions::default(),
                    body,
                    properties,
                )
                .await;
        }
    }

    /// Counts `events` messages taken from `partition`.
    pub fn consumed(&self, partition: u16, events: u64) {
        self.inner.events_consumed.fetch_add(events, Ordering::Relaxed);
        metrics::counter!("projection_partition_events_consumed_total", "partition" => partition.to_string())
            .increment(events);
    }

    /// Records how many partitions this replica is assigned.
    pub fn set_partitions_owned(&self, owned: usize) {
        self.inner.partitions_owned.store(owned as u64, Ordering::Relaxed);
        metrics::gauge!("projection_partitions_owned").set(owned as f64);
    }

    /// Counts a dead-lettered message.
    pub fn dead_lettered(&self) {
        self.inner.dead_lettered.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("projection_dead_lettered_total").increment(1);
    }

    /// Current numbers.
    pub fn snapshot(&self) -> ProgressSnapshot {
        let i = &self.inner;
        ProgressSnapshot {
            received_position: i.received_position.load(Ordering::Relaxed),
            applied_position: i.applied_position.load(Ordering::Relaxed),
            lag_seconds: i.lag_millis.load(Ordering::Relaxed) as f64 / 1000.0,
            consuming: i.consuming.load(Ordering::Relaxed),
            rebuilding: i.rebuilding.load(Ordering::Relaxed),
            duplicates: i.duplicates.load(Ordering::Relaxed),
            gaps_filled: i.gaps_filled.load(Ordering::Relaxed),
            dead_lettered: i.dead_lettered.load(Ordering::Relaxed),
            events_consumed: i.events_consumed.load(Ordering::Relaxed),
            partitions_owned: i.partitions_owned.load(Ordering::Relaxed),
        }
    }

    /// Connects this replica to the fanout exchange `exchange` that every replica of the read
    /// model publishes its applied events to, and relays what the others announce. Runs until
    /// `stop`, reconnecting after broker outages.
    pub async fn run_bus(self, pool: Pool, exchange: String, stop: CancellationToken) {
        loop {
            let result: Result<(), messaging::BrokerError> = async {
                let connection = pool.get().await?;
                let publish = connection.create_channel().await?;
                let listen = connection.create_channel().await?;
                publish
                    .exchange_declare(
                        exchange.as_str().into(),
                        ExchangeKind::Fanout,
                        ExchangeDeclareOptions::default(),
                        FieldTable::default(),
                    )
                    .await?;
                let queue = listen
                    .queue_declare(
                        "".into(),
                        QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() },
                        FieldTable::default(),
                    )
                    .await?;
                listen
                    .queue_bind(
                        queue.name().clone(),
                        exchange.as_str().into(),
                        "".into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await?;
                let mut notices = listen
                    .basic_consume(
                        queue.name().clone(),
                        "progress".into(),
                        BasicConsumeOptions { no_ack: true, ..Default::default() },
                        FieldTable::default(),
                    )
                    .await?;
                *self.inner.bus.lock().await = Some((publish, exchange.clone()));
                loop {
                    tokio::select! {
                        notice = notices.next() => match notice {
                            Some(Ok(delivery)) => {
                                let text = std::str::from_utf8(&delivery.data).ok();
                                if delivery.properties.kind().as_ref().is_some_and(|k| k.as_str() == MEMBER_TYPE) {
                                    if let Some(notice) = text.and_then(MemberNotice::decode) {
                                        let _ = self.inner.members.send(notice);
                                    }
                                } else if let Some(applied) = text.and_then(Applied::decode) {
                                    self.heard(applied);
                                }
                            }
                            Some(Err(err)) => return Err(err.into()),
                            None => return Ok(()),
                        },
                        () = stop.cancelled() => return Ok(()),
                    }
                }
            }
            .await;
            *self.inner.bus.lock().await = None;
            if stop.is_cancelled() {
                return;
            }
            if let Err(err) = result {
                tracing::warn!(error = %err, "progress bus disconnected; reconnecting");
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = stop.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_round_trip_and_garbage_is_ignored() {
        let applied = Applied {
            generation: 2,
            watermark: 99,
            courses: vec![(Uuid::now_v7(), 7), (Uuid::now_v7(), 1)].into(),
        };
        assert_eq!(Applied::decode(&applied.encode()), Some(applied.clone()));
        let empty = Applied { generation: 1, watermark: 5, courses: Vec::new().into() };
        assert_eq!(Applied::decode(&empty.encode()), Some(empty));
        assert_eq!(Applied::decode("1:2:x=3"), None);
        assert_eq!(Applied::decode("1:2"), None);
    }

    #[test]
    fn member_notices_round_trip_and_are_no_applied_notices() {
        for alive in [true, false] {
            let notice = MemberNotice { member: Uuid::new_v4(), alive };
            assert_eq!(MemberNotice::decode(&notice.encode()), Some(notice));
            // What a replica that knows no members makes of it: nothing.
            assert_eq!(Applied::decode(&notice.encode()), None);
        }
        assert_eq!(MemberNotice::decode("1:2:"), None);
    }
}
