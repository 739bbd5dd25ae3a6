use std::net::SocketAddr;

use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use uuid::Uuid;

use crate::helpers::*;
use testkit::TcpProxy;

fn postgres_addr() -> SocketAddr {
    let url = url::Url::parse(&admin_url()).expect("TEST_DATABASE_URL is a URL");
    let host = url.host_str().unwrap_or("127.0.0.1");
    let port = url.port().unwrap_or(5432);
    format!("{host}:{port}").parse().expect("TEST_DATABASE_URL names an IP address")
}

/// The URL of `database_url`'s database, reached through `proxy`.
fn through(proxy: &TcpProxy, database_url: &str) -> String {
    let mut url = url::Url::parse(database_url).expect("url");
    url.set_port(Some(proxy.addr.port())).expect("port");
    url.set_host(Some("127.0.0.1")).expect("host");
    url.to_string()
}

#[tokio::test]
async fn the_service_starts_without_postgres_and_recovers_when_it_appears() {
    let database = fresh_database().await;
    let proxy = TcpProxy::start(postgres_addr()).await;
    proxy.cut();
    let app = spawn_unready(config(&through(&proxy, &database))).await;
    app.wait_for_health(ServingStatus::NotServing).await;
    let status = assert_code(
        app.commands().create_course(as_user(Uuid::now_v7(), create_request(0))).await,
        Code::Unavailable,
    );
    assert!(!status.message().contains("postgres"), "no internals leak: {}", status.message());

    proxy.restore();
    app.wait_for_health(ServingStatus::Serving).await;
    app.commands()
        .create_course(as_user(Uuid::now_v7(), create_request(0)))
        .await
        .expect("works once PostgreSQL is back");
}

#[tokio::test]
async fn losing_postgres_mid_flight_gives_unavailable_then_recovers() {
    let database = fresh_database().await;
    let proxy = TcpProxy::start(postgres_addr()).await;
    let app = spawn_app_on(config(&through(&proxy, &database))).await;
    let user = Uuid::now_v7();
    let id = create_course(&app, user, 0).await;

    proxy.cut();
    let status = assert_code(
        app.commands()
            .present_course(as_user(
                user,
                course_proto::v1::PresentCourseRequest {
                    course_id: id.clone(),
                    ..Default::default()
                },
            ))
            .await,
        Code::Unavailable,
    );
    assert!(status.message().contains("unavailable"), "{}", status.message());
    app.wait_for_health(ServingStatus::NotServing).await;

    proxy.restore();
    app.wait_for_health(ServingStatus::Serving).await;
    let version = app
        .commands()
        .present_course(as_user(
            user,
            course_proto::v1::PresentCourseRequest { course_id: id.clone(), ..Default::default() },
        ))
        .await
        .expect("recovered")
        .into_inner()
        .version;
    assert_eq!(version, 2);
}

#[tokio::test]
async fn shutting_down_ends_follow_streams_with_unavailable_and_drains() {
    let app = spawn_app().await;
    let mut follower = app
        .event_store()
        .read_all(course_proto::v1::ReadAllRequest { from_position: 0, max_count: 0, follow: true })
        .await
        .expect("subscribe")
        .into_inner();
    create_course(&app, Uuid::now_v7(), 0).await;
    let first = follower.message().await.expect("event").expect("stream open");
    assert_eq!(first.event.expect("envelope").global_position, 1);
    let commands = app.commands();
    let stopping = tokio::spawn(app.stop());
    let end = follower.message().await.expect_err("the stream ends with a status");
    assert_eq!(end.code(), Code::Unavailable);
    assert!(end.message().contains("resume"), "{}", end.message());
    stopping.await.expect("the server drained and stopped");
    let mut commands = commands;
    let refused = commands.create_course(as_user(Uuid::now_v7(), create_request(0))).await;
    assert!(refused.is_err(), "nothing is served after shutdown");
}
