//! The broker behaviour the partitioned consumers rely on, checked against the real RabbitMQ
//! (with the consistent-hash exchange plugin enabled): one course's events land in one
//! partition; a message without a `course_id` header lands in one partition too; a single active
//! consumer that closes its channel with messages prefetched and unacknowledged hands them,
//! in order and before anything later, to the next consumer.

use std::time::Duration;

use futures::StreamExt;
use messaging::lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use messaging::lapin::types::{AMQPValue, FieldTable, LongString};
use messaging::lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use messaging::{ALL_EVENTS, ConsumerTopology};

const WAIT: Duration = Duration::from_secs(20);

fn url() -> String {
    std::env::var("TEST_RABBITMQ_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

fn topology(partitions: u16, prefetch: u16) -> ConsumerTopology {
    let id = uuid::Uuid::new_v4().simple();
    ConsumerTopology {
        exchange: format!("test.events.{id}"),
        queue: format!("test.partitions.{id}"),
        partitions,
        delivery_limit: 5,
        prefetch,
    }
}

async fn connect() -> Connection {
    Connection::connect(&url(), ConnectionProperties::default()).await.expect("connect")
}

async fn publish(channel: &Channel, exchange: &str, course: Option<&str>, body: &[u8]) {
    let mut headers = FieldTable::default();
    if let Some(course) = course {
        headers.insert("course_id".into(), AMQPValue::LongString(LongString::from(course)));
    }
    channel
        .basic_publish(
            exchange.into(),
            ALL_EVENTS.replace('#', "Event").as_str().into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default().with_headers(headers),
        )
        .await
        .expect("publish")
        .await
        .expect("confirmed");
}

async fn depth(channel: &Channel, queue: &str) -> u32 {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions { passive: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .expect("queue exists")
        .message_count()
}

fn delivery_count(delivery: &messaging::lapin::message::Delivery) -> i64 {
    match delivery.properties.headers().as_ref().and_then(|h| h.inner().get("x-delivery-count")) {
        Some(AMQPValue::LongLongInt(n)) => *n,
        Some(AMQPValue::LongInt(n)) => i64::from(*n),
        _ => 0,
    }
}

#[tokio::test]
async fn a_course_lands_in_one_partition_and_so_does_a_headerless_message() {
    let topology = topology(4, 10);
    let connection = connect().await;
    let channel = connection.create_channel().await.expect("channel");
    topology.declare(&channel).await.expect("declared");
    channel.confirm_select(ConfirmSelectOptions::default()).await.expect("confirms");
    let courses: Vec<String> = (0..40).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    for course in &courses {
        for _ in 0..3 {
            publish(&channel, &topology.exchange, Some(course), b"x").await;
        }
    }
    publish(&channel, &topology.exchange, None, b"headerless").await;
    let mut depths = Vec::new();
    for p in 0..4 {
        depths.push(depth(&channel, &topology.partition_queue(p)).await);
    }
    assert_eq!(depths.iter().sum::<u32>(), 121, "every message routed exactly once: {depths:?}");
    assert!(depths.iter().all(|d| *d > 0), "40 courses spread over the 4 partitions: {depths:?}");
    assert!(depths.iter().all(|d| d % 3 == 0 || d % 3 == 1), "courses not split: {depths:?}");
    // The headerless message is hashed as a missing value: one partition, always the same.
    assert_eq!(depths.iter().filter(|d| *d % 3 == 1).count(), 1, "{depths:?}");
    for p in 0..4 {
        channel
            .queue_delete(topology.partition_queue(p).as_str().into(), Default::default())
            .await
            .expect("deleted");
    }
}

#[tokio::test]
async fn closing_a_single_active_consumer_hands_its_unacked_messages_over_in_order() {
    let topology = topology(1, 50);
    let queue = topology.partition_queue(0);
    let connection = connect().await;
    let publisher = connection.create_channel().await.expect("channel");
    topology.declare(&publisher).await.expect("declared");
    publisher.confirm_select(ConfirmSelectOptions::default()).await.expect("confirms");

    let first = connection.create_channel().await.expect("channel");
    topology.prepare_consumer(&first).await.expect("qos");
    let mut first_deliveries = first
        .basic_consume(
            queue.as_str().into(),
            "first".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let second = connection.create_channel().await.expect("channel");
    topology.prepare_consumer(&second).await.expect("qos");
    let mut second_deliveries = second
        .basic_consume(
            queue.as_str().into(),
            "second".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");

    for n in 0..200u32 {
        publish(&publisher, &topology.exchange, Some("one-course"), n.to_string().as_bytes()).await;
    }
    // The first consumer is the active one: it takes ten, acknowledges them, and closes with
    // up to forty more prefetched and unacknowledged.
    let mut last = None;
    for n in 0..10u32 {
        let delivery = tokio::time::timeout(WAIT, first_deliveries.next())
            .await
            .expect("delivered")
            .expect("open")
            .expect("ok");
        assert_eq!(delivery.data, n.to_string().as_bytes());
        last = Some(delivery);
    }
    last.expect("ten").acker.ack(BasicAckOptions { multiple: true }).await.expect("acked");
    // Let the prefetch fill up before the close.
    tokio::time::timeout(WAIT, async {
        while depth(&publisher, &queue).await > 150 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("prefetched");
    first.close(200, "partition released".into()).await.expect("closed");

    let mut counted = 0;
    for n in 10..200u32 {
        let delivery = tokio::time::timeout(WAIT, second_deliveries.next())
            .await
            .expect("delivered")
            .expect("open")
            .expect("ok");
        assert_eq!(
            String::from_utf8_lossy(&delivery.data),
            n.to_string(),
            "the next consumer continues exactly where the first left off"
        );
        if delivery_count(&delivery) > 0 {
            counted += 1;
        }
        delivery.acker.ack(BasicAckOptions::default()).await.expect("acked");
    }
    // RabbitMQ 3.10 counts a return on close as a delivery attempt (x-delivery-count 1 on
    // the prefetched messages): a handover costs each one attempt of the delivery limit.
    println!("messages handed over with a delivery count: {counted}");
    publisher.queue_delete(queue.as_str().into(), Default::default()).await.expect("deleted");
}
