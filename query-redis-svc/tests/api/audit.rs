//! The consistency audit (`ProjectionAdminService.AuditReadModel`) on the catalog: nothing to
//! report after a normal run; each kind of damage done to Redis behind the service's back is
//! reported under its field.

use fred::prelude::{
    Builder, ClientLike, Config as RedisConfig, HashesInterface, SortedSetsInterface,
};
use uuid::Uuid;

use crate::helpers::*;

/// A run of commands, every course applied by the catalog.
async fn settled_mesh() -> (testkit::CommandSvc, Catalog, Vec<(String, u64)>) {
    let (command, catalog) = spawn_mesh().await;
    let courses = workload(&command, 3, 6).await;
    for (id, version) in &courses {
        catalog.course_at(id, *version).await;
    }
    (command, catalog, courses)
}

#[tokio::test]
async fn an_audit_after_a_normal_run_finds_no_difference() {
    let (_command, catalog, courses) = settled_mesh().await;
    let report = catalog.audit(50).await;
    assert_eq!(report.difference_count, 0, "{:?}", report.differences);
    assert_eq!(report.courses_in_store, courses.len() as u64);
    assert_eq!(report.courses_in_read_model, courses.len() as u64);
    assert!(report.audited_position > 0);
    assert_eq!(report.read_model_position, report.audited_position);
    assert_eq!(report.generation, 1);
    assert_eq!(report.compared, ["enrolments", "listing", "participants", "summary"]);
    assert!(report.moved_during_audit.is_empty());
}

#[tokio::test]
async fn damage_done_to_redis_is_reported_under_its_field() {
    let (_command, catalog, courses) = settled_mesh().await;
    let (id, _) = &courses[0];
    let members = catalog.participants(id).await;
    assert!(members.len() >= 2, "the first course has participants");
    let (victim, other) = (&members[0].user_id, &members[1].user_id);
    let redis = Builder::from_config(RedisConfig::from_url(&redis_url()).expect("url"))
        .build()
        .expect("client");
    redis.init().await.expect("redis");
    // The store's key layout (query-redis-svc/src/store/mod.rs), generation 1.
    let p = catalog.config.redis_key_prefix.clone();
    let key = |rest: &str| format!("{p}1:{rest}");

    // A wrong title, a participant dropped, another's enrolment index entry dropped, and a
    // course that the store has never seen.
    let _: () =
        redis.hset(key(&format!("course:{{{id}}}")), ("title", "Wrong")).await.expect("hset");
    let zset = key(&format!("course:{{{id}}}:participants"));
    let all: Vec<String> =
        redis.zrange(&zset, 0, -1, None, false, None, false).await.expect("zrange");
    let member = all.iter().find(|m| m.ends_with(victim.as_str())).expect("victim's entry");
    let _: () = redis.zrem(&zset, member.as_str()).await.expect("zrem");
    let _: () =
        redis.hdel(key(&format!("user:{{{other}}}:joined")), id.as_str()).await.expect("hdel");
    let stranger = Uuid::now_v7().to_string();
    let _: () = redis
        .zadd(key(&format!("{{{p}1}}:idx:all")), None, None, false, false, (0.0, stranger.as_str()))
        .await
        .expect("zadd");

    let report = catalog.audit(50).await;
    let found: Vec<(&str, &str, &str, &str)> = report
        .differences
        .iter()
        .map(|d| (d.course_id.as_str(), d.field.as_str(), d.expected.as_str(), d.actual.as_str()))
        .collect();
    let mut wanted = vec![
        (id.as_str(), "enrolments", other.as_str(), ""),
        (id.as_str(), "participants", victim.as_str(), ""),
        (id.as_str(), "title", "Course 0", "Wrong"),
        (stranger.as_str(), "course", "absent", "present"),
    ];
    wanted.sort();
    let mut found = found;
    found.sort();
    assert_eq!(found, wanted, "{report:?}");
    assert_eq!(report.difference_count, 4);
    assert_eq!(report.courses_in_read_model, courses.len() as u64 + 1);

    // `max_differences` bounds the list, not the count.
    let bounded = catalog.audit(1).await;
    assert_eq!((bounded.differences.len(), bounded.difference_count), (1, 4));
}

#[tokio::test]
async fn an_audit_while_commands_keep_coming_reports_no_difference() {
    let (command, catalog) = spawn_mesh().await;
    workload(&command, 2, 4).await;
    let command = std::sync::Arc::new(command);
    let busy = tokio::spawn({
        let command = command.clone();
        async move { workload(&command, 4, 8).await }
    });
    let mut audits = 0;
    while audits == 0 || !busy.is_finished() {
        let report = catalog.audit(50).await;
        assert_eq!(report.difference_count, 0, "{:?}", report.differences);
        audits += 1;
    }
    for (id, version) in busy.await.expect("workload") {
        catalog.course_at(&id, version).await;
    }
    let report = catalog.audit(50).await;
    assert_eq!((report.difference_count, report.courses_in_store), (0, 6), "{report:?}");
    assert!(report.moved_during_audit.is_empty());
}
