//! The read-side edge query-mongo-svc shares with query-redis-svc (`projection::read_side`):
//! the same request shapes get the same answers, word for word, in both services' `edge` tests.

use course_proto::v1;
use testkit::ServingStatus;
use tonic::Code;
use uuid::Uuid;

use crate::helpers::*;

#[tokio::test]
async fn a_page_size_over_the_maximum_is_refused_and_ids_are_checked_then_looked_up() {
    let env = spawn_env().await;
    let mut client = env.query.client();
    let too_large = "invalid request: page_size: must be 1-100, or 0 for 20 (got 101)";
    let status = assert_code(
        client
            .search_courses(v1::SearchCoursesRequest { page_size: 101, ..Default::default() })
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(status.message(), too_large);
    let unknown = Uuid::now_v7();
    let status = assert_code(
        client
            .list_course_comments(v1::ListCourseCommentsRequest {
                course_id: unknown.to_string(),
                page_size: 101,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(status.message(), too_large);
    client
        .search_courses(v1::SearchCoursesRequest { page_size: 100, ..Default::default() })
        .await
        .expect("the maximum is served");

    let request =
        |id: &str| v1::GetCourseDetailsRequest { course_id: id.into(), min_version: None };
    let status =
        assert_code(client.get_course_details(request(&unknown.to_string())).await, Code::NotFound);
    assert_eq!(status.message(), format!("course {unknown} not found"));
    let comments =
        v1::ListCourseCommentsRequest { course_id: unknown.to_string(), ..Default::default() };
    let status = assert_code(client.list_course_comments(comments).await, Code::NotFound);
    assert_eq!(status.message(), format!("course {unknown} not found"));
    let status =
        assert_code(client.get_course_details(request("nope")).await, Code::InvalidArgument);
    assert!(status.message().starts_with("invalid request: course_id: "), "{}", status.message());
    assert_eq!(violated_fields(&status), vec!["course_id"]);
    env.finish().await;
}

#[tokio::test]
async fn a_read_model_never_built_is_unavailable_for_every_read_not_empty() {
    // No event store answers, so the first build cannot complete. A read that would wait for
    // its writes is told at once too.
    let setup = QuerySetup::on(&testkit::unique("test.events"));
    let query = start_query("http://127.0.0.1:9", setup, ServingStatus::NotServing).await;
    let mut client = query.client();
    let unbuilt = "the read model is still being built; retry shortly";
    let status = assert_code(
        client
            .get_course_details(v1::GetCourseDetailsRequest {
                course_id: Uuid::now_v7().to_string(),
                min_version: None,
            })
            .await,
        Code::Unavailable,
    );
    assert_eq!(status.message(), unbuilt);
    let status = assert_code(
        client
            .search_courses(v1::SearchCoursesRequest {
                min_position: Some(1),
                ..Default::default()
            })
            .await,
        Code::Unavailable,
    );
    assert_eq!(status.message(), unbuilt);
    query.finish().await;
}
