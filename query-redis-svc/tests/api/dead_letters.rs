//! Stuck states of issue 12: an event that cannot be applied must not freeze the watermark or
//! a rebuild, and a rebuild whose process died must not block every later one.

use course_proto::v1;
use projection::ReadModel;
use query_redis_svc::store::RedisReadModel;
use testkit::events::position_of;
use testkit::{ServingStatus, spawn_command_svc, unique, wait_for_health};
use uuid::Uuid;

use crate::helpers::*;

const DEGRADED: &str = "course.v1.ProjectionHealth";

#[tokio::test]
async fn an_event_that_cannot_be_applied_is_recorded_the_watermark_passes_it_and_a_replay_applies_it_once_repaired()
 {
    let exchange = unique("test.events");
    let command = spawn_command_svc(&exchange).await;
    let catalog = spawn_catalog(config(&command, &exchange)).await;
    let instructor = Uuid::now_v7();
    let id = create_course(&command, instructor, create_request(0)).await;
    catalog.course_at(&id, 1).await;
    wait_for_health(&catalog.channel(), DEGRADED, ServingStatus::Serving).await;

    // A second CourseCreated as version 2, written straight into the store: sequenced and
    // published like any event, but it never fits the course (nor does it in a rebuild).
    command.duplicate_creation(&id).await;
    let poison = position_of(&command, &id, 2).await;

    // The watermark moves past it: a read that waits for its position answers.
    let listed = catalog
        .client()
        .list_courses(v1::ListCoursesRequest { min_position: Some(poison), ..Default::default() })
        .await
        .expect("a read at the dead-lettered position answers")
        .into_inner();
    assert!(listed.courses.iter().any(|c| c.course_id == id));
    let status = catalog.status_until("degraded", |s| s.degraded).await;
    assert_eq!(status.dead_letter_count, 1);
    assert!(status.applied_position >= poison);
    // Degraded is not unready: the service keeps serving.
    wait_for_health(&catalog.channel(), DEGRADED, ServingStatus::NotServing).await;
    wait_for_health(&catalog.channel(), "course.v1.CatalogQueryService", ServingStatus::Serving)
        .await;

    let letters = catalog.dead_letters().await;
    assert_eq!(letters.dead_letters.len(), 1);
    let letter = &letters.dead_letters[0];
    assert_eq!((letter.global_position, letter.course_id.as_str()), (poison, id.as_str()));
    assert_eq!(letter.version, 2);
    assert!(letter.reason.contains("does not follow"), "reason: {}", letter.reason);
    assert!(letters.next_page_token.is_empty());

    // A rebuild over a store holding it finishes, recording it again.
    let generation = catalog.rebuild(true).await;
    let status = catalog.status().await;
    assert_eq!((status.active_generation, status.building_generation), (generation, 0));
    assert!(status.applied_position >= poison);
    assert_eq!((status.degraded, status.dead_letter_count), (true, 1));

    // Still broken: a replay keeps it.
    assert_eq!(catalog.replay_dead_letters().await, (0, 1));

    // The audit names the event it cannot use and leaves its course out, instead of failing.
    let report = catalog.audit(0).await;
    assert_eq!(report.difference_count, 0, "{report:?}");
    assert_eq!(report.unauditable.len(), 1, "{report:?}");
    assert_eq!(
        (report.unauditable[0].global_position, report.unauditable[0].course_id.as_str()),
        (poison, id.as_str())
    );

    // The operator repairs the stored event; a replay applies it and the read model is whole.
    command.repair_as_title_change(&id, 2, "Repaired").await;
    assert_eq!(catalog.replay_dead_letters().await, (1, 0));
    assert_eq!(catalog.course_at(&id, 2).await.title, "Repaired");
    let status = catalog.status().await;
    assert_eq!((status.degraded, status.dead_letter_count), (false, 0));
    wait_for_health(&catalog.channel(), DEGRADED, ServingStatus::Serving).await;
    let report = catalog.audit(0).await;
    assert_eq!((report.difference_count, report.unauditable.len()), (0, 0), "{report:?}");
}

#[tokio::test]
async fn dead_letters_are_listed_in_pages() {
    let exchange = unique("test.events");
    let command = spawn_command_svc(&exchange).await;
    let catalog = spawn_catalog(config(&command, &exchange)).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let id = create_course(&command, Uuid::now_v7(), create_request(0)).await;
        catalog.course_at(&id, 1).await;
        ids.push(id);
    }
    for id in &ids {
        command.duplicate_creation(id).await;
    }
    catalog.status_until("three dead letters", |s| s.dead_letter_count == 3).await;
    let mut admin = catalog.admin();
    let mut token = String::new();
    let mut seen = Vec::new();
    loop {
        let page = admin
            .list_dead_letters(v1::ListDeadLettersRequest { page_size: 2, page_token: token })
            .await
            .expect("page")
            .into_inner();
        assert!(page.dead_letters.len() <= 2);
        seen.extend(page.dead_letters.into_iter().map(|l| (l.global_position, l.course_id)));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen.len(), 3);
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "by position: {seen:?}");
    let mut courses: Vec<String> = seen.into_iter().map(|(_, c)| c).collect();
    courses.sort();
    ids.sort();
    assert_eq!(courses, ids);

    let bad = admin
        .list_dead_letters(v1::ListDeadLettersRequest { page_size: 0, page_token: "x".into() })
        .await
        .expect_err("a token not from ListDeadLetters");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn a_rebuild_whose_process_died_is_abandoned_and_the_next_one_succeeds() {
    let exchange = unique("test.events");
    let command = spawn_command_svc(&exchange).await;
    let shared = config(&command, &exchange);
    // Each instance has a queue of its own, so that a killed one's broker connection, if it
    // lingers, holds no event another one needs.
    let instance = |event_store_url: &str| {
        let mut config = shared.clone();
        config.service.queue_name = unique("test.catalog");
        config.service.projection.event_store_url = event_store_url.to_owned();
        config
    };
    workload(&command, 3, 4).await;
    // The first instance builds generation 1, then dies.
    let first = spawn_crashable_catalog(instance(&command.url)).await;
    first.catalog.status_until("built", |s| s.active_generation == 1).await;
    first.crash();

    // The second one rebuilds from an event store that accepts connections and never answers,
    // so its replay hangs (deterministically) after the building mark is set; then it dies.
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_store = format!("http://{}", black_hole.local_addr().expect("addr"));
    // Only the doomed one holds a short lease: the others keep theirs renewed on a loaded
    // machine too (a lapsed lease gets a live rebuild abandoned).
    let mut doomed = instance(&silent_store);
    doomed.service.projection.rebuild_lease_ms = 1_000;
    let doomed = spawn_crashable_catalog(doomed).await;
    let generation = doomed.catalog.rebuild(false).await;
    assert_eq!(generation, 2);
    doomed.crash();
    let model = RedisReadModel::connect(&redis_url(), &shared.redis_key_prefix).expect("redis");
    assert_eq!(
        model.generations().await.expect("generations"),
        projection::Generations { active: 1, building: Some(2) },
        "the crash left the building mark behind"
    );

    // A new instance abandons the orphaned rebuild once its lease has expired ...
    let survivor = spawn_catalog(instance(&command.url)).await;
    survivor.wait_for_switch(1).await;
    // ... and a new rebuild succeeds (numbered past the abandoned one).
    let rebuilt = survivor.rebuild(true).await;
    assert_eq!(rebuilt, 3);
    // Live events go to one generation: the new one.
    let id = create_course(&command, Uuid::now_v7(), create_request(0)).await;
    survivor.course_at(&id, 1).await;
    assert_eq!(
        model.generations().await.expect("generations"),
        projection::Generations { active: 3, building: None }
    );
    for old in [1, 2] {
        assert_eq!(
            model.summary(old, Uuid::parse_str(&id).expect("uuid")).await.expect("read"),
            None
        );
        assert_eq!(model.watermark(old).await.expect("watermark"), 0, "generation {old} dropped");
    }
    drop(black_hole);
}

#[tokio::test]
async fn a_build_over_a_store_holding_an_event_that_cannot_be_applied_finishes_and_records_it() {
    let exchange = unique("test.events");
    let command = spawn_command_svc(&exchange).await;
    let id = create_course(&command, Uuid::now_v7(), create_request(0)).await;
    command.duplicate_creation(&id).await;
    let poison = position_of(&command, &id, 2).await;

    // On an exchange nobody publishes to, the only way to the event is the first build's
    // replay of the store: it finishes (the catalog serves) with the event recorded.
    let catalog = spawn_catalog(config(&command, &unique("test.silent"))).await;
    let status = catalog.status_until("built", |s| s.active_generation == 1).await;
    assert!(status.applied_position >= poison);
    assert_eq!((status.degraded, status.dead_letter_count), (true, 1));
    assert_eq!(catalog.course_at(&id, 1).await.version, 1);
    let letters = catalog.dead_letters().await.dead_letters;
    assert_eq!(letters.len(), 1);
    assert_eq!((letters[0].global_position, letters[0].version), (poison, 2));
}
