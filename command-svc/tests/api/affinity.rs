//! Command affinity (`course_proto::affinity`): two command-svc replicas on one database, every
//! command sent to the replica its course hashes to, under a hot-course load.

use std::collections::BTreeMap;

use course_proto::affinity::{COURSE_ID_HEADER, CourseRouter};
use course_proto::v1;
use futures::future::join_all;
use testkit::driver::{activate, create_course, present};
use tonic::{Code, Request};
use uuid::Uuid;

use crate::helpers::*;

/// `message` as `user`, with the course header a gateway hashes on.
fn routed<T>(user: Uuid, course_id: &str, message: T) -> Request<T> {
    let mut request = as_user(user, message);
    request.metadata_mut().insert(COURSE_ID_HEADER, course_id.parse().expect("ascii"));
    request
}

#[tokio::test]
async fn two_replicas_fed_by_course_keep_capacity_and_idempotency_with_no_conflict() {
    let database = fresh_database().await;
    let exchange = unique("test.events");
    let replicas = [
        Process::start(&database, &rabbitmq_url(), &exchange).await,
        Process::start(&database, &rabbitmq_url(), &exchange).await,
    ];
    let router = CourseRouter::new(replicas.iter().map(Process::client).collect()).expect("two");
    let instructor = Uuid::now_v7();

    // The hot course (20 seats) and quieter courses until each replica serves at least two.
    let hot = create_course(&replicas[0].client(), instructor, create_request(20)).await;
    let mut courses = vec![hot.clone()];
    let served = |courses: &[String], replica: usize| {
        courses
            .iter()
            .filter(|c| std::ptr::eq(router.route(c), &router.replicas()[replica]))
            .count()
    };
    while served(&courses, 0) < 2 || served(&courses, 1) < 2 {
        courses.push(create_course(&replicas[0].client(), instructor, create_request(0)).await);
    }
    for course in &courses {
        present(router.route(course), instructor, course).await;
        activate(router.route(course), instructor, course).await;
    }

    // 200 users join the hot course at once, 40 of them send their join twice (same
    // command_id, concurrently); meanwhile every course gets comments.
    let mut joins = Vec::new();
    for i in 0..200 {
        let (user, command_id) = (Uuid::now_v7(), Uuid::now_v7().to_string());
        for _ in 0..if i < 40 { 2 } else { 1 } {
            let mut client = router.route(&hot).commands();
            let request = v1::JoinCourseRequest {
                course_id: hot.clone(),
                command_id: Some(command_id.clone()),
                ..Default::default()
            };
            let (hot, command_id) = (hot.clone(), command_id.clone());
            joins.push(async move {
                (command_id, client.join_course(routed(user, &hot, request)).await)
            });
        }
    }
    let mut comments = Vec::new();
    for course in &courses {
        for i in 0..20 {
            let mut client = router.route(course).commands();
            let request = v1::CommentCourseRequest {
                course_id: course.clone(),
                text: format!("comment {i}"),
                ..Default::default()
            };
            let course = course.clone();
            comments.push(async move {
                client.comment_course(routed(instructor, &course, request)).await
            });
        }
    }
    let (joined, commented) = tokio::join!(join_all(joins), join_all(comments));

    let mut answers: BTreeMap<String, Vec<Result<u64, Code>>> = BTreeMap::new();
    for (command_id, result) in joined {
        answers
            .entry(command_id)
            .or_default()
            .push(result.map(|r| r.into_inner().version).map_err(|s| s.code()));
    }
    for (command_id, copies) in &answers {
        assert!(copies.windows(2).all(|w| w[0] == w[1]), "{command_id}: {copies:?}");
        if let Err(code) = copies[0] {
            assert_eq!(code, Code::FailedPrecondition, "{command_id}: a full course refuses");
        }
    }
    let accepted = answers.values().filter(|copies| copies[0].is_ok()).count();
    assert_eq!(accepted, 20, "exactly the capacity");
    assert!(commented.iter().all(Result::is_ok), "{:?}", commented.iter().find(|r| r.is_err()));

    let store = replicas[0].client();
    let stored = store.stream(&hot).await;
    assert_eq!(stored.iter().filter(|e| e.event_type == "UserJoinedCourse").count(), 20);
    for (index, replica) in replicas.iter().enumerate() {
        assert_eq!(
            replica.metric("command_conflicts_total").await,
            0.0,
            "replica {index} collided with the other"
        );
        assert!(replica.metric("events_appended_total").await > 0.0, "replica {index} worked");
    }
}

#[tokio::test]
async fn a_course_header_that_names_another_course_is_refused() {
    let app = spawn_app().await;
    let instructor = Uuid::now_v7();
    let course = create_course(&app, instructor, create_request(0)).await;
    let other = Uuid::now_v7().to_string();
    let request = v1::ChangeCourseTitleRequest {
        course_id: course.clone(),
        title: "Routed elsewhere".into(),
        ..Default::default()
    };
    let status = app
        .commands()
        .change_course_title(routed(instructor, &other, request.clone()))
        .await
        .expect_err("the header must name the request's course");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains(COURSE_ID_HEADER), "{status:?}");
    let version = app
        .commands()
        .change_course_title(routed(instructor, &course, request))
        .await
        .expect("the right header is accepted")
        .into_inner()
        .version;
    assert_eq!(version, 2, "nothing was written by the refused one");
}
