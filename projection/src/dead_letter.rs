//! Events that cannot be applied: recorded in the read model instead of blocking it.
//!
//! An event is *dead-lettered* when the consumer gives up on it (a body that does not decode,
//! or an event that still fails on its last permitted delivery) or when a rebuild cannot apply
//! it. Its global position is then recorded here (with its event id, course, version and
//! reason) and marked applied in every generation being written, so the contiguous watermark
//! moves past it: `min_position` reads keep answering and a rebuild finishes. While any record
//! exists the read model reports itself *degraded* (GetProjectionStatus, the
//! [`DEGRADED_HEALTH_NAME`] health name, the `projection_dead_letters` gauge).
//!
//! [`replay`] (the `ReplayDeadLetters` RPC) reads each recorded event again from the event
//! store by its course stream and applies it through the normal projector path; a record is
//! removed once its event applies, or was applied meanwhile (a later gap fill, a rebuild).

use std::time::Duration;

use chrono::{DateTime, Utc};
use course_proto::v1::{EventEnvelope, ReadStreamRequest};
use futures::StreamExt;
use uuid::Uuid;

use crate::decode::from_envelope;
use crate::fold::StoredEvent;
use crate::progress::Applied;
use crate::projector::{ProjectError, Projector};
use crate::read_model::{ReadModel, ReadModelError};

/// The `grpc.health.v1` name that reports the read model's completeness: SERVING without dead
/// letters, NOT_SERVING while some are recorded. The service's own names stay SERVING: a
/// readiness probe must not take every replica out of service for one bad event.
pub const DEGRADED_HEALTH_NAME: &str = "course.v1.ProjectionHealth";

/// Dead letters read per page while replaying.
const REPLAY_PAGE: usize = 100;

/// An event the projection could not apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Its global position (the key; marked applied).
    pub position: u64,
    /// Its event id as received (empty when unknown).
    pub event_id: String,
    /// Its course id as received (empty when unknown).
    pub course_id: String,
    /// Its version in the course stream (0 when unknown).
    pub version: u64,
    /// Why it could not be applied.
    pub reason: String,
    /// When it was recorded (or last tried again).
    pub recorded_at: DateTime<Utc>,
}

impl DeadLetter {
    /// The dead letter of a decoded event that failed for `reason`.
    pub fn of_event(event: &StoredEvent, reason: impl Into<String>) -> Self {
        Self {
            position: event.global_position,
            event_id: event.event_id.to_string(),
            course_id: event.course_id.to_string(),
            version: event.version,
            reason: reason.into(),
            recorded_at: Utc::now(),
        }
    }

    /// The dead letter of an envelope that does not convert (its fields as they came); `None`
    /// without a global position, which leaves nothing to record.
    pub fn of_envelope(envelope: &EventEnvelope, reason: impl Into<String>) -> Option<Self> {
        (envelope.global_position > 0).then(|| Self {
            position: envelope.global_position,
            event_id: envelope.event_id.clone(),
            course_id: envelope.course_id.clone(),
            version: envelope.version,
            reason: reason.into(),
            recorded_at: Utc::now(),
        })
    }

    /// The dead letter of a message body that does not decode: the envelope's fields when it
    /// is a protobuf envelope, else the message's `global_position`, `course_id` and `version`
    /// headers. `None` when no global position is known: such a message blocks no watermark
    /// and stays only in the broker's dead-letter queue.
    pub fn of_message(
        body: &[u8],
        header: impl Fn(&str) -> Option<String>,
        reason: impl Into<String>,
    ) -> Option<Self> {
        let reason = reason.into();
        if let Ok(envelope) = <EventEnvelope as prost::Message>::decode(body)
            && envelope.global_position > 0
        {
            return Self::of_envelope(&envelope, reason);
        }
        let position = header("global_position")?.parse().ok().filter(|p| *p > 0)?;
        Some(Self {
            position,
            event_id: String::new(),
            course_id: header("course_id").unwrap_or_default(),
            version: header("version").and_then(|v| v.parse().ok()).unwrap_or_default(),
            reason,
            recorded_at: Utc::now(),
        })
    }
}

/// Records `letter` and marks its position applied in every generation being written. Waiters
/// are told, so `min_position` reads move on.
pub async fn record<M: ReadModel>(
    projector: &Projector<M>,
    letter: &DeadLetter,
) -> Result<(), ReadModelError> {
    let model = projector.model();
    model.record_dead_letter(letter).await?;
    let generations = model.generations().await?;
    for generation in generations.written() {
        mark(projector, generation, letter.position).await?;
    }
    tracing::warn!(
        position = letter.position,
        event_id = %letter.event_id,
        course_id = %letter.course_id,
        version = letter.version,
        reason = %letter.reason,
        "event dead-lettered: recorded, the read model is degraded until it is replayed"
    );
    metrics::counter!("projection_dead_letters_recorded_total").increment(1);
    Ok(())
}

/// Records `letter` for `generation` only (a rebuild's replay).
pub async fn record_in<M: ReadModel>(
    projector: &Projector<M>,
    generation: u32,
    letter: &DeadLetter,
) -> Result<(), ReadModelError> {
    projector.model().record_dead_letter(letter).await?;
    mark(projector, generation, letter.position).await?;
    tracing::warn!(
        generation,
        position = letter.position,
        course_id = %letter.course_id,
        version = letter.version,
        reason = %letter.reason,
        "rebuild: event cannot be applied; recorded as a dead letter"
    );
    metrics::counter!("projection_dead_letters_recorded_total").increment(1);
    Ok(())
}

async fn mark<M: ReadModel>(
    projector: &Projector<M>,
    generation: u32,
    position: u64,
) -> Result<(), ReadModelError> {
    let watermark = projector.model().mark_applied(generation, position).await?;
    let lag = Duration::from_secs_f64(projector.progress().snapshot().lag_seconds.max(0.0));
    projector
        .progress()
        .announce(Applied { generation, watermark, courses: Vec::new().into() }, lag, 0)
        .await;
    Ok(())
}

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Records removed: their event applies now (or was applied meanwhile).
    pub replayed: u32,
    /// Records kept: their event still fails (the reason is updated).
    pub still_failing: u32,
}

/// Tries every recorded dead letter again, by position (see the module documentation). An
/// error means the event store or the storage is unavailable; what was replayed until then
/// stays replayed.
pub async fn replay<M: ReadModel>(
    projector: &Projector<M>,
    events: crate::EventStoreClient,
) -> Result<ReplayReport, ProjectError> {
    let model = projector.model();
    let mut report = ReplayReport::default();
    let mut after = 0;
    loop {
        let page = model.dead_letters(after, REPLAY_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.position;
        for letter in page {
            match retry_one(projector, events.clone(), &letter).await? {
                None => {
                    model.remove_dead_letter(letter.position).await?;
                    report.replayed += 1;
                    tracing::info!(position = letter.position, "dead letter replayed");
                }
                Some(reason) => {
                    let updated = DeadLetter { reason, recorded_at: Utc::now(), ..letter };
                    model.record_dead_letter(&updated).await?;
                    report.still_failing += 1;
                }
            }
        }
    }
    metrics::gauge!("projection_dead_letters").set(f64::from(report.still_failing));
    Ok(report)
}

/// Applies the recorded event again: `None` when it is applied now, or why it still fails.
async fn retry_one<M: ReadModel>(
    projector: &Projector<M>,
    mut events: crate::EventStoreClient,
    letter: &DeadLetter,
) -> Result<Option<String>, ProjectError> {
    let (Ok(course), true) = (Uuid::parse_str(&letter.course_id), letter.version > 0) else {
        return Ok(Some("no course stream and version to read the event from".to_owned()));
    };
    let request = ReadStreamRequest {
        course_id: course.to_string(),
        from_version: letter.version,
        max_count: 1,
    };
    let read = async {
        let mut stream = events.read_stream(request).await?.into_inner();
        let mut found = None;
        while let Some(item) = stream.next().await {
            if let Some(envelope) = item?.event {
                found = Some(envelope);
            }
        }
        Ok::<_, tonic::Status>(found)
    };
    let envelope = match read.await {
        Ok(Some(envelope)) => envelope,
        Ok(None) => return Ok(Some("the event store has no such event".to_owned())),
        Err(status) => {
            let err = ProjectError::EventStore(status);
            if err.is_transient() {
                return Err(err);
            }
            return Ok(Some(err.to_string()));
        }
    };
    let event = match from_envelope(&envelope) {
        Ok(event) => event,
        Err(err) => return Ok(Some(err.to_string())),
    };
    match projector.handle(&event).await {
        Ok(_) => Ok(None),
        Err(err) if err.is_transient() => Err(err),
        Err(err) => Ok(Some(err.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(position: u64) -> EventEnvelope {
        EventEnvelope {
            event_id: "e".into(),
            course_id: "c".into(),
            version: 3,
            global_position: position,
            ..Default::default()
        }
    }

    #[test]
    fn an_envelope_that_does_not_convert_is_recorded_with_its_own_fields() {
        let body = prost::Message::encode_to_vec(&envelope(42));
        let letter = DeadLetter::of_message(&body, |_| None, "bad payload").expect("recorded");
        assert_eq!((letter.position, letter.version), (42, 3));
        assert_eq!((letter.event_id.as_str(), letter.course_id.as_str()), ("e", "c"));
        assert_eq!(letter.reason, "bad payload");
    }

    #[test]
    fn a_body_that_does_not_decode_is_recorded_from_its_headers() {
        let header = |name: &str| match name {
            "global_position" => Some("7".to_owned()),
            "course_id" => Some("c".to_owned()),
            "version" => Some("2".to_owned()),
            _ => None,
        };
        let letter =
            DeadLetter::of_message(b"\xff\xfe not protobuf", header, "garbage").expect("recorded");
        assert_eq!((letter.position, letter.version, letter.course_id.as_str()), (7, 2, "c"));
        assert!(letter.event_id.is_empty());
    }

    #[test]
    fn without_a_global_position_nothing_is_recorded() {
        assert_eq!(DeadLetter::of_message(b"\xff\xfe", |_| None, "garbage"), None);
        let body = prost::Message::encode_to_vec(&envelope(0));
        assert_eq!(DeadLetter::of_message(&body, |_| None, "no position"), None);
        let bad = |_: &str| Some("not a number".to_owned());
        assert_eq!(DeadLetter::of_message(b"\xff", bad, "garbage"), None);
    }
}
