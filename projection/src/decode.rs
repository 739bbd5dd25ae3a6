//! Protobuf envelopes to [`StoredEvent`]s.

use chrono::DateTime;
use course_domain::Event;
use course_proto::v1::EventEnvelope;
use uuid::Uuid;

use crate::fold::StoredEvent;

/// Why an envelope is unusable (a poison message).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not a protobuf EventEnvelope.
    #[error("body is not a course.v1.EventEnvelope: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// A field is missing or malformed.
    #[error("invalid envelope: {0}")]
    Invalid(String),
}

/// Decodes a message body.
pub fn decode_body(body: &[u8]) -> Result<StoredEvent, DecodeError> {
    let envelope = <EventEnvelope as prost::Message>::decode(body)?;
    from_envelope(&envelope)
}

/// Converts an envelope (from the broker or the event store).
pub fn from_envelope(envelope: &EventEnvelope) -> Result<StoredEvent, DecodeError> {
    let invalid =
        |what: &str| DecodeError::Invalid(format!("{what} (event {:?})", envelope.event_id));
    let event = Event::try_from(envelope).map_err(|e| invalid(&e.to_string()))?;
    if event.event_type() != envelope.event_type {
        return Err(invalid("event_type does not match the payload"));
    }
    let occurred_at = envelope
        .occurred_at
        .as_ref()
        .and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
        .ok_or_else(|| invalid("occurred_at missing"))?;
    if envelope.version == 0 || envelope.global_position == 0 {
        return Err(invalid("version and global_position must be positive"));
    }
    Ok(StoredEvent {
        event_id: Uuid::parse_str(&envelope.event_id).map_err(|_| invalid("event_id"))?,
        course_id: Uuid::parse_str(&envelope.course_id).map_err(|_| invalid("course_id"))?,
        version: envelope.version,
        global_position: envelope.global_position,
        occurred_at,
        event,
    })
}
