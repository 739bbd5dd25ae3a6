use course_proto::v1::{self, event_envelope::Payload};
use testkit::driver;
use tonic::Code;
use tonic_types::StatusExt;
use uuid::Uuid;

use crate::helpers::*;

#[tokio::test]
async fn the_whole_course_story_runs_through_every_command() {
    let app = spawn_app().await;
    let mut c = app.commands();
    let (instructor, alice, bob) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());

    let created =
        c.create_course(as_user(instructor, create_request(0))).await.expect("create").into_inner();
    assert_eq!(created.version, 1);
    let id = created.course_id.clone();
    Uuid::parse_str(&id).expect("course id is a UUID");

    let r = c
        .change_course_title(as_user(
            instructor,
            v1::ChangeCourseTitleRequest {
                course_id: id.clone(),
                title: "  Rust CQRS  ".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("title")
        .into_inner();
    assert_eq!((r.course_id.as_str(), r.version), (id.as_str(), 2));
    let r = c
        .change_course_description(as_user(
            instructor,
            v1::ChangeCourseDescriptionRequest {
                course_id: id.clone(),
                description: "New".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("description")
        .into_inner();
    assert_eq!(r.version, 3);
    let section = c
        .add_section(as_user(
            instructor,
            v1::AddSectionRequest {
                course_id: id.clone(),
                title: "Intro".into(),
                description: "".into(),
                video_url: "https://videos.example/intro.mp4".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("section")
        .into_inner();
    assert_eq!((section.version, section.position), (4, 1));
    Uuid::parse_str(&section.section_id).expect("section id is a UUID");
    assert_eq!(driver::present(&app, instructor, &id).await, 5);
    assert_eq!(driver::join(&app, alice, &id).await, 6);
    assert_eq!(driver::join(&app, bob, &id).await, 7);
    assert_eq!(driver::activate(&app, instructor, &id).await, 8);
    let (version, comment_id) = driver::comment(&app, alice, &id, "Loving it").await;
    assert_eq!(version, 9);
    Uuid::parse_str(&comment_id).expect("comment id is a UUID");
    assert_eq!(driver::leave(&app, bob, &id).await, 10);
    assert_eq!(driver::complete(&app, instructor, &id).await, 11);

    let events = app.stream(&id).await;
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "CourseCreated",
            "CourseTitleChanged",
            "CourseDescriptionChanged",
            "SectionAdded",
            "CoursePresented",
            "UserJoinedCourse",
            "UserJoinedCourse",
            "CourseActivated",
            "CourseCommented",
            "UserLeftCourse",
            "CourseCompleted"
        ]
    );
    assert!(events.iter().enumerate().all(|(i, e)| e.version == i as u64 + 1));
    match &events[1].payload {
        Some(Payload::CourseTitleChanged(p)) => {
            assert_eq!(p.title, "Rust CQRS", "strings are trimmed")
        }
        other => panic!("unexpected payload {other:?}"),
    }
    match &events[8].payload {
        Some(Payload::CourseCommented(p)) => {
            assert_eq!(
                (p.author_id.as_str(), p.comment_id.as_str()),
                (alice.to_string().as_str(), comment_id.as_str())
            )
        }
        other => panic!("unexpected payload {other:?}"),
    }
    let meta = events[5].metadata.clone().expect("metadata");
    assert_eq!(meta.actor_id, alice.to_string(), "the caller is the actor");
}

#[tokio::test]
async fn setting_the_current_title_succeeds_without_a_new_event() {
    let app = spawn_app().await;
    let instructor = Uuid::now_v7();
    let id = create_course(&app, instructor, 0).await;
    let r = app
        .commands()
        .change_course_title(as_user(
            instructor,
            v1::ChangeCourseTitleRequest {
                course_id: id.clone(),
                title: create_request(0).title,
                ..Default::default()
            },
        ))
        .await
        .expect("no-op succeeds")
        .into_inner();
    assert_eq!(r.version, 1);
    assert_eq!(app.stream(&id).await.len(), 1);
}

#[tokio::test]
async fn calls_without_a_valid_token_are_unauthenticated() {
    let app = spawn_app().await;
    let mut c = app.commands();
    assert_code(
        c.create_course(tonic::Request::new(create_request(0))).await,
        Code::Unauthenticated,
    );

    let mut forged = tonic::Request::new(create_request(0));
    let token = platform::auth::mint_hs256(
        b"another-secret-entirely",
        Uuid::now_v7(),
        std::time::Duration::from_secs(60),
    )
    .expect("token");
    forged
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
    let status = assert_code(c.create_course(forged).await, Code::Unauthenticated);
    assert!(status.message().contains("invalid token"), "{}", status.message());
}

#[tokio::test]
async fn malformed_input_lists_every_field_violation() {
    let app = spawn_app().await;
    let user = Uuid::now_v7();
    let mut c = app.commands();
    let status = assert_code(
        c.create_course(as_user(
            user,
            v1::CreateCourseRequest {
                command_id: Some("not-a-uuid".into()),
                title: "   ".into(),
                description: "x".repeat(5001),
                category: "".into(),
                max_participants: 100_001,
                expected_version: None,
            },
        ))
        .await,
        Code::InvalidArgument,
    );
    let bad_request = status.get_details_bad_request().expect("google.rpc.BadRequest details");
    let mut fields: Vec<&str> =
        bad_request.field_violations.iter().map(|v| v.field.as_str()).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["category", "command_id", "description", "max_participants", "title"]);

    let status = assert_code(
        c.add_section(as_user(
            user,
            v1::AddSectionRequest {
                course_id: "nope".into(),
                title: "t".into(),
                video_url: "ftp://videos.example/a".into(),
                ..Default::default()
            },
        ))
        .await,
        Code::InvalidArgument,
    );
    let fields: Vec<String> = status
        .get_details_bad_request()
        .expect("details")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["course_id", "video_url"]);

    let long_comment = "é".repeat(2001);
    let status = assert_code(
        c.comment_course(as_user(
            user,
            v1::CommentCourseRequest {
                course_id: Uuid::now_v7().to_string(),
                text: long_comment,
                ..Default::default()
            },
        ))
        .await,
        Code::InvalidArgument,
    );
    assert!(status.message().contains("text"), "{}", status.message());
}

#[tokio::test]
async fn an_unknown_course_is_not_found() {
    let app = spawn_app().await;
    let status = assert_code(
        app.commands()
            .join_course(as_user(Uuid::now_v7(), join_request(&Uuid::now_v7().to_string())))
            .await,
        Code::NotFound,
    );
    assert_eq!(status.message(), "course not found");
}

#[tokio::test]
async fn only_the_instructor_may_manage_the_course() {
    let app = spawn_app().await;
    let instructor = Uuid::now_v7();
    let id = create_course(&app, instructor, 0).await;
    let status = assert_code(
        app.commands()
            .present_course(as_user(
                Uuid::now_v7(),
                v1::PresentCourseRequest { course_id: id, ..Default::default() },
            ))
            .await,
        Code::PermissionDenied,
    );
    assert!(status.message().contains("instructor"), "{}", status.message());
}

#[tokio::test]
async fn a_broken_rule_is_a_failed_precondition_that_names_the_rule() {
    let app = spawn_app().await;
    let instructor = Uuid::now_v7();
    let id = create_course(&app, instructor, 0).await;
    let status = assert_code(
        app.commands().join_course(as_user(Uuid::now_v7(), join_request(&id))).await,
        Code::FailedPrecondition,
    );
    assert!(status.message().contains("presenting or active"), "{}", status.message());
    let status = assert_code(
        app.commands()
            .complete_course(as_user(
                instructor,
                v1::CompleteCourseRequest { course_id: id, ..Default::default() },
            ))
            .await,
        Code::FailedPrecondition,
    );
    assert!(status.message().contains("Active"), "{}", status.message());
}

#[tokio::test]
async fn an_oversized_request_is_refused_before_it_is_decoded() {
    let app = spawn_app().await;
    let mut request = create_request(0);
    request.description = "x".repeat(100 * 1024);
    let status = app
        .commands()
        .create_course(as_user(Uuid::now_v7(), request))
        .await
        .expect_err("too large");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
}
