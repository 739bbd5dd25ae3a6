//! Stuck states of issue 12 on MongoDB: an event that cannot be applied must not freeze the
//! watermark or a rebuild, and a rebuild whose process died must not block every later one.

use projection::{Generations, ReadModel};
use query_mongo_svc::store::MongoReadModel;
use testkit::{ServingStatus, unique, wait_for_health};
use uuid::Uuid;

use crate::helpers::*;

const DEGRADED: &str = "course.v1.ProjectionHealth";

#[tokio::test]
async fn an_event_that_cannot_be_applied_is_recorded_the_watermark_passes_it_and_a_replay_applies_it_once_repaired()
 {
    let env = spawn_env().await;
    let (command, query) = (&env.command, &env.query);
    let id = create(command, Uuid::now_v7(), "Before", "Safety").await;
    details(query, &id, 1).await;
    wait_for_health(&query.channel(), DEGRADED, ServingStatus::Serving).await;

    // A second CourseCreated as version 2, written straight into the store: sequenced and
    // published like any event, but it never fits the course (nor does it in a rebuild).
    command.duplicate_creation(&id).await;
    let poison = position_of(command, &id, 2).await;

    // The watermark moves past it: a read that waits for its position answers.
    assert_eq!(stats(query, poison).await.total_courses, 1);
    let status = query.status_until("degraded", |s| s.degraded).await;
    assert_eq!(status.dead_letter_count, 1);
    assert!(status.applied_position >= poison);
    wait_for_health(&query.channel(), DEGRADED, ServingStatus::NotServing).await;
    wait_for_health(&query.channel(), "course.v1.CourseQueryService", ServingStatus::Serving).await;
    let letters = query.dead_letters().await;
    assert_eq!(letters.dead_letters.len(), 1);
    let letter = &letters.dead_letters[0];
    assert_eq!((letter.global_position, letter.course_id.as_str()), (poison, id.as_str()));
    assert_eq!(letter.version, 2);
    assert!(letter.reason.contains("does not follow"), "reason: {}", letter.reason);

    // A rebuild over a store holding it finishes, recording it again.
    let generation = query.rebuild(true).await;
    let status = query.status_until("switched", |s| s.building_generation == 0).await;
    assert_eq!(status.active_generation, generation);
    assert!(status.applied_position >= poison);
    assert_eq!((status.degraded, status.dead_letter_count), (true, 1));

    // The operator repairs the stored event; a replay applies it and the read model is whole.
    command.repair_as_title_change(&id, 2, "Repaired").await;
    assert_eq!(query.replay_dead_letters().await, (1, 0));
    assert_eq!(details(query, &id, 2).await.title, "Repaired");
    let status = query.status_until("whole again", |s| !s.degraded).await;
    assert_eq!(status.dead_letter_count, 0);
    wait_for_health(&query.channel(), DEGRADED, ServingStatus::Serving).await;
    env.finish().await;
}

#[tokio::test]
async fn a_rebuild_whose_process_died_is_abandoned_and_the_next_one_succeeds() {
    let exchange = unique("test.events");
    let command = testkit::spawn_command_svc(&exchange).await;
    let shared = QuerySetup::on(&exchange);
    // Each instance has a queue of its own, so that a killed one's broker connection, if it
    // lingers, holds no event another one needs.
    let instance = || QuerySetup { queue: unique("query-mongo"), ..shared.clone() };
    let id = create(&command, Uuid::now_v7(), "Rebuilt", "Safety").await;
    position_of(&command, &id, 1).await;

    // The first instance builds generation 1, then dies.
    let first = spawn_crashable_query(&command.url, instance()).await;
    first.query.status_until("built", |s| s.active_generation == 1).await;
    first.crash();

    // The second one rebuilds from an event store that accepts connections and never answers,
    // so its replay hangs (deterministically) after the building mark is set; then it dies.
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_store = format!("http://{}", black_hole.local_addr().expect("addr"));
    // Only the doomed one holds a short lease: the others keep theirs renewed on a loaded
    // machine too (a lapsed lease gets a live rebuild abandoned).
    let doomed = QuerySetup { rebuild_lease_ms: 1_000, ..instance() };
    let doomed = spawn_crashable_query(&silent_store, doomed).await;
    let generation = doomed.query.rebuild(false).await;
    assert_eq!(generation, 2);
    doomed.crash();
    let model =
        MongoReadModel::connect(&shared.mongodb_uri, &shared.database).await.expect("mongo");
    assert_eq!(
        model.generations().await.expect("generations"),
        Generations { active: 1, building: Some(2) },
        "the crash left the building mark behind"
    );

    // A new instance abandons the orphaned rebuild once its lease has expired ...
    let survivor = spawn_query(&command.url, instance()).await;
    survivor.wait_for_switch(1).await;
    // ... and a new rebuild succeeds (numbered past the abandoned one).
    let rebuilt = survivor.rebuild(true).await;
    assert_eq!(rebuilt, 3);
    // Live events go to one generation: the new one.
    let next = create(&command, Uuid::now_v7(), "After", "Safety").await;
    details(&survivor, &next, 1).await;
    assert_eq!(
        model.generations().await.expect("generations"),
        Generations { active: 3, building: None }
    );
    let next = Uuid::parse_str(&next).expect("uuid");
    for old in [1, 2] {
        assert_eq!(model.summary(old, next).await.expect("read"), None, "generation {old}");
    }
    drop(black_hole);
    survivor.finish().await;
    command.stop().await;
}
