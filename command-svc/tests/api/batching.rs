//! Group commit: commands decided together and written with one statement keep every guarantee
//! of commands written one by one.

use std::collections::HashSet;
use std::time::Duration;

use command_svc::config::Config;
use course_domain::{Event, SNAPSHOT_SCHEMA};
use course_proto::v1;
use futures::future::join_all;
use sea_orm::{
    ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement, TransactionTrait,
};
use tonic::Code;
use uuid::Uuid;

use crate::helpers::*;

/// One writer that lingers, so that commands sent together are decided in one batch.
fn batching_config(database_url: &str) -> Config {
    let mut config = config(database_url);
    config.batching.command_writers = 1;
    config.batching.command_batch_linger_us = 5_000;
    config
}

async fn spawn_batching_app() -> TestApp {
    spawn_app_on(batching_config(&fresh_database().await)).await
}

async fn sql(database_url: &str) -> DatabaseConnection {
    Database::connect(database_url).await.expect("database")
}

async fn execute(db: &DatabaseConnection, sql: String) {
    db.execute_raw(Statement::from_string(DbBackend::Postgres, sql)).await.expect("statement");
}

async fn query_i64(db: &DatabaseConnection, sql: &str) -> Option<i64> {
    db.query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .expect("query")
        .map(|row| row.try_get_by_index::<i64>(0).expect("bigint"))
}

/// Polls `sql` (a single BIGINT or no row) until `done` holds; 10 s at most.
async fn wait_for(db: &DatabaseConnection, sql: &str, done: impl Fn(Option<i64>) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if done(query_i64(db, sql).await) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "condition never held: {sql}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn refused_commands_in_a_batch_neither_fail_nor_reorder_the_accepted_ones() {
    let app = spawn_batching_app().await;
    let instructor = Uuid::now_v7();
    let id = open_course(&app, instructor, 0, false).await;
    let joins = (0..12).map(|_| {
        let mut client = app.commands();
        let id = id.clone();
        async move { client.join_course(as_user(Uuid::now_v7(), join_request(&id))).await }
    });
    let instructor_joins = (0..4).map(|_| {
        let mut client = app.commands();
        let id = id.clone();
        async move { client.join_course(as_user(instructor, join_request(&id))).await }
    });
    let stranger_comments = (0..4).map(|_| {
        let mut client = app.commands();
        let request = v1::CommentCourseRequest {
            course_id: id.clone(),
            text: "Not yet".into(),
            ..Default::default()
        };
        async move { client.comment_course(as_user(Uuid::now_v7(), request)).await }
    });
    let (joined, refused, commented) =
        tokio::join!(join_all(joins), join_all(instructor_joins), join_all(stranger_comments));

    let mut versions: Vec<u64> =
        joined.into_iter().map(|r| r.expect("a participant joins").into_inner().version).collect();
    versions.sort_unstable();
    assert_eq!(versions, (3..15).collect::<Vec<_>>(), "twelve joins, versions 3..=14, no gaps");
    for result in refused {
        let status = assert_code(result, Code::FailedPrecondition);
        assert!(status.message().contains("instructor"), "{}", status.message());
    }
    for result in commented {
        assert_code(result, Code::PermissionDenied);
    }
    let stream = app.stream(&id).await;
    assert_eq!(stream.len(), 14, "created, presented, twelve joins and nothing else");
    let stored: Vec<u64> = stream.iter().map(|e| e.version).collect();
    assert_eq!(stored, (1..15).collect::<Vec<_>>());
}

#[tokio::test]
async fn concurrent_duplicates_of_a_command_id_all_answer_the_first_response() {
    let configs: [fn(&str) -> Config; 2] = [batching_config, config];
    for make_config in configs {
        let app = spawn_app_on(make_config(&fresh_database().await)).await;
        let id = open_course(&app, Uuid::now_v7(), 0, false).await;
        let user = Uuid::now_v7();
        let request = v1::JoinCourseRequest {
            course_id: id.clone(),
            command_id: Some(Uuid::now_v7().to_string()),
            ..Default::default()
        };
        // Without the idempotency key the second would be "already a participant".
        let results = join_all((0..8).map(|_| {
            let mut client = app.commands();
            let request = request.clone();
            async move { client.join_course(as_user(user, request)).await }
        }))
        .await;
        let responses: Vec<v1::JoinCourseResponse> = results
            .into_iter()
            .map(|r| r.expect("every duplicate succeeds").into_inner())
            .collect();
        assert!(responses.iter().all(|r| r == &responses[0]), "{responses:?}");
        assert_eq!(responses[0].version, 3);
        assert_eq!(app.stream(&id).await.len(), 3, "one join");

        // New courses get their id from the service: duplicates of one CreateCourse land on
        // different writers and still make one course.
        let create = v1::CreateCourseRequest {
            command_id: Some(Uuid::now_v7().to_string()),
            ..create_request(0)
        };
        let instructor = Uuid::now_v7();
        let results = join_all((0..8).map(|_| {
            let mut client = app.commands();
            let create = create.clone();
            async move { client.create_course(as_user(instructor, create)).await }
        }))
        .await;
        let ids: HashSet<String> = results
            .into_iter()
            .map(|r| r.expect("every duplicate succeeds").into_inner().course_id)
            .collect();
        assert_eq!(ids.len(), 1, "one course: {ids:?}");
        let created = query_i64(
            &sql(&app.database_url).await,
            &format!(
                "SELECT count(*) FROM events WHERE metadata->>'command_id' = '{}'",
                create.command_id.as_deref().unwrap_or_default()
            ),
        )
        .await;
        assert_eq!(created, Some(1), "one CourseCreated");
    }
}

#[tokio::test]
async fn another_replicas_append_inside_a_batch_only_sends_that_course_back_to_be_decided() {
    // The seven joins below must make one batch even when this machine pauses the test for a
    // few milliseconds: a join left for the next batch would be written after the contested
    // course's second decision, which the last assertion would take for a wrong order.
    let mut config = batching_config(&fresh_database().await);
    config.batching.command_batch_linger_us = 200_000;
    let app = spawn_app_on(config).await;
    let instructor = Uuid::now_v7();
    let contested = open_course(&app, instructor, 0, false).await; // version 2, known to the app
    let others: Vec<String> =
        join_all((0..3).map(|_| open_course(&app, instructor, 0, false))).await;

    // "Another replica" writes version 3 of the contested course and has not committed yet:
    // the app cannot see it, decides its own version 3 and has to wait on the unique key.
    let db = sql(&app.database_url).await;
    let other_replica = db.begin().await.expect("begin");
    let title = Event::CourseTitleChanged { title: "Changed elsewhere".into() };
    other_replica
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO events (event_id, stream_id, version, event_type, schema_version, payload, metadata, occurred_at) \
             VALUES ($1, $2, 3, $3, $4, $5, $6, now())",
            [
                Uuid::now_v7().into(),
                Uuid::parse_str(&contested).expect("uuid").into(),
                title.event_type().into(),
                title.schema_version().into(),
                title.to_payload().into(),
                serde_json::json!({
                    "correlation_id": Uuid::now_v7(),
                    "causation_id": Uuid::now_v7(),
                    "actor_id": instructor,
                })
                .into(),
            ],
        ))
        .await
        .expect("insert");

    let contested_join = {
        let mut client = app.commands();
        let contested = contested.clone();
        tokio::spawn(async move {
            client.join_course(as_user(Uuid::now_v7(), join_request(&contested))).await
        })
    };
    let other_joins: Vec<_> = others
        .iter()
        .flat_map(|id| std::iter::repeat_n(id.clone(), 2))
        .map(|id| {
            let mut client = app.commands();
            tokio::spawn(async move {
                client.join_course(as_user(Uuid::now_v7(), join_request(&id))).await
            })
        })
        .collect();
    // The batch is blocked on the other replica's uncommitted row.
    wait_for(
        &db,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO command_log%'",
        |n| n == Some(1),
    )
    .await;
    other_replica.commit().await.expect("commit");

    let contested_version = contested_join
        .await
        .expect("task")
        .expect("decided again and accepted")
        .into_inner()
        .version;
    assert_eq!(contested_version, 4, "decided again on top of the other replica's version 3");
    for joined in other_joins {
        let version =
            joined.await.expect("task").expect("the other courses commit").into_inner().version;
        assert!(version == 3 || version == 4, "{version}");
    }
    let stream = app.stream(&contested).await;
    let types: Vec<&str> = stream.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        ["CourseCreated", "CoursePresented", "CourseTitleChanged", "UserJoinedCourse"]
    );
    for id in &others {
        assert_eq!(app.stream(id).await.len(), 4, "created, presented, two joins");
    }
    // The other courses' joins were written as soon as the collision was known, before the
    // contested course was decided again.
    let others_sql = others.iter().map(|id| format!("'{id}'")).collect::<Vec<_>>().join(",");
    let last_other = query_i64(
        &db,
        &format!("SELECT max(id) FROM events WHERE stream_id IN ({others_sql}) AND event_type = 'UserJoinedCourse'"),
    )
    .await;
    let contested_id = query_i64(
        &db,
        &format!("SELECT id FROM events WHERE stream_id = '{contested}' AND version = 4"),
    )
    .await;
    assert!(contested_id > last_other, "{contested_id:?} after {last_other:?}");
}

/// `SNAPSHOT_EVERY=5`, so that a few commands make a snapshot.
fn snapshot_config(database_url: &str) -> Config {
    let mut config = config(database_url);
    config.batching.snapshot_every = 5;
    config
}

/// A course with six participants (version 8); returns its id once a snapshot of version 5 or
/// more is stored.
async fn snapshotted_course(app: &TestApp, db: &DatabaseConnection) -> String {
    let id = open_course(app, Uuid::now_v7(), 0, false).await;
    for _ in 0..6 {
        app.commands()
            .join_course(as_user(Uuid::now_v7(), join_request(&id)))
            .await
            .expect("joined");
    }
    wait_for(db, &format!("SELECT version FROM snapshots WHERE stream_id = '{id}'"), |v| {
        v.is_some_and(|v| v >= 5)
    })
    .await;
    id
}

/// A course snapshotted by a service that is then restarted, its stored snapshot marked in
/// between with a limit of six participants that no event ever set (and with `also_set`,
/// further assignments each ending in a comma); returns the restarted service, its database
/// and the course's id.
async fn restarted_over_marked_snapshot(also_set: &str) -> (TestApp, DatabaseConnection, String) {
    let app = spawn_app_on(snapshot_config(&fresh_database().await)).await;
    let db = sql(&app.database_url).await;
    let id = snapshotted_course(&app, &db).await;
    execute(
        &db,
        format!(
            "UPDATE snapshots SET {also_set}state = jsonb_set(state, '{{max_participants}}', '6') \
             WHERE stream_id = '{id}'"
        ),
    )
    .await;
    (app.restart().await, db, id)
}

#[tokio::test]
async fn a_restarted_service_decides_from_the_snapshot_and_the_events_after_it() {
    // If the restarted service reads the marked snapshot (and the joins after it), the course
    // is full.
    let (app, _db, id) = restarted_over_marked_snapshot("").await;
    let status = assert_code(
        app.commands().join_course(as_user(Uuid::now_v7(), join_request(&id))).await,
        Code::FailedPrecondition,
    );
    assert!(status.message().contains("full"), "{}", status.message());
}

#[tokio::test]
async fn a_snapshot_of_another_shape_is_ignored_and_replaced() {
    // The same marked limit, but in an older shape: it must not be read.
    let older = format!("schema_version = {}, ", SNAPSHOT_SCHEMA - 1);
    let (app, db, id) = restarted_over_marked_snapshot(&older).await;
    let joined = app
        .commands()
        .join_course(as_user(Uuid::now_v7(), join_request(&id)))
        .await
        .expect("rebuilt from events: no limit")
        .into_inner();
    assert_eq!(joined.version, 9);
    // Rebuilt from events, it is snapshotted again in the current shape.
    wait_for(
        &db,
        &format!(
            "SELECT version FROM snapshots WHERE stream_id = '{id}' AND schema_version = {SNAPSHOT_SCHEMA}"
        ),
        |v| v == Some(9),
    )
    .await;
}

#[tokio::test]
async fn a_refusal_on_a_replicas_stale_memory_is_decided_again_on_the_stored_state() {
    let first = spawn_app().await;
    let second = spawn_app_on(config(&first.database_url)).await;
    let instructor = Uuid::now_v7();
    // The first replica decides (and keeps in memory) every step of the course so far.
    let id = open_course(&first, instructor, 0, true).await;
    let user = Uuid::now_v7();
    // The user joins through the other replica: the first one's memory does not know it.
    second.commands().join_course(as_user(user, join_request(&id))).await.expect("joined");
    let comment = v1::CommentCourseRequest {
        course_id: id.clone(),
        text: "Hello".into(),
        ..Default::default()
    };
    let commented = first
        .commands()
        .comment_course(as_user(user, comment))
        .await
        .expect("a participant may comment")
        .into_inner();
    assert_eq!(commented.version, 5);
}

#[tokio::test]
async fn snapshots_of_many_courses_are_stored_in_one_write_and_never_go_back() {
    let url = fresh_database().await;
    let store = command_svc::store::EventStore::connect_lazy(&url, 2).await.expect("store");
    store.migrate().await.expect("migrated");
    let db = sql(&url).await;
    let snapshot = |id: Uuid, version: u64| command_svc::store::Snapshot {
        stream_id: id,
        version,
        schema: SNAPSHOT_SCHEMA,
        state: serde_json::json!({ "version": version }),
    };
    let ids: Vec<Uuid> = (0..50).map(|_| Uuid::now_v7()).collect();
    // Two of the first course in one call: the newer is kept.
    let mut batch: Vec<_> = ids.iter().map(|id| snapshot(*id, 3)).collect();
    batch.push(snapshot(ids[0], 7));
    store.save_snapshots(&batch).await.expect("saved");
    assert_eq!(query_i64(&db, "SELECT count(*) FROM snapshots").await, Some(50));
    // Written by one transaction.
    assert_eq!(query_i64(&db, "SELECT count(DISTINCT xmin::text) FROM snapshots").await, Some(1));
    let version_of = |id: Uuid| format!("SELECT version FROM snapshots WHERE stream_id = '{id}'");
    assert_eq!(query_i64(&db, &version_of(ids[0])).await, Some(7));

    // An older snapshot never replaces a newer one; a newer one does.
    store.save_snapshots(&[snapshot(ids[0], 5), snapshot(ids[1], 9)]).await.expect("saved");
    assert_eq!(query_i64(&db, &version_of(ids[0])).await, Some(7));
    assert_eq!(query_i64(&db, &version_of(ids[1])).await, Some(9));
    store.save_snapshots(&[]).await.expect("nothing to save");
}
