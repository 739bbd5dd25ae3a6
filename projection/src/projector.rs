//! Applies events exactly once, a batch at a time: the events of a batch are grouped by course
//! and folded in memory from the course's stored state, and each course's new state is written
//! with one version-guarded operation (all courses of the batch in one round trip). A version
//! guard skips what is already applied, a gap is filled from the event store before the events
//! that revealed it, and concurrent writers (replicas, the rebuild) resolve through the store's
//! compare-and-set: a course whose write loses is read again and folded again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::decode::DecodeError;
use crate::fold::{CourseSummary, FoldError, StoredEvent, apply};
use crate::progress::{Applied, Progress};
use crate::read_model::{CourseWrite, ReadModel, ReadModelError, Saved};
use crate::source::EventSource;
use chrono::Utc;

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
    /// The event cannot be applied for a reason given earlier (its course failed in the same
    /// batch).
    #[error("not applied: {0}")]
    Unapplicable(String),
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

/// What a batch did. Events that could not be applied (a course whose events do not fit even
/// after filling gaps) are listed by index; everything else is applied or a duplicate.
#[derive(Debug, Default)]
pub struct BatchReport {
    /// Events applied now (in some generation).
    pub applied: usize,
    /// Events every generation already had.
    pub duplicates: usize,
    /// Indexes (into the batch) of events that failed, with why; the other events of the batch
    /// are unaffected.
    pub failed: Vec<(usize, ProjectError)>,
}

/// An event a course write applies: its index in the batch (none for a gap fill) and its
/// global position.
type Written = (Option<usize>, u64);

/// The course states a replay has written, so that it need not read them back.
#[derive(Default)]
pub struct ReplayCache {
    states: HashMap<uuid::Uuid, CourseSummary>,
}

impl ReplayCache {
    /// Courses remembered at most (then it starts afresh; a forgotten course is read again).
    const LIMIT: usize = 500_000;

    fn remember(&mut self, summary: &CourseSummary) {
        if self.states.len() >= Self::LIMIT && !self.states.contains_key(&summary.course_id) {
            self.states.clear();
        }
        self.states.insert(summary.course_id, summary.clone());
    }
}

/// The events of one course within a batch.
struct CourseEvents<'a> {
    course_id: uuid::Uuid,
    /// (index in the batch, event), by version, one per version.
    events: Vec<(usize, &'a StoredEvent)>,
    /// (index, index of the same version above): copies within the batch, which share the
    /// fate of their original.
    repeats: Vec<(usize, usize)>,
}

/// The outcome of one generation's pass over a batch.
#[derive(Default)]
struct Pass {
    applied: Vec<usize>,
    failed: Vec<(usize, ProjectError)>,
}

/// Applies events to a read model.
#[derive(Clone)]
pub struct Projector<M: ReadModel> {
    model: M,
    events: Arc<dyn EventSource>,
    progress: Progress,
}

impl<M: ReadModel> Projector<M> {
    /// `events` is where missing events are read (command-svc's EventStoreService).
    pub fn new(model: M, events: impl EventSource, progress: Progress) -> Self {
        Self { model, events: Arc::new(events), progress }
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
    pub async fn handle(&self, event: &StoredEvent) -> Result<Outcome, ProjectError> {
        let mut report = self.handle_batch(std::slice::from_ref(event)).await?;
        if let Some((_, err)) = report.failed.pop() {
            return Err(err);
        }
        Ok(if report.applied > 0 { Outcome::Applied } else { Outcome::Duplicate })
    }

    /// Applies a batch of live events (any order, duplicates allowed) to every generation
    /// being written. An error means nothing can be said about the batch (storage or event
    /// store down, too much contention); retrying the whole batch is safe.
    #[tracing::instrument(name = "read_model.write", skip_all, fields(events = events.len()), err(Display))]
    pub async fn handle_batch(&self, events: &[StoredEvent]) -> Result<BatchReport, ProjectError> {
        let generations = self.model.generations().await?;
        let mut applied = vec![false; events.len()];
        let mut failed: HashMap<usize, ProjectError> = HashMap::new();
        for generation in generations.written() {
            let pass = self.apply_batch(generation, events, None).await?;
            for index in pass.applied {
                applied[index] = true;
            }
            for (index, err) in pass.failed {
                failed.entry(index).or_insert(err);
            }
        }
        let mut report = BatchReport::default();
        for (index, applied) in applied.iter().enumerate() {
            if failed.contains_key(&index) {
                continue;
            }
            if *applied {
                report.applied += 1;
            } else {
                report.duplicates += 1;
            }
        }
        for _ in 0..report.duplicates {
            self.progress.duplicate();
        }
        report.failed = failed.into_iter().collect();
        report.failed.sort_by_key(|(index, _)| *index);
        Ok(report)
    }

    /// Applies `event` to `generation`, filling any gap before it first.
    pub async fn apply_to(
        &self,
        generation: u32,
        event: &StoredEvent,
    ) -> Result<Outcome, ProjectError> {
        let mut pass = self.apply_batch(generation, std::slice::from_ref(event), None).await?;
        if let Some((_, err)) = pass.failed.pop() {
            return Err(err);
        }
        Ok(if pass.applied.is_empty() { Outcome::Duplicate } else { Outcome::Applied })
    }

    /// Replays events in global order into `generation` (a rebuild): the same batch path,
    /// with the states the replay wrote remembered in `cache` instead of read back. Returns
    /// the events that could not be applied (by index, with why); the rest are applied.
    pub async fn replay_batch(
        &self,
        generation: u32,
        events: &[StoredEvent],
        cache: &mut ReplayCache,
    ) -> Result<Vec<(usize, ProjectError)>, ProjectError> {
        let mut pass = self.apply_batch(generation, events, Some(cache)).await?;
        pass.failed.sort_by_key(|(index, _)| *index);
        Ok(pass.failed)
    }

    /// One generation's pass over a batch: read the batch's courses in one round trip, fold
    /// each course's new events in memory (filling gaps from the event store), write every
    /// course with one guarded operation in one round trip, record the applied positions and
    /// announce the new watermark once. Courses whose write lost a race go round again.
    async fn apply_batch(
        &self,
        generation: u32,
        batch: &[StoredEvent],
        mut cache: Option<&mut ReplayCache>,
    ) -> Result<Pass, ProjectError> {
        let mut pending = group_by_course(batch);
        let repeats: Vec<(usize, usize)> =
            pending.iter().flat_map(|c| c.repeats.iter().copied()).collect();
        let mut pass = Pass::default();
        let mut positions: Vec<u64> = Vec::with_capacity(batch.len());
        let mut touched: HashMap<uuid::Uuid, u64> = HashMap::new();
        for attempt in 0..MAX_CONFLICTS {
            if pending.is_empty() {
                break;
            }
            let ids: Vec<uuid::Uuid> = pending.iter().map(|c| c.course_id).collect();
            let currents = match cache.as_deref_mut() {
                // A replay's first look: what it wrote itself, or nothing. A guess that is
                // wrong (a live consumer wrote the course meanwhile) loses the version guard
                // and the course is read for real on the next round.
                Some(cache) if attempt == 0 => {
                    ids.iter().map(|id| cache.states.get(id).cloned()).collect()
                }
                _ => self.model.summaries_of(generation, &ids).await?,
            };
            let mut writes = Vec::with_capacity(pending.len());
            // Per write: the course's index in `pending`, and the (batch index, position) of
            // each event it applies (gap fills have no batch index).
            let mut written: Vec<(usize, Vec<Written>)> = Vec::new();
            for (slot, (course, current)) in pending.iter().zip(currents).enumerate() {
                let have = current.as_ref().map_or(0, |c| c.version);
                let mut fresh = Vec::new();
                for (index, event) in &course.events {
                    if event.version <= have {
                        positions.push(event.global_position);
                        touched.entry(course.course_id).or_insert(have);
                    } else {
                        fresh.push((Some(*index), *event));
                    }
                }
                if fresh.is_empty() {
                    continue;
                }
                let contiguous =
                    fresh.iter().enumerate().all(|(i, (_, e))| e.version == have + 1 + i as u64);
                let filled;
                let chain: Vec<(Option<usize>, &StoredEvent)> = if contiguous {
                    fresh
                } else {
                    let last = fresh.last().map_or(have, |(_, e)| e.version);
                    filled = match self.fill_gap(course.course_id, have, last).await {
                        Ok(filled) => filled,
                        Err(err) if err.is_transient() => return Err(err),
                        Err(err) => {
                            fail_all(&mut pass, &fresh, &err);
                            continue;
                        }
                    };
                    let by_version: HashMap<u64, usize> = fresh
                        .iter()
                        .filter_map(|(index, e)| index.map(|i| (e.version, i)))
                        .collect();
                    let chain: Vec<_> =
                        filled.iter().map(|e| (by_version.get(&e.version).copied(), e)).collect();
                    // Events of the batch the store did not return (beyond its head) stay
                    // failed below, as a gap.
                    for (index, e) in &fresh {
                        if !chain.iter().any(|(_, c)| c.version == e.version)
                            && let Some(index) = index
                        {
                            pass.failed.push((
                                *index,
                                ProjectError::Fold(FoldError::NotNext {
                                    course_id: course.course_id,
                                    have,
                                    got: e.version,
                                }),
                            ));
                        }
                    }
                    chain
                };
                let mut state: Option<CourseSummary> = current;
                let mut steps = Vec::with_capacity(chain.len());
                let mut events = Vec::with_capacity(chain.len());
                for (at, (index, event)) in chain.iter().enumerate() {
                    match apply(state.as_ref(), event) {
                        Ok((after, change)) => {
                            state = Some(after.clone());
                            steps.push((after, change));
                            events.push((*index, event.global_position));
                        }
                        Err(err) => {
                            // WARN: retried; what is finally given up on is logged at ERROR when it is
                            // dead-lettered.
                            tracing::warn!(error = %err, course_id = %course.course_id, "event does not fit the stored course");
                            for (index, _) in &chain[at..] {
                                if let Some(index) = index {
                                    pass.failed.push((*index, ProjectError::Fold(err.clone())));
                                }
                            }
                            break;
                        }
                    }
                }
                if !steps.is_empty() {
                    writes.push(CourseWrite { before_version: have, steps });
                    written.push((slot, events));
                }
            }
            let saved = if writes.is_empty() {
                Vec::new()
            } else {
                self.model.save_batch(generation, &writes).await?
            };
            let mut retry = Vec::new();
            for (((slot, events), write), saved) in written.into_iter().zip(&writes).zip(saved) {
                match saved {
                    Saved::Applied => {
                        for (index, position) in events {
                            positions.push(position);
                            if let Some(index) = index {
                                pass.applied.push(index);
                            }
                        }
                        if let Some(after) = write.after() {
                            touched.insert(after.course_id, after.version);
                            if let Some(cache) = cache.as_deref_mut() {
                                cache.remember(after);
                            }
                        }
                    }
                    // Another writer moved the course: read it again and fold again.
                    Saved::Conflict => retry.push(slot),
                }
            }
            let mut next = Vec::with_capacity(retry.len());
            for (slot, course) in pending.into_iter().enumerate() {
                if retry.contains(&slot) {
                    // Its duplicates were counted against a state that is now stale; they are
                    // still duplicates (versions only grow), so keep them.
                    next.push(course);
                }
            }
            pending = next;
        }
        if let Some(course) = pending.first() {
            return Err(ProjectError::Contention(course.course_id));
        }
        for (repeat, original) in repeats {
            if let Some(reason) =
                pass.failed.iter().find(|(i, _)| *i == original).map(|(_, e)| e.to_string())
            {
                pass.failed.push((repeat, ProjectError::Unapplicable(reason)));
            }
        }
        if cache.is_none() {
            // Live events only (a replay's are as old as the log).
            let now = Utc::now();
            for event in pass.applied.iter().filter_map(|&index| batch.get(index)) {
                let lag = (now - event.occurred_at).to_std().unwrap_or_default();
                metrics::histogram!("projection_event_lag_seconds").record(lag.as_secs_f64());
            }
        }
        if !positions.is_empty() {
            positions.sort_unstable();
            positions.dedup();
            let watermark = self.model.mark_applied_batch(generation, &positions).await?;
            let newest = batch.iter().max_by_key(|e| e.global_position);
            let lag = newest
                .and_then(|e| (Utc::now() - e.occurred_at).to_std().ok())
                .unwrap_or(Duration::ZERO);
            let courses: Arc<[(uuid::Uuid, u64)]> = touched.into_iter().collect();
            self.progress
                .announce(
                    Applied { generation, watermark, courses },
                    lag,
                    pass.applied.len() as u64,
                )
                .await;
        }
        Ok(pass)
    }

    /// Reads versions `have + 1 ..= last` of `course` from the event store.
    async fn fill_gap(
        &self,
        course: uuid::Uuid,
        have: u64,
        last: u64,
    ) -> Result<Vec<StoredEvent>, ProjectError> {
        let wanted = last - have;
        tracing::info!(course_id = %course, have, last, "filling a version gap from the event store");
        let out = self
            .events
            .read_stream(course, have + 1, u32::try_from(wanted).unwrap_or(u32::MAX))
            .await?;
        self.progress.gap_filled(out.len() as u64);
        Ok(out)
    }
}

/// Groups a batch by course, in order of first appearance; each course's events by version,
/// one per version (a duplicate within the batch is reported as such by the caller's count).
fn group_by_course(batch: &[StoredEvent]) -> Vec<CourseEvents<'_>> {
    let mut slots: HashMap<uuid::Uuid, usize> = HashMap::new();
    let mut out: Vec<CourseEvents<'_>> = Vec::new();
    for (index, event) in batch.iter().enumerate() {
        let slot = *slots.entry(event.course_id).or_insert_with(|| {
            out.push(CourseEvents {
                course_id: event.course_id,
                events: Vec::new(),
                repeats: Vec::new(),
            });
            out.len() - 1
        });
        out[slot].events.push((index, event));
    }
    for course in &mut out {
        course.events.sort_by_key(|(index, e)| (e.version, *index));
        let mut kept: Vec<(usize, &StoredEvent)> = Vec::with_capacity(course.events.len());
        for (index, event) in course.events.drain(..) {
            match kept.last() {
                Some((original, last)) if last.version == event.version => {
                    course.repeats.push((index, *original));
                }
                _ => kept.push((index, event)),
            }
        }
        course.events = kept;
    }
    out
}

fn fail_all(pass: &mut Pass, events: &[(Option<usize>, &StoredEvent)], err: &ProjectError) {
    for (index, _) in events {
        if let Some(index) = index {
            pass.failed.push((*index, ProjectError::Unapplicable(err.to_string())));
        }
    }
}
