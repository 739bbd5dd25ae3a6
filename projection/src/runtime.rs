//! Everything a query service runs besides its read RPCs: the consumer, the progress bus, the
//! initial build, rebuilds on request, health, and the `ProjectionAdminService`.

use std::sync::Arc;
use std::time::Duration;

use course_proto::v1::event_store_service_client::EventStoreServiceClient;
use course_proto::v1::projection_admin_service_server::{
    ProjectionAdminService, ProjectionAdminServiceServer,
};
use course_proto::v1::{
    AuditReadModelRequest, AuditReadModelResponse, GetProjectionStatusRequest,
    GetProjectionStatusResponse, ListDeadLettersRequest, ListDeadLettersResponse,
    RebuildReadModelRequest, RebuildReadModelResponse, ReplayDeadLettersRequest,
    ReplayDeadLettersResponse,
};
use messaging::{ConsumerTopology, Pool};
use platform::auth::Credential;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::EventStoreClient;
use crate::consumer::{Batching, run_consumer};
use crate::dead_letter::{self, DEGRADED_HEALTH_NAME};
use crate::lease::{self, Lessee};
use crate::partitions;
use crate::progress::Progress;
use crate::projector::Projector;
use crate::read_model::ReadModel;
use crate::read_side::ReadSide;
use crate::rebuild::{self, RebuildError};

/// Settings of a projection runtime.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// RabbitMQ URL.
    pub rabbitmq_url: String,
    /// The events exchange.
    pub exchange: String,
    /// This read model's queue (dead-letter queue `<queue>.dlq`, progress exchange
    /// `<queue>.progress`).
    pub queue: String,
    /// Deliveries before a failing message is dead-lettered.
    pub delivery_limit: u32,
    /// Unacknowledged messages in flight.
    pub prefetch: u16,
    /// Most events applied together.
    pub batch_size: usize,
    /// How long a batch waits for more events after its first.
    pub batch_linger: Duration,
    /// How many partitions the read model's events are split into (1 to 64).
    pub partitions: u16,
    /// A replica not heard from for this long is gone and its partitions move (heartbeats go
    /// out every third of it).
    pub member_ttl: Duration,
    /// command-svc's gRPC address, for gap filling and rebuilds.
    pub event_store_url: String,
    /// The bearer token sent to the event store.
    pub event_store_credential: Credential,
    /// Rebuild into a fresh generation at start-up even when data exists.
    pub rebuild_on_start: bool,
    /// How long a rebuild's lease lasts without renewal (see `lease`).
    pub rebuild_lease: Duration,
}

/// The running projection of one query service.
pub struct Runtime<M: ReadModel> {
    projector: Projector<M>,
    events: EventStoreClient,
    pool: Pool,
    config: RuntimeConfig,
    lessee: Lessee,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    /// The progress bus, stopped last (the farewell of this replica goes out on it).
    bus: Option<(CancellationToken, JoinHandle<()>)>,
}

impl<M: ReadModel> Runtime<M> {
    /// Prepares clients (connections are made lazily, so infrastructure that is down does not
    /// stop the service from starting).
    pub fn new(model: M, config: RuntimeConfig) -> anyhow::Result<Self> {
        let endpoint = Endpoint::from_shared(config.event_store_url.clone())
            .map_err(|e| anyhow::anyhow!("invalid EVENT_STORE_URL: {e}"))?
            .connect_timeout(Duration::from_secs(3));
        let events = EventStoreServiceClient::with_interceptor(
            endpoint.connect_lazy(),
            config.event_store_credential.clone(),
        );
        let pool = messaging::pool(&config.rabbitmq_url, 4)
            .map_err(|e| anyhow::anyhow!("invalid RABBITMQ_URL: {e}"))?;
        let projector = Projector::new(model, events.clone(), Progress::new());
        let lessee = Lessee::new(config.rebuild_lease);
        Ok(Self {
            projector,
            events,
            pool,
            lessee,
            config,
            stop: CancellationToken::new(),
            tasks: Vec::new(),
            bus: None,
        })
    }

    /// The projector (its model and progress serve the read RPCs).
    pub fn projector(&self) -> &Projector<M> {
        &self.projector
    }

    /// The read-side edge of the query service's RPCs over this projection's model, with
    /// read-your-writes waits bounded by `wait_timeout`.
    pub fn read_side(&self, wait_timeout: Duration) -> ReadSide<M> {
        ReadSide::new(
            self.projector.model().clone(),
            self.projector.progress().clone(),
            wait_timeout,
        )
    }

    /// The admin gRPC service.
    pub fn admin_service(&self) -> ProjectionAdminServiceServer<AdminApi<M>> {
        ProjectionAdminServiceServer::new(AdminApi {
            projector: self.projector.clone(),
            events: self.events.clone(),
            lessee: self.lessee.clone(),
        })
    }

    /// Starts the background work and keeps `health_names` in step with it: SERVING while
    /// the consumer is connected and a complete generation exists. [`DEGRADED_HEALTH_NAME`]
    /// reports whether dead letters are recorded.
    pub fn start(&mut self, health: HealthReporter, health_names: &'static [&'static str]) {
        let topology = ConsumerTopology {
            exchange: self.config.exchange.clone(),
            queue: self.config.queue.clone(),
            partitions: self.config.partitions,
            delivery_limit: self.config.delivery_limit,
            prefetch: self.config.prefetch,
        };
        let progress = self.projector.progress().clone();
        let bus_stop = CancellationToken::new();
        self.bus = Some((
            bus_stop.clone(),
            tokio::spawn(progress.clone().run_bus(
                self.pool.clone(),
                format!("{}.progress", self.config.queue),
                bus_stop,
            )),
        ));
        let assignment = partitions::Assignment {
            me: uuid::Uuid::new_v4(),
            partitions: self.config.partitions,
            member_ttl: self.config.member_ttl,
        };
        tracing::info!(member = %assignment.me, partitions = assignment.partitions, "replica of the read model");
        // Every partition until the other replicas are heard from.
        let (owned, owned_rx) = watch::channel((0..self.config.partitions).collect());
        self.tasks.push(tokio::spawn(partitions::run(
            progress.clone(),
            assignment,
            owned,
            self.stop.clone(),
        )));
        self.tasks.push(tokio::spawn(run_consumer(
            self.pool.clone(),
            topology,
            Batching { size: self.config.batch_size, linger: self.config.batch_linger },
            self.projector.clone(),
            owned_rx,
            self.stop.clone(),
        )));
        self.tasks.push(tokio::spawn(initial_build(
            self.projector.clone(),
            self.events.clone(),
            self.config.rebuild_on_start,
            self.lessee.clone(),
            self.stop.clone(),
        )));
        self.tasks.push(tokio::spawn(lease::supervise(
            self.projector.model().clone(),
            self.config.rebuild_lease / 2,
            self.stop.clone(),
        )));
        self.tasks.push(tokio::spawn(report_health(
            self.projector.clone(),
            health,
            health_names,
            self.stop.clone(),
        )));
    }

    /// A token that stops the background work when cancelled.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Stops consuming (the batch in hand is finished and acknowledged, every partition
    /// released), says farewell to the other replicas so that they take the partitions over
    /// at once, and waits for the background tasks.
    pub async fn shutdown(self) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        if let Some((stop, task)) = self.bus {
            stop.cancel();
            let _ = task.await;
        }
    }
}

/// Builds generation 1 when the read model is empty (or a fresh generation when asked to),
/// retrying until the event store and the storage answer. A rebuild whose owner is gone is
/// abandoned first (`lease`); one that is alive elsewhere is left to finish, and while nothing
/// is served yet this replica waits for it (and takes over if its owner dies).
async fn initial_build<M: ReadModel>(
    projector: Projector<M>,
    events: EventStoreClient,
    force: bool,
    lessee: Lessee,
    stop: CancellationToken,
) {
    loop {
        let result = async {
            let generations = projector.model().generations().await?;
            if generations.active != 0 && generations.building == Some(generations.active) {
                // A rebuild switched over and died before clearing its mark.
                rebuild::finish(projector.model(), generations.active).await?;
                return Ok(());
            }
            lease::abandon_orphaned(projector.model()).await?;
            if generations.active != 0 && !force {
                return Ok(());
            }
            projector.progress().set_rebuilding(true);
            let (marked, generation) = rebuild::begin(projector.model(), &lessee).await?;
            tracing::info!(generation, "building the read model from the event store");
            let result =
                rebuild::complete(&projector, events.clone(), marked, generation, &lessee).await;
            if result.is_err() {
                let _ = rebuild::abandon(projector.model(), generation).await;
            }
            result
        };
        let result: Result<(), RebuildError> = tokio::select! {
            result = result => result,
            () = stop.cancelled() => return,
        };
        projector.progress().set_rebuilding(false);
        let retry_in = match result {
            Ok(()) => return,
            Err(RebuildError::AlreadyRunning(generation)) => {
                let served = projector.model().generations().await.is_ok_and(|g| g.active != 0);
                if served {
                    tracing::info!(
                        generation,
                        "another replica is rebuilding; not starting one here"
                    );
                    return;
                }
                // Nothing is served yet: watch the other replica's first build.
                tracing::info!(generation, "another replica is building the read model; waiting");
                lessee.duration
            }
            Err(err) => {
                tracing::warn!(error = %err, "initial build failed; retrying");
                Duration::from_secs(2)
            }
        };
        tokio::select! {
            () = tokio::time::sleep(retry_in) => {}
            () = stop.cancelled() => return,
        }
    }
}

async fn report_health<M: ReadModel>(
    projector: Projector<M>,
    health: HealthReporter,
    names: &'static [&'static str],
    stop: CancellationToken,
) {
    let mut last = None;
    let mut last_degraded = None;
    let mut last_lag_log = tokio::time::Instant::now();
    loop {
        let snapshot = projector.progress().snapshot();
        let behind = snapshot.received_position.saturating_sub(snapshot.applied_position);
        if behind > 0 && last_lag_log.elapsed() >= Duration::from_secs(10) {
            last_lag_log = tokio::time::Instant::now();
            tracing::info!(
                lag_events = behind,
                lag_seconds = snapshot.lag_seconds,
                applied_position = snapshot.applied_position,
                "projection lag"
            );
        }
        // While the very first build runs there is nothing complete to serve; a rebuild into
        // a new generation keeps the old one served.
        let generations = projector.model().generations().await.ok();
        let has_data = generations.is_some_and(|g| g.active != 0);
        let old_generation_served = generations.is_some_and(|g| g.building.is_some());
        let serving =
            snapshot.consuming && has_data && (!snapshot.rebuilding || old_generation_served);
        let status = if serving { ServingStatus::Serving } else { ServingStatus::NotServing };
        if last != Some(status) {
            platform::grpc::set_health(&health, names, status).await;
            tracing::info!(
                ?status,
                consuming = snapshot.consuming,
                rebuilding = snapshot.rebuilding,
                "health"
            );
            last = Some(status);
        }
        // Dead letters make the read model degraded, not unready: see `dead_letter`.
        if let Ok(count) = projector.model().dead_letter_count().await {
            metrics::gauge!("projection_dead_letters").set(count as f64);
            let degraded = count > 0;
            if last_degraded != Some(degraded) {
                let status =
                    if degraded { ServingStatus::NotServing } else { ServingStatus::Serving };
                platform::grpc::set_health(&health, &[DEGRADED_HEALTH_NAME], status).await;
                if degraded {
                    tracing::warn!(dead_letters = count, "read model degraded");
                } else if last_degraded.is_some() {
                    tracing::info!("read model complete again");
                }
                last_degraded = Some(degraded);
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
            () = stop.cancelled() => {
                platform::grpc::set_health(&health, names, ServingStatus::NotServing).await;
                platform::grpc::set_health(&health, &[DEGRADED_HEALTH_NAME], ServingStatus::NotServing)
                    .await;
                return;
            }
        }
    }
}

/// `course.v1.ProjectionAdminService`.
pub struct AdminApi<M: ReadModel> {
    projector: Projector<M>,
    events: EventStoreClient,
    lessee: Lessee,
}

#[tonic::async_trait]
impl<M: ReadModel> ProjectionAdminService for AdminApi<M> {
    async fn get_projection_status(
        &self,
        _request: Request<GetProjectionStatusRequest>,
    ) -> Result<Response<GetProjectionStatusResponse>, Status> {
        let model = self.projector.model();
        let generations = model.generations().await.map_err(read_model_status)?;
        let applied = model.watermark(generations.active).await.map_err(read_model_status)?;
        let snapshot = self.projector.progress().snapshot();
        let dead_letter_count = model.dead_letter_count().await.map_err(read_model_status)?;
        Ok(Response::new(GetProjectionStatusResponse {
            degraded: dead_letter_count > 0,
            dead_letter_count,
            active_generation: generations.active,
            building_generation: generations.building.unwrap_or(0),
            applied_position: applied,
            received_position: snapshot.received_position,
            lag_events: snapshot.received_position.saturating_sub(applied),
            lag_seconds: snapshot.lag_seconds,
            consuming: snapshot.consuming,
        }))
    }

    async fn rebuild_read_model(
        &self,
        request: Request<RebuildReadModelRequest>,
    ) -> Result<Response<RebuildReadModelResponse>, Status> {
        let wait = request.into_inner().wait;
        let (marked, generation) = match rebuild::begin(self.projector.model(), &self.lessee).await
        {
            Ok(reserved) => reserved,
            Err(RebuildError::AlreadyRunning(g)) => {
                return Err(Status::failed_precondition(format!(
                    "a rebuild of generation {g} is already running"
                )));
            }
            Err(RebuildError::Raced) => {
                return Err(Status::aborted("the generations changed concurrently; retry"));
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot reserve a rebuild generation");
                return Err(Status::unavailable("the read model is unavailable; retry later"));
            }
        };
        let projector = self.projector.clone();
        let events = self.events.clone();
        let lessee = self.lessee.clone();
        let progress = Arc::new(projector.progress().clone());
        // Spawned, so that a client that goes away does not abort the rebuild half-way.
        let task = tokio::spawn(async move {
            progress.set_rebuilding(true);
            let result = rebuild::complete(&projector, events, marked, generation, &lessee).await;
            if let Err(err) = &result {
                tracing::error!(error = %err, generation, "rebuild failed; the previous generation stays active");
                let _ = rebuild::abandon(projector.model(), generation).await;
            }
            progress.set_rebuilding(false);
            result
        });
        tracing::info!(generation, "rebuild started");
        if wait {
            match task.await {
                Ok(Ok(())) => {}
                // The cause is logged by the task; its text stays inside.
                Ok(Err(_)) => {
                    return Err(Status::unavailable(
                        "the rebuild failed; the previous generation stays active (see the service's log)",
                    ));
                }
                Err(_) => return Err(Status::internal("rebuild task failed")),
            }
        }
        Ok(Response::new(RebuildReadModelResponse { generation }))
    }

    async fn list_dead_letters(
        &self,
        request: Request<ListDeadLettersRequest>,
    ) -> Result<Response<ListDeadLettersResponse>, Status> {
        let request = request.into_inner();
        let size = match request.page_size {
            0 => 100,
            n @ 1..=1000 => n as usize,
            _ => return Err(platform::grpc::invalid_field("page_size", "must be 0-1000")),
        };
        let after = match request.page_token.as_str() {
            "" => 0,
            token => token.parse::<u64>().map_err(|_| {
                platform::grpc::invalid_field("page_token", "not a token from ListDeadLetters")
            })?,
        };
        let model = self.projector.model();
        // One more than asked tells whether a next page exists.
        let mut letters = model.dead_letters(after, size + 1).await.map_err(read_model_status)?;
        let next_page_token = if letters.len() > size {
            letters.truncate(size);
            letters.last().map(|l| l.position.to_string()).unwrap_or_default()
        } else {
            String::new()
        };
        let dead_letters = letters
            .into_iter()
            .map(|l| course_proto::v1::DeadLetter {
                global_position: l.position,
                event_id: l.event_id,
                course_id: l.course_id,
                version: l.version,
                reason: l.reason,
                recorded_at: Some(course_proto::timestamp(l.recorded_at)),
            })
            .collect();
        Ok(Response::new(ListDeadLettersResponse { dead_letters, next_page_token }))
    }

    async fn replay_dead_letters(
        &self,
        _request: Request<ReplayDeadLettersRequest>,
    ) -> Result<Response<ReplayDeadLettersResponse>, Status> {
        match dead_letter::replay(&self.projector, self.events.clone()).await {
            Ok(report) => {
                tracing::info!(
                    replayed = report.replayed,
                    still_failing = report.still_failing,
                    "dead letters replayed"
                );
                Ok(Response::new(ReplayDeadLettersResponse {
                    replayed: report.replayed,
                    still_failing: report.still_failing,
                }))
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot replay dead letters now");
                Err(Status::unavailable(
                    "the read model or the event store is unavailable; retry later",
                ))
            }
        }
    }

    async fn audit_read_model(
        &self,
        request: Request<AuditReadModelRequest>,
    ) -> Result<Response<AuditReadModelResponse>, Status> {
        let projector = &self.projector;
        crate::audit::serve(
            projector.model(),
            projector.progress(),
            self.events.clone(),
            request.get_ref(),
        )
        .await
        .map(Response::new)
    }
}

fn read_model_status(err: crate::read_model::ReadModelError) -> Status {
    tracing::warn!(error = %err, "read model unavailable");
    Status::unavailable("the read model is unavailable; retry later")
}
