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
async fn participant_pages_take_only_their_own_course_tokens_and_enrolments_are_paged() {
    let env = spawn_env().await;
    let (instructor, alice, bob) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let first = create(&env.command, instructor, "First", "A").await;
    let second = create(&env.command, instructor, "Second", "B").await;
    for id in [&first, &second] {
        present(&env.command, instructor, id).await;
        join(&env.command, alice, id).await;
    }
    let version = join(&env.command, bob, &first).await;
    let mut client = env.query.client();
    let page = |course: &str, token: String| v1::ListParticipantsRequest {
        course_id: course.to_owned(),
        page_size: 1,
        page_token: token,
        min_version: Some(version),
    };
    let one = client.list_participants(page(&first, String::new())).await.expect("page");
    let one = one.into_inner();
    assert_eq!(one.participants[0].user_id, alice.to_string());
    assert_eq!((one.participant_count, one.version), (2, version));
    let two = client.list_participants(page(&first, one.next_page_token.clone())).await;
    let two = two.expect("next page").into_inner();
    assert_eq!(two.participants[0].user_id, bob.to_string());
    assert!(two.next_page_token.is_empty(), "the last page");

    let status = assert_code(
        client.list_participants(page(&second, one.next_page_token)).await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), vec!["page_token"]);
    let mut too_large = page(&first, String::new());
    too_large.page_size = 101;
    let status = assert_code(client.list_participants(too_large).await, Code::InvalidArgument);
    assert_eq!(violated_fields(&status), vec!["page_size"]);
    let unknown = Uuid::now_v7().to_string();
    let missing = v1::ListParticipantsRequest { course_id: unknown, ..Default::default() };
    assert_code(client.list_participants(missing).await, Code::NotFound);

    // Alice's enrolments, one per page, most recently joined first.
    let mut courses = Vec::new();
    let mut token = String::new();
    let mut min_position = Some(position_of(&env.command, &first, version).await);
    loop {
        let request = v1::ListUserEnrollmentsRequest {
            user_id: Some(alice.to_string()),
            page_size: 1,
            page_token: token,
            min_position: min_position.take(),
        };
        let page = client.list_user_enrollments(request).await.expect("enrolments").into_inner();
        assert!(page.enrollments.len() <= 1);
        courses.extend(page.enrollments.into_iter().map(|e| e.course_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(courses, vec![second, first]);
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
