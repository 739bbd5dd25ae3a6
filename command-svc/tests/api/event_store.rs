use std::collections::HashMap;
use std::time::Duration;

use course_proto::v1::{self, event_envelope::Payload};
use futures::StreamExt;
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement, TransactionTrait};
use tonic::Code;
use uuid::Uuid;

use crate::helpers::*;

#[tokio::test]
async fn read_stream_pages_by_version_and_count() {
    let app = spawn_app().await;
    let instructor = Uuid::now_v7();
    let id = open_course(&app, instructor, 0, true).await; // versions 1..=3
    let mut store = app.event_store();
    let page = collect(
        store
            .read_stream(v1::ReadStreamRequest {
                course_id: id.clone(),
                from_version: 2,
                max_count: 1,
            })
            .await
            .expect("read")
            .into_inner(),
    )
    .await;
    assert_eq!(page.len(), 1);
    assert_eq!((page[0].version, page[0].event_type.as_str()), (2, "CoursePresented"));

    assert_code(
        store
            .read_stream(v1::ReadStreamRequest {
                course_id: Uuid::now_v7().to_string(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
    );
    assert_code(
        store
            .read_stream(v1::ReadStreamRequest { course_id: "x".into(), ..Default::default() })
            .await,
        Code::InvalidArgument,
    );
}

#[tokio::test]
async fn read_all_is_gap_free_global_order_with_per_course_versions_increasing() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(open_course(&app, Uuid::now_v7(), 0, true).await);
    }
    let all = wait_for_all(&app, 9).await;
    let positions: Vec<u64> = all.iter().map(|e| e.global_position).collect();
    assert_eq!(positions, (1..=9).collect::<Vec<_>>());
    let mut last: HashMap<&str, u64> = HashMap::new();
    for event in &all {
        let previous = last.insert(event.course_id.as_str(), event.version).unwrap_or(0);
        assert_eq!(event.version, previous + 1, "{event:?}");
    }
    let tail = app.all(7).await;
    assert_eq!(tail.iter().map(|e| e.global_position).collect::<Vec<_>>(), [8, 9]);
}

#[tokio::test]
async fn a_follower_receives_events_committed_after_it_subscribed() {
    let app = spawn_app().await;
    let mut stream = app
        .event_store()
        .read_all(v1::ReadAllRequest { from_position: 0, max_count: 0, follow: true })
        .await
        .expect("subscribe")
        .into_inner();
    let id = open_course(&app, Uuid::now_v7(), 0, true).await;
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let item = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("an event arrives")
            .expect("stream open")
            .expect("event");
        seen.push(item.event.expect("envelope"));
    }
    assert!(seen.iter().all(|e| e.course_id == id));
    assert_eq!(seen.iter().map(|e| e.global_position).collect::<Vec<_>>(), [1, 2, 3]);
}

/// The classic trap: a transaction that took a lower insertion id commits *after* later ones.
/// A reader resuming from its last position must still see it, exactly once.
#[tokio::test]
async fn an_event_that_commits_late_is_not_skipped_by_a_follower() {
    let app = spawn_app().await;
    let db = Database::connect(&app.database_url).await.expect("connect");
    let mut follower = app
        .event_store()
        .read_all(v1::ReadAllRequest { from_position: 0, max_count: 0, follow: true })
        .await
        .expect("subscribe")
        .into_inner();

    // A slow writer inserts first (lower id) and keeps its transaction open.
    let slow_course = Uuid::now_v7();
    let slow = db.begin().await.expect("begin");
    slow.execute_raw(insert_created(slow_course, 2)).await.expect("insert");

    // Meanwhile a fast command commits and is delivered.
    let fast_course = create_course(&app, Uuid::now_v7(), 0).await;
    let first = next_event(&mut follower).await;
    assert_eq!(first.course_id, fast_course);
    assert_eq!(first.global_position, 1);

    // Now the slow one commits: it must still arrive, after the fast one.
    slow.commit().await.expect("commit");
    let second = next_event(&mut follower).await;
    assert_eq!(second.course_id, slow_course.to_string());
    assert_eq!(second.global_position, 2);

    let all = app.all(0).await;
    assert_eq!(all.len(), 2, "each event exactly once");
}

#[tokio::test]
async fn an_old_shaped_payload_is_upcast_when_read() {
    let app = spawn_app().await;
    let db = Database::connect(&app.database_url).await.expect("connect");
    let course = Uuid::now_v7();
    db.execute_raw(insert_created(course, 1)).await.expect("insert v1 payload");
    let events = app.stream(&course.to_string()).await;
    match &events[0].payload {
        Some(Payload::CourseCreated(created)) => {
            assert_eq!(created.category, "General");
            assert_eq!(created.title, "Legacy course");
        }
        other => panic!("unexpected {other:?}"),
    }
}

async fn next_event(stream: &mut tonic::Streaming<v1::ReadAllResponse>) -> v1::EventEnvelope {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("an event arrives in time")
        .expect("stream open")
        .expect("event")
        .event
        .expect("envelope")
}

/// Positions are handed out just after commit; wait for `count` of them.
async fn wait_for_all(app: &TestApp, count: usize) -> Vec<v1::EventEnvelope> {
    let mut follower = app
        .event_store()
        .read_all(v1::ReadAllRequest { from_position: 0, max_count: count as u32, follow: true })
        .await
        .expect("subscribe")
        .into_inner();
    let mut out = Vec::new();
    while out.len() < count {
        out.push(next_event(&mut follower).await);
    }
    out
}

/// A raw CourseCreated row, as another writer (or the seed, for schema 1) would insert it.
fn insert_created(course: Uuid, schema_version: i32) -> Statement {
    let actor = Uuid::now_v7();
    let mut payload = serde_json::json!({
        "instructor_id": actor,
        "title": "Legacy course",
        "description": "From before categories",
        "max_participants": 0
    });
    if schema_version >= 2 {
        payload["category"] = "Imported".into();
    }
    let metadata =
        serde_json::json!({ "correlation_id": actor, "causation_id": actor, "actor_id": actor });
    Statement::from_sql_and_values(
        DbBackend::Postgres,
        "INSERT INTO events (event_id, stream_id, version, event_type, schema_version, payload, metadata, occurred_at)
         VALUES ($1, $2, 1, 'CourseCreated', $3, $4, $5, now())",
        [Uuid::now_v7().into(), course.into(), schema_version.into(), payload.into(), metadata.into()],
    )
}
