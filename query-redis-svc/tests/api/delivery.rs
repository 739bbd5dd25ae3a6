use std::time::Duration;

use course_proto::v1::{self, EventEnvelope};
use futures::StreamExt;
use messaging::lapin::options::{BasicConsumeOptions, BasicPublishOptions};
use messaging::lapin::types::FieldTable;
use testkit::{as_user, spawn_command_svc, unique};
use uuid::Uuid;

use crate::helpers::*;

/// The first `count` events of `course`, once sequenced (a global position is given just after
/// commit), read through a following ReadAll.
async fn events_of(
    command: &testkit::CommandSvc,
    course: &str,
    count: usize,
) -> Vec<EventEnvelope> {
    let mut stream = command
        .event_store()
        .read_all(v1::ReadAllRequest { from_position: 0, max_count: 0, follow: true })
        .await
        .expect("read all")
        .into_inner();
    let mut out = Vec::new();
    while out.len() < count {
        let item = tokio::time::timeout(WAIT, stream.next()).await.expect("in time").expect("open");
        let event = item.expect("event").event.expect("envelope");
        if event.course_id == course {
            out.push(event);
        }
    }
    out
}

/// Every event in the store, in global order.
async fn all_events(command: &testkit::CommandSvc) -> Vec<EventEnvelope> {
    let mut stream = command
        .event_store()
        .read_all(v1::ReadAllRequest { from_position: 0, max_count: 0, follow: false })
        .await
        .expect("read all")
        .into_inner();
    let mut out = Vec::new();
    while let Some(item) = stream.next().await {
        out.push(item.expect("event").event.expect("envelope"));
    }
    out
}

async fn publish(exchange: &str, envelopes: &[EventEnvelope]) {
    let pool = messaging::pool(&testkit::rabbitmq_url(), 1).expect("pool");
    let channel = messaging::publisher_channel(&pool, exchange).await.expect("channel");
    messaging::publish_confirmed(&channel, exchange, envelopes, Duration::from_secs(10))
        .await
        .expect("published");
}

/// A catalog on a silent exchange: it only sees what the test publishes (plus gap fills from
/// the event store). Started before any command, so its initial build finds nothing.
async fn hand_fed_catalog(command: &testkit::CommandSvc) -> (Catalog, String) {
    let silent = unique("test.silent");
    (spawn_catalog(config(command, &silent)).await, silent)
}

/// [`hand_fed_catalog`] with its own batching.
async fn hand_fed_batched_catalog(
    command: &testkit::CommandSvc,
    size: u16,
    linger_ms: u64,
) -> (Catalog, String) {
    let silent = unique("test.silent");
    (spawn_catalog(batched_config(command, &silent, size, linger_ms)).await, silent)
}

/// Publishes raw bodies in order on one channel and waits for the broker's confirms.
async fn publish_raw(exchange: &str, bodies: &[Vec<u8>]) {
    let pool = messaging::pool(&testkit::rabbitmq_url(), 1).expect("pool");
    let connection = pool.get().await.expect("connection");
    let channel = connection.create_channel().await.expect("channel");
    channel
        .confirm_select(messaging::lapin::options::ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let mut confirms = Vec::new();
    for body in bodies {
        confirms.push(
            channel
                .basic_publish(
                    exchange.into(),
                    "course.v1.Event".into(),
                    BasicPublishOptions::default(),
                    body,
                    messaging::lapin::BasicProperties::default(),
                )
                .await
                .expect("publish"),
        );
    }
    for confirm in confirms {
        confirm.await.expect("confirmed");
    }
}

fn body(envelope: &EventEnvelope) -> Vec<u8> {
    prost::Message::encode_to_vec(envelope)
}

/// A consumer of `queue`'s dead letters, with what keeps it open.
async fn dead_letters(
    queue: &str,
) -> ((messaging::Pool, messaging::lapin::Channel), messaging::lapin::Consumer) {
    let pool = messaging::pool(&testkit::rabbitmq_url(), 1).expect("pool");
    let connection = pool.get().await.expect("connection");
    let channel = connection.create_channel().await.expect("channel");
    let consumer = channel
        .basic_consume(
            format!("{queue}.dlq").as_str().into(),
            "test".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume the dead-letter queue");
    drop(connection); // back to the pool, which stays open with the channel
    ((pool, channel), consumer)
}

/// Publishes every course's events newest first, then all events again in order, to `fed`,
/// and checks that it ends up serving what `reference` serves.
async fn reversed_then_duplicated(
    command: &testkit::CommandSvc,
    reference: &Catalog,
    fed: &Catalog,
    silent: &str,
    courses: &[(String, u64)],
) {
    let events = all_events(command).await;
    let mut reversed = Vec::new();
    for (id, _) in courses {
        let mut of_course: Vec<EventEnvelope> =
            events.iter().filter(|e| &e.course_id == id).cloned().collect();
        of_course.reverse();
        reversed.extend(of_course);
    }
    publish(silent, &reversed).await;
    publish(silent, &events).await;
    let marker = testkit::driver::create_course(&command, Uuid::now_v7(), create_request(0)).await;
    reference.course_at(&marker, 1).await;
    publish(silent, &events_of(command, &marker, 1).await).await;
    fed.course_at(&marker, 1).await; // everything published before it has been handled
    assert_eq!(fed.snapshot().await, reference.snapshot().await);
}

#[tokio::test]
async fn duplicates_and_reorders_across_batch_boundaries_leave_the_in_order_state() {
    let exchange = unique("test.events");
    let command = spawn_command_svc(&exchange).await;
    let reference = spawn_catalog(config(&command, &exchange)).await;
    // Batches of three: a course's events, and their copies, fall into different batches.
    let (small, small_exchange) = hand_fed_batched_catalog(&command, 3, 0).await;
    // Long batches with a long linger: reversed runs and their duplicates share a batch.
    let (large, large_exchange) = hand_fed_batched_catalog(&command, 500, 300).await;
    let courses = workload(&command, 4, 9).await;
    for (id, version) in &courses {
        reference.course_at(id, *version).await;
    }
    reversed_then_duplicated(&command, &reference, &small, &small_exchange, &courses).await;
    reversed_then_duplicated(&command, &reference, &large, &large_exchange, &courses).await;
}

#[tokio::test]
async fn a_poison_message_inside_a_batch_is_dead_lettered_and_the_rest_of_the_batch_applies() {
    let exchange = unique("test.events");
    let command = spawn_command_svc(&exchange).await;
    let reference = spawn_catalog(config(&command, &exchange)).await;
    // One batch holds everything published below (a linger far longer than the publishing).
    let (fed, silent) = hand_fed_batched_catalog(&command, 500, 1000).await;
    let (_connection, mut dead) = dead_letters(&fed.config.queue_name).await;
    let courses = workload(&command, 2, 4).await;
    for (id, version) in &courses {
        reference.course_at(id, *version).await;
    }
    let events = all_events(&command).await;
    let poison = b"\xff\xfe definitely not protobuf".to_vec();
    let middle = events.len() / 2;
    let mut bodies: Vec<Vec<u8>> = events[..middle].iter().map(body).collect();
    bodies.push(poison.clone());
    bodies.extend(events[middle..].iter().map(body));
    publish_raw(&silent, &bodies).await;

    let letter = tokio::time::timeout(WAIT, dead.next()).await.expect("dead-lettered in time");
    assert_eq!(letter.expect("delivery").expect("ok").data, poison);
    for (id, version) in &courses {
        fed.course_at(id, *version).await;
    }
    assert_eq!(fed.snapshot().await, reference.snapshot().await);
}

#[tokio::test]
async fn an_event_that_never_fits_is_dead_lettered_without_holding_up_its_batch() {
    let exchange = unique("test.events");
    let command = spawn_command_svc(&exchange).await;
    let reference = spawn_catalog(config(&command, &exchange)).await;
    let (fed, silent) = hand_fed_batched_catalog(&command, 500, 1000).await;
    let (_connection, mut dead) = dead_letters(&fed.config.queue_name).await;
    let courses = workload(&command, 2, 4).await;
    for (id, version) in &courses {
        reference.course_at(id, *version).await;
    }
    let events = all_events(&command).await;
    // A well-formed event of a course the event store has never heard of: its gap cannot be
    // filled, so it is requeued until the delivery limit parks it.
    let mut stray = events[1].clone();
    stray.course_id = Uuid::now_v7().to_string();
    stray.version = 2;
    let mut bodies: Vec<Vec<u8>> = vec![body(&stray)];
    bodies.extend(events.iter().map(body));
    publish_raw(&silent, &bodies).await;

    for (id, version) in &courses {
        fed.course_at(id, *version).await;
    }
    let letter = tokio::time::timeout(WAIT, dead.next()).await.expect("dead-lettered in time");
    assert_eq!(letter.expect("delivery").expect("ok").data, body(&stray));
    assert_eq!(fed.snapshot().await, reference.snapshot().await);
}

#[tokio::test]
async fn duplicated_and_reversed_deliveries_leave_the_in_order_state() {
    let exchange = unique("test.events");
    let command = spawn_command_svc(&exchange).await;
    let reference = spawn_catalog(config(&command, &exchange)).await;
    let (fed, silent) = hand_fed_catalog(&command).await;

    let courses = workload(&command, 4, 9).await;
    for (id, version) in &courses {
        reference.course_at(id, *version).await;
    }
    let events = all_events(&command).await;

    // Each course's events newest first: the first one seen reveals a gap, filled from the store.
    let mut reversed = Vec::new();
    for (id, _) in &courses {
        let mut of_course: Vec<EventEnvelope> =
            events.iter().filter(|e| &e.course_id == id).cloned().collect();
        of_course.reverse();
        reversed.extend(of_course);
    }
    publish(&silent, &reversed).await;
    // Then everything again, in order: all duplicates.
    publish(&silent, &events).await;
    let marker = command
        .commands()
        .create_course(as_user(Uuid::now_v7(), create_request(0)))
        .await
        .expect("create");
    let marker = marker.into_inner().course_id;
    reference.course_at(&marker, 1).await;
    let marker_events = events_of(&command, &marker, 1).await;
    publish(&silent, &marker_events).await;
    fed.course_at(&marker, 1).await; // everything published before it has been handled

    assert_eq!(fed.snapshot().await, reference.snapshot().await);
}

#[tokio::test]
async fn a_poison_message_is_dead_lettered_and_the_next_event_still_applies() {
    let exchange = unique("test.events");
    let command = spawn_command_svc(&exchange).await;
    let (fed, silent) = hand_fed_catalog(&command).await;
    let dlq = format!("{}.dlq", fed.config.queue_name);

    let pool = messaging::pool(&testkit::rabbitmq_url(), 1).expect("pool");
    let connection = pool.get().await.expect("connection");
    let channel = connection.create_channel().await.expect("channel");
    let mut dead_letters = channel
        .basic_consume(
            dlq.as_str().into(),
            "test".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume the dead-letter queue");
    channel
        .basic_publish(
            silent.as_str().into(),
            "course.v1.CourseCreated".into(),
            BasicPublishOptions::default(),
            b"\xff\xfe definitely not protobuf",
            messaging::lapin::BasicProperties::default(),
        )
        .await
        .expect("publish poison");
    let dead =
        tokio::time::timeout(WAIT, dead_letters.next()).await.expect("dead-lettered in time");
    let dead = dead.expect("delivery").expect("ok");
    assert_eq!(dead.data, b"\xff\xfe definitely not protobuf");

    let id = testkit::driver::create_course(&command, Uuid::now_v7(), create_request(0)).await;
    let good = events_of(&command, &id, 1).await;
    publish(&silent, &good).await;
    assert_eq!(fed.course_at(&id, 1).await.course_id, id);
}

#[tokio::test]
async fn two_replicas_on_one_queue_stay_exact() {
    let exchange = unique("test.events");
    let command = spawn_command_svc(&exchange).await;
    let reference = spawn_catalog(config(&command, &exchange)).await;
    let shared = config(&command, &exchange);
    let first = spawn_catalog(shared.clone()).await;
    let second = spawn_catalog(shared).await;
    let courses = workload(&command, 5, 12).await;
    for (id, version) in &courses {
        reference.course_at(id, *version).await;
        first.course_at(id, *version).await;
    }
    let expected = reference.snapshot().await;
    assert_eq!(first.snapshot().await, expected);
    assert_eq!(second.snapshot().await, expected);
}
