//! What only Redis and RabbitMQ can show of the projection's guarantees: multi-step course
//! writes in one Lua script call across batch boundaries, dead-lettering through the quorum
//! queue, several replicas racing on the script's compare-and-set. Ordering, duplicates and gap
//! filling on their own are proven once, in memory, by `projection/tests/core.rs`.

use std::time::Duration;

use course_proto::v1::EventEnvelope;
use futures::StreamExt;
use messaging::lapin::options::{BasicConsumeOptions, BasicPublishOptions};
use messaging::lapin::types::FieldTable;
use testkit::{spawn_command_svc, unique};
use uuid::Uuid;

use crate::helpers::*;

async fn publish(exchange: &str, envelopes: &[EventEnvelope]) {
    let pool = messaging::pool(&testkit::rabbitmq_url(), 1).expect("pool");
    let channel = messaging::publisher_channel(&pool, exchange).await.expect("channel");
    messaging::publish_confirmed(&channel, exchange, envelopes, Duration::from_secs(10))
        .await
        .expect("published");
}

/// A catalog on a silent exchange: it only sees what the test publishes (plus gap fills from
/// the event store), in batches of at most `size` events, lingering `linger_ms` for more.
/// Started before any command, so its initial build finds nothing.
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

/// What the dead-lettering tests start from: a catalog hand-fed in one batch (a linger far
/// longer than the publishing), a consumer of its dead letters, and a reference catalog that
/// has applied a small workload (whose events are `events`, in global order).
struct Rig {
    _command: testkit::CommandSvc,
    reference: Catalog,
    fed: Catalog,
    silent: String,
    _keep_open: (messaging::Pool, messaging::lapin::Channel),
    dead: messaging::lapin::Consumer,
    courses: Vec<(String, u64)>,
    events: Vec<EventEnvelope>,
}

async fn rig() -> Rig {
    let exchange = unique("test.events");
    let command = spawn_command_svc(&exchange).await;
    let reference = spawn_catalog(config(&command, &exchange)).await;
    let (fed, silent) = hand_fed_batched_catalog(&command, 500, 1000).await;
    let (keep_open, dead) = dead_letters(&fed.config.service.queue_name).await;
    let courses = workload(&command, 2, 4).await;
    for (id, version) in &courses {
        reference.course_at(id, *version).await;
    }
    let events = testkit::events::all(&command, 0).await;
    Rig { _command: command, reference, fed, silent, _keep_open: keep_open, dead, courses, events }
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
    let events = testkit::events::all(command, 0).await;
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
    let sequenced = testkit::events::events_until(command, &marker, 1).await;
    publish(silent, &sequenced[sequenced.len() - 1..]).await;
    fed.course_at(&marker, 1).await;
    fed.assert_agrees_with(reference).await;
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
    let mut rig = rig().await;
    let poison = b"\xff\xfe definitely not protobuf".to_vec();
    let middle = rig.events.len() / 2;
    let mut bodies: Vec<Vec<u8>> = rig.events[..middle].iter().map(body).collect();
    bodies.push(poison.clone());
    bodies.extend(rig.events[middle..].iter().map(body));
    publish_raw(&rig.silent, &bodies).await;

    let letter = tokio::time::timeout(WAIT, rig.dead.next()).await.expect("dead-lettered in time");
    assert_eq!(letter.expect("delivery").expect("ok").data, poison);
    for (id, version) in &rig.courses {
        rig.fed.course_at(id, *version).await;
    }
    rig.fed.assert_agrees_with(&rig.reference).await;
}

#[tokio::test]
async fn an_event_that_never_fits_is_dead_lettered_without_holding_up_its_batch() {
    let mut rig = rig().await;
    // A well-formed event of a course the event store has never heard of: its gap cannot be
    // filled, so it is requeued until the delivery limit parks it.
    let mut stray = rig.events[1].clone();
    stray.course_id = Uuid::now_v7().to_string();
    stray.version = 2;
    let mut bodies: Vec<Vec<u8>> = vec![body(&stray)];
    bodies.extend(rig.events.iter().map(body));
    publish_raw(&rig.silent, &bodies).await;

    for (id, version) in &rig.courses {
        rig.fed.course_at(id, *version).await;
    }
    let letter = tokio::time::timeout(WAIT, rig.dead.next()).await.expect("dead-lettered in time");
    assert_eq!(letter.expect("delivery").expect("ok").data, body(&stray));
    rig.fed.assert_agrees_with(&rig.reference).await;
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
    first.assert_agrees_with(&reference).await;
    second.assert_agrees_with(&reference).await;
}
