use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::time::Duration;

use course_proto::v1::{self, EventEnvelope};
use futures::future::join_all;
use tonic_health::pb::health_check_response::ServingStatus;
use uuid::Uuid;

use crate::broker::{Received, TestConsumer};
use crate::helpers::*;
use testkit::TcpProxy;

const DRAIN: Duration = Duration::from_secs(60);

/// Opens `courses` courses, then `joins` concurrent JoinCourse calls spread across them.
/// Returns the course ids; every call must succeed.
async fn traffic(apps: &[&TestApp], courses: usize, joins: usize) -> Vec<String> {
    let instructor = Uuid::now_v7();
    let mut ids = Vec::new();
    for i in 0..courses {
        ids.push(open_course(apps[i % apps.len()], instructor, 0, false).await);
    }
    let results = join_all(join_calls(apps, &ids, joins)).await;
    assert!(
        results.iter().all(Result::is_ok),
        "a command failed: {:?}",
        results.iter().find(|r| r.is_err())
    );
    ids
}

type JoinResult = Result<tonic::Response<v1::JoinCourseResponse>, tonic::Status>;

fn join_calls<'a>(
    apps: &'a [&'a TestApp],
    ids: &'a [String],
    joins: usize,
) -> impl Iterator<Item = impl std::future::Future<Output = JoinResult> + 'a> {
    (0..joins).map(move |i| {
        let mut client = apps[i % apps.len()].commands();
        let id = ids[i % ids.len()].clone();
        async move { client.join_course(as_user(Uuid::now_v7(), join_request(&id))).await }
    })
}

/// Sends one more command whose event marks the end of what a test waits for.
async fn sentinel(app: &TestApp) -> String {
    create_course(app, Uuid::now_v7(), 0).await
}

fn assert_exactly_once_in_order(received: &[Received], expected: usize) {
    let ids: HashSet<&str> = received.iter().map(|r| r.envelope.event_id.as_str()).collect();
    assert_eq!(ids.len(), received.len(), "no duplicates");
    assert_eq!(received.len(), expected, "every event");
    assert_in_order(received);
}

/// Global positions strictly increase, and each course's versions go 1, 2, 3, ...
fn assert_in_order(received: &[Received]) {
    let positions: Vec<u64> = received.iter().map(|r| r.envelope.global_position).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "global order: {positions:?}");
    let mut versions: HashMap<&str, u64> = HashMap::new();
    for r in received {
        let last = versions.insert(r.envelope.course_id.as_str(), r.envelope.version).unwrap_or(0);
        assert_eq!(r.envelope.version, last + 1, "course {} out of order", r.envelope.course_id);
    }
}

/// First deliveries only (at-least-once may repeat a batch after a failure).
fn first_deliveries(received: Vec<Received>) -> Vec<Received> {
    let mut seen = HashSet::new();
    received.into_iter().filter(|r| seen.insert(r.envelope.event_id.clone())).collect()
}

#[tokio::test]
async fn a_thousand_concurrent_commands_reach_the_exchange_exactly_once_in_order() {
    let app = spawn_app().await;
    let mut consumer = TestConsumer::bind(&app.config.broker.rabbitmq_exchange).await;
    let ids = traffic(&[&app], 25, 950).await; // 25 x (create + present) + 950 joins = 1,000
    let end = sentinel(&app).await;
    let received = consumer.until_course(&end, DRAIN).await;
    assert_exactly_once_in_order(&received, 1_000);

    // Bodies are the very events the store serves.
    let mut by_course: HashMap<&str, Vec<&EventEnvelope>> = HashMap::new();
    for r in &received {
        by_course.entry(r.envelope.course_id.as_str()).or_default().push(&r.envelope);
    }
    for id in &ids {
        let stored = app.stream(id).await;
        let published: Vec<EventEnvelope> =
            by_course[id.as_str()].iter().map(|e| (*e).clone()).collect();
        assert_eq!(published, stored, "course {id}");
    }

    // Message format: routing key, properties and headers.
    let first = &received[0];
    assert_eq!(first.routing_key, "course.v1.CourseCreated");
    let p = &first.properties;
    assert_eq!(
        p.message_id().as_ref().map(|s| s.to_string()),
        Some(first.envelope.event_id.clone())
    );
    assert_eq!(p.kind().as_ref().map(|s| s.to_string()), Some("CourseCreated".to_owned()));
    assert_eq!(
        p.content_type().as_ref().map(|s| s.to_string()),
        Some("application/x-protobuf".to_owned())
    );
    assert_eq!(*p.delivery_mode(), Some(2), "persistent");
    assert!(p.timestamp().is_some());
    let headers = p.headers().as_ref().expect("headers");
    for key in ["course_id", "version", "global_position"] {
        assert!(headers.inner().contains_key(key), "header {key}");
    }
}

#[tokio::test]
async fn commands_keep_succeeding_while_the_broker_is_unreachable_and_everything_arrives_after() {
    let broker = TcpProxy::start("127.0.0.1:5672".parse().expect("addr")).await;
    let database = fresh_database().await;
    let mut cfg = config(&database);
    cfg.broker.rabbitmq_url = through_proxy(&broker);
    let app = spawn_app_on(cfg).await;
    let mut consumer = TestConsumer::bind(&app.config.broker.rabbitmq_exchange).await;

    let first_half = traffic(&[&app], 5, 40).await; // 5 x (create + present) + 40 joins = 50
    broker.cut();
    let second_half = traffic(&[&app], 5, 40).await; // 100 commands in all, none failed
    assert_eq!(first_half.len() + second_half.len(), 10);
    broker.restore();

    let end = sentinel(&app).await;
    let received = first_deliveries(consumer.until_course(&end, DRAIN).await);
    assert_eq!(received.len(), 100, "every event arrives");
    assert_in_order(&received);
}

#[tokio::test]
async fn a_killed_process_publishes_its_backlog_after_restart() {
    let broker = TcpProxy::start("127.0.0.1:5672".parse().expect("addr")).await;
    broker.cut(); // build a backlog
    let database = fresh_database().await;
    let exchange = format!("test.events.{}", Uuid::new_v4().simple());
    let mut consumer = TestConsumer::bind(&exchange).await;

    let mut process = Process::start(&database, &through_proxy(&broker), &exchange).await;
    let app = process.client();
    let courses = traffic(&[&app], 5, 90).await; // 100 commands
    assert_eq!(courses.len(), 5);
    process.kill().await; // SIGKILL: no drain, no goodbye

    broker.restore();
    let process = Process::start(&database, &through_proxy(&broker), &exchange).await;
    let app = process.client();
    let end = sentinel(&app).await;
    let received = first_deliveries(consumer.until_course(&end, DRAIN).await);
    assert_eq!(received.len(), 100, "nothing missing after the crash");
    assert_in_order(&received);
}

#[tokio::test]
async fn two_replicas_publish_each_event_once_and_in_order() {
    let app = spawn_app().await;
    let mut cfg = config(&app.database_url);
    cfg.broker.rabbitmq_exchange = app.config.broker.rabbitmq_exchange.clone();
    let second = spawn_app_on(cfg).await;
    let mut consumer = TestConsumer::bind(&app.config.broker.rabbitmq_exchange).await;
    traffic(&[&app, &second], 10, 280).await; // 300 commands through both replicas
    let end = sentinel(&second).await;
    let received = consumer.until_course(&end, DRAIN).await;
    assert_exactly_once_in_order(&received, 300);
}

#[tokio::test]
async fn the_relay_reports_the_broker_in_health() {
    let broker = TcpProxy::start("127.0.0.1:5672".parse().expect("addr")).await;
    let database = fresh_database().await;
    let mut cfg = config(&database);
    cfg.broker.rabbitmq_url = through_proxy(&broker);
    let app = spawn_app_on(cfg).await;
    app.wait_for_service_health("course.v1.EventRelay", ServingStatus::Serving).await;
    broker.cut();
    create_course(&app, Uuid::now_v7(), 0).await;
    app.wait_for_service_health("course.v1.EventRelay", ServingStatus::NotServing).await;
    app.wait_for_health(ServingStatus::Serving).await; // commands are still served
    broker.restore();
    app.wait_for_service_health("course.v1.EventRelay", ServingStatus::Serving).await;
}

#[tokio::test]
async fn a_python_pika_client_decodes_a_published_event() {
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/py/bin/python");
    assert!(python.exists(), "run `make tools` first: {} is missing", python.display());
    let app = spawn_app().await;
    let queue = format!("test.pika.{}", Uuid::new_v4().simple());
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/consume_event.py");
    // The script declares and binds its queue, then prints "ready" before waiting.
    let mut child = tokio::process::Command::new(&python)
        .arg(&script)
        .args([
            "--url",
            &rabbitmq_url(),
            "--exchange",
            &app.config.broker.rabbitmq_exchange,
            "--queue",
            &queue,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("python runs");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let ready = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("ready in time");
    assert_eq!(ready.expect("line").as_deref(), Some("ready"));
    let course = create_course(&app, Uuid::now_v7(), 0).await;
    let decoded = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("decoded in time")
        .expect("line")
        .expect("a JSON line");
    let json: serde_json::Value = serde_json::from_str(&decoded).expect("JSON");
    assert_eq!(json["courseId"], course);
    assert_eq!(json["eventType"], "CourseCreated");
    assert_eq!(json["courseCreated"]["category"], "Programming");
    assert!(child.wait().await.expect("exit").success());
}

fn through_proxy(proxy: &TcpProxy) -> String {
    format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.addr.port())
}

#[tokio::test]
async fn a_standby_replica_takes_over_the_relay_when_the_publishing_one_dies() {
    let database = fresh_database().await;
    let exchange = format!("test.events.{}", Uuid::new_v4().simple());
    let mut consumer = TestConsumer::bind(&exchange).await;
    let mut first = Process::start(&database, &rabbitmq_url(), &exchange).await;
    // Once the first replica published an event, it holds the lease.
    let mut sentinels = vec![sentinel(&first.client()).await];
    assert!(consumer.until_course(&sentinels[0], DRAIN).await.is_empty());
    let standby = Process::start(&database, &rabbitmq_url(), &exchange).await;

    let (a, b) = (first.client(), standby.client());
    traffic(&[&a, &b], 5, 90).await; // 100 commands through both replicas
    sentinels.push(sentinel(&b).await);
    let mut received = consumer.until_course(&sentinels[1], DRAIN).await;
    assert_exactly_once_in_order(&received, 100);
    assert_eq!(
        standby.metric("events_published_total").await,
        0.0,
        "the standby published nothing"
    );

    first.kill().await; // SIGKILL: its connection, and with it the lease, goes away
    traffic(&[&b], 5, 90).await;
    sentinels.push(sentinel(&b).await);
    received.extend(consumer.until_course(&sentinels[2], DRAIN).await);
    // What the first published but did not record as confirmed is published again.
    received.retain(|r| !sentinels.contains(&r.envelope.course_id));
    let received = first_deliveries(received);
    assert_eq!(received.len(), 200, "every event");
    assert_in_order(&received);
    let published = standby.metric_reaching("events_published_total", 101.0, DRAIN).await;
    assert!(published >= 101.0, "the standby took over: it published {published}");
}
