//! What only MongoDB can show of the projection's guarantees: rebuilds into new collections
//! (and from a flushed database) while commands flow, several replicas racing on its
//! single-document compare-and-set. Ordering, duplicates, gaps and poison messages are proven
//! once, in memory, by `projection/tests/core.rs`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use course_proto::v1;
use futures::future::join_all;
use tokio::sync::watch;
use uuid::Uuid;

use crate::helpers::*;

async fn status(query: &QueryApp) -> v1::GetProjectionStatusResponse {
    query
        .admin()
        .get_projection_status(v1::GetProjectionStatusRequest {})
        .await
        .expect("status")
        .into_inner()
}

/// Commands on `courses` until `stop`: joins by new users and comments by them.
/// `sent` counts the (join, comment) pairs committed so far.
fn keep_commanding(
    command: &testkit::CommandSvc,
    courses: Vec<String>,
    stop: Arc<AtomicBool>,
    sent_tx: watch::Sender<usize>,
) -> tokio::task::JoinHandle<usize> {
    let client = command.commands();
    tokio::spawn(async move {
        let mut sent = 0;
        while !stop.load(Ordering::Relaxed) {
            let id = &courses[sent % courses.len()];
            let user = Uuid::now_v7();
            let mut commands = client.clone();
            commands
                .join_course(testkit::as_user(
                    user,
                    v1::JoinCourseRequest { course_id: id.clone(), ..Default::default() },
                ))
                .await
                .expect("join during the rebuild");
            commands
                .comment_course(testkit::as_user(
                    user,
                    v1::CommentCourseRequest {
                        course_id: id.clone(),
                        text: format!("during rebuild {sent}"),
                        ..Default::default()
                    },
                ))
                .await
                .expect("comment during the rebuild");
            sent += 1;
            sent_tx.send_replace(sent);
        }
        sent
    })
}

/// Waits until at least three more command pairs than `from` are committed.
async fn keep_flowing(sent: &mut watch::Receiver<usize>, from: usize) {
    tokio::time::timeout(Duration::from_secs(30), sent.wait_for(|n| *n >= from + 3))
        .await
        .expect("commands keep flowing")
        .expect("traffic running");
}

/// Active courses with some participants and comments; returns their ids.
async fn busy_courses(command: &testkit::CommandSvc, count: usize) -> Vec<String> {
    let instructor = Uuid::now_v7();
    let mut ids = Vec::new();
    for i in 0..count {
        let id =
            create(command, instructor, &format!("Busy course {i}"), &format!("Cat {}", i % 3))
                .await;
        add_section(command, instructor, &id, "Intro").await;
        present(command, instructor, &id).await;
        activate(command, instructor, &id).await;
        ids.push(id);
    }
    ids
}

/// The last event so far (a sentinel command makes sure there is a newest one to wait for).
async fn settle(command: &testkit::CommandSvc) -> (String, u64) {
    let id = create(command, Uuid::now_v7(), "Sentinel", "Sentinel").await;
    let position = position_of(command, &id, 1).await;
    (id, position)
}

#[tokio::test]
async fn rebuilding_while_commands_keep_flowing_yields_the_live_built_data() {
    let exchange = testkit::unique("test.events");
    let command = testkit::spawn_command_svc(&exchange).await;
    // The test server is single-threaded and shared with every other test: catching up after
    // the flush may take a while, so reads wait longer than the default.
    let patient = |exchange: &str| QuerySetup {
        read_your_writes_timeout_ms: 60_000,
        ..QuerySetup::on(exchange)
    };
    let live = spawn_query(&command.url, patient(&exchange)).await;
    let rebuilt = spawn_query(&command.url, patient(&exchange)).await;
    let mut courses = busy_courses(&command, 6).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (sent_tx, mut sent_rx) = watch::channel(0usize);
    let traffic = keep_commanding(&command, courses.clone(), stop.clone(), sent_tx);
    // Commands keep committing while each rebuild replays: wait for a few more after the
    // request before letting the test look at the switch.
    keep_flowing(&mut sent_rx, 0).await;

    // A rebuild into a new generation while the old one is served...
    let before = *sent_rx.borrow();
    let generation = rebuilt
        .admin()
        .rebuild_read_model(v1::RebuildReadModelRequest::default())
        .await
        .expect("rebuild")
        .into_inner()
        .generation;
    assert_eq!(generation, 2);
    keep_flowing(&mut sent_rx, before).await;
    rebuilt.wait_for_switch(generation).await;
    // ...and one from nothing: the operator stops the service, flushes its database and starts
    // it again; it builds from the event store while the commands keep coming.
    let setup = rebuilt.setup.clone();
    rebuilt.stop().await;
    let flushed = mongodb::Client::with_uri_str(&setup.mongodb_uri).await.expect("mongo");
    flushed.database(&setup.database).drop().await.expect("flush");
    let before = *sent_rx.borrow();
    let rebuilt = spawn_query(&command.url, setup).await;
    keep_flowing(&mut sent_rx, before).await;
    rebuilt.wait_for_switch(1).await;

    stop.store(true, Ordering::Relaxed);
    let sent = traffic.await.expect("traffic");
    assert!(sent > 0, "commands flowed during the rebuilds");
    let (sentinel, position) = settle(&command).await;
    courses.push(sentinel);
    let expected = dump(&live, &courses, position).await;
    let actual = dump(&rebuilt, &courses, position).await;
    assert_eq!(expected.stats.total_comments as usize, sent);
    assert_eq!(actual, expected);
    assert_eq!(status(&rebuilt).await.applied_position, position);
    live.finish().await;
    rebuilt.finish().await;
    command.stop().await;
}

#[tokio::test]
async fn two_replicas_on_one_queue_stay_exact() {
    let exchange = testkit::unique("test.events");
    let command = testkit::spawn_command_svc(&exchange).await;
    let setup = QuerySetup::on(&exchange);
    let first = spawn_query(&command.url, setup.clone()).await;
    let second = spawn_query(&command.url, setup).await;
    let reference = spawn_query(&command.url, QuerySetup::on(&exchange)).await;
    let partitions = projection::ProjectionArgs::new("", "", "").partitions;
    testkit::wait_until_shared(&[&first.progress, &second.progress], partitions.into()).await;
    // Enough courses that both replicas' partitions get some (all twelve on one replica's two
    // partitions: 1 in 2,048).
    let mut courses = busy_courses(&command, 12).await;

    // Concurrent joins and comments spread over the courses.
    let calls = (0..120).map(|i| {
        let mut client = command.commands();
        let id = courses[i % courses.len()].clone();
        async move {
            let user = Uuid::now_v7();
            client
                .join_course(testkit::as_user(
                    user,
                    v1::JoinCourseRequest { course_id: id.clone(), ..Default::default() },
                ))
                .await?;
            client
                .comment_course(testkit::as_user(
                    user,
                    v1::CommentCourseRequest {
                        course_id: id,
                        text: format!("comment {i}"),
                        ..Default::default()
                    },
                ))
                .await
        }
    });
    let results = join_all(calls).await;
    assert!(results.iter().all(Result::is_ok), "{:?}", results.iter().find(|r| r.is_err()));
    let (sentinel, position) = settle(&command).await;
    courses.push(sentinel);

    let from_first = dump(&first, &courses, position).await;
    let from_second = dump(&second, &courses, position).await;
    let from_reference = dump(&reference, &courses, position).await;
    assert_eq!(from_first, from_reference);
    assert_eq!(from_second, from_reference);
    assert_eq!(from_reference.stats.total_comments, 120);
    // Exact against the event store: every course at its last version, with the participants
    // its events leave.
    for course in &from_first.courses {
        let events = stream(&command, &course.course_id).await;
        assert_eq!(Some(course.version), events.last().map(|e| e.version));
        let mut expected = BTreeSet::new();
        for event in &events {
            match &event.payload {
                Some(v1::event_envelope::Payload::UserJoinedCourse(p)) => {
                    expected.insert(p.user_id.clone());
                }
                Some(v1::event_envelope::Payload::UserLeftCourse(p)) => {
                    expected.remove(&p.user_id);
                }
                _ => {}
            }
        }
        let actual: BTreeSet<String> =
            course.participants.iter().map(|p| p.user_id.clone()).collect();
        assert_eq!(actual, expected);
    }
    // Both replicas took part.
    let (a, b) = (status(&first).await, status(&second).await);
    assert!(a.received_position > 0 && b.received_position > 0, "{a:?} {b:?}");
    assert_eq!((a.applied_position, b.applied_position), (position, position));
    first.stop().await;
    second.finish().await;
    reference.finish().await;
    command.stop().await;
}
