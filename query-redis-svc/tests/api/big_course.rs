//! A course with 100,000 participants: every catalog RPC that touches it answers through the
//! generated client with its default 4 MB decoding limit.

use std::time::{Duration, Instant};

use course_proto::v1;
use fred::prelude::{Builder, ClientLike, Config as RedisConfig, Key, KeysInterface};
use futures::TryStreamExt;
use testkit::{spawn_command_svc, unique};
use uuid::Uuid;

use crate::helpers::*;

/// Participants of the big course.
const PARTICIPANTS: u64 = 100_000;

#[tokio::test]
async fn a_course_of_100_000_participants_is_served_in_bounded_answers() {
    let started = Instant::now();
    let exchange = unique("test.events");
    let command = spawn_command_svc(&exchange).await;
    let mut config = config(&command, &exchange);
    config.service.projection.batch_size = 512;
    config.service.projection.prefetch = 1024;
    let catalog = spawn_catalog(config).await;
    let instructor = Uuid::now_v7();
    let request = v1::CreateCourseRequest {
        title: "Rust for everyone".into(),
        description: "A very big course".into(),
        category: "Programming".into(),
        max_participants: 100_000,
        ..Default::default()
    };
    let id = create_course(&command, instructor, request).await;
    let presented = present(&command, instructor, &id).await;
    // The sequencer numbers the joins right after the presentation: nothing else is written.
    let target = testkit::events::position_of(&command, &id, presented).await + PARTICIPANTS;
    let users = command.join_many(&id, presented, PARTICIPANTS).await;
    let last = presented + PARTICIPANTS;
    catalog.wait_until_applied(target, Duration::from_secs(900)).await;

    // GetCourse, once every join is applied.
    eprintln!("{PARTICIPANTS} joins applied after {:?}", started.elapsed());
    let course = catalog.course_at(&id, last).await;
    assert_eq!(course.participant_count, 100_000);

    // ListCourseParticipants: a page at a time, in join order.
    let mut token = String::new();
    let mut seen = 0;
    for _ in 0..3 {
        let page = catalog
            .client()
            .list_course_participants(v1::ListCourseParticipantsRequest {
                course_id: id.clone(),
                page_size: 100,
                page_token: token,
                min_version: None,
            })
            .await
            .expect("ListCourseParticipants")
            .into_inner();
        let ids: Vec<String> = page.participants.iter().map(|p| p.user_id.clone()).collect();
        let expected: Vec<String> = users[seen..seen + 100].iter().map(Uuid::to_string).collect();
        assert_eq!(ids, expected);
        seen += 100;
        assert!(!page.next_page_token.is_empty(), "more pages follow");
        token = page.next_page_token;
    }

    // ListPopularCourses: the big course first, with its count.
    let popular = catalog
        .client()
        .list_popular_courses(v1::ListPopularCoursesRequest { limit: 100, ..Default::default() })
        .await
        .expect("ListPopularCourses")
        .into_inner();
    let top = popular.courses.first().expect("a popular course");
    assert_eq!((top.course_id.as_str(), top.participant_count), (id.as_str(), 100_000));
    eprintln!("every read answered after {:?}", started.elapsed());

    let prefix = catalog.config.redis_key_prefix.clone();
    drop(catalog);
    command.stop().await;
    remove_keys(&prefix).await;
}

/// Deletes every key under `prefix`: this test's catalog holds some 100,000 entries that the
/// shared Redis should not keep.
async fn remove_keys(prefix: &str) {
    let redis = Builder::from_config(RedisConfig::from_url(&redis_url()).expect("url"))
        .build()
        .expect("client");
    redis.init().await.expect("redis");
    let pattern = format!("{prefix}*");
    let keys: Vec<Key> = if redis.is_clustered() {
        redis.scan_cluster_buffered(pattern, Some(1_000), None).try_collect().await
    } else {
        redis.scan_buffered(pattern, Some(1_000), None).try_collect().await
    }
    .expect("scan");
    // One UNLINK per key: on a cluster, keys of different hash slots cannot share a command.
    for chunk in keys.chunks(1_000) {
        let pipeline = redis.pipeline();
        for key in chunk {
            let _: () = pipeline.unlink(key.clone()).await.expect("queue unlink");
        }
        let _: Vec<i64> = pipeline.all().await.expect("unlink");
    }
}
