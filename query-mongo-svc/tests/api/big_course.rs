//! A course with 100,000 participants: every RPC that touches it answers through the generated
//! client with its default 4 MB decoding limit, and its document stays small.

use std::time::{Duration, Instant};

use course_proto::v1;
use mongodb::bson::doc;
use prost::Message;
use testkit::as_user;
use uuid::Uuid;

use crate::helpers::*;

/// Participants of the big course.
const PARTICIPANTS: u64 = 100_000;
/// The decoding limit of a generated tonic client unless it is raised.
const DEFAULT_LIMIT: usize = 4 * 1024 * 1024;

#[tokio::test]
async fn a_course_of_100_000_participants_is_served_in_bounded_answers() {
    let started = Instant::now();
    let exchange = testkit::unique("test.events");
    let command = testkit::spawn_command_svc(&exchange).await;
    let mut setup = QuerySetup::on(&exchange);
    // Larger batches than the default: the test MongoDB server pays per operation.
    setup.batch_size = 2048;
    let query = spawn_query(&command.url, setup).await;
    let instructor = Uuid::now_v7();
    let request = v1::CreateCourseRequest {
        title: "Rust for everyone".into(),
        description: "A very big course".into(),
        category: "Programming".into(),
        max_participants: 100_000,
        ..Default::default()
    };
    let id = testkit::driver::create_course(&command, instructor, request).await;
    let presented = present(&command, instructor, &id).await;
    // The sequencer numbers the joins right after the presentation: nothing else is written.
    let target = testkit::events::position_of(&command, &id, presented).await + PARTICIPANTS;
    let users = command.join_many(&id, presented, PARTICIPANTS).await;
    let last = presented + PARTICIPANTS;
    query.wait_until_applied(target, Duration::from_secs(900)).await;
    eprintln!("{PARTICIPANTS} joins applied after {:?}", started.elapsed());

    // GetCourseDetails: the count and the first page, once every join is applied.
    let course = query
        .client()
        .get_course_details(v1::GetCourseDetailsRequest {
            course_id: id.clone(),
            min_version: Some(last),
        })
        .await
        .expect("GetCourseDetails answers within the default limit")
        .into_inner()
        .course
        .expect("course");
    assert_eq!(course.participant_count, 100_000);
    assert_eq!(course.version, last);
    let first: Vec<&str> = course.participants.iter().map(|p| p.user_id.as_str()).collect();
    let expected: Vec<String> = users[..100].iter().map(Uuid::to_string).collect();
    assert_eq!(first, expected, "the first page, in join order");
    assert!(!course.participants_next_page_token.is_empty());
    assert!(course.encoded_len() < DEFAULT_LIMIT / 100, "{} bytes", course.encoded_len());

    // The document holds counts, not the participant list.
    let model = query_mongo_svc::store::MongoReadModel::connect(
        &query.setup.mongodb_uri,
        &query.setup.database,
    )
    .await
    .expect("client");
    let stored = model
        .database()
        .collection::<mongodb::bson::Document>("courses_g1")
        .find_one(doc! { "_id": &id })
        .await
        .expect("read")
        .expect("document");
    assert!(!stored.contains_key("participants"));
    assert!(mongodb::bson::to_vec(&stored).expect("bson").len() < 4096);

    // ListParticipants continues where the details stopped, page by page, in join order.
    let mut token = course.participants_next_page_token;
    let mut seen = 100;
    for _ in 0..3 {
        let page = query
            .client()
            .list_participants(v1::ListParticipantsRequest {
                course_id: id.clone(),
                page_size: 100,
                page_token: token,
                min_version: None,
            })
            .await
            .expect("ListParticipants")
            .into_inner();
        assert_eq!(page.participant_count, 100_000);
        let ids: Vec<String> = page.participants.iter().map(|p| p.user_id.clone()).collect();
        let expected: Vec<String> = users[seen..seen + 100].iter().map(Uuid::to_string).collect();
        assert_eq!(ids, expected);
        seen += 100;
        assert!(!page.next_page_token.is_empty(), "more pages follow");
        token = page.next_page_token;
    }

    // SearchCourses: counts only.
    let found = query
        .client()
        .search_courses(v1::SearchCoursesRequest { query: "rust".into(), ..Default::default() })
        .await
        .expect("SearchCourses")
        .into_inner();
    let hit = found.courses.iter().find(|c| c.course_id == id).expect("found");
    assert_eq!(hit.participant_count, 100_000);
    assert!(hit.participants.is_empty());

    // ListUserEnrollments of one of the 100,000.
    let user = users[49_999];
    let enrolled = query
        .client()
        .list_user_enrollments(as_user(user, v1::ListUserEnrollmentsRequest::default()))
        .await
        .expect("ListUserEnrollments")
        .into_inner();
    let courses: Vec<&str> = enrolled.enrollments.iter().map(|e| e.course_id.as_str()).collect();
    assert_eq!(courses, vec![id.as_str()]);
    assert!(enrolled.next_page_token.is_empty());
    eprintln!("every read answered after {:?}", started.elapsed());

    query.finish().await;
    command.stop().await;
}
