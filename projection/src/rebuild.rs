//! Rebuilding a read model from the event store into a fresh generation.
//!
//! 1. Mark generation `n` as *building*: from now on live consumers write every event to the
//!    active generation and to `n`.
//! 2. Replay `ReadAll` from position 0 into `n` until it has caught up with the head.
//! 3. Switch: `n` becomes active (readers move over; the old data was served until now), still
//!    marked as building.
//! 4. Drop the old generation and clear the building mark — only then can another rebuild
//!    start.
//!
//! Nothing is lost at the join: an event sequenced before step 1 is in the replay (which starts
//! after it), and one sequenced after step 1 reaches consumers that already write `n`. Nothing is doubled:
//! every write is guarded by the course's version, so whichever of replay and live consumer
//! comes second skips it, and an event that arrives before its predecessors fills the gap from
//! the event store first.

use crate::dead_letter::{self, DeadLetter};
use crate::fold::StoredEvent;
use crate::lease::{self, Lessee};
use crate::projector::{ProjectError, Projector, ReplayCache};
use crate::read_model::{Generations, ReadModel, ReadModelError};
use crate::source::EventSource;

/// Events per `ReadAll` call.
const PAGE: u32 = 25_000;
/// `ReadAll` calls running at once (the event store reads the next pages while the read model
/// writes this one).
const PAGES_AHEAD: usize = 3;
/// Events folded and written together.
const CHUNK: usize = 8192;

/// Why a rebuild did not complete.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// Another rebuild is running.
    #[error("a rebuild of generation {0} is already running")]
    AlreadyRunning(u32),
    /// The generation state changed under us.
    #[error("the read model's generations changed during the rebuild")]
    Raced,
    /// Storage failed.
    #[error(transparent)]
    ReadModel(#[from] ReadModelError),
    /// Applying failed.
    #[error(transparent)]
    Project(#[from] ProjectError),
}

/// Reserves the next generation for a rebuild (step 1) and returns it. For an empty read model
/// (the first build) the active generation is 0: readers get nothing until the switch. A
/// building generation whose owner is gone is abandoned first (`lease`); the new one is
/// leased to `lessee` and numbered above every generation ever leased.
pub async fn begin<M: ReadModel>(
    model: &M,
    lessee: &Lessee,
) -> Result<(Generations, u32), RebuildError> {
    lease::abandon_orphaned(model).await?;
    let current = model.generations().await?;
    if let Some(building) = current.building {
        return Err(RebuildError::AlreadyRunning(building));
    }
    let mut next = current.active + 1;
    // A number that has a lease was reserved before (an abandoned rebuild, or a reservation
    // that lost a race): never again, so that its owner, if still alive, cannot switch over.
    while model.rebuild_lease(next).await?.is_some() {
        next += 1;
    }
    lessee.hold(model, next).await?;
    let marked = Generations { active: current.active, building: Some(next) };
    if !model.swap_generations(current, marked).await? {
        return Err(RebuildError::Raced);
    }
    // No clean-up of `next`: whatever an abandoned earlier attempt left there is harmless. Every
    // write was atomic and version-guarded, so each course in it is a consistent prefix of its
    // stream, and the replay brings every course up to date. (Dropping it here would race with
    // live consumers that already write to `next`, and a drop is not atomic.)
    Ok((marked, next))
}

/// Clears the `building` mark of a rebuild whose generation is already active (its last step,
/// or what a crash during that step left behind).
pub async fn finish<M: ReadModel>(model: &M, generation: u32) -> Result<(), RebuildError> {
    let current = model.generations().await?;
    if current.active == generation && current.building == Some(generation) {
        let done = Generations { active: generation, building: None };
        if !model.swap_generations(current, done).await? {
            return Err(RebuildError::Raced);
        }
    }
    Ok(())
}

/// Gives up a rebuild of `generation` that failed: readers stay on the active generation, and
/// the next [`begin`] may reuse the number and its (consistent) partial contents.
pub async fn abandon<M: ReadModel>(model: &M, generation: u32) -> Result<(), RebuildError> {
    let current = model.generations().await?;
    if current.building == Some(generation) {
        model
            .swap_generations(current, Generations { active: current.active, building: None })
            .await?;
    }
    Ok(())
}

/// Runs steps 2-4 for a generation reserved with [`begin`], renewing `lessee`'s lease meanwhile.
pub async fn complete<M: ReadModel, S: EventSource + Clone>(
    projector: &Projector<M>,
    events: S,
    marked: Generations,
    generation: u32,
    lessee: &Lessee,
) -> Result<(), RebuildError> {
    tokio::select! {
        result = complete_leased(projector, events, marked, generation) => result,
        () = lessee.keep(projector.model(), generation) => unreachable!("keep never returns"),
    }
}

async fn complete_leased<M: ReadModel, S: EventSource + Clone>(
    projector: &Projector<M>,
    events: S,
    marked: Generations,
    generation: u32,
) -> Result<(), RebuildError> {
    let model = projector.model();
    let position = replay(projector, events.clone(), generation, 0).await?;
    // Readers move over; `building` stays set until the clean-up is done, so that no other
    // rebuild can start (and reuse a number this one is about to drop) in between.
    let switched = Generations { active: generation, building: Some(generation) };
    if !model.swap_generations(marked, switched).await? {
        return Err(RebuildError::Raced);
    }
    // No second replay is needed: every event sequenced after `begin` is written to `n` by the
    // live consumers (they see it as building, then as active), and everything before is in the
    // replay above.
    // The old generation, and any abandoned attempt numbered in between.
    for old in (marked.active..generation).filter(|g| *g != 0) {
        model.drop_generation(old).await?;
    }
    finish(model, generation).await?;
    tracing::info!(generation, position, "rebuild complete");
    Ok(())
}

/// Applies every event after `from` to `generation`, in large pages of `ReadAll`, until a page
/// comes back short (caught up). Pages are read ahead while chunks are written; each chunk is
/// folded per course in memory and written in one round trip. Returns the last position
/// applied.
async fn replay<M: ReadModel, S: EventSource + Clone>(
    projector: &Projector<M>,
    events: S,
    generation: u32,
    from: u64,
) -> Result<u64, RebuildError> {
    let (chunks, mut received) = tokio::sync::mpsc::channel::<Result<Chunk, ProjectError>>(4);
    let reader = tokio::spawn(read_pages(events, from, chunks));
    let mut position = from;
    let mut count = 0u64;
    let mut cache = ReplayCache::default();
    let started = std::time::Instant::now();
    while let Some(chunk) = received.recv().await {
        let Chunk { events: chunk, undecodable } = chunk?;
        // What cannot be applied is recorded (its position counts as applied) instead of
        // stopping the rebuild; only an unavailable storage or event store stops it.
        for letter in &undecodable {
            dead_letter::record_in(projector, generation, letter).await?;
        }
        for (index, err) in projector.replay_batch(generation, &chunk, &mut cache).await? {
            if err.is_transient() {
                return Err(err.into());
            }
            let letter = DeadLetter::of_event(&chunk[index], err.to_string());
            dead_letter::record_in(projector, generation, &letter).await?;
        }
        position = chunk.last().map_or(position, |e| e.global_position);
        position = undecodable.iter().map(|l| l.position).fold(position, u64::max);
        count += chunk.len() as u64;
    }
    let _ = reader.await;
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        generation,
        position,
        count,
        events_per_second = (count as f64 / seconds.max(1e-9)) as u64,
        "replayed"
    );
    Ok(position)
}

/// Events to replay, and envelopes of the same stretch that do not convert.
struct Chunk {
    events: Vec<StoredEvent>,
    undecodable: Vec<DeadLetter>,
}

/// Streams `ReadAll` from `from`, sending chunks of [`CHUNK`] events in global order. Up to
/// [`PAGES_AHEAD`] pages of [`PAGE`] positions are read at once (positions are contiguous, so
/// page `k` is the positions after `from + k * PAGE`); a page that comes back short is the end.
async fn read_pages<S: EventSource + Clone>(
    events: S,
    from: u64,
    chunks: tokio::sync::mpsc::Sender<Result<Chunk, ProjectError>>,
) {
    let mut ahead = std::collections::VecDeque::new();
    let mut next = from;
    loop {
        while ahead.len() < PAGES_AHEAD {
            ahead.push_back(tokio::spawn(read_page(events.clone(), next)));
            next += u64::from(PAGE);
        }
        let Some(page) = ahead.pop_front() else { return };
        let page = match page.await {
            Ok(Ok(page)) => page,
            Ok(Err(err)) => {
                let _ = chunks.send(Err(err)).await;
                break;
            }
            Err(_) => {
                let _ = chunks
                    .send(Err(ProjectError::Unapplicable("a page reader failed".into())))
                    .await;
                break;
            }
        };
        let (events_in_page, mut undecodable, last) = page;
        let mut events_in_page = events_in_page.into_iter().peekable();
        while events_in_page.peek().is_some() || !undecodable.is_empty() {
            let events: Vec<StoredEvent> = events_in_page.by_ref().take(CHUNK).collect();
            let chunk = Chunk { events, undecodable: std::mem::take(&mut undecodable) };
            if chunks.send(Ok(chunk)).await.is_err() {
                break;
            }
        }
        if last {
            break;
        }
    }
    for page in ahead {
        page.abort();
    }
}

/// The events at positions `after + 1 ..= after + PAGE` (those that convert, and dead letters
/// of those that do not), and whether the store ends there.
pub(crate) async fn read_page<S: EventSource>(
    events: S,
    after: u64,
) -> Result<(Vec<StoredEvent>, Vec<DeadLetter>, bool), ProjectError> {
    let end = after + u64::from(PAGE);
    let mut page = events.read_all(after, PAGE).await?;
    let last = page.received < PAGE as usize;
    page.events.retain(|event| event.global_position <= end);
    page.undecodable.retain(|letter| letter.position <= end);
    Ok((page.events, page.undecodable, last))
}
