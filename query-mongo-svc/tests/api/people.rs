//! ListUserEnrollments, GetPlatformStats and read-your-writes.

use course_proto::v1::{self, CourseStatus};
use testkit::as_user;
use tonic::{Code, Request};
use uuid::Uuid;

use crate::helpers::*;

fn enrollments_request(user_id: Option<Uuid>, min_position: u64) -> v1::ListUserEnrollmentsRequest {
    v1::ListUserEnrollmentsRequest {
        user_id: user_id.map(|u| u.to_string()),
        min_position: Some(min_position),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_user_sees_the_courses_they_are_in_with_status_and_join_time() {
    let env = spawn_env().await;
    let (cmd, instructor, alice) = (&env.command, Uuid::now_v7(), Uuid::now_v7());
    let first = create(cmd, instructor, "First", "A").await;
    let second = create(cmd, instructor, "Second", "B").await;
    let third = create(cmd, instructor, "Third", "C").await;
    for id in [&first, &second, &third] {
        present(cmd, instructor, id).await;
    }
    join(cmd, alice, &first).await;
    join(cmd, alice, &second).await;
    join(cmd, alice, &third).await;
    activate(cmd, instructor, &second).await;
    let version = leave(cmd, alice, &third).await;
    let position = position_of(cmd, &third, version).await;

    // user_id omitted means the caller; naming oneself is the same.
    for user_id in [None, Some(alice)] {
        let enrollments = env
            .query
            .client()
            .list_user_enrollments(as_user(alice, enrollments_request(user_id, position)))
            .await
            .expect("enrolments")
            .into_inner()
            .enrollments;
        let listed: Vec<(&str, &str, i32)> = enrollments
            .iter()
            .map(|e| (e.course_id.as_str(), e.title.as_str(), e.status))
            .collect();
        // Most recently joined first; the course alice left is gone.
        assert_eq!(
            listed,
            vec![
                (second.as_str(), "Second", CourseStatus::Active as i32),
                (first.as_str(), "First", CourseStatus::Presenting as i32),
            ]
        );
        let joined: Vec<_> = enrollments.iter().map(|e| e.joined_at.expect("joined_at")).collect();
        assert!((joined[0].seconds, joined[0].nanos) >= (joined[1].seconds, joined[1].nanos));
    }
    // Someone in no course sees an empty list.
    let nobody = Uuid::now_v7();
    let empty = env
        .query
        .client()
        .list_user_enrollments(as_user(nobody, enrollments_request(None, position)))
        .await
        .expect("enrolments")
        .into_inner();
    assert!(empty.enrollments.is_empty());
    env.finish().await;
}

#[tokio::test]
async fn enrolments_are_private_to_their_user_and_need_a_valid_token() {
    let env = spawn_env().await;
    let (alice, mallory) = (Uuid::now_v7(), Uuid::now_v7());
    let mut client = env.query.client();
    assert_code(
        client.list_user_enrollments(as_user(mallory, enrollments_request(Some(alice), 0))).await,
        Code::PermissionDenied,
    );
    assert_code(
        env.query
            .anonymous()
            .list_user_enrollments(Request::new(enrollments_request(Some(alice), 0)))
            .await,
        Code::Unauthenticated,
    );
    let mut forged = Request::new(enrollments_request(None, 0));
    let token = platform::auth::mint_hs256(
        b"another-secret-0123456789",
        alice,
        std::time::Duration::from_secs(60),
    )
    .expect("token");
    forged
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
    assert_code(client.list_user_enrollments(forged).await, Code::Unauthenticated);
    let status = assert_code(
        client
            .list_user_enrollments(as_user(
                alice,
                v1::ListUserEnrollmentsRequest { user_id: Some("me".into()), ..Default::default() },
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), vec!["user_id"]);
    env.finish().await;
}

#[tokio::test]
async fn platform_stats_match_the_data() {
    let env = spawn_env().await;
    let cmd = &env.command;
    let instructor = Uuid::now_v7();
    let users: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
    // Programming: created, presenting (2 participants), active (3 participants, 2 comments,
    // one leaver), completed. Cooking: presenting with nobody.
    let _created = create(cmd, instructor, "Draft", "Programming").await;
    let presenting = create(cmd, instructor, "Open", "Programming").await;
    present(cmd, instructor, &presenting).await;
    join(cmd, users[0], &presenting).await;
    join(cmd, users[1], &presenting).await;
    let active = create(cmd, instructor, "Running", "Programming").await;
    present(cmd, instructor, &active).await;
    for user in &users {
        join(cmd, *user, &active).await;
    }
    activate(cmd, instructor, &active).await;
    comment(cmd, users[0], &active, "one").await;
    comment(cmd, users[1], &active, "two").await;
    leave(cmd, users[3], &active).await;
    let done = create(cmd, instructor, "Done", "Programming").await;
    present(cmd, instructor, &done).await;
    activate(cmd, instructor, &done).await;
    join(cmd, users[2], &done).await;
    comment(cmd, users[2], &done, "three").await;
    complete(cmd, instructor, &done).await;
    let cooking = create(cmd, instructor, "Soup", "Cooking").await;
    let version = present(cmd, instructor, &cooking).await;
    let position = position_of(cmd, &cooking, version).await;

    let stats = stats(&env.query, position).await;
    assert_eq!(stats.total_courses, 5);
    let by_status: Vec<(&str, u64)> =
        stats.courses_by_status.iter().map(|c| (c.key.as_str(), c.count)).collect();
    assert_eq!(
        by_status,
        vec![
            ("COURSE_STATUS_CREATED", 1),
            ("COURSE_STATUS_PRESENTING", 2),
            ("COURSE_STATUS_ACTIVE", 1),
            ("COURSE_STATUS_COMPLETED", 1),
        ]
    );
    let by_category: Vec<(&str, u64)> =
        stats.courses_by_category.iter().map(|c| (c.key.as_str(), c.count)).collect();
    assert_eq!(by_category, vec![("Programming", 4), ("Cooking", 1)]);
    assert_eq!(stats.total_participants, 2 + 3 + 1);
    assert_eq!(stats.total_comments, 3);
    env.finish().await;
}

#[tokio::test]
async fn a_client_that_joins_then_reads_with_min_version_always_sees_itself() {
    let env = spawn_env().await;
    let instructor = Uuid::now_v7();
    let id = create(&env.command, instructor, "Popular", "Crowds").await;
    present(&env.command, instructor, &id).await;
    for attempt in 0..200 {
        let user = Uuid::now_v7();
        let version = join(&env.command, user, &id).await;
        let course = details(&env.query, &id, version).await;
        assert!(course.version >= version, "attempt {attempt}: stale version");
        // The details carry the first page; past it, the joiner is on a later one.
        let mut participants = course.participants;
        let mut token = course.participants_next_page_token;
        while !token.is_empty() {
            let page = env
                .query
                .client()
                .list_participants(v1::ListParticipantsRequest {
                    course_id: id.clone(),
                    page_size: 100,
                    page_token: token,
                    min_version: None,
                })
                .await
                .expect("next page")
                .into_inner();
            participants.extend(page.participants);
            token = page.next_page_token;
        }
        assert_eq!(participants.len(), attempt + 1, "attempt {attempt}: every participant");
        assert!(
            participants.iter().any(|p| p.user_id == user.to_string()),
            "attempt {attempt}: the joiner is missing"
        );
    }
    env.finish().await;
}
