//! The README's authorization table, row by row, for the catalog: what an anonymous caller,
//! another user, a participant, the instructor, a service and an operator may read.

use course_proto::v1;
use testkit::{as_operator, as_user, with_token};
use tonic::{Code, Request, Status};
use uuid::Uuid;

use crate::helpers::*;

fn code<T>(result: Result<T, Status>) -> Code {
    result.map(|_| Code::Ok).unwrap_or_else(|status| status.code())
}

#[tokio::test]
async fn every_catalog_rpc_answers_each_kind_of_caller_as_the_table_says() {
    let (command, catalog) = spawn_mesh().await;
    let (instructor, alice, mallory) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let id = create_course(&command, instructor, create_request(10)).await;
    present(&command, instructor, &id).await;
    let version = join(&command, alice, &id).await;
    catalog.course_at(&id, version).await;
    let mut q = catalog.anonymous();

    // Public: summaries, lists and counts.
    let get = || v1::GetCourseRequest { course_id: id.clone(), min_version: None };
    for request in [Request::new(get()), as_user(mallory, get())] {
        let course = q.get_course(request).await.expect("public").into_inner().course;
        assert_eq!(course.expect("course").participant_count, 1, "counts are public");
    }
    assert_eq!(code(q.list_courses(v1::ListCoursesRequest::default()).await), Code::Ok);
    assert_eq!(
        code(q.list_popular_courses(v1::ListPopularCoursesRequest::default()).await),
        Code::Ok
    );

    // Who is in a course: its instructor, its participants, operators.
    let members =
        || v1::ListCourseParticipantsRequest { course_id: id.clone(), ..Default::default() };
    assert_eq!(code(q.list_course_participants(members()).await), Code::Unauthenticated);
    assert_eq!(
        code(q.list_course_participants(as_user(mallory, members())).await),
        Code::PermissionDenied
    );
    let service = testkit::service_token();
    assert_eq!(
        code(q.list_course_participants(with_token(&service, members())).await),
        Code::PermissionDenied
    );
    for request in
        [as_user(alice, members()), as_user(instructor, members()), as_operator(members())]
    {
        let page = q.list_course_participants(request).await.expect("allowed").into_inner();
        assert_eq!(page.participants.len(), 1);
        assert_eq!(page.participants[0].user_id, alice.to_string());
    }
    // One who left is no longer a participant.
    let left = leave(&command, alice, &id).await;
    catalog.course_at(&id, left).await;
    assert_eq!(
        code(q.list_course_participants(as_user(alice, members())).await),
        Code::PermissionDenied
    );

    // A user's enrolments: that user, or an operator naming the user.
    let mine = v1::ListUserCoursesRequest::default;
    assert_eq!(code(q.list_user_courses(mine()).await), Code::Unauthenticated);
    assert_eq!(code(q.list_user_courses(as_user(alice, mine())).await), Code::Ok);
    let alices =
        || v1::ListUserCoursesRequest { user_id: Some(alice.to_string()), ..Default::default() };
    assert_eq!(code(q.list_user_courses(as_user(mallory, alices())).await), Code::PermissionDenied);
    assert_eq!(code(q.list_user_courses(as_operator(alices())).await), Code::Ok);
    assert_eq!(code(q.list_user_courses(as_operator(mine())).await), Code::InvalidArgument);
}

#[tokio::test]
async fn the_admin_rpcs_are_for_operators_only() {
    let (_command, catalog) = spawn_mesh().await;
    catalog.assert_admin_is_for_operators_only().await;
}

#[tokio::test]
async fn a_query_service_without_an_event_store_credential_does_not_start() {
    let (command, _catalog) = spawn_mesh().await;
    let mut config = config(&command, &testkit::unique("test.events"));
    config.service.projection.event_store_token = None;
    let error = query_redis_svc::Application::build(config).await.err().expect("refused");
    assert!(format!("{error:#}").contains("EVENT_STORE_TOKEN"), "{error:#}");
}
