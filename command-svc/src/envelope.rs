//! Stored events in their published protobuf form.

use course_proto::{timestamp, v1};

use crate::store::RecordedEvent;

/// The `course.v1.EventEnvelope` of a stored event.
pub fn envelope(event: &RecordedEvent) -> v1::EventEnvelope {
    let metadata = &event.metadata;
    v1::EventEnvelope {
        event_id: event.event_id.to_string(),
        course_id: event.stream_id.to_string(),
        version: event.version,
        global_position: event.global_position.unwrap_or_default(),
        event_type: event.event.event_type().to_owned(),
        occurred_at: Some(timestamp(event.occurred_at)),
        metadata: Some(v1::EventMetadata {
            command_id: metadata.command_id.map(|id| id.to_string()).unwrap_or_default(),
            correlation_id: metadata.correlation_id.to_string(),
            causation_id: metadata.causation_id.to_string(),
            actor_id: metadata.actor_id.to_string(),
            traceparent: metadata.traceparent.clone().unwrap_or_default(),
        }),
        payload: Some((&event.event).into()),
    }
}
