//! The read-side edge query-redis-svc shares with query-mongo-svc (`projection::read_side`):
//! the same request shapes get the same answers, word for word, in both services' `edge` tests.

use course_proto::v1;
use testkit::{ServingStatus, as_user, unique};
use tonic::Code;
use uuid::Uuid;

use crate::helpers::*;

#[tokio::test]
async fn a_page_size_over_the_maximum_is_refused_and_ids_are_checked_then_looked_up() {
    let (_command, catalog) = spawn_mesh().await;
    let mut client = catalog.client();
    let too_large = "invalid request: page_size: must be 1-100, or 0 for 20 (got 101)";
    let status = client
        .list_courses(v1::ListCoursesRequest { page_size: 101, ..Default::default() })
        .await
        .expect_err("too large");
    assert_eq!((status.code(), status.message()), (Code::InvalidArgument, too_large));
    let unknown = Uuid::now_v7();
    let status = client
        .list_course_participants(v1::ListCourseParticipantsRequest {
            course_id: unknown.to_string(),
            page_size: 101,
            ..Default::default()
        })
        .await
        .expect_err("too large");
    assert_eq!((status.code(), status.message()), (Code::InvalidArgument, too_large));
    let status = client
        .list_user_courses(as_user(
            Uuid::now_v7(),
            v1::ListUserCoursesRequest { page_size: 101, ..Default::default() },
        ))
        .await
        .expect_err("too large");
    assert_eq!((status.code(), status.message()), (Code::InvalidArgument, too_large));
    let status = client
        .list_popular_courses(v1::ListPopularCoursesRequest { limit: 101, ..Default::default() })
        .await
        .expect_err("too many");
    assert_eq!(
        (status.code(), status.message()),
        (Code::InvalidArgument, "invalid request: limit: must be 1-100, or 0 for 10 (got 101)")
    );
    client
        .list_courses(v1::ListCoursesRequest { page_size: 100, ..Default::default() })
        .await
        .expect("the maximum is served");

    let request = |id: &str| v1::GetCourseRequest { course_id: id.into(), min_version: None };
    let status = client.get_course(request(&unknown.to_string())).await.expect_err("unknown");
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), format!("course {unknown} not found"));
    let participants =
        v1::ListCourseParticipantsRequest { course_id: unknown.to_string(), ..Default::default() };
    let status = client.list_course_participants(participants).await.expect_err("unknown");
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), format!("course {unknown} not found"));
    let status = client.get_course(request("nope")).await.expect_err("malformed");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().starts_with("invalid request: course_id: "), "{}", status.message());
}

#[tokio::test]
async fn a_read_model_never_built_is_unavailable_for_every_read_not_empty() {
    // No event store answers, so the first build cannot complete. A read that would wait for
    // its writes is told at once too.
    let config = config_for("http://127.0.0.1:9", &unique("test.events"));
    let catalog = start_catalog(config, ServingStatus::NotServing).await;
    let mut client = catalog.client();
    let unbuilt = "the read model is still being built; retry shortly";
    let status = client
        .get_course(v1::GetCourseRequest {
            course_id: Uuid::now_v7().to_string(),
            min_version: None,
        })
        .await
        .expect_err("not built");
    assert_eq!((status.code(), status.message()), (Code::Unavailable, unbuilt));
    let status = client
        .list_courses(v1::ListCoursesRequest { min_position: Some(1), ..Default::default() })
        .await
        .expect_err("not built");
    assert_eq!((status.code(), status.message()), (Code::Unavailable, unbuilt));
}
