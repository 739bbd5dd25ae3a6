//! Both read models, fed by one command-svc, agree with the event store (by their audit).

use std::sync::Arc;

use course_proto::v1::{self, course_command_service_client::CourseCommandServiceClient};
use projection::ProjectionArgs;
use testkit::{ServingStatus, as_user, spawn_command_svc, unique, wait_for_health};
use tokio::sync::Mutex;
use tonic::transport::Channel;
use uuid::Uuid;

async fn start_redis(command: &testkit::CommandSvc, exchange: &str) -> Channel {
    let config = query_redis_svc::config::Config {
        redis_url: std::env::var("TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
        redis_key_prefix: format!("{}:", unique("e2e")),
        service: testkit::service_args(
            unique("e2e.catalog"),
            ProjectionArgs {
                read_your_writes_timeout_ms: 30_000,
                event_store_token: Some(testkit::service_token()),
                ..ProjectionArgs::new(&testkit::rabbitmq_url(), exchange, &command.url)
            },
        ),
    };
    let app = query_redis_svc::Application::build(config).await.expect("redis service");
    let channel = channel(app.port());
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    wait_for_health(&channel, "course.v1.CatalogQueryService", ServingStatus::Serving).await;
    channel
}

async fn start_mongo(command: &testkit::CommandSvc, exchange: &str) -> Channel {
    // Defaults as if started without flags, then this test's own names.
    let mut config =
        <query_mongo_svc::config::Config as clap::Parser>::parse_from(["query-mongo-svc"]);
    config.mongodb_uri =
        std::env::var("TEST_MONGODB_URI").unwrap_or_else(|_| "mongodb://127.0.0.1:27017".into());
    config.mongodb_database = format!("e2e_{}", Uuid::new_v4().simple());
    config.service = testkit::service_args(
        unique("e2e.courses"),
        ProjectionArgs {
            read_your_writes_timeout_ms: 30_000,
            event_store_token: Some(testkit::service_token()),
            ..ProjectionArgs::new(&testkit::rabbitmq_url(), exchange, &command.url)
        },
    );
    let app = query_mongo_svc::Application::build(config).await.expect("mongo service");
    let channel = channel(app.port());
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    wait_for_health(&channel, "course.v1.CourseQueryService", ServingStatus::Serving).await;
    channel
}

fn channel(port: u16) -> Channel {
    Channel::from_shared(format!("http://127.0.0.1:{port}")).expect("uri").connect_lazy()
}

/// A mixed run: `total` commands from 8 concurrent workers over a pool of courses; rule
/// refusals are part of the mix.
async fn mixed_run(
    commands: CourseCommandServiceClient<Channel>,
    total: usize,
) -> (Vec<String>, usize) {
    let instructor = Uuid::now_v7();
    let users: Vec<Uuid> = (0..30).map(|_| Uuid::now_v7()).collect();
    let courses = Arc::new(Mutex::new(Vec::<String>::new()));
    let issued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ok = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers = (0..8).map(|worker| {
        let mut c = commands.clone();
        let courses = courses.clone();
        let issued = issued.clone();
        let ok = ok.clone();
        let users = users.clone();
        tokio::spawn(async move {
            let mut step = worker;
            while issued.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < total {
                step += 7;
                let known = courses.lock().await.clone();
                let pick =
                    |n: usize| known.get(n % known.len().max(1)).cloned().unwrap_or_default();
                let user = users[step % users.len()];
                let id = pick(step / 3);
                let result = match (known.len() < 25, step % 11) {
                    (true, _) | (_, 0) => {
                        let request = v1::CreateCourseRequest {
                            title: format!("Course {step}"),
                            description: format!("Learn topic {step}"),
                            category: ["Programming", "Design", "Data"][step % 3].into(),
                            max_participants: [0, 5, 20][step % 3],
                            ..Default::default()
                        };
                        match c.create_course(as_user(instructor, request)).await {
                            Ok(r) => {
                                courses.lock().await.push(r.into_inner().course_id);
                                Ok(())
                            }
                            Err(e) => Err(e),
                        }
                    }
                    (_, 1) => c
                        .present_course(as_user(
                            instructor,
                            v1::PresentCourseRequest { course_id: id, ..Default::default() },
                        ))
                        .await
                        .map(drop),
                    (_, 2) => c
                        .activate_course(as_user(
                            instructor,
                            v1::ActivateCourseRequest { course_id: id, ..Default::default() },
                        ))
                        .await
                        .map(drop),
                    (_, 3) if step % 5 == 0 => c
                        .complete_course(as_user(
                            instructor,
                            v1::CompleteCourseRequest { course_id: id, ..Default::default() },
                        ))
                        .await
                        .map(drop),
                    (_, 4) => c
                        .add_section(as_user(
                            instructor,
                            v1::AddSectionRequest {
                                course_id: id,
                                title: format!("Part {step}"),
                                video_url: format!("https://v.example/{step}"),
                                ..Default::default()
                            },
                        ))
                        .await
                        .map(drop),
                    (_, 5) => c
                        .leave_course(as_user(
                            user,
                            v1::LeaveCourseRequest { course_id: id, ..Default::default() },
                        ))
                        .await
                        .map(drop),
                    (_, 6) => c
                        .comment_course(as_user(
                            user,
                            v1::CommentCourseRequest {
                                course_id: id,
                                text: format!("Comment {step}"),
                                ..Default::default()
                            },
                        ))
                        .await
                        .map(drop),
                    (_, 7) => c
                        .change_course_title(as_user(
                            instructor,
                            v1::ChangeCourseTitleRequest {
                                course_id: id,
                                title: format!("Renamed {step}"),
                                ..Default::default()
                            },
                        ))
                        .await
                        .map(drop),
                    _ => c
                        .join_course(as_user(
                            user,
                            v1::JoinCourseRequest { course_id: id, ..Default::default() },
                        ))
                        .await
                        .map(drop),
                };
                match result {
                    Ok(()) => {
                        ok.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    Err(status) => assert!(
                        matches!(
                            status.code(),
                            tonic::Code::FailedPrecondition | tonic::Code::PermissionDenied
                        ),
                        "only rule refusals are expected: {status:?}"
                    ),
                }
            }
        })
    });
    for worker in futures::future::join_all(workers).await {
        worker.expect("worker");
    }
    let courses = courses.lock().await.clone();
    (courses, ok.load(std::sync::atomic::Ordering::SeqCst))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_read_models_agree_with_the_event_store_after_a_thousand_mixed_commands() {
    let exchange = unique("e2e.events");
    let command = spawn_command_svc(&exchange).await;
    let redis = start_redis(&command, &exchange).await;
    let mongo = start_mongo(&command, &exchange).await;
    let (courses, succeeded) = mixed_run(command.commands(), 1_000).await;
    assert!(succeeded >= 400, "a good share of the mix succeeds ({succeeded} of 1000)");
    // Acknowledged means committed; the audit reads what is sequenced. Wait for every
    // course's creation to be numbered before comparing counts.
    for id in &courses {
        testkit::events::events_until(&command, id, 1).await;
    }

    // The audit of each read model (`ProjectionAdminService.AuditReadModel`) compares every
    // course with the event store: version, status, texts, counts, participants, and what each
    // storage keeps besides (enrolment indexes; sections and comments).
    for (name, channel) in [("redis", redis), ("mongo", mongo.clone())] {
        let report = testkit::audit_caught_up(channel, 20).await;
        assert_eq!(report.difference_count, 0, "{name}: {report:?}");
        assert_eq!(report.read_model_position, report.audited_position, "{name} caught up");
        assert_eq!(report.courses_in_store, courses.len() as u64, "{name}");
        assert_eq!(report.courses_in_read_model, courses.len() as u64, "{name}");
        assert!(report.compared.iter().any(|c| c == "participants"), "{name}: {report:?}");
    }
    let stats = v1::course_query_service_client::CourseQueryServiceClient::with_interceptor(
        mongo,
        testkit::operator_credential(),
    )
    .get_platform_stats(v1::GetPlatformStatsRequest::default())
    .await
    .expect("stats")
    .into_inner();
    assert_eq!(stats.total_courses as usize, courses.len());
}
