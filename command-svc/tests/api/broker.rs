//! A test consumer bound to an app's exchange, over a real RabbitMQ connection.

use std::time::Duration;

use course_proto::v1::EventEnvelope;
use futures::StreamExt;
use messaging::lapin::options::{
    BasicAckOptions, BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions,
};
use messaging::lapin::types::FieldTable;
use messaging::lapin::{BasicProperties, Connection, ConnectionProperties};
use prost::Message;
use tokio::sync::mpsc;

use crate::helpers::rabbitmq_url;

pub struct Received {
    pub envelope: EventEnvelope,
    pub properties: BasicProperties,
    pub routing_key: String,
}

pub struct TestConsumer {
    rx: mpsc::UnboundedReceiver<Received>,
    _connection: Connection,
}

impl TestConsumer {
    /// Declares the exchange (as the relay would), and an exclusive queue bound to all events.
    pub async fn bind(exchange: &str) -> TestConsumer {
        let connection = Connection::connect(&rabbitmq_url(), ConnectionProperties::default())
            .await
            .expect("RabbitMQ answers at TEST_RABBITMQ_URL");
        let channel = connection.create_channel().await.expect("channel");
        messaging::declare_exchange(&channel, exchange).await.expect("exchange");
        let queue = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() },
                FieldTable::default(),
            )
            .await
            .expect("queue");
        channel
            .queue_bind(
                queue.name().clone(),
                exchange.into(),
                messaging::ALL_EVENTS.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind");
        let mut consumer = channel
            .basic_consume(
                queue.name().clone(),
                "test".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("consume");
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(Ok(delivery)) = consumer.next().await {
                let envelope =
                    EventEnvelope::decode(delivery.data.as_slice()).expect("protobuf body");
                let _ = delivery.acker.ack(BasicAckOptions::default()).await;
                let received = Received {
                    envelope,
                    properties: delivery.properties.clone(),
                    routing_key: delivery.routing_key.to_string(),
                };
                if tx.send(received).is_err() {
                    return;
                }
            }
        });
        TestConsumer { rx, _connection: connection }
    }

    /// The next message, waiting at most `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Received {
        tokio::time::timeout(timeout, self.rx.recv())
            .await
            .expect("a message arrives in time")
            .expect("consumer open")
    }

    /// Receives messages until one of course `sentinel` arrives; returns everything before it.
    /// Because the relay publishes in global order, anything (including a duplicate) published
    /// before the sentinel has arrived by then.
    pub async fn until_course(&mut self, sentinel: &str, timeout: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let message = self.next(left).await;
            if message.envelope.course_id == sentinel {
                return out;
            }
            out.push(message);
        }
    }
}
