//! How events travel over RabbitMQ.
//!
//! * Exchange: a durable **topic** exchange (default `course.events`).
//! * Routing key: `course.v1.<EventType>`, e.g. `course.v1.UserJoinedCourse`; bind `course.v1.#`
//!   for everything or a single type for one kind of event.
//! * Body: the protobuf `course.v1.EventEnvelope`; `content_type` is `application/x-protobuf`.
//! * Properties: `message_id` = event id, `type` = event type, `timestamp` = occurred_at (unix
//!   seconds), persistent delivery mode; headers `course_id`, `version`, `global_position` and,
//!   when traced, `traceparent`.
//! * Consumers: a read model's events are split into N partitions by course: an
//!   `x-consistent-hash` exchange `<queue>.partitions` (RabbitMQ's consistent-hash exchange
//!   plugin, hashing the `course_id` header), bound to the events exchange with
//!   [`ALL_EVENTS`], routes each course to one of N durable quorum queues `<queue>.p0` ..
//!   `<queue>.p{N-1}`, each with single active consumer on, so one course's events reach one
//!   consumer in order. A message without a `course_id` header (a foreign publisher, a poison
//!   message) is hashed as a missing value: it lands in one partition all the same. Every
//!   partition dead-letters into one exchange and queue (`<queue>.dlx`,
//!   `<queue>.dlq`) after a delivery limit, so a poison message is parked, not redelivered
//!   forever.

use std::time::Duration;

use course_proto::v1::EventEnvelope;
use deadpool_lapin::lapin::options::{
    BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, ExchangeBindOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use deadpool_lapin::lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use deadpool_lapin::lapin::{BasicProperties, Channel, ExchangeKind};
use deadpool_lapin::lapin::{Confirmation, PublisherConfirm};
pub use deadpool_lapin::{Pool, lapin};
use prost::Message;

/// Where the events travel: flags (with environment fallbacks) shared by the publisher and
/// every consumer.
#[derive(Debug, Clone, clap::Args)]
pub struct BrokerArgs {
    /// RabbitMQ URL.
    #[arg(
        long,
        env = "RABBITMQ_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true
    )]
    pub rabbitmq_url: String,
    /// Durable topic exchange the events are published to and consumed from.
    #[arg(long, env = "RABBITMQ_EXCHANGE", default_value = "course.events")]
    pub rabbitmq_exchange: String,
}

impl BrokerArgs {
    /// `url` and `exchange`.
    pub fn new(url: &str, exchange: &str) -> Self {
        Self { rabbitmq_url: url.to_owned(), rabbitmq_exchange: exchange.to_owned() }
    }
}

/// MIME type of the message bodies.
pub const CONTENT_TYPE: &str = "application/x-protobuf";
/// Binding that receives every event.
pub const ALL_EVENTS: &str = "course.v1.#";

/// What can fail talking to the broker.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// No connection from the pool (broker down, bad URL, ...).
    #[error("cannot connect to RabbitMQ: {0}")]
    Connect(#[from] deadpool_lapin::PoolError),
    /// An AMQP operation failed.
    #[error("AMQP error: {0}")]
    Amqp(#[from] lapin::Error),
    /// The broker refused a message.
    #[error("the broker refused (nack) event {0}")]
    Nacked(String),
    /// No confirm arrived in time.
    #[error("no publisher confirm within {0:?}")]
    ConfirmTimeout(Duration),
}

/// A connection pool for `url` (connections are made lazily).
pub fn pool(url: &str, max_size: usize) -> Result<Pool, deadpool_lapin::CreatePoolError> {
    let config = deadpool_lapin::Config {
        url: Some(url.to_owned()),
        pool: Some(deadpool_lapin::PoolConfig {
            max_size,
            timeouts: deadpool_lapin::Timeouts {
                wait: Some(Duration::from_secs(5)),
                create: Some(Duration::from_secs(5)),
                recycle: Some(Duration::from_secs(5)),
            },
            ..Default::default()
        }),
    };
    config.create_pool(
        deadpool_lapin::lapin::ConnectionProperties::default,
        deadpool_lapin::Runtime::Tokio1,
    )
}

/// The routing key of an event type.
pub fn routing_key(event_type: &str) -> String {
    format!("course.v1.{event_type}")
}

/// Declares the durable topic exchange (idempotent).
pub async fn declare_exchange(channel: &Channel, exchange: &str) -> Result<(), BrokerError> {
    channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions { durable: true, ..Default::default() },
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

/// A channel with publisher confirms on, and the exchange declared.
pub async fn publisher_channel(pool: &Pool, exchange: &str) -> Result<Channel, BrokerError> {
    let connection = pool.get().await?;
    let channel = connection.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    declare_exchange(&channel, exchange).await?;
    Ok(channel)
}

/// AMQP properties of an event message.
pub fn properties(envelope: &EventEnvelope) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(
        "course_id".into(),
        AMQPValue::LongString(LongString::from(envelope.course_id.clone())),
    );
    headers.insert("version".into(), AMQPValue::LongLongInt(envelope.version as i64));
    headers
        .insert("global_position".into(), AMQPValue::LongLongInt(envelope.global_position as i64));
    if let Some(traceparent) =
        envelope.metadata.as_ref().map(|m| &m.traceparent).filter(|t| !t.is_empty())
    {
        headers.insert(
            "traceparent".into(),
            AMQPValue::LongString(LongString::from(traceparent.clone())),
        );
    }
    let timestamp =
        envelope.occurred_at.as_ref().map(|t| t.seconds.max(0) as u64).unwrap_or_default();
    BasicProperties::default()
        .with_message_id(ShortString::from(envelope.event_id.clone()))
        .with_type(ShortString::from(envelope.event_type.clone()))
        .with_content_type(ShortString::from(CONTENT_TYPE))
        .with_delivery_mode(2)
        .with_timestamp(timestamp)
        .with_headers(headers)
}

/// Publishes `envelopes` in order and waits until the broker confirmed every one of them.
pub async fn publish_confirmed(
    channel: &Channel,
    exchange: &str,
    envelopes: &[EventEnvelope],
    confirm_timeout: Duration,
) -> Result<(), BrokerError> {
    publish(channel, exchange, envelopes).await?.wait(confirm_timeout).await
}

/// Publishes `envelopes` in order without waiting for the broker: the returned [`Confirms`]
/// resolve when it has taken them. Several batches may be in flight on one channel.
pub async fn publish(
    channel: &Channel,
    exchange: &str,
    envelopes: &[EventEnvelope],
) -> Result<Confirms, BrokerError> {
    let mut pending = Vec::with_capacity(envelopes.len());
    for envelope in envelopes {
        let confirm = channel
            .basic_publish(
                exchange.into(),
                routing_key(&envelope.event_type).into(),
                BasicPublishOptions::default(),
                &envelope.encode_to_vec(),
                properties(envelope),
            )
            .await?;
        pending.push((envelope.event_id.clone(), confirm));
    }
    Ok(Confirms { pending })
}

/// The broker's answers to one published batch.
#[must_use = "a batch is only published once its confirms arrived"]
pub struct Confirms {
    pending: Vec<(String, PublisherConfirm)>,
}

impl Confirms {
    /// Resolves when every message was confirmed, or fails with the first refusal, or when
    /// `timeout` (counted from this call) passes first.
    pub fn wait(
        self,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<(), BrokerError>> + Send + 'static {
        let deadline = tokio::time::Instant::now() + timeout;
        async move {
            let confirms = async {
                for (event_id, confirm) in self.pending {
                    match confirm.await? {
                        Confirmation::Ack(_) | Confirmation::NotRequested => {}
                        Confirmation::Nack(_) => return Err(BrokerError::Nacked(event_id)),
                    }
                }
                Ok(())
            };
            tokio::time::timeout_at(deadline, confirms)
                .await
                .unwrap_or(Err(BrokerError::ConfirmTimeout(timeout)))
        }
    }
}

/// The header the partitions hash on.
pub const PARTITION_HEADER: &str = "course_id";
/// Most partitions a read model may have.
pub const MAX_PARTITIONS: u16 = 64;

/// Names of a consumer's queues.
#[derive(Debug, Clone)]
pub struct ConsumerTopology {
    /// The events exchange.
    pub exchange: String,
    /// The read model's name: the prefix of its partition queues, exchanges and dead letters.
    pub queue: String,
    /// How many partition queues (1 to [`MAX_PARTITIONS`]).
    pub partitions: u16,
    /// Deliveries before a message is dead-lettered.
    pub delivery_limit: u32,
    /// Unacknowledged messages in flight per consumer.
    pub prefetch: u16,
}

impl ConsumerTopology {
    /// `<queue>.dlx`
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dlx", self.queue)
    }

    /// `<queue>.dlq`
    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dlq", self.queue)
    }

    /// `<queue>.partitions`: the consistent-hash exchange between the events exchange and the
    /// partition queues.
    pub fn partition_exchange(&self) -> String {
        format!("{}.partitions", self.queue)
    }

    /// `<queue>.p<partition>`
    pub fn partition_queue(&self, partition: u16) -> String {
        format!("{}.p{partition}", self.queue)
    }

    /// Declares the events exchange, the dead-letter exchange and queue, the hash exchange and
    /// the partition queues with their bindings (idempotent). A partition count that differs
    /// from an earlier declaration adds queues but never removes any: lowering it leaves the
    /// higher partitions bound (see the README before changing it).
    pub async fn declare(&self, channel: &Channel) -> Result<(), BrokerError> {
        declare_exchange(channel, &self.exchange).await?;
        let durable = QueueDeclareOptions { durable: true, ..Default::default() };
        channel
            .exchange_declare(
                self.dead_letter_exchange().into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions { durable: true, ..Default::default() },
                FieldTable::default(),
            )
            .await?;
        let mut dlq_args = FieldTable::default();
        dlq_args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
        channel.queue_declare(self.dead_letter_queue().into(), durable, dlq_args).await?;
        channel
            .queue_bind(
                self.dead_letter_queue().into(),
                self.dead_letter_exchange().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let mut hash_args = FieldTable::default();
        hash_args.insert("hash-header".into(), AMQPValue::LongString(PARTITION_HEADER.into()));
        channel
            .exchange_declare(
                self.partition_exchange().into(),
                ExchangeKind::Custom("x-consistent-hash".into()),
                ExchangeDeclareOptions { durable: true, ..Default::default() },
                hash_args,
            )
            .await?;
        channel
            .exchange_bind(
                self.partition_exchange().into(),
                self.exchange.clone().into(),
                ALL_EVENTS.into(),
                ExchangeBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        for partition in 0..self.partitions.max(1) {
            let queue = self.partition_queue(partition);
            channel.queue_declare(queue.clone().into(), durable, self.queue_arguments()).await?;
            // The weight: every partition takes an equal share of the hash ring.
            channel
                .queue_bind(
                    queue.into(),
                    self.partition_exchange().into(),
                    "1".into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(())
    }

    /// A partition queue's arguments: quorum, dead-lettering after the delivery limit, one
    /// active consumer at a time.
    fn queue_arguments(&self) -> FieldTable {
        let mut args = FieldTable::default();
        args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(self.dead_letter_exchange().into()),
        );
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(i64::from(self.delivery_limit)),
        );
        args.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
        args
    }

    /// Prepares `channel` to consume one partition: the prefetch.
    pub async fn prepare_consumer(&self, channel: &Channel) -> Result<(), BrokerError> {
        channel.basic_qos(self.prefetch, BasicQosOptions::default()).await?;
        Ok(())
    }
}
