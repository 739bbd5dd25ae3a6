//! Where the projection reads the events it was not sent: a course's missing versions (gap
//! filling) and everything in global order (rebuilds). In a service that is command-svc's
//! `EventStoreService`; the projection's own tests feed it from memory.

use async_trait::async_trait;
use course_proto::v1::event_store_service_client::EventStoreServiceClient;
use course_proto::v1::{ReadAllRequest, ReadStreamRequest};
use futures::StreamExt;
use uuid::Uuid;

use crate::EventStoreClient;
use crate::dead_letter::DeadLetter;
use crate::decode::from_envelope;
use crate::fold::StoredEvent;
use crate::projector::ProjectError;

/// The event store, as the projection reads it.
#[async_trait]
pub trait EventSource: Send + Sync + 'static {
    /// Up to `max_count` events of `course` from version `from_version` on, in version order.
    async fn read_stream(
        &self,
        course: Uuid,
        from_version: u64,
        max_count: u32,
    ) -> Result<Vec<StoredEvent>, ProjectError>;

    /// Up to `max_count` events after global position `after`, in global order.
    async fn read_all(&self, after: u64, max_count: u32) -> Result<Page, ProjectError>;
}

/// What one `ReadAll` call returned.
#[derive(Debug, Default)]
pub struct Page {
    /// The events that convert, in global order.
    pub events: Vec<StoredEvent>,
    /// Dead letters of the envelopes that do not convert.
    pub undecodable: Vec<DeadLetter>,
    /// Envelopes received, converted or not (fewer than asked for: the store ends here).
    pub received: usize,
}

#[async_trait]
impl EventSource for EventStoreClient {
    async fn read_stream(
        &self,
        course: Uuid,
        from_version: u64,
        max_count: u32,
    ) -> Result<Vec<StoredEvent>, ProjectError> {
        let request = ReadStreamRequest { course_id: course.to_string(), from_version, max_count };
        let mut stream =
            EventStoreServiceClient::read_stream(&mut self.clone(), request).await?.into_inner();
        let mut out = Vec::new();
        while let Some(item) = stream.next().await {
            let Some(envelope) = item?.event else { continue };
            out.push(from_envelope(&envelope)?);
        }
        Ok(out)
    }

    async fn read_all(&self, after: u64, max_count: u32) -> Result<Page, ProjectError> {
        let request = ReadAllRequest { from_position: after, max_count, follow: false };
        let mut stream =
            EventStoreServiceClient::read_all(&mut self.clone(), request).await?.into_inner();
        let mut page = Page { events: Vec::with_capacity(max_count as usize), ..Page::default() };
        while let Some(item) = stream.next().await {
            let Some(envelope) = item?.event else { continue };
            page.received += 1;
            match from_envelope(&envelope) {
                Ok(event) => page.events.push(event),
                Err(err) => match DeadLetter::of_envelope(&envelope, err.to_string()) {
                    Some(letter) => page.undecodable.push(letter),
                    None => return Err(err.into()),
                },
            }
        }
        Ok(page)
    }
}
