//! The MongoDB storage on its own, under concurrency.

use std::collections::BTreeSet;

use futures::future::join_all;
use projection::{Generations, ReadModel};
use query_mongo_svc::store::MongoReadModel;

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
