//! Applies events exactly once: a version guard skips what is already applied, a gap is filled
//! from the event store before the event that revealed it, and concurrent writers (replicas,
//! the rebuild) resolve through the store's compare-and-set.

use std::time::Duration;

use chrono::Utc;
use course_proto::v1::ReadStreamRequest;
use futures::StreamExt;

use crate::decode::{DecodeError, from_envelope};
use crate::fold::{FoldError, StoredEvent, apply};
use crate::progress::{Applied, Progress};
use crate::read_model::{ReadModel, ReadModelError, Saved};

/// How often a save may lose a compare-and-set race before giving up on the message (it is
/// then redelivered).
const MAX_CONFLICTS: usize = 20;

/// Why an event could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    /// Storage down: retry later.
    #[error(transparent)]
    ReadModel(#[from] ReadModelError),
    /// The event store could not fill a gap: retry later.
    #[error("event store: {0}")]
    EventStore(#[from] tonic::Status),
    /// The event store answered with something unusable.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The event does not fit the stored course even after filling gaps.
    #[error(transparent)]
    Fold(#[from] FoldError),
    /// Lost too many compare-and-set races.
    #[error("too much contention on course {0}")]
    Contention(uuid::Uuid),
}

impl ProjectError {
    /// True when waiting and retrying the same message can succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            ProjectError::ReadModel(ReadModelError::Unavailable(_)) => true,
            ProjectError::EventStore(status) => matches!(
                status.code(),
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown
            ),
            ProjectError::Contention(_) => true,
            _ => false,
        }
    }
}

/// What happened to an event in one generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Applied now.
    Applied,
    /// Already applied; skipped.
    Duplicate,
}

/// Applies events to a read model.
#[derive(Clone)]
pub struct Projector<M: ReadModel> {
    model: M,
    events: crate::EventStoreClient,
    progress: Progress,
}

impl<M: ReadModel> Projector<M> {
    /// `events` reads missing events from command-svc's EventStoreService.
    pub fn new(model: M, events: crate::EventStoreClient, progress: Progress) -> Self {
        Self { model, events, progress }
    }

    /// The storage.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// The progress state.
    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// Applies a live event to every generation being written (active, and building during a
    /// rebuild).
    #[tracing::instrument(skip_all, fields(course_id = %event.course_id, version = event.version, position = event.global_position), err(Display))]
    pub async fn handle(&self, event: &StoredEvent) -> Result<Outcome, ProjectError> {
        let generations = self.model.generations().await?;
        let mut outcome = Outcome::Duplicate;
        for generation in generations.written() {
            if self.apply_to(generation, event).await? == Outcome::Applied {
                outcome = Outcome::Applied;
            }
        }
        if outcome == Outcome::Duplicate {
            self.progress.duplicate();
        }
        Ok(outcome)
    }

    /// Applies `event` to `generation`, filling any gap before it first.
    #[tracing::instrument(name = "read_model.write", skip(self, event), fields(course_id = %event.course_id, version = event.version), err(Display))]
    pub async fn apply_to(
        &self,
        generation: u32,
        event: &StoredEvent,
    ) -> Result<Outcome, ProjectError> {
        for _ in 0..MAX_CONFLICTS {
            let current = self.model.summary(generation, event.course_id).await?;
            let have = current.as_ref().map_or(0, |c| c.version);
            if event.version <= have {
                self.mark(generation, event).await?;
                return Ok(Outcome::Duplicate);
            }
            if event.version > have + 1 {
                self.fill_gap(generation, event, have).await?;
                continue;
            }
            let (after, change) = apply(current.as_ref(), event)?;
            match self.model.save(generation, have, &after, &change).await? {
                Saved::Applied => {
                    self.mark(generation, event).await?;
                    return Ok(Outcome::Applied);
                }
                Saved::Conflict => continue, // another writer moved the course: look again
            }
        }
        Err(ProjectError::Contention(event.course_id))
    }

    async fn mark(&self, generation: u32, event: &StoredEvent) -> Result<(), ProjectError> {
        let watermark = self.model.mark_applied(generation, event.global_position).await?;
        let lag = (Utc::now() - event.occurred_at).to_std().unwrap_or(Duration::ZERO);
        self.progress
            .announce(
                Applied {
                    generation,
                    course_id: event.course_id,
                    version: event.version,
                    watermark,
                },
                lag,
            )
            .await;
        Ok(())
    }

    /// Reads versions `have + 1 .. event.version` from the event store and applies them.
    async fn fill_gap(
        &self,
        generation: u32,
        event: &StoredEvent,
        have: u64,
    ) -> Result<(), ProjectError> {
        let missing = event.version - have - 1;
        tracing::info!(course_id = %event.course_id, have, next = event.version, missing, "filling a version gap from the event store");
        let mut client = self.events.clone();
        let mut stream = client
            .read_stream(ReadStreamRequest {
                course_id: event.course_id.to_string(),
                from_version: have + 1,
                max_count: u32::try_from(missing).unwrap_or(u32::MAX),
            })
            .await?
            .into_inner();
        let mut filled = 0;
        while let Some(item) = stream.next().await {
            let Some(envelope) = item?.event else { continue };
            let earlier = from_envelope(&envelope)?;
            Box::pin(self.apply_to(generation, &earlier)).await?;
            filled += 1;
        }
        self.progress.gap_filled(filled);
        Ok(())
    }
}
