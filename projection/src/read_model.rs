//! What a read model's storage must offer the projection.

use std::collections::BTreeSet;

use async_trait::async_trait;
use uuid::Uuid;

use crate::audit::AuditView;
use crate::dead_letter::DeadLetter;
use crate::fold::{Change, CourseSummary};
use crate::lease::RebuildLease;

/// Which generations of the read model exist. Readers use `active`; while a rebuild runs,
/// live events are written to both `active` and `building`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Generations {
    /// Served to readers; 0 before the first build.
    pub active: u32,
    /// Being rebuilt, if any.
    pub building: Option<u32>,
}

impl Generations {
    /// Generations that live events must be applied to.
    pub fn written(&self) -> Vec<u32> {
        let mut out = Vec::with_capacity(2);
        if self.active != 0 {
            out.push(self.active);
        }
        if let Some(building) = self.building.filter(|b| *b != self.active) {
            out.push(building);
        }
        out
    }
}

/// Result of a version-guarded save.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    /// Stored.
    Applied,
    /// The stored version was not the expected one; nothing was written.
    Conflict,
}

/// The new state of one course after a run of consecutive events, folded in memory: written
/// with one version-guarded, atomic operation.
#[derive(Debug, Clone, PartialEq)]
pub struct CourseWrite {
    /// The course's stored version the steps start from (0: absent).
    pub before_version: u64,
    /// The summary after each event and what the event changed, in version order; never
    /// empty. The last summary is the course's new state.
    pub steps: Vec<(CourseSummary, Change)>,
}

impl CourseWrite {
    /// The summary after the last step.
    pub fn after(&self) -> Option<&CourseSummary> {
        self.steps.last().map(|(summary, _)| summary)
    }
}

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum ReadModelError {
    /// The database cannot be reached; retrying later will work.
    #[error("read model storage unavailable: {0}")]
    Unavailable(#[source] anyhow::Error),
    /// Anything else.
    #[error("read model storage error: {0}")]
    Unexpected(#[source] anyhow::Error),
}

/// Storage of one read model. Every write is atomic and guarded by the course's stored version,
/// which makes redelivery, reordering and several writers safe.
#[async_trait]
pub trait ReadModel: Clone + Send + Sync + 'static {
    /// The current generation state.
    async fn generations(&self) -> Result<Generations, ReadModelError>;
    /// Replaces the generation state if it still equals `expected`; false when it did not.
    async fn swap_generations(
        &self,
        expected: Generations,
        new: Generations,
    ) -> Result<bool, ReadModelError>;
    /// Deletes everything stored in `generation` (not its rebuild lease).
    async fn drop_generation(&self, generation: u32) -> Result<(), ReadModelError>;
    /// The course's summary in `generation`, if present.
    async fn summary(
        &self,
        generation: u32,
        course_id: Uuid,
    ) -> Result<Option<CourseSummary>, ReadModelError>;
    /// Writes `after` and what `change` implies, atomically, only if the course's stored version
    /// is still `before_version` (0: absent).
    async fn save(
        &self,
        generation: u32,
        before_version: u64,
        after: &CourseSummary,
        change: &Change,
    ) -> Result<Saved, ReadModelError>;
    /// Records that the event at global `position` is applied in `generation` and returns the
    /// contiguous watermark: every position up to it is applied.
    async fn mark_applied(&self, generation: u32, position: u64) -> Result<u64, ReadModelError>;
    /// The contiguous watermark of `generation`.
    async fn watermark(&self, generation: u32) -> Result<u64, ReadModelError>;

    // Dead letters (`crate::dead_letter`): shared by every generation, keyed by global position.

    /// Records `letter`, replacing any record at its position.
    async fn record_dead_letter(&self, letter: &DeadLetter) -> Result<(), ReadModelError>;
    /// At most `limit` dead letters with positions above `after`, by position.
    async fn dead_letters(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, ReadModelError>;
    /// How many dead letters are recorded.
    async fn dead_letter_count(&self) -> Result<u64, ReadModelError>;
    /// Forgets the dead letter at `position` (nothing when there is none).
    async fn remove_dead_letter(&self, position: u64) -> Result<(), ReadModelError>;

    // Rebuild leases (`crate::lease`): one per generation ever reserved, kept (a few bytes
    // each) so that a generation number is never reserved twice.

    /// Writes (or renews) the lease of the rebuild of `generation`.
    async fn put_rebuild_lease(
        &self,
        generation: u32,
        lease: &RebuildLease,
    ) -> Result<(), ReadModelError>;
    /// The lease of the rebuild of `generation`, if one was written.
    async fn rebuild_lease(&self, generation: u32) -> Result<Option<RebuildLease>, ReadModelError>;

    /// The summaries of `courses` in `generation`, in the same order (`None`: absent).
    /// Storages override this with one round trip.
    async fn summaries_of(
        &self,
        generation: u32,
        courses: &[Uuid],
    ) -> Result<Vec<Option<CourseSummary>>, ReadModelError> {
        let mut out = Vec::with_capacity(courses.len());
        for course in courses {
            out.push(self.summary(generation, *course).await?);
        }
        Ok(out)
    }

    /// Writes each course's steps, each course atomically and guarded by its
    /// `before_version`; one result per write, in order. Storages override this to write a
    /// course's steps in one operation and all courses in one round trip; this default saves
    /// step by step, which is still exact (each step is guarded, so a write that loses a race
    /// half-way is a conflict that the caller resolves by reading again).
    async fn save_batch(
        &self,
        generation: u32,
        writes: &[CourseWrite],
    ) -> Result<Vec<Saved>, ReadModelError> {
        let mut out = Vec::with_capacity(writes.len());
        for write in writes {
            let mut before = write.before_version;
            let mut saved = Saved::Applied;
            for (after, change) in &write.steps {
                if self.save(generation, before, after, change).await? == Saved::Conflict {
                    saved = Saved::Conflict;
                    break;
                }
                before = after.version;
            }
            out.push(saved);
        }
        Ok(out)
    }

    /// [`ReadModel::mark_applied`] for many positions (ascending); returns the watermark.
    async fn mark_applied_batch(
        &self,
        generation: u32,
        positions: &[u64],
    ) -> Result<u64, ReadModelError> {
        let mut watermark = None;
        for position in positions {
            watermark = Some(self.mark_applied(generation, *position).await?);
        }
        match watermark {
            Some(watermark) => Ok(watermark),
            None => self.watermark(generation).await,
        }
    }

    /// What `generation` holds of `course_id`, for the audit ([`crate::audit`]): the summary
    /// and whatever else this storage keeps. `users` are the course's participants by the
    /// event store; a storage with per-user indexes reports which of them (and of its own
    /// participants) list the course. This default knows only the summary.
    async fn audit_view(
        &self,
        generation: u32,
        course_id: Uuid,
        users: &BTreeSet<Uuid>,
    ) -> Result<Option<AuditView>, ReadModelError> {
        let _ = users;
        Ok(self.summary(generation, course_id).await?.map(AuditView::summary_only))
    }

    /// Every course `generation` lists, if the storage can list them cheaply (`None`: it
    /// cannot; the audit then compares only the courses the store has).
    async fn audit_course_ids(&self, generation: u32) -> Result<Option<Vec<Uuid>>, ReadModelError> {
        let _ = generation;
        Ok(None)
    }
}
