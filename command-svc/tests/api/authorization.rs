//! The trust boundary of command-svc: who may read the event store, who may command, and the
//! bounds on what a caller can make the server hold.

use std::time::Duration;

use course_proto::v1;
use futures::StreamExt;
use tonic::Code;
use uuid::Uuid;

use crate::helpers::*;

fn read_all(follow: bool) -> v1::ReadAllRequest {
    v1::ReadAllRequest { from_position: 0, max_count: 0, follow }
}

#[tokio::test]
async fn the_event_store_serves_services_and_operators_only() {
    let app = spawn_app().await;
    let id = open_course(&app, Uuid::now_v7(), 0, false).await;
    let stream = || v1::ReadStreamRequest { course_id: id.clone(), ..Default::default() };
    let user = testkit::token(Uuid::now_v7());
    for (token, code) in [
        (None, Some(Code::Unauthenticated)),
        (Some(user), Some(Code::PermissionDenied)),
        (Some(testkit::service_token()), None),
        (Some(testkit::operator_token()), None),
    ] {
        let mut client = app.event_store_as(token.clone());
        let streamed = client.read_stream(stream()).await;
        let all = client.read_all(v1::ReadAllRequest { max_count: 1, ..read_all(false) }).await;
        match code {
            Some(code) => {
                assert_code(streamed, code);
                assert_code(all, code);
            }
            None => {
                let events = collect(streamed.expect("allowed").into_inner()).await;
                assert!(!events.is_empty(), "{token:?}");
                let mut all = all.expect("allowed").into_inner();
                assert!(all.next().await.is_some());
            }
        }
    }
}

#[tokio::test]
async fn commands_need_a_user_identity_not_a_service_one() {
    let app = spawn_app().await;
    let mut commands = app.commands();
    let request = testkit::with_token(&testkit::service_token(), create_request(0));
    let status = assert_code(commands.create_course(request).await, Code::PermissionDenied);
    assert!(status.message().contains("user"), "{}", status.message());
    let request = testkit::with_token(&testkit::operator_token(), create_request(0));
    assert_code(commands.create_course(request).await, Code::PermissionDenied);
}

#[tokio::test]
async fn an_unknown_method_is_unimplemented_and_counted_as_unknown() {
    let app = spawn_app().await;
    let path = format!("/course.v1.Nothing/Random{}", Uuid::new_v4().simple());
    let mut grpc = tonic::client::Grpc::new(app.channel());
    grpc.ready().await.expect("ready");
    let result: Result<tonic::Response<()>, _> = grpc
        .unary(
            tonic::Request::new(()),
            path.parse().expect("path"),
            tonic_prost::ProstCodec::<(), ()>::default(),
        )
        .await;
    assert_code(result, Code::Unimplemented);
    let metrics = platform::metrics::recorder().render();
    assert!(!metrics.contains("Random"), "a raw path became a label");
    assert!(metrics.contains("method=\"unknown\""), "unknown methods are counted as such");
}

#[tokio::test]
async fn follow_streams_past_the_cap_are_resource_exhausted_until_one_ends() {
    let mut config = config(&fresh_database().await);
    config.max_follow_streams = 2;
    let app = spawn_app_on(config).await;
    let mut store = app.event_store();
    let first = store.read_all(read_all(true)).await.expect("first follower");
    let _second = store.read_all(read_all(true)).await.expect("second follower");
    let status = assert_code(store.read_all(read_all(true)).await, Code::ResourceExhausted);
    assert!(status.message().contains("follow"));
    assert!(store.read_all(read_all(false)).await.is_ok(), "plain reads are not capped");
    drop(first);
    // The server notices the cancelled stream and frees its place.
    let freed = async {
        loop {
            if store.read_all(read_all(true)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), freed).await.expect("a place frees up");
}

#[tokio::test]
async fn an_idle_follow_stream_ends_with_unavailable() {
    let mut config = config(&fresh_database().await);
    config.follow_idle_timeout_secs = 1;
    let app = spawn_app_on(config).await;
    let mut stream =
        app.event_store().read_all(read_all(true)).await.expect("follows").into_inner();
    let ended =
        tokio::time::timeout(Duration::from_secs(15), stream.next()).await.expect("ends by itself");
    let status = ended.expect("an item").expect_err("ends with a status");
    assert_eq!(status.code(), Code::Unavailable);
    assert!(status.message().contains("resume"));
}

#[tokio::test]
async fn positions_and_versions_beyond_the_store_range_are_out_of_range() {
    let app = spawn_app().await;
    let id = open_course(&app, Uuid::now_v7(), 0, false).await;
    let mut store = app.event_store();
    let beyond = i64::MAX as u64 + 1;
    for from_position in [beyond, u64::MAX] {
        let request = v1::ReadAllRequest { from_position, max_count: 1, follow: false };
        assert_code(store.read_all(request).await, Code::OutOfRange);
    }
    let request = v1::ReadStreamRequest { course_id: id, from_version: beyond, max_count: 0 };
    assert_code(store.read_stream(request).await, Code::OutOfRange);
}

#[tokio::test]
async fn text_with_nul_or_control_characters_is_invalid_argument() {
    let app = spawn_app().await;
    let mut commands = app.commands();
    let user = Uuid::now_v7();
    let mut request = create_request(0);
    request.title = "Rust\0".into();
    let status =
        assert_code(commands.create_course(as_user(user, request)).await, Code::InvalidArgument);
    assert!(status.message().contains("title"));
    let id = open_course(&app, user, 0, true).await;
    let request = v1::CommentCourseRequest {
        course_id: id,
        text: "\u{1b}[2Jhello".into(),
        ..Default::default()
    };
    assert_code(commands.comment_course(as_user(user, request)).await, Code::InvalidArgument);
}

#[tokio::test]
async fn a_malformed_course_id_is_not_echoed_whole() {
    let app = spawn_app().await;
    let huge = "y".repeat(10_000);
    let request = v1::ReadStreamRequest { course_id: huge.clone(), ..Default::default() };
    let status = assert_code(app.event_store().read_stream(request).await, Code::InvalidArgument);
    assert!(status.message().len() < 200, "{} bytes", status.message().len());
    let request = v1::JoinCourseRequest { course_id: huge, ..Default::default() };
    let status = assert_code(
        app.commands().join_course(as_user(Uuid::now_v7(), request)).await,
        Code::InvalidArgument,
    );
    assert!(status.message().len() < 200);
}
