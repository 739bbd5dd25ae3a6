//! The service around the RPCs: reflection, health, graceful stop.

use std::time::Duration;

use futures::StreamExt;
use testkit::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

use course_proto::v1;
use testkit::{TcpProxy, unique};
use tonic::Code;
use uuid::Uuid;

use crate::helpers::*;

#[tokio::test]
async fn reflection_lists_the_query_and_admin_services() {
    let env = spawn_env().await;
    let mut client = ServerReflectionClient::new(env.query.channel().clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .expect("reflection")
        .into_inner();
    let response = responses.next().await.expect("one answer").expect("ok");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer: {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for wanted in [
        "course.v1.CourseQueryService",
        "course.v1.ProjectionAdminService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.iter().any(|n| n == wanted), "{wanted} missing from {names:?}");
    }
    env.finish().await;
}

#[tokio::test]
async fn stopping_reports_not_serving_then_exits_cleanly() {
    let env = spawn_env().await;
    let mut health = HealthClient::new(env.query.channel().clone());
    let mut watch = health
        .watch(HealthCheckRequest { service: "course.v1.CourseQueryService".into() })
        .await
        .expect("watch")
        .into_inner();
    let first = watch.next().await.expect("a status").expect("ok");
    assert_eq!(first.status, ServingStatus::Serving as i32);

    let setup = env.query.setup.clone();
    let stopping = tokio::spawn(env.query.stop());
    let not_serving = async {
        while let Some(Ok(update)) = watch.next().await {
            if update.status == ServingStatus::NotServing as i32 {
                return true;
            }
        }
        false
    };
    let seen = tokio::time::timeout(Duration::from_secs(10), not_serving).await;
    assert_eq!(seen.ok(), Some(true), "health went NOT_SERVING before the server closed");
    drop(watch);
    tokio::time::timeout(Duration::from_secs(30), stopping)
        .await
        .expect("stopped in time")
        .expect("stop task");
    remove_resources(&setup).await;
    env.command.stop().await;
}

#[tokio::test]
async fn while_mongodb_is_unreachable_reads_are_unavailable_and_events_wait_for_it() {
    let exchange = unique("test.events");
    let command = testkit::spawn_command_svc(&exchange).await;
    let proxy = TcpProxy::start(mongo_addr().await).await;
    let mut setup = QuerySetup::on(&exchange);
    setup.mongodb_uri =
        format!("mongodb://{}/?serverSelectionTimeoutMS=1000&connectTimeoutMS=1000", proxy.addr);
    setup.read_your_writes_timeout_ms = 30_000;
    let query = spawn_query(&command.url, setup).await;
    let instructor = Uuid::now_v7();
    let id = create(&command, instructor, "Before the outage", "Ops").await;
    details(&query, &id, 1).await;

    proxy.cut();
    let status = assert_code(
        query
            .client()
            .get_course_details(v1::GetCourseDetailsRequest {
                course_id: id.clone(),
                min_version: None,
            })
            .await,
        Code::Unavailable,
    );
    assert!(!status.message().contains("127.0.0.1"), "no internal detail: {}", status.message());
    query.wait_for("", ServingStatus::NotServing).await;
    // A command during the outage: the consumer holds the event until MongoDB is back.
    let version =
        testkit::driver::change_title(&command, instructor, &id, "After the outage").await;

    proxy.restore();
    query.wait_for("", ServingStatus::Serving).await;
    assert_eq!(details(&query, &id, version).await.title, "After the outage");
    query.finish().await;
    command.stop().await;
}
