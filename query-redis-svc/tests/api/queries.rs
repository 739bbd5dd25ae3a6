use course_proto::v1::{self, CourseStatus};
use testkit::as_user;
use tonic::Code;
use uuid::Uuid;

use crate::helpers::*;

#[tokio::test]
async fn every_use_case_shows_up_in_every_catalog_rpc() {
    let (command, catalog) = spawn_mesh().await;
    let mut q = catalog.client();
    let (instructor, alice, bob) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());

    let id = create_course(&command, instructor, create_request(10)).await;
    let created = catalog.course_at(&id, 1).await;
    assert_eq!(
        (created.title.as_str(), created.status),
        ("Event sourcing in Rust", CourseStatus::Created as i32)
    );
    assert_eq!(created.instructor_id, instructor.to_string());

    testkit::driver::change_title(&command, instructor, &id, "CQRS").await;
    testkit::driver::change_description(&command, instructor, &id, "Read models").await;
    add_section(&command, instructor, &id, "Intro").await;
    present(&command, instructor, &id).await;
    join(&command, alice, &id).await;
    join(&command, bob, &id).await;
    activate(&command, instructor, &id).await;
    comment(&command, alice, &id, "Great").await;
    let left = leave(&command, bob, &id).await;
    let active = catalog.course_at(&id, left).await;
    assert_eq!(active.title, "CQRS");
    assert_eq!(active.description, "Read models");
    assert_eq!(active.status, CourseStatus::Active as i32);
    assert_eq!((active.section_count, active.participant_count, active.comment_count), (1, 1, 1));

    // Participants, and each user's own enrolments.
    let participants = catalog.participants(&id).await;
    assert_eq!(
        participants.iter().map(|p| p.user_id.clone()).collect::<Vec<_>>(),
        [alice.to_string()]
    );
    let mine = q
        .list_user_courses(as_user(alice, v1::ListUserCoursesRequest::default()))
        .await
        .expect("alice's courses")
        .into_inner();
    assert_eq!(mine.courses.len(), 1);
    assert_eq!(mine.courses[0].course.as_ref().map(|c| c.course_id.as_str()), Some(id.as_str()));
    let bobs = q
        .list_user_courses(as_user(bob, v1::ListUserCoursesRequest::default()))
        .await
        .expect("bob")
        .into_inner();
    assert!(bobs.courses.is_empty(), "bob left");

    // Status and instructor filters, popularity.
    let active_list = q
        .list_courses(v1::ListCoursesRequest {
            status: Some(CourseStatus::Active as i32),
            ..Default::default()
        })
        .await
        .expect("by status")
        .into_inner();
    let active_ids: Vec<&str> = active_list.courses.iter().map(|c| c.course_id.as_str()).collect();
    assert_eq!(active_ids, [id.as_str()]);
    let by_instructor = q
        .list_courses(v1::ListCoursesRequest {
            instructor_id: Some(instructor.to_string()),
            status: Some(CourseStatus::Created as i32),
            ..Default::default()
        })
        .await
        .expect("by instructor and status")
        .into_inner();
    assert!(by_instructor.courses.is_empty(), "the course is no longer Created");
    let popular = q
        .list_popular_courses(v1::ListPopularCoursesRequest {
            limit: 5,
            status: Some(CourseStatus::Active as i32),
            ..Default::default()
        })
        .await
        .expect("popular")
        .into_inner();
    assert_eq!(popular.courses.len(), 1);

    let done = testkit::driver::complete(&command, instructor, &id).await;
    assert_eq!(catalog.course_at(&id, done).await.status, CourseStatus::Completed as i32);
    let completed = q
        .list_courses(v1::ListCoursesRequest {
            status: Some(CourseStatus::Completed as i32),
            ..Default::default()
        })
        .await
        .expect("completed")
        .into_inner();
    assert_eq!(completed.courses.len(), 1);
    let active_list = q
        .list_courses(v1::ListCoursesRequest {
            status: Some(CourseStatus::Active as i32),
            ..Default::default()
        })
        .await
        .expect("active")
        .into_inner();
    assert!(active_list.courses.is_empty(), "moved out of the Active index");
}

#[tokio::test]
async fn list_courses_pages_newest_first_with_a_stable_cursor() {
    let (command, catalog) = spawn_mesh().await;
    let instructor = Uuid::now_v7();
    let mut ids = Vec::new();
    for i in 0..7 {
        let mut request = create_request(0);
        request.title = format!("Course {i}");
        ids.push(create_course(&command, instructor, request).await);
    }
    // Every course applied (the partitions apply independently: the last one says nothing of
    // the others), then the pages.
    let last = testkit::events::position_of(&command, ids.last().expect("id"), 1).await;
    testkit::until_caught_up(|| {
        let mut client = catalog.client();
        let request = v1::ListCoursesRequest { min_position: Some(last), ..Default::default() };
        async move { client.list_courses(request).await }
    })
    .await;
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = catalog
            .client()
            .list_courses(v1::ListCoursesRequest {
                page_size: 3,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("page")
            .into_inner();
        // A course created between pages must not shift the next page.
        if seen.is_empty() {
            command
                .commands()
                .create_course(as_user(instructor, create_request(0)))
                .await
                .expect("create");
        }
        seen.extend(page.courses.into_iter().map(|c| c.course_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    ids.reverse();
    assert_eq!(seen, ids, "newest first, each once");
}

#[tokio::test]
async fn a_joiner_reading_with_the_returned_version_always_sees_themselves() {
    let (command, catalog) = spawn_mesh().await;
    let instructor = Uuid::now_v7();
    let id = create_course(&command, instructor, create_request(0)).await;
    present(&command, instructor, &id).await;
    let mut q = catalog.client();
    for attempt in 0..200 {
        let user = Uuid::now_v7();
        let version = join(&command, user, &id).await;
        let course = q
            .get_course(v1::GetCourseRequest { course_id: id.clone(), min_version: Some(version) })
            .await
            .expect("read your write")
            .into_inner()
            .course
            .expect("course");
        assert!(course.version >= version, "attempt {attempt}");
        assert_eq!(course.participant_count as usize, attempt + 1, "attempt {attempt}");
        let page = q
            .list_course_participants(v1::ListCourseParticipantsRequest {
                course_id: id.clone(),
                page_size: 1,
                page_token: String::new(),
                min_version: Some(version),
            })
            .await
            .expect("participants")
            .into_inner();
        assert!(!page.participants.is_empty());
        let mine = q
            .list_user_courses(as_user(user, v1::ListUserCoursesRequest::default()))
            .await
            .expect("mine")
            .into_inner();
        assert_eq!(mine.courses.len(), 1, "attempt {attempt}: the user sees their enrolment");
    }
}

#[tokio::test]
async fn bad_arguments_unknown_courses_and_other_users_are_refused_precisely() {
    let (_command, catalog) = spawn_mesh().await;
    let mut q = catalog.client();
    let status = q
        .list_courses(v1::ListCoursesRequest {
            status: Some(42),
            page_token: "garbage".into(),
            ..Default::default()
        })
        .await
        .expect_err("bad filters");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("status") && status.message().contains("page_token"),
        "{}",
        status.message()
    );
    let status = q
        .list_course_participants(v1::ListCourseParticipantsRequest {
            course_id: Uuid::now_v7().to_string(),
            ..Default::default()
        })
        .await
        .expect_err("unknown course");
    assert_eq!(status.code(), Code::NotFound);

    let me = Uuid::now_v7();
    let status = q
        .list_user_courses(as_user(
            me,
            v1::ListUserCoursesRequest {
                user_id: Some(Uuid::now_v7().to_string()),
                ..Default::default()
            },
        ))
        .await
        .expect_err("someone else's");
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = catalog
        .anonymous()
        .list_user_courses(v1::ListUserCoursesRequest::default())
        .await
        .expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated);

    // A version that never comes: a bounded wait, then a clear "behind".
    let mut config = catalog.config.clone();
    config.service.projection.read_your_writes_timeout_ms = 200;
    let quick = spawn_catalog(config).await;
    let status = quick
        .client()
        .get_course(v1::GetCourseRequest {
            course_id: Uuid::now_v7().to_string(),
            min_version: Some(5),
        })
        .await
        .expect_err("behind");
    assert_eq!(status.code(), Code::Unavailable);
    assert!(status.message().contains("behind"), "{}", status.message());
}
