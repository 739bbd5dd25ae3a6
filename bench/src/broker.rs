//! What RabbitMQ alone costs per event: `--broker-events` events published the way the relay
//! publishes them (persistent, confirmed, batches in flight) through a read model's topology
//! (the consistent-hash exchange and its quorum partition queues) to consumers that ack the
//! way the projection does (one multiple-ack per batch), with nothing else running. The broker's
//! CPU time per event bounds what the mesh can do on this machine with one message per event.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use course_proto::v1::{self, EventEnvelope, EventMetadata};
use futures::StreamExt;
use messaging::ConsumerTopology;
use messaging::lapin::options::{BasicAckOptions, BasicConsumeOptions, QueueDeleteOptions};
use messaging::lapin::types::FieldTable;
use uuid::Uuid;

use crate::cpu;

/// Events per published batch and batches in flight, as the relay.
const BATCH: usize = 500;
const WINDOW: usize = 8;

pub struct BrokerCost {
    pub events: usize,
    pub elapsed: Duration,
    /// RabbitMQ's CPU seconds over the run.
    pub broker_cpu: f64,
}

impl BrokerCost {
    pub fn micros_per_event(&self) -> f64 {
        self.broker_cpu * 1e6 / self.events as f64
    }
}

fn envelope(n: usize, courses: &[String]) -> EventEnvelope {
    let course = n % courses.len();
    EventEnvelope {
        event_id: Uuid::now_v7().to_string(),
        course_id: courses[course].clone(),
        version: (n / courses.len() + 1) as u64,
        global_position: n as u64 + 1,
        event_type: "CourseCommented".into(),
        occurred_at: Some(now()),
        metadata: Some(EventMetadata {
            correlation_id: Uuid::now_v7().to_string(),
            causation_id: Uuid::now_v7().to_string(),
            actor_id: Uuid::now_v7().to_string(),
            ..Default::default()
        }),
        payload: Some(v1::event_envelope::Payload::CourseCommented(v1::CourseCommented {
            comment_id: Uuid::now_v7().to_string(),
            author_id: Uuid::now_v7().to_string(),
            text: "Load".into(),
        })),
    }
}

fn now() -> prost_types::Timestamp {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp { seconds: now.as_secs() as i64, nanos: now.subsec_nanos() as i32 }
}

/// Publishes and consumes `events` events on a private exchange and queues (removed after).
pub async fn run(url: &str, partitions: u16, events: usize) -> anyhow::Result<BrokerCost> {
    let pool = messaging::pool(url, 2 + partitions as usize)?;
    let exchange = format!("bench.broker.{}", Uuid::now_v7().simple());
    let topology = ConsumerTopology {
        exchange: exchange.clone(),
        queue: exchange.clone(),
        partitions,
        delivery_limit: 5,
        prefetch: 1024,
    };
    let setup = pool.get().await?.create_channel().await?;
    topology.declare(&setup).await?;
    let consumed = Arc::new(AtomicU64::new(0));
    for partition in 0..partitions {
        let channel = pool.get().await?.create_channel().await?;
        topology.prepare_consumer(&channel).await?;
        let mut deliveries = channel
            .basic_consume(
                topology.partition_queue(partition).into(),
                "bench".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let consumed = consumed.clone();
        tokio::spawn(async move {
            let _channel = channel;
            let mut unacked = None;
            loop {
                match tokio::time::timeout(Duration::from_millis(5), deliveries.next()).await {
                    Ok(Some(Ok(delivery))) => {
                        consumed.fetch_add(1, Ordering::Relaxed);
                        unacked = Some(delivery.acker);
                    }
                    Ok(_) => return,
                    Err(_) => {
                        if let Some(acker) = unacked.take() {
                            let _ = acker.ack(BasicAckOptions { multiple: true }).await;
                        }
                    }
                }
            }
        });
    }
    let courses: Vec<String> = (0..64).map(|_| Uuid::now_v7().to_string()).collect();
    let envelopes: Vec<EventEnvelope> = (0..events).map(|n| envelope(n, &courses)).collect();
    let publisher = messaging::publisher_channel(&pool, &exchange).await?;

    let before = cpu::sample();
    let started = Instant::now();
    let mut in_flight = VecDeque::new();
    for batch in envelopes.chunks(BATCH) {
        if in_flight.len() >= WINDOW {
            let oldest: messaging::Confirms = in_flight.pop_front().expect("window");
            oldest.wait(Duration::from_secs(30)).await?;
        }
        in_flight.push_back(messaging::publish(&publisher, &exchange, batch).await?);
    }
    for confirms in in_flight {
        confirms.wait(Duration::from_secs(30)).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while consumed.load(Ordering::Relaxed) < events as u64 {
        anyhow::ensure!(Instant::now() < deadline, "not every event was consumed in time");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let after = cpu::sample();

    for partition in 0..partitions {
        let _ = setup
            .queue_delete(topology.partition_queue(partition).into(), QueueDeleteOptions::default())
            .await;
    }
    let _ = setup
        .queue_delete(topology.dead_letter_queue().into(), QueueDeleteOptions::default())
        .await;
    for name in [topology.partition_exchange(), topology.dead_letter_exchange(), exchange] {
        let _ = setup.exchange_delete(name.into(), Default::default()).await;
    }
    Ok(BrokerCost {
        events,
        elapsed,
        broker_cpu: cpu::program_seconds(&before, &after, "RabbitMQ"),
    })
}
