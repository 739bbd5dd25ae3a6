//! Builds the application from its configuration and runs it until a shutdown signal.

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use course_proto::v1::course_command_service_server::CourseCommandServiceServer;
use course_proto::v1::event_store_service_server::EventStoreServiceServer;
use platform::auth::{ROLE_OPERATOR, ROLE_SERVICE};
use platform::retry::{next_delay, reconnect_backoff};
use platform::server::{Access, GrpcServer, Policy};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::app::CourseCommands;
use crate::config::Config;
use crate::grpc::{CommandApi, EventStoreApi, FollowLimits};
use crate::readiness::Readiness;
use crate::relay::{RelayConfig, run_relay};
use crate::sequencer::{run_head_listener, run_sequencer};
use crate::store::EventStore;

/// Names under which `grpc.health.v1` reports.
const HEALTH_NAMES: [&str; 3] =
    ["", "course.v1.CourseCommandService", "course.v1.EventStoreService"];
/// Who may call what: commands need a user (ownership and membership are the domain's rules);
/// the event store holds every comment and user id, so it is for services and operators.
pub fn policy() -> Policy {
    Policy::new()
        .service(
            "course.v1.CourseCommandService",
            &[
                "CreateCourse",
                "ChangeCourseTitle",
                "ChangeCourseDescription",
                "AddSection",
                "PresentCourse",
                "ActivateCourse",
                "CompleteCourse",
                "JoinCourse",
                "LeaveCourse",
                "CommentCourse",
            ],
            Access::Authenticated,
        )
        .service(
            "course.v1.EventStoreService",
            &["ReadStream", "ReadAll"],
            Access::Roles(&[ROLE_SERVICE, ROLE_OPERATOR]),
        )
}

/// How often the store is pinged to keep health current.
const HEALTH_INTERVAL: Duration = Duration::from_secs(2);

/// A bound, ready-to-run command service.
pub struct Application {
    server: GrpcServer,
    config: Config,
    store: EventStore,
    readers: EventStore,
    broker: messaging::Pool,
    metrics: TcpListener,
}

impl Application {
    /// Validates the configuration, binds the listener and prepares the store (lazily: a
    /// PostgreSQL that is down does not stop the service from starting).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let store = EventStore::connect_lazy(&config.database_url, config.database_max_connections)
            .await
            .context("invalid DATABASE_URL")?;
        // EventStoreService reads on a pool of their own: readers cannot starve commands.
        let readers =
            EventStore::connect_lazy(&config.database_url, config.event_store_read_connections)
                .await
                .context("invalid DATABASE_URL")?;
        let server =
            GrpcServer::bind(config.grpc_listen, config.server.clone(), &HEALTH_NAMES).await?;
        let broker =
            messaging::pool(&config.broker.rabbitmq_url, 2).context("invalid RABBITMQ_URL")?;
        let metrics = platform::metrics::bind(config.metrics_listen).await.with_context(|| {
            format!("cannot listen on METRICS_LISTEN {}", config.metrics_listen)
        })?;
        platform::metrics::recorder();
        Ok(Self { server, config, store, readers, broker, metrics })
    }

    /// The port actually bound (useful with port 0).
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// The pool `EventStoreService` reads on (its own: tests exhaust it to show that readers
    /// cannot starve commands).
    pub fn event_store_readers(&self) -> EventStore {
        self.readers.clone()
    }

    /// The port of the metrics endpoint.
    pub fn metrics_port(&self) -> u16 {
        self.metrics.local_addr().map(|a| a.port()).unwrap_or_default()
    }

    /// Serves until `shutdown` resolves, then reports NOT_SERVING, drains in-flight calls and
    /// stops the background tasks.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Self { server, config, store, readers, broker, metrics } = self;
        let stop = CancellationToken::new();
        let readiness = Readiness::default();
        let (head_tx, head_rx) = watch::channel(0u64);
        let health = server.health();

        let relay = RelayConfig {
            exchange: config.broker.rabbitmq_exchange.clone(),
            batch_size: config.relay_batch_size,
        };
        let tasks = vec![
            tokio::spawn(platform::metrics::serve(metrics, stop.clone())),
            tokio::spawn(watch_store(
                store.clone(),
                readiness.clone(),
                health.clone(),
                relay.checkpoint_name(),
                stop.clone(),
            )),
            tokio::spawn(run_sequencer(
                store.clone(),
                head_tx.clone(),
                readiness.clone(),
                stop.clone(),
            )),
            tokio::spawn(run_head_listener(store.clone(), head_tx.clone(), stop.clone())),
            tokio::spawn(run_relay(
                store.clone(),
                broker,
                relay,
                head_rx.clone(),
                health.clone(),
                readiness.clone(),
                stop.clone(),
            )),
        ];

        let commands = CourseCommands::new(store.clone(), &config.batching, head_tx);
        let command_api = CommandApi::new(commands, readiness.clone());
        let follow = FollowLimits {
            max_streams: config.max_follow_streams as usize,
            idle_timeout: Duration::from_secs(config.follow_idle_timeout_secs),
        };
        let event_store_api = EventStoreApi::new(readers, head_rx, stop.clone(), readiness, follow);
        let max_bytes = config.server.max_request_bytes;
        let routes = Routes::new(
            CourseCommandServiceServer::new(command_api).max_decoding_message_size(max_bytes),
        )
        .add_service(
            EventStoreServiceServer::new(event_store_api).max_decoding_message_size(max_bytes),
        );

        tracing::info!(addr = %server.local_addr()?, "command-svc listening");
        let drain = {
            let stop = stop.clone();
            async move {
                shutdown.await;
                // Ends follow streams so that the server can drain.
                stop.cancel();
            }
        };
        let served =
            server.serve(routes, policy(), &[course_proto::FILE_DESCRIPTOR_SET], drain).await;

        stop.cancel();
        for task in tasks {
            let _ = task.await;
        }
        tracing::info!("command-svc stopped");
        served
    }
}

async fn set_health(health: &HealthReporter, status: ServingStatus) {
    platform::grpc::set_health(health, &HEALTH_NAMES, status).await;
}

/// Migrates the store as soon as PostgreSQL answers, then keeps health, readiness and the
/// store's gauges (pool, outbox backlog) current.
async fn watch_store(
    store: EventStore,
    readiness: Readiness,
    health: HealthReporter,
    outbox: String,
    stop: CancellationToken,
) {
    let mut backoff = reconnect_backoff();
    let mut migrated = false;
    loop {
        let delay = if !migrated {
            match store.migrate().await {
                Ok(()) => {
                    migrated = true;
                    readiness.set(true);
                    set_health(&health, ServingStatus::Serving).await;
                    tracing::info!("event store migrated and ready");
                    HEALTH_INTERVAL
                }
                Err(err) => {
                    let delay = next_delay(&mut backoff);
                    tracing::warn!(error = %err, ?delay, "event store not ready; retrying");
                    delay
                }
            }
        } else {
            let up = store.ping().await;
            if up != readiness.is_ready() {
                if up {
                    tracing::info!("event store reachable again");
                } else {
                    tracing::warn!("event store unreachable");
                }
            }
            readiness.set(up);
            let (open, idle) = store.pool_size();
            metrics::gauge!("db_pool_connections", "state" => "open").set(f64::from(open));
            metrics::gauge!("db_pool_connections", "state" => "idle").set(idle as f64);
            if up && let Ok(backlog) = store.outbox_backlog(&outbox).await {
                metrics::gauge!("outbox_backlog_events").set(backlog.events as f64);
                metrics::gauge!("outbox_oldest_unpublished_seconds").set(backlog.oldest_age_secs);
                // A few events in flight are normal; an old one means the broker is not taking them.
                if backlog.oldest_age_secs > 5.0 {
                    tracing::warn!(
                        backlog_events = backlog.events,
                        oldest_unpublished_secs = backlog.oldest_age_secs,
                        "outbox backlog"
                    );
                }
            }
            let status = if up { ServingStatus::Serving } else { ServingStatus::NotServing };
            set_health(&health, status).await;
            HEALTH_INTERVAL
        };
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => return,
        }
    }
}
