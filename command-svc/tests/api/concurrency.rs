use course_proto::v1;
use futures::future::join_all;
use tonic::Code;
use uuid::Uuid;

use crate::helpers::*;

#[tokio::test]
async fn a_storm_of_200_joins_fills_a_course_of_10_exactly() {
    let app = spawn_app().await;
    let instructor = Uuid::now_v7();
    let id = open_course(&app, instructor, 10, false).await;
    let calls = (0..200).map(|_| {
        let mut client = app.commands();
        let id = id.clone();
        async move { client.join_course(as_user(Uuid::now_v7(), join_request(&id))).await }
    });
    let results = join_all(calls).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 10, "exactly the capacity succeeds");
    for refused in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
        assert!(refused.message().contains("full"), "{}", refused.message());
    }
    let joins = app.stream(&id).await.iter().filter(|e| e.event_type == "UserJoinedCourse").count();
    assert_eq!(joins, 10);
}

#[tokio::test]
async fn concurrent_joins_without_expected_version_all_succeed() {
    let app = spawn_app().await;
    let id = open_course(&app, Uuid::now_v7(), 0, false).await;
    let calls = (0..40).map(|_| {
        let mut client = app.commands();
        let id = id.clone();
        async move { client.join_course(as_user(Uuid::now_v7(), join_request(&id))).await }
    });
    let results = join_all(calls).await;
    assert!(results.iter().all(Result::is_ok), "{:?}", results.iter().find(|r| r.is_err()));
    let mut versions: Vec<u64> =
        results.into_iter().map(|r| r.expect("ok").into_inner().version).collect();
    versions.sort_unstable();
    assert_eq!(versions, (3..43).collect::<Vec<_>>(), "each join got its own version");
}

#[tokio::test]
async fn two_replicas_on_one_database_never_lose_a_join() {
    let app = spawn_app().await;
    let second = spawn_app_on(config(&app.database_url)).await;
    let id = open_course(&app, Uuid::now_v7(), 0, false).await;
    let calls = (0..40).map(|i| {
        let mut client = if i % 2 == 0 { app.commands() } else { second.commands() };
        let id = id.clone();
        async move { client.join_course(as_user(Uuid::now_v7(), join_request(&id))).await }
    });
    let results = join_all(calls).await;
    assert!(results.iter().all(Result::is_ok), "{:?}", results.iter().find(|r| r.is_err()));
    let joins = app.stream(&id).await.iter().filter(|e| e.event_type == "UserJoinedCourse").count();
    assert_eq!(joins, 40);
}

#[tokio::test]
async fn a_stale_expected_version_is_aborted_and_names_the_current_version() {
    let app = spawn_app().await;
    let instructor = Uuid::now_v7();
    let id = create_course(&app, instructor, 0).await;
    let mut c = app.commands();
    let ok = c
        .change_course_title(as_user(
            instructor,
            v1::ChangeCourseTitleRequest {
                course_id: id.clone(),
                expected_version: Some(1),
                title: "A".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("version 1 matches")
        .into_inner();
    assert_eq!(ok.version, 2);
    let status = assert_code(
        c.change_course_title(as_user(
            instructor,
            v1::ChangeCourseTitleRequest {
                course_id: id.clone(),
                expected_version: Some(1),
                title: "B".into(),
                ..Default::default()
            },
        ))
        .await,
        Code::Aborted,
    );
    assert!(status.message().contains("version 2"), "{}", status.message());
    assert_eq!(app.stream(&id).await.len(), 2, "nothing written");
}

#[tokio::test]
async fn a_repeated_command_id_returns_the_first_response_and_writes_nothing() {
    let app = spawn_app().await;
    let instructor = Uuid::now_v7();
    let command_id = Uuid::now_v7().to_string();
    let mut request = create_request(0);
    request.command_id = Some(command_id.clone());
    let mut c = app.commands();
    let first =
        c.create_course(as_user(instructor, request.clone())).await.expect("first").into_inner();
    let again =
        c.create_course(as_user(instructor, request.clone())).await.expect("retry").into_inner();
    assert_eq!(first, again);
    assert_eq!(app.stream(&first.course_id).await.len(), 1, "one course, one event");

    // Concurrent duplicates: still exactly one effect.
    let section_id = Uuid::now_v7().to_string();
    let add = v1::AddSectionRequest {
        command_id: Some(section_id),
        course_id: first.course_id.clone(),
        title: "Intro".into(),
        video_url: "https://videos.example/1".into(),
        ..Default::default()
    };
    let results = join_all((0..8).map(|_| {
        let mut client = app.commands();
        let add = add.clone();
        async move { client.add_section(as_user(instructor, add)).await }
    }))
    .await;
    let responses: Vec<v1::AddSectionResponse> =
        results.into_iter().map(|r| r.expect("every duplicate succeeds").into_inner()).collect();
    assert!(responses.windows(2).all(|w| w[0] == w[1]), "{responses:?}");
    assert_eq!(app.stream(&first.course_id).await.len(), 2);

    // After a restart the key is still remembered.
    let app = app.restart().await;
    let after_restart = app
        .commands()
        .create_course(as_user(instructor, request))
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(after_restart, first);
    assert_eq!(app.stream(&first.course_id).await.len(), 2, "created + one section");
}

#[tokio::test]
async fn a_command_id_reused_for_another_request_is_already_exists() {
    let app = spawn_app().await;
    let instructor = Uuid::now_v7();
    let command_id = Some(Uuid::now_v7().to_string());
    let mut c = app.commands();
    c.create_course(as_user(
        instructor,
        v1::CreateCourseRequest { command_id: command_id.clone(), ..create_request(0) },
    ))
    .await
    .expect("first");
    let status = assert_code(
        c.create_course(as_user(
            instructor,
            v1::CreateCourseRequest {
                command_id: command_id.clone(),
                title: "Other".into(),
                ..create_request(0)
            },
        ))
        .await,
        Code::AlreadyExists,
    );
    assert!(status.message().contains("different request"), "{}", status.message());
    // The same body from another caller is another request too.
    assert_code(
        c.create_course(as_user(
            Uuid::now_v7(),
            v1::CreateCourseRequest { command_id, ..create_request(0) },
        ))
        .await,
        Code::AlreadyExists,
    );
}
