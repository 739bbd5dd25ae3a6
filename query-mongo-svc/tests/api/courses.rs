//! GetCourseDetails, SearchCourses and ListCourseComments.

use course_proto::v1::{self, CourseStatus};
use tonic::Code;
use uuid::Uuid;

use crate::helpers::*;

#[tokio::test]
async fn a_course_document_shows_every_detail_with_sections_in_order() {
    let env = spawn_env().await;
    let (cmd, instructor, alice, bob) =
        (&env.command, Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let id = create(cmd, instructor, "Rust", "Programming").await;
    testkit::driver::change_title(cmd, instructor, &id, "Rust for backends").await;
    testkit::driver::change_description(cmd, instructor, &id, "Ownership, async, services").await;
    for title in ["Intro", "Ownership", "Async"] {
        add_section(cmd, instructor, &id, title).await;
    }
    present(cmd, instructor, &id).await;
    join(cmd, alice, &id).await;
    join(cmd, bob, &id).await;
    leave(cmd, bob, &id).await;
    activate(cmd, instructor, &id).await;
    let (version, comment_id) = comment(cmd, alice, &id, "Great start").await;

    let course = details(&env.query, &id, version).await;
    assert_eq!(course.course_id, id);
    assert_eq!(
        (course.title.as_str(), course.description.as_str(), course.category.as_str()),
        ("Rust for backends", "Ownership, async, services", "Programming")
    );
    assert_eq!(course.status, CourseStatus::Active as i32);
    assert_eq!(course.instructor_id, instructor.to_string());
    assert_eq!(course.version, version);
    assert_eq!(version, 12);
    let sections: Vec<(u32, &str, &str)> = course
        .sections
        .iter()
        .map(|s| (s.position, s.title.as_str(), s.video_url.as_str()))
        .collect();
    assert_eq!(
        sections,
        vec![
            (1, "Intro", "https://videos.example/Intro.mp4"),
            (2, "Ownership", "https://videos.example/Ownership.mp4"),
            (3, "Async", "https://videos.example/Async.mp4"),
        ]
    );
    assert!(course.sections.iter().all(|s| s.added_at.is_some() && !s.section_id.is_empty()));
    assert_eq!(course.sections[1].description, "About Ownership");
    let participants: Vec<&str> = course.participants.iter().map(|p| p.user_id.as_str()).collect();
    assert_eq!(participants, vec![alice.to_string()]);
    assert!(course.participants[0].joined_at.is_some());
    assert_eq!((course.participant_count, course.comment_count), (1, 1));
    let (created, updated) =
        (course.created_at.expect("created"), course.updated_at.expect("updated"));
    assert!((created.seconds, created.nanos) < (updated.seconds, updated.nanos));

    // The same course as the event store tells it: version and participants agree.
    let events = stream(cmd, &id).await;
    assert_eq!(events.last().map(|e| e.version), Some(course.version));
    let (comments, _) = comments_all(&env.query, &id, 10, version).await;
    assert_eq!(comments.len(), 1);
    assert_eq!(
        (
            comments[0].comment_id.as_str(),
            comments[0].author_id.as_str(),
            comments[0].text.as_str()
        ),
        (comment_id.as_str(), alice.to_string().as_str(), "Great start")
    );
    env.finish().await;
}

#[tokio::test]
async fn a_version_the_read_model_does_not_reach_in_time_is_unavailable() {
    let exchange = testkit::unique("test.events");
    let command = testkit::spawn_command_svc(&exchange).await;
    let mut setup = QuerySetup::on(&exchange);
    setup.read_your_writes_timeout_ms = 300;
    let query = spawn_query(&command.url, setup).await;
    let id = create(&command, Uuid::now_v7(), "Rust", "Programming").await;
    // The course is applied first, as slowly as this machine needs: only the read below is
    // bound by the 300 ms.
    let applied = testkit::events::position_of(&command, &id, 1).await;
    query.status_until("the course applied", |s| s.applied_position >= applied).await;
    details(&query, &id, 1).await;
    let status = assert_code(
        query
            .client()
            .get_course_details(v1::GetCourseDetailsRequest {
                course_id: id,
                min_version: Some(99),
            })
            .await,
        Code::Unavailable,
    );
    assert!(status.message().contains("behind"), "{}", status.message());
    query.finish().await;
    command.stop().await;
}

/// Three courses with distinct words; returns their ids (oldest first) and the last position.
async fn catalogue(env: &TestEnv, instructor: Uuid, other: Uuid) -> (Vec<String>, u64) {
    let cmd = &env.command;
    let a = create_full(cmd, instructor, "Rust for Backends", "Ownership and async", "Programming")
        .await;
    let b = create_full(cmd, other, "Cooking with Rust", "Cast iron pans", "Kitchen").await;
    let c =
        create_full(cmd, instructor, "Async Python", "Event loops explained", "programming").await;
    present(cmd, instructor, &a).await;
    let version = activate(cmd, instructor, &a).await;
    (vec![a.clone(), b, c], position_of(cmd, &a, version).await)
}

fn ids(courses: &[v1::CourseDetails]) -> Vec<&str> {
    courses.iter().map(|c| c.course_id.as_str()).collect()
}

#[tokio::test]
async fn search_matches_every_word_case_insensitively_in_title_description_or_category() {
    let env = spawn_env().await;
    let (courses, position) = catalogue(&env, Uuid::now_v7(), Uuid::now_v7()).await;
    let search = |query: &str| v1::SearchCoursesRequest {
        query: query.into(),
        min_position: Some(position),
        ..Default::default()
    };
    // Newest first.
    let (found, _) = search_all(&env.query, search("rust")).await;
    assert_eq!(ids(&found), vec![courses[1].as_str(), courses[0].as_str()]);
    let (found, _) = search_all(&env.query, search("ASYNC")).await;
    assert_eq!(ids(&found), vec![courses[2].as_str(), courses[0].as_str()]);
    // Every word must match, each in any of the fields.
    let (found, _) = search_all(&env.query, search("rust ownership")).await;
    assert_eq!(ids(&found), vec![courses[0].as_str()]);
    let (found, _) = search_all(&env.query, search("kitchen IRON")).await;
    assert_eq!(ids(&found), vec![courses[1].as_str()]);
    let (found, _) = search_all(&env.query, search("rust python")).await;
    assert!(found.is_empty());
    // Results carry the summary, not the sections and participants.
    let (found, _) = search_all(&env.query, search("")).await;
    assert_eq!(found.len(), 3);
    assert!(found.iter().all(|c| c.sections.is_empty() && c.participants.is_empty()));
    assert_eq!(found[2].status, CourseStatus::Active as i32);
    env.finish().await;
}

#[tokio::test]
async fn search_filters_by_status_instructor_and_category() {
    let env = spawn_env().await;
    let (instructor, other) = (Uuid::now_v7(), Uuid::now_v7());
    let (courses, position) = catalogue(&env, instructor, other).await;
    let base = v1::SearchCoursesRequest { min_position: Some(position), ..Default::default() };
    let (found, _) = search_all(
        &env.query,
        v1::SearchCoursesRequest { status: Some(CourseStatus::Active as i32), ..base.clone() },
    )
    .await;
    assert_eq!(ids(&found), vec![courses[0].as_str()]);
    let (found, _) = search_all(
        &env.query,
        v1::SearchCoursesRequest { instructor_id: Some(instructor.to_string()), ..base.clone() },
    )
    .await;
    assert_eq!(ids(&found), vec![courses[2].as_str(), courses[0].as_str()]);
    // Category: exact but case-insensitive.
    let (found, _) = search_all(
        &env.query,
        v1::SearchCoursesRequest { category: Some("PROGRAMMING".into()), ..base.clone() },
    )
    .await;
    assert_eq!(ids(&found), vec![courses[2].as_str(), courses[0].as_str()]);
    let (found, _) = search_all(
        &env.query,
        v1::SearchCoursesRequest { category: Some("Program".into()), ..base.clone() },
    )
    .await;
    assert!(found.is_empty());
    // Filters and words together.
    let (found, _) = search_all(
        &env.query,
        v1::SearchCoursesRequest {
            query: "async".into(),
            status: Some(CourseStatus::Created as i32),
            instructor_id: Some(instructor.to_string()),
            category: Some("programming".into()),
            ..base
        },
    )
    .await;
    assert_eq!(ids(&found), vec![courses[2].as_str()]);
    env.finish().await;
}

#[tokio::test]
async fn search_pages_newest_first_with_a_stable_cursor() {
    let env = spawn_env().await;
    let instructor = Uuid::now_v7();
    let mut created = Vec::new();
    for i in 0..7 {
        created
            .push(create(&env.command, instructor, &format!("Paged course {i}"), "Paging").await);
    }
    let position = position_of(&env.command, created.last().expect("one"), 1).await;
    let request = v1::SearchCoursesRequest {
        query: "paged".into(),
        page_size: 3,
        min_position: Some(position),
        ..Default::default()
    };
    let first =
        env.query.client().search_courses(request.clone()).await.expect("page 1").into_inner();
    assert_eq!(first.courses.len(), 3);
    // A course created between pages sorts before the cursor: later pages neither repeat nor
    // skip anything.
    create(&env.command, instructor, "Paged course late", "Paging").await;
    let mut seen = ids(&first.courses).into_iter().map(str::to_owned).collect::<Vec<_>>();
    let mut token = first.next_page_token;
    let mut pages = 1;
    while !token.is_empty() {
        let page = env
            .query
            .client()
            .search_courses(v1::SearchCoursesRequest { page_token: token, ..request.clone() })
            .await
            .expect("next page")
            .into_inner();
        seen.extend(page.courses.iter().map(|c| c.course_id.clone()));
        token = page.next_page_token;
        pages += 1;
    }
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);
    assert_eq!(pages, 3);
    env.finish().await;
}

#[tokio::test]
async fn search_text_is_never_a_pattern_or_an_operator() {
    let env = spawn_env().await;
    let instructor = Uuid::now_v7();
    let cpp = create(&env.command, instructor, "C++ (advanced)", "Templates").await;
    let regex = create(&env.command, instructor, "Regex .* tricks", "Text").await;
    let plain = create(&env.command, instructor, "Plain course", "Text").await;
    let position = position_of(&env.command, &plain, 1).await;
    let search = |query: &str| v1::SearchCoursesRequest {
        query: query.into(),
        min_position: Some(position),
        ..Default::default()
    };
    let cases: [(&str, Vec<&str>); 8] = [
        (".*", vec![&regex]),
        ("(", vec![&cpp]),
        ("c++", vec![&cpp]),
        ("(advanced)", vec![&cpp]),
        ("[", vec![]),
        ("$ne", vec![]),
        (r#"{"$gt":""}"#, vec![]),
        ("^plain$", vec![]),
    ];
    for (query, expected) in cases {
        let (found, _) = search_all(&env.query, search(query)).await;
        assert_eq!(ids(&found), expected, "query {query:?}");
    }
    env.finish().await;
}

#[tokio::test]
async fn malformed_search_requests_name_every_bad_field() {
    let env = spawn_env().await;
    let status = assert_code(
        env.query
            .client()
            .search_courses(v1::SearchCoursesRequest {
                query: "x".repeat(201),
                status: Some(0),
                instructor_id: Some("nobody".into()),
                category: Some("  ".into()),
                page_size: 101,
                page_token: "not-a-token".into(),
                min_position: None,
            })
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(
        violated_fields(&status),
        vec!["category", "instructor_id", "page_size", "page_token", "query", "status"]
    );
    let status = assert_code(
        env.query
            .client()
            .list_course_comments(v1::ListCourseCommentsRequest {
                course_id: "x".into(),
                page_size: 1000,
                page_token: "zz".into(),
                min_version: None,
            })
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), vec!["course_id", "page_size", "page_token"]);
    env.finish().await;
}

#[tokio::test]
async fn comments_are_listed_newest_first_page_by_page() {
    let env = spawn_env().await;
    let (instructor, alice, bob) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let id = create(&env.command, instructor, "Chatty", "Talk").await;
    present(&env.command, instructor, &id).await;
    join(&env.command, alice, &id).await;
    join(&env.command, bob, &id).await;
    activate(&env.command, instructor, &id).await;
    let mut posted = Vec::new();
    let mut version = 0;
    for i in 0..5 {
        let author = if i % 2 == 0 { alice } else { bob };
        let (v, comment_id) = comment(&env.command, author, &id, &format!("Comment {i}")).await;
        posted.push((comment_id, author.to_string(), format!("Comment {i}")));
        version = v;
    }
    let (comments, pages) = comments_all(&env.query, &id, 2, version).await;
    assert_eq!(pages, 3);
    let listed: Vec<(String, String, String)> = comments
        .into_iter()
        .map(|c| {
            assert_eq!(c.course_id, id);
            assert!(c.posted_at.is_some());
            (c.comment_id, c.author_id, c.text)
        })
        .collect();
    posted.reverse();
    assert_eq!(listed, posted);
    assert_eq!(details(&env.query, &id, version).await.comment_count, 5);
    env.finish().await;
}
