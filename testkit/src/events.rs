//! Reading the event store the way the tests check it: a course's stream, the global log,
//! and "everything up to this event" by following ReadAll (no polling).

use std::time::Duration;

use course_proto::v1::event_store_service_client::EventStoreServiceClient;
use course_proto::v1::{self, EventEnvelope};
use futures::StreamExt;
use platform::auth::Credential;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// An event-store client that sends a credential.
pub type EventStoreClient = EventStoreServiceClient<InterceptedService<Channel, Credential>>;

/// Anything that serves the event store.
pub trait EventStore {
    /// A client with a service's credential.
    fn event_store(&self) -> EventStoreClient;
}

impl<T: EventStore + ?Sized> EventStore for &T {
    fn event_store(&self) -> EventStoreClient {
        (**self).event_store()
    }
}

/// Drains a ReadStream / ReadAll answer into its envelopes.
pub async fn collect<T: HasEnvelope>(mut stream: tonic::Streaming<T>) -> Vec<EventEnvelope> {
    let mut out = Vec::new();
    while let Some(item) = stream.next().await {
        out.push(item.expect("event").into_envelope().expect("envelope"));
    }
    out
}

/// The items of ReadStream and ReadAll.
pub trait HasEnvelope {
    /// The envelope the item carries.
    fn into_envelope(self) -> Option<EventEnvelope>;
}

impl HasEnvelope for v1::ReadStreamResponse {
    fn into_envelope(self) -> Option<EventEnvelope> {
        self.event
    }
}

impl HasEnvelope for v1::ReadAllResponse {
    fn into_envelope(self) -> Option<EventEnvelope> {
        self.event
    }
}

/// Every event of one course, through ReadStream.
pub async fn stream(svc: &impl EventStore, course_id: &str) -> Vec<EventEnvelope> {
    let request =
        v1::ReadStreamRequest { course_id: course_id.to_owned(), from_version: 0, max_count: 0 };
    collect(svc.event_store().read_stream(request).await.expect("read stream").into_inner()).await
}

/// Every sequenced event from `from_position` on, in global order, through ReadAll.
pub async fn all(svc: &impl EventStore, from_position: u64) -> Vec<EventEnvelope> {
    let request = v1::ReadAllRequest { from_position, max_count: 0, follow: false };
    collect(svc.event_store().read_all(request).await.expect("read all").into_inner()).await
}

/// Every event up to and including (course_id, version), once it is sequenced (followed
/// through ReadAll); 30 s at most.
pub async fn events_until(
    svc: &impl EventStore,
    course_id: &str,
    version: u64,
) -> Vec<EventEnvelope> {
    let read = async {
        let request = v1::ReadAllRequest { from_position: 0, max_count: 0, follow: true };
        let mut stream = svc.event_store().read_all(request).await.expect("read all").into_inner();
        let mut out = Vec::new();
        while let Some(item) = stream.next().await {
            let envelope = item.expect("event").event.expect("envelope");
            let last = envelope.course_id == course_id && envelope.version == version;
            out.push(envelope);
            if last {
                return out;
            }
        }
        panic!("ReadAll ended before {course_id} v{version}");
    };
    tokio::time::timeout(Duration::from_secs(30), read).await.expect("event sequenced in time")
}

/// The global position of (course_id, version): a `min_position` that covers it and
/// everything committed before it.
pub async fn position_of(svc: &impl EventStore, course_id: &str, version: u64) -> u64 {
    events_until(svc, course_id, version).await.last().map(|e| e.global_position).unwrap_or(0)
}
