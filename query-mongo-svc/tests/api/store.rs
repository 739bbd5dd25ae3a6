//! The MongoDB storage on its own, under concurrency.

use std::collections::BTreeSet;

use course_domain::CourseStatus;
use futures::future::join_all;
use projection::fold::{Change, CourseSummary};
use projection::{CourseWrite, Generations, ReadModel, Saved};
use query_mongo_svc::store::MongoReadModel;
use uuid::Uuid;

use crate::helpers::*;

async fn model() -> MongoReadModel {
    MongoReadModel::connect(&mongo_uri(), &fresh_database()).await.expect("client")
}

#[tokio::test]
async fn concurrent_writers_keep_the_watermark_contiguous() {
    let model = model().await;
    // Eight writers record 400 positions in an interleaved order (each writer's share runs
    // backwards), some of them twice: the watermark only passes a position once every lower
    // one is recorded, and ends exactly at the top.
    let top = 400u64;
    let writers = (0..8u64).map(|w| {
        let model = model.clone();
        async move {
            let mine: Vec<u64> = (1..=top).filter(|p| p % 8 == w).rev().collect();
            let mut seen = Vec::new();
            for position in mine.iter().chain(mine.iter().take(5)) {
                seen.push(model.mark_applied(1, *position).await.expect("mark"));
            }
            seen
        }
    });
    let returned: Vec<u64> = join_all(writers).await.into_iter().flatten().collect();
    assert!(returned.iter().all(|w| *w <= top));
    assert_eq!(model.watermark(1).await.expect("watermark"), top);
    // Nothing stays recorded below the watermark.
    let left: BTreeSet<String> = model
        .database()
        .collection::<mongodb::bson::Document>("applied_g1")
        .distinct("_id", mongodb::bson::doc! {})
        .await
        .expect("distinct")
        .into_iter()
        .map(|v| v.to_string())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    model.database().drop().await.expect("drop");
}

#[tokio::test]
async fn only_one_of_two_racing_swaps_wins_and_generations_in_use_are_never_dropped() {
    let model = model().await;
    let first = Generations { active: 1, building: None };
    let swaps =
        join_all((0..2).map(|_| model.swap_generations(Generations::default(), first))).await;
    let won: Vec<bool> = swaps.into_iter().map(|r| r.expect("swap")).collect();
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
    assert_eq!(model.generations().await.expect("generations"), first);
    assert!(!model.swap_generations(Generations::default(), first).await.expect("stale swap"));

    model.mark_applied(1, 1).await.expect("mark");
    model.drop_generation(1).await.expect("drop");
    assert_eq!(model.watermark(1).await.expect("kept"), 1, "the active generation survives");
    let building = Generations { active: 1, building: Some(2) };
    assert!(model.swap_generations(first, building).await.expect("reserve"));
    let done = Generations { active: 2, building: None };
    assert!(model.swap_generations(building, done).await.expect("switch"));
    model.drop_generation(1).await.expect("drop the old one");
    assert_eq!(model.watermark(1).await.expect("gone"), 0);
    model.database().drop().await.expect("drop");
}

/// The summary of a course at `version` with `participants`.
fn summary(course_id: Uuid, version: u64, participants: u32) -> CourseSummary {
    let at =
        chrono::DateTime::from_timestamp_millis(1_700_000_000_000 + version as i64).expect("time");
    CourseSummary {
        course_id,
        version,
        title: "Big".into(),
        description: "A course".into(),
        category: "Programming".into(),
        status: CourseStatus::Presenting,
        instructor_id: Uuid::nil(),
        max_participants: 0,
        section_count: 0,
        participant_count: participants,
        comment_count: 0,
        created_at: at,
        updated_at: at,
    }
}

fn joined(user: Uuid, version: u64) -> Change {
    let joined_at =
        chrono::DateTime::from_timestamp_millis(1_700_000_000_000 + version as i64).expect("time");
    Change::ParticipantJoined { user_id: user, joined_at }
}

async fn page(model: &MongoReadModel, course: Uuid, after: u64) -> Vec<String> {
    let page = model.participants(1, course, after, 10).await.expect("page");
    page.into_iter().map(|p| p.user_id).collect()
}

#[tokio::test]
async fn a_replayed_join_never_brings_back_someone_who_left_and_pages_follow_join_order() {
    let model = model().await;
    let (course, alice, bob) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let created = summary(course, 1, 0);
    assert_eq!(model.save(1, 0, &created, &Change::Created).await.expect("create"), Saved::Applied);
    // Alice joins (v2), Bob joins (v3), Alice leaves (v4): one batch.
    let batch = CourseWrite {
        before_version: 1,
        steps: vec![
            (summary(course, 2, 1), joined(alice, 2)),
            (summary(course, 3, 2), joined(bob, 3)),
            (summary(course, 4, 1), Change::ParticipantLeft { user_id: alice }),
        ],
    };
    assert_eq!(model.save_batch(1, &[batch]).await.expect("batch"), vec![Saved::Applied]);
    assert_eq!(page(&model, course, 0).await, vec![bob.to_string()]);

    // Alice's join replayed, one at a time and in a batch: the course refuses it (its version
    // moved on) and so does her participation (a newer leave is stored).
    let replay = summary(course, 2, 1);
    let single = model.save(1, 1, &replay, &joined(alice, 2)).await.expect("replay");
    assert_eq!(single, Saved::Conflict);
    let batch = CourseWrite { before_version: 1, steps: vec![(replay, joined(alice, 2))] };
    assert_eq!(model.save_batch(1, &[batch]).await.expect("replay"), vec![Saved::Conflict]);
    assert_eq!(page(&model, course, 0).await, vec![bob.to_string()]);

    // She joins again (v5): after Bob in join order, and the pages continue by join version.
    let rejoined = summary(course, 5, 2);
    let saved = model.save(1, 4, &rejoined, &joined(alice, 5)).await.expect("rejoin");
    assert_eq!(saved, Saved::Applied);
    assert_eq!(page(&model, course, 0).await, vec![bob.to_string(), alice.to_string()]);
    assert_eq!(page(&model, course, 3).await, vec![alice.to_string()]);
    let view = model.audit_view(1, course, &BTreeSet::new()).await.expect("audit").expect("view");
    assert_eq!(view.participants, Some(BTreeSet::from([alice, bob])));
    assert_eq!(model.summary(1, course).await.expect("read").map(|s| s.participant_count), Some(2));
    model.database().drop().await.expect("drop");
}
