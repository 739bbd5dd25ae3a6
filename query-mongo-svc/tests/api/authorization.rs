//! The README's authorization table, row by row, for course documents: counts are public,
//! participant lists and comment texts are for the instructor, the participants and operators.

use course_proto::v1;
use testkit::{as_operator, as_user, with_token};
use tonic::{Code, Request, Status};
use uuid::Uuid;

use crate::helpers::*;

fn code<T>(result: Result<T, Status>) -> Code {
    result.map(|_| Code::Ok).unwrap_or_else(|status| status.code())
}

#[tokio::test]
async fn documents_and_comments_answer_each_kind_of_caller_as_the_table_says() {
    let env = spawn_env().await;
    let (instructor, alice, mallory) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let id = create(&env.command, instructor, "Rust", "Programming").await;
    present(&env.command, instructor, &id).await;
    join(&env.command, alice, &id).await;
    activate(&env.command, instructor, &id).await;
    let (version, _) = comment(&env.command, alice, &id, "Great start").await;
    details(&env.query, &id, version).await;
    let mut q = env.query.anonymous();

    // A document and its counts are public; its participant list is not.
    let get = || v1::GetCourseDetailsRequest { course_id: id.clone(), min_version: None };
    for request in [Request::new(get()), as_user(mallory, get())] {
        let course = q.get_course_details(request).await.expect("public").into_inner().course;
        let course = course.expect("course");
        assert_eq!((course.participant_count, course.comment_count), (1, 1));
        assert!(course.participants.is_empty(), "who is in a course is not public");
    }
    for request in [as_user(alice, get()), as_user(instructor, get()), as_operator(get())] {
        let course = q.get_course_details(request).await.expect("allowed").into_inner().course;
        assert_eq!(course.expect("course").participants.len(), 1);
    }
    // Its participant pages: the same rule, the count public.
    let page = || v1::ListParticipantsRequest { course_id: id.clone(), ..Default::default() };
    for request in [Request::new(page()), as_user(mallory, page())] {
        let page = q.list_participants(request).await.expect("public").into_inner();
        assert_eq!(page.participant_count, 1);
        assert!(page.participants.is_empty(), "who is in a course is not public");
    }
    for request in [as_user(alice, page()), as_user(instructor, page()), as_operator(page())] {
        let page = q.list_participants(request).await.expect("allowed").into_inner();
        let users: Vec<String> = page.participants.into_iter().map(|p| p.user_id).collect();
        assert_eq!(users, vec![alice.to_string()]);
    }
    let search = q.search_courses(v1::SearchCoursesRequest::default()).await.expect("public");
    assert!(search.into_inner().courses.iter().all(|c| c.participants.is_empty()));
    assert_eq!(code(q.get_platform_stats(v1::GetPlatformStatsRequest::default()).await), Code::Ok);

    // Comment texts: instructor, participants, operators.
    let comments = || v1::ListCourseCommentsRequest { course_id: id.clone(), ..Default::default() };
    assert_eq!(code(q.list_course_comments(comments()).await), Code::Unauthenticated);
    assert_eq!(
        code(q.list_course_comments(as_user(mallory, comments())).await),
        Code::PermissionDenied
    );
    let service = testkit::service_token();
    assert_eq!(
        code(q.list_course_comments(with_token(&service, comments())).await),
        Code::PermissionDenied
    );
    for request in
        [as_user(alice, comments()), as_user(instructor, comments()), as_operator(comments())]
    {
        let page = q.list_course_comments(request).await.expect("allowed").into_inner();
        assert_eq!(page.comments.len(), 1);
    }

    // Enrolments: the user, or an operator naming the user.
    let alices = || v1::ListUserEnrollmentsRequest {
        user_id: Some(alice.to_string()),
        ..Default::default()
    };
    assert_eq!(code(q.list_user_enrollments(alices()).await), Code::Unauthenticated);
    assert_eq!(
        code(q.list_user_enrollments(as_user(mallory, alices())).await),
        Code::PermissionDenied
    );
    assert_eq!(code(q.list_user_enrollments(as_user(alice, alices())).await), Code::Ok);
    assert_eq!(code(q.list_user_enrollments(as_operator(alices())).await), Code::Ok);

    // Admin: operators only.
    env.query.assert_admin_is_for_operators_only().await;
}
