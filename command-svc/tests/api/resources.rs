//! Bounded resources and quiet refusals: load shedding past MAX_CONCURRENT_REQUESTS and refused
//! commands that write no ERROR line.

use std::process::Stdio;
use std::time::Duration;

use course_proto::v1;
use sea_orm::{ConnectionTrait, Database, TransactionTrait};
use tokio::io::AsyncReadExt;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use uuid::Uuid;

use crate::helpers::*;

#[tokio::test]
async fn requests_past_the_server_limit_are_shed_with_resource_exhausted() {
    let database = fresh_database().await;
    let mut config = config(&database);
    config.server.max_concurrent_requests = 1;
    let app = spawn_app_on(config).await;
    let user = Uuid::now_v7();
    let course = create_course(&app, user, 0).await;

    // Hold every write: the next command stays in flight, holding the server's only permit.
    let db = Database::connect(database.as_str()).await.expect("connect");
    let lock = db.begin().await.expect("begin");
    lock.execute_unprepared("LOCK TABLE events IN ACCESS EXCLUSIVE MODE").await.expect("lock");
    let stuck = {
        let mut commands = app.commands();
        let request = as_user(
            user,
            v1::ChangeCourseTitleRequest {
                course_id: course.clone(),
                title: "Held".into(),
                ..Default::default()
            },
        );
        tokio::spawn(async move { commands.change_course_title(request).await })
    };

    // Anything else is now shed at once, health checks included, until the permit is free.
    let mut health = HealthClient::new(app.channel());
    let shed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match health.check(HealthCheckRequest { service: String::new() }).await {
                Err(status) if status.code() == Code::ResourceExhausted => return status,
                Err(status) => panic!("unexpected {status:?}"),
                // The held command has not reached the server yet.
                Ok(_) => tokio::task::yield_now().await,
            }
        }
    })
    .await
    .expect("the held command takes the only permit");
    assert!(shed.message().contains("overloaded"), "{}", shed.message());
    let status = assert_code(
        app.commands().create_course(as_user(user, create_request(0))).await,
        Code::ResourceExhausted,
    );
    assert!(!status.message().contains("events"), "no internals: {}", status.message());
    assert!(!stuck.is_finished(), "the held command is still waiting for the lock");

    lock.rollback().await.expect("release");
    let done = stuck.await.expect("task").expect("the held command succeeds");
    assert_eq!(done.into_inner().version, 2);
    // The permit came back: the server serves again.
    app.commands()
        .create_course(as_user(user, create_request(0)))
        .await
        .expect("served once the permit is free");
}

#[tokio::test]
async fn refused_commands_write_no_error_line() {
    let database = fresh_database().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_command-svc"))
        .env("DATABASE_URL", &database)
        .env("GRPC_LISTEN", format!("127.0.0.1:{port}"))
        .env("AUTH_JWT_SECRET", SECRET)
        .env("RABBITMQ_URL", rabbitmq_url())
        .env("RABBITMQ_EXCHANGE", testkit::unique("test.events"))
        .env("METRICS_LISTEN", "127.0.0.1:0")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info,command_svc=debug")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("command-svc starts");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let output = tokio::spawn(async move {
        let mut out = String::new();
        let mut err = String::new();
        let _ = tokio::join!(stdout.read_to_string(&mut out), stderr.read_to_string(&mut err));
        out + &err
    });
    let app = connect(&format!("127.0.0.1:{port}"), config(&database));
    app.wait_for_health(ServingStatus::Serving).await;

    // One refusal of every kind a caller can cause.
    let instructor = Uuid::now_v7();
    let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
    let missing = Uuid::now_v7().to_string();
    let course = open_course(&app, instructor, 1, false).await;
    let mut commands = app.commands();
    commands.join_course(as_user(alice, join_request(&course))).await.expect("alice joins");
    let title = |text: &str, command_id: &str| v1::ChangeCourseTitleRequest {
        course_id: course.clone(),
        title: text.into(),
        command_id: Some(command_id.to_owned()),
        ..Default::default()
    };
    let command_id = Uuid::now_v7().to_string();
    commands
        .change_course_title(as_user(instructor, title("First", &command_id)))
        .await
        .expect("title changed");
    let stale = v1::LeaveCourseRequest {
        course_id: course.clone(),
        expected_version: Some(1),
        ..Default::default()
    };
    let present = v1::PresentCourseRequest { course_id: course.clone(), ..Default::default() };
    let refusals = [
        (
            Code::FailedPrecondition,
            code(commands.join_course(as_user(alice, join_request(&course))).await),
        ),
        (
            Code::FailedPrecondition,
            code(commands.join_course(as_user(bob, join_request(&course))).await),
        ),
        (Code::NotFound, code(commands.join_course(as_user(alice, join_request(&missing))).await)),
        (
            Code::InvalidArgument,
            code(commands.join_course(as_user(alice, join_request("x"))).await),
        ),
        (Code::Unauthenticated, code(commands.join_course(join_request(&course)).await)),
        (Code::PermissionDenied, code(commands.present_course(as_user(alice, present)).await)),
        (Code::Aborted, code(commands.leave_course(as_user(alice, stale)).await)),
        (
            Code::AlreadyExists,
            code(
                commands
                    .change_course_title(as_user(instructor, title("Other", &command_id)))
                    .await,
            ),
        ),
    ];
    for (expected, got) in refusals {
        assert_eq!(got, Some(expected));
    }

    // Graceful stop, then read everything the service wrote.
    let pid = child.id().expect("running").to_string();
    let term = tokio::process::Command::new("kill").args(["-TERM", &pid]).status().await;
    assert!(term.expect("kill runs").success());
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("stops on SIGTERM")
        .expect("exit status");
    assert!(exit.success(), "{exit:?}");
    let logs = output.await.expect("output");
    let lines: Vec<serde_json::Value> =
        logs.lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
    assert!(lines.len() > 3, "the service's JSON log was captured:\n{logs}");
    let errors: Vec<&serde_json::Value> =
        lines.iter().filter(|line| line["level"] == "ERROR").collect();
    assert!(errors.is_empty(), "refusals logged at ERROR: {errors:#?}");
    let refused = lines.iter().filter(|line| line["message"] == "refused").count();
    assert!(refused >= 5, "refusals are still logged, below ERROR ({refused}):\n{logs}");
}

/// The status code of a failed call (None when it succeeded).
fn code<T>(result: Result<T, tonic::Status>) -> Option<Code> {
    result.err().map(|status| status.code())
}

#[tokio::test]
async fn a_command_commits_while_every_event_store_reader_connection_is_held() {
    let database = fresh_database().await;
    let mut config = config(&database);
    config.event_store_read_connections = 2;
    let (app, readers) = spawn_app_with_readers(config).await;
    let user = Uuid::now_v7();
    let course = create_course(&app, user, 0).await;

    // Every connection of the readers' pool taken and held, as by readers that never finish;
    // the pool refuses one more (after its acquire timeout).
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(readers.connection().begin().await.expect("a reader connection"));
    }
    assert!(readers.connection().begin().await.is_err(), "EVENT_STORE_READ_CONNECTIONS is 2");
    // Readers are starved now: a read waits for a connection and gives up (UNAVAILABLE).
    let read = tokio::time::timeout(
        Duration::from_secs(30),
        app.event_store().read_stream(v1::ReadStreamRequest {
            course_id: course.clone(),
            from_version: 1,
            max_count: 0,
        }),
    )
    .await
    .expect("a starved read answers within the pool's acquire timeout");
    assert_code(read, Code::Unavailable);
    // Commands are not: they commit on the write pool. (The timeout only detects a failure.)
    let changed = tokio::time::timeout(
        Duration::from_secs(30),
        app.commands().change_course_title(as_user(
            user,
            v1::ChangeCourseTitleRequest {
                course_id: course.clone(),
                title: "Written while readers starve".into(),
                ..Default::default()
            },
        )),
    )
    .await
    .expect("the command is not stalled by the readers")
    .expect("the command commits");
    assert_eq!(changed.into_inner().version, 2);

    for transaction in held {
        transaction.rollback().await.expect("release");
    }
    assert_eq!(app.stream(&course).await.len(), 2, "readers are served again");
}
