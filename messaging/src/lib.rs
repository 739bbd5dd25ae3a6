//! How events travel over RabbitMQ.
//!
//! * Exchange: a durable **topic** exchange (default `course.events`).
//! * Routing key: `course.v1.<EventType>`, e.g. `course.v1.UserJoinedCourse`; bind `course.v1.#`
//!   for everything or a single type for one kind of event.
//! * Body: the protobuf `course.v1.EventEnvelope`; `content_type` is `application/x-protobuf`.
//! * Properties: `message_id` = event id, `type` = event type, `timestamp` = occurred_at (unix
//!   seconds), persistent delivery mode; headers `course_id`, `version`, `global_position` and,
//!   when traced, `traceparent`.
//! * Consumers: one durable quorum queue per read model with a dead-letter exchange and queue
//!   (`<queue>.dlx`, `<queue>.dlq`) and a delivery limit, so a poison message is parked, not
//!   redelivered forever.

use std::time::Duration;

use course_proto::v1::EventEnvelope;
use deadpool_lapin::lapin::Confirmation;
use deadpool_lapin::lapin::options::{
    BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use deadpool_lapin::lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use deadpool_lapin::lapin::{BasicProperties, Channel, ExchangeKind};
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
        pending.push((envelope.event_id.as_str(), confirm));
    }
    let confirms = async {
        for (event_id, confirm) in pending {
            match confirm.await? {
                Confirmation::Ack(_) | Confirmation::NotRequested => {}
                Confirmation::Nack(_) => return Err(BrokerError::Nacked(event_id.to_owned())),
            }
        }
        Ok(())
    };
    match tokio_timeout(confirm_timeout, confirms).await {
        Some(result) => result,
        None => Err(BrokerError::ConfirmTimeout(confirm_timeout)),
    }
}

async fn tokio_timeout<F: std::future::Future>(duration: Duration, future: F) -> Option<F::Output> {
    tokio::time::timeout(duration, future).await.ok()
}

/// Names of a consumer's queues.
#[derive(Debug, Clone)]
pub struct ConsumerTopology {
    /// The events exchange.
    pub exchange: String,
    /// The consumer's durable quorum queue.
    pub queue: String,
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

    /// Declares exchange, dead-letter exchange and queue, and the consumer queue bound to every
    /// event (idempotent), and sets the prefetch on `channel`.
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
        channel.queue_declare(self.queue.clone().into(), durable, args).await?;
        channel
            .queue_bind(
                self.queue.clone().into(),
                self.exchange.clone().into(),
                ALL_EVENTS.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        channel.basic_qos(self.prefetch, BasicQosOptions::default()).await?;
        Ok(())
    }
}
