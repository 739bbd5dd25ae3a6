//! `course.v1.EventStoreService`: replay one stream, or all events in global order.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use course_domain::validation;
use course_proto::v1::{self, event_store_service_server::EventStoreService};
use futures::Stream;
use platform::grpc::invalid_field;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::envelope::envelope;
use crate::readiness::Readiness;
use crate::store::EventStore;

const PAGE: u64 = 500;
/// A follower re-reads at least this often even if no notification arrived.
const FOLLOW_POLL: Duration = Duration::from_secs(1);

type EventStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Bounds on `ReadAll {follow: true}` streams.
#[derive(Debug, Clone, Copy)]
pub struct FollowLimits {
    /// Most concurrent follow streams; more are RESOURCE_EXHAUSTED.
    pub max_streams: usize,
    /// A follow stream with nothing to send for this long ends with UNAVAILABLE.
    pub idle_timeout: Duration,
}

/// Read side of the event store.
#[derive(Clone)]
pub struct EventStoreApi {
    store: EventStore,
    head: watch::Receiver<u64>,
    stop: CancellationToken,
    readiness: Readiness,
    followers: Arc<Semaphore>,
    idle_timeout: Duration,
}

impl EventStoreApi {
    /// `store` should be a pool of the readers' own.
    pub fn new(
        store: EventStore,
        head: watch::Receiver<u64>,
        stop: CancellationToken,
        readiness: Readiness,
        follow: FollowLimits,
    ) -> Self {
        let followers = Arc::new(Semaphore::new(follow.max_streams));
        Self { store, head, stop, readiness, followers, idle_timeout: follow.idle_timeout }
    }
}

/// The store keeps versions and positions as PostgreSQL `bigint`.
fn bounded(field: &str, value: u64) -> Result<u64, Status> {
    if value > i64::MAX as u64 {
        return Err(Status::out_of_range(format!("{field} must be at most {}", i64::MAX)));
    }
    Ok(value)
}

#[tonic::async_trait]
impl EventStoreService for EventStoreApi {
    type ReadStreamStream = EventStream<v1::ReadStreamResponse>;
    type ReadAllStream = EventStream<v1::ReadAllResponse>;

    #[tracing::instrument(skip_all, fields(course_id = %request.get_ref().course_id))]
    async fn read_stream(
        &self,
        request: Request<v1::ReadStreamRequest>,
    ) -> Result<Response<Self::ReadStreamStream>, Status> {
        let r = request.into_inner();
        let course_id =
            validation::uuid(&r.course_id).map_err(|e| invalid_field("course_id", e))?;
        let from_version = bounded("from_version", r.from_version)?;
        self.readiness.check()?;
        let max = if r.max_count == 0 { u64::MAX } else { u64::from(r.max_count) };
        let mut next = from_version.max(1);
        let first = self.store.read_stream(course_id, next, Some(PAGE.min(max))).await?;
        if first.is_empty() && next == 1 {
            return Err(Status::not_found("course not found"));
        }
        let (tx, rx) = mpsc::channel(64);
        let store = self.store.clone();
        tokio::spawn(async move {
            let mut batch = first;
            let mut sent = 0u64;
            loop {
                let full_page = batch.len() as u64 == PAGE.min(max - sent);
                for event in &batch {
                    next = event.version + 1;
                    sent += 1;
                    let item = v1::ReadStreamResponse { event: Some(envelope(event)) };
                    if tx.send(Ok(item)).await.is_err() {
                        return; // client went away
                    }
                }
                if !full_page || sent >= max {
                    return;
                }
                batch = match store.read_stream(course_id, next, Some(PAGE.min(max - sent))).await {
                    Ok(batch) => batch,
                    Err(err) => {
                        let _ = tx.send(Err(err.into())).await;
                        return;
                    }
                };
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    #[tracing::instrument(skip_all, fields(from = request.get_ref().from_position, follow = request.get_ref().follow))]
    async fn read_all(
        &self,
        request: Request<v1::ReadAllRequest>,
    ) -> Result<Response<Self::ReadAllStream>, Status> {
        let r = request.into_inner();
        let from_position = bounded("from_position", r.from_position)?;
        self.readiness.check()?;
        let permit =
            match r.follow {
                true => Some(self.followers.clone().try_acquire_owned().map_err(|_| {
                    Status::resource_exhausted("too many follow streams; retry later")
                })?),
                false => None,
            };
        let idle_timeout = self.idle_timeout;
        let max = if r.max_count == 0 { u64::MAX } else { u64::from(r.max_count) };
        let (tx, rx) = mpsc::channel(256);
        let store = self.store.clone();
        let mut head = self.head.clone();
        let stop = self.stop.clone();
        tokio::spawn(async move {
            // Held for the life of the stream.
            let _permit = permit;
            let mut idle_since = tokio::time::Instant::now();
            let mut position = from_position;
            let mut sent = 0u64;
            loop {
                let limit = PAGE.min(max - sent);
                let batch = match store.read_all(position, limit).await {
                    Ok(batch) => batch,
                    Err(err) => {
                        let _ = tx.send(Err(err.into())).await;
                        return;
                    }
                };
                let exhausted = (batch.len() as u64) < limit;
                if !batch.is_empty() {
                    idle_since = tokio::time::Instant::now();
                }
                for event in &batch {
                    position = event.global_position.unwrap_or(position);
                    sent += 1;
                    let item = v1::ReadAllResponse { event: Some(envelope(event)) };
                    if tx.send(Ok(item)).await.is_err() {
                        return;
                    }
                }
                if sent >= max || (exhausted && !r.follow) {
                    return;
                }
                if exhausted {
                    if idle_since.elapsed() >= idle_timeout {
                        let status = Status::unavailable(
                            "follow stream idle; resume from your last global_position",
                        );
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                    // Caught up: wait until the head moves past us, the poll interval passes,
                    // the client leaves, or the service stops.
                    let moved = async {
                        let _ = head.wait_for(|h| *h > position).await;
                    };
                    tokio::select! {
                        () = moved => {}
                        () = tokio::time::sleep(FOLLOW_POLL.min(idle_timeout)) => {}
                        () = tx.closed() => return,
                        () = stop.cancelled() => {
                            let status = Status::unavailable(
                                "server is shutting down; resume from your last global_position",
                            );
                            let _ = tx.send(Err(status)).await;
                            return;
                        }
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
