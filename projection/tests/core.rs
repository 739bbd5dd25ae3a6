//! The projection core on its own, against an in-memory read model and an in-memory event
//! store (in the spirit of cqrs-es's `MemStore`): ordering, duplicates, gap filling, events
//! that never fit and poison bodies, storage outages, concurrent writers, rebuild switch-over
//! (dead letters of a replay, crashed rebuilds abandoned) and read-your-writes waits. No broker,
//! no database: each test runs in milliseconds. What only a storage or the broker can show (its
//! atomic compare-and-set under real concurrency, its generation layout, the broker's
//! redelivery) is tested in the query services.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use course_domain::Event;
use projection::dead_letter::DeadLetter;
use projection::fold::{Change, CourseSummary, StoredEvent};
use projection::lease::{self, Lessee, RebuildLease};
use projection::read_side::{QueryError, ReadSide};
use projection::{
    EventSource, Generations, Page, Progress, ProjectError, Projector, ReadModel, ReadModelError,
    Saved, decode_body, rebuild, wait,
};
use uuid::Uuid;

// ---- the in-memory read model -------------------------------------------------------------

#[derive(Default)]
struct Memory {
    generations: Generations,
    courses: HashMap<(u32, Uuid), CourseSummary>,
    /// Every change saved, by generation and course, in the order saved.
    changes: HashMap<(u32, Uuid), Vec<(u64, Change)>>,
    applied: HashMap<u32, BTreeSet<u64>>,
    watermarks: HashMap<u32, u64>,
    dead_letters: BTreeMap<u64, DeadLetter>,
    leases: HashMap<u32, RebuildLease>,
}

/// A `ReadModel` in a mutex: every operation is atomic, as the real storages' are.
#[derive(Clone, Default)]
struct MemReadModel {
    memory: Arc<Mutex<Memory>>,
    down: Arc<AtomicBool>,
}

impl MemReadModel {
    fn memory(&self) -> Result<std::sync::MutexGuard<'_, Memory>, ReadModelError> {
        if self.down.load(Ordering::Relaxed) {
            return Err(ReadModelError::Unavailable(anyhow::anyhow!("storage down")));
        }
        Ok(self.memory.lock().expect("not poisoned"))
    }

    /// What a generation holds: every course and the changes that made it.
    fn contents(&self, generation: u32) -> BTreeMap<Uuid, (CourseSummary, Vec<(u64, Change)>)> {
        let memory = self.memory.lock().expect("not poisoned");
        memory
            .courses
            .iter()
            .filter(|((g, _), _)| *g == generation)
            .map(|((g, id), summary)| {
                let changes = memory.changes.get(&(*g, *id)).cloned().unwrap_or_default();
                (*id, (summary.clone(), changes))
            })
            .collect()
    }
}

#[async_trait]
impl ReadModel for MemReadModel {
    async fn generations(&self) -> Result<Generations, ReadModelError> {
        Ok(self.memory()?.generations)
    }

    async fn swap_generations(
        &self,
        expected: Generations,
        new: Generations,
    ) -> Result<bool, ReadModelError> {
        let mut memory = self.memory()?;
        if memory.generations != expected {
            return Ok(false);
        }
        memory.generations = new;
        Ok(true)
    }

    async fn drop_generation(&self, generation: u32) -> Result<(), ReadModelError> {
        let mut memory = self.memory()?;
        memory.courses.retain(|(g, _), _| *g != generation);
        memory.changes.retain(|(g, _), _| *g != generation);
        memory.applied.remove(&generation);
        memory.watermarks.remove(&generation);
        Ok(())
    }

    async fn summary(
        &self,
        generation: u32,
        course_id: Uuid,
    ) -> Result<Option<CourseSummary>, ReadModelError> {
        Ok(self.memory()?.courses.get(&(generation, course_id)).cloned())
    }

    async fn save(
        &self,
        generation: u32,
        before_version: u64,
        after: &CourseSummary,
        change: &Change,
    ) -> Result<Saved, ReadModelError> {
        let mut memory = self.memory()?;
        let key = (generation, after.course_id);
        let stored = memory.courses.get(&key).map_or(0, |c| c.version);
        if stored != before_version {
            return Ok(Saved::Conflict);
        }
        memory.courses.insert(key, after.clone());
        memory.changes.entry(key).or_default().push((after.version, change.clone()));
        Ok(Saved::Applied)
    }

    async fn mark_applied(&self, generation: u32, position: u64) -> Result<u64, ReadModelError> {
        let mut memory = self.memory()?;
        let mut watermark = memory.watermarks.get(&generation).copied().unwrap_or(0);
        let applied = memory.applied.entry(generation).or_default();
        if position > watermark {
            applied.insert(position);
        }
        while applied.remove(&(watermark + 1)) {
            watermark += 1;
        }
        memory.watermarks.insert(generation, watermark);
        Ok(watermark)
    }

    async fn watermark(&self, generation: u32) -> Result<u64, ReadModelError> {
        Ok(self.memory()?.watermarks.get(&generation).copied().unwrap_or(0))
    }

    async fn record_dead_letter(&self, letter: &DeadLetter) -> Result<(), ReadModelError> {
        self.memory()?.dead_letters.insert(letter.position, letter.clone());
        Ok(())
    }

    async fn dead_letters(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, ReadModelError> {
        let memory = self.memory()?;
        Ok(memory.dead_letters.range(after + 1..).take(limit).map(|(_, l)| l.clone()).collect())
    }

    async fn dead_letter_count(&self) -> Result<u64, ReadModelError> {
        Ok(self.memory()?.dead_letters.len() as u64)
    }

    async fn remove_dead_letter(&self, position: u64) -> Result<(), ReadModelError> {
        self.memory()?.dead_letters.remove(&position);
        Ok(())
    }

    async fn put_rebuild_lease(
        &self,
        generation: u32,
        lease: &RebuildLease,
    ) -> Result<(), ReadModelError> {
        self.memory()?.leases.insert(generation, lease.clone());
        Ok(())
    }

    async fn rebuild_lease(&self, generation: u32) -> Result<Option<RebuildLease>, ReadModelError> {
        Ok(self.memory()?.leases.get(&generation).cloned())
    }
}

// ---- the in-memory event store ------------------------------------------------------------

/// Events in global order, as command-svc's event store holds them.
#[derive(Clone, Default)]
struct MemEventStore {
    events: Arc<Mutex<Vec<StoredEvent>>>,
}

#[async_trait]
impl EventSource for MemEventStore {
    async fn read_stream(
        &self,
        course: Uuid,
        from_version: u64,
        max_count: u32,
    ) -> Result<Vec<StoredEvent>, ProjectError> {
        let events = self.events.lock().expect("not poisoned");
        Ok(events
            .iter()
            .filter(|e| e.course_id == course && e.version >= from_version)
            .take(max_count as usize)
            .cloned()
            .collect())
    }

    async fn read_all(&self, after: u64, max_count: u32) -> Result<Page, ProjectError> {
        let events = self.events.lock().expect("not poisoned");
        let events: Vec<StoredEvent> = events
            .iter()
            .filter(|e| e.global_position > after)
            .take(max_count as usize)
            .cloned()
            .collect();
        Ok(Page { received: events.len(), events, undecodable: Vec::new() })
    }
}

impl MemEventStore {
    /// Appends `event` as the next version of `course` and returns it as stored.
    fn append(&self, course: Uuid, event: Event) -> StoredEvent {
        let mut events = self.events.lock().expect("not poisoned");
        let version = events.iter().filter(|e| e.course_id == course).count() as u64 + 1;
        let stored = StoredEvent {
            event_id: Uuid::now_v7(),
            course_id: course,
            version,
            global_position: events.len() as u64 + 1,
            occurred_at: Utc::now(),
            event,
        };
        events.push(stored.clone());
        stored
    }

    /// A course's whole life: created, presented, `members` join, every other one leaves,
    /// each comments. Returns its events.
    fn course(&self, members: usize) -> Vec<StoredEvent> {
        let id = Uuid::now_v7();
        let mut out = vec![self.append(
            id,
            Event::CourseCreated {
                instructor_id: Uuid::now_v7(),
                title: "Rust".into(),
                description: "Ownership".into(),
                category: "Programming".into(),
                max_participants: 0,
            },
        )];
        out.push(self.append(id, Event::CoursePresented {}));
        for n in 0..members {
            let user_id = Uuid::now_v7();
            out.push(self.append(id, Event::UserJoinedCourse { user_id }));
            out.push(self.append(
                id,
                Event::CourseCommented {
                    comment_id: Uuid::now_v7(),
                    author_id: user_id,
                    text: format!("comment {n}"),
                },
            ));
            if n % 2 == 1 {
                out.push(self.append(id, Event::UserLeftCourse { user_id }));
            }
        }
        out
    }

    fn all(&self) -> Vec<StoredEvent> {
        self.events.lock().expect("not poisoned").clone()
    }
}

// ---- helpers --------------------------------------------------------------------------------

/// This process as a rebuild owner, with a lease far longer than any test.
fn lessee() -> Lessee {
    Lessee::new(Duration::from_secs(60))
}

struct Setup {
    store: MemEventStore,
    model: MemReadModel,
    projector: Projector<MemReadModel>,
}

/// An empty read model whose first generation is built (as a service's first start does).
async fn setup() -> Setup {
    let store = MemEventStore::default();
    let model = MemReadModel::default();
    let projector = Projector::new(model.clone(), store.clone(), Progress::new());
    let (marked, generation) =
        rebuild::begin(&model, &lessee()).await.expect("reserve generation 1");
    rebuild::complete(&projector, store.clone(), marked, generation, &lessee())
        .await
        .expect("first build");
    assert_eq!(model.generations().await.expect("generations").active, 1);
    Setup { store, model, projector }
}

/// What generation 1 of a model fed every event once, in order, holds.
async fn in_order(store: &MemEventStore) -> BTreeMap<Uuid, (CourseSummary, Vec<(u64, Change)>)> {
    let model = MemReadModel::default();
    model
        .swap_generations(Generations::default(), Generations { active: 1, building: None })
        .await
        .expect("generation 1");
    let projector = Projector::new(model.clone(), store.clone(), Progress::new());
    for event in store.all() {
        projector.handle(&event).await.expect("in order");
    }
    model.contents(1)
}

/// [`in_order`] for every course but `skipped`.
async fn in_order_skipping(
    store: &MemEventStore,
    skipped: Uuid,
) -> BTreeMap<Uuid, (CourseSummary, Vec<(u64, Change)>)> {
    let kept = MemEventStore::default();
    kept.events
        .lock()
        .expect("not poisoned")
        .extend(store.all().into_iter().filter(|e| e.course_id != skipped));
    in_order(&kept).await
}

fn last_position(store: &MemEventStore) -> u64 {
    store.all().last().map_or(0, |e| e.global_position)
}

// ---- ordering, duplicates, gaps -------------------------------------------------------------

#[tokio::test]
async fn events_in_order_fold_into_the_read_model_and_move_the_watermark() {
    let Setup { store, model, projector } = setup().await;
    let events = store.course(3);
    let report = projector.handle_batch(&events).await.expect("applied");
    assert_eq!((report.applied, report.duplicates, report.failed.len()), (events.len(), 0, 0));
    let course = events[0].course_id;
    let summary = model.summary(1, course).await.expect("read").expect("stored");
    assert_eq!(summary.version, events.len() as u64);
    assert_eq!((summary.participant_count, summary.comment_count), (2, 3));
    assert_eq!(model.watermark(1).await.expect("watermark"), last_position(&store));
    assert_eq!(model.contents(1), in_order(&store).await);
}

#[tokio::test]
async fn duplicates_within_and_across_batches_are_skipped_and_counted() {
    let Setup { store, model, projector } = setup().await;
    let events = store.course(2);
    let mut doubled = events.clone();
    doubled.extend(events.iter().cloned());
    let report = projector.handle_batch(&doubled).await.expect("applied");
    assert_eq!((report.applied, report.duplicates), (events.len(), events.len()));
    let again = projector.handle_batch(&events).await.expect("redelivered");
    assert_eq!((again.applied, again.duplicates), (0, events.len()));
    assert_eq!(projector.progress().snapshot().duplicates, 2 * events.len() as u64);
    assert_eq!(model.contents(1), in_order(&store).await, "every change saved exactly once");
}

#[tokio::test]
async fn any_delivery_order_in_any_batching_ends_in_the_in_order_state() {
    let store = MemEventStore::default();
    let courses: Vec<Vec<StoredEvent>> = (0..4).map(|n| store.course(n + 1)).collect();
    let expected = in_order(&store).await;
    // Each course newest first (the first event seen reveals a gap the event store fills),
    // interleaved, then everything again in order: cut into batches of every size.
    let mut delivery = Vec::new();
    let longest = courses.iter().map(Vec::len).max().unwrap_or(0);
    for i in 0..longest {
        for course in &courses {
            if let Some(event) = course.iter().rev().nth(i) {
                delivery.push(event.clone());
            }
        }
    }
    delivery.extend(store.all());
    for size in [1, 2, 3, 7, delivery.len()] {
        let model = MemReadModel::default();
        let projector = Projector::new(model.clone(), store.clone(), Progress::new());
        let (marked, generation) = rebuild::begin(&model, &lessee()).await.expect("reserve");
        // The first build finds an empty store (the events below are the live ones).
        rebuild::complete(&projector, MemEventStore::default(), marked, generation, &lessee())
            .await
            .expect("first build");
        for batch in delivery.chunks(size) {
            let report = projector.handle_batch(batch).await.expect("applied");
            assert!(report.failed.is_empty(), "batches of {size}: {:?}", report.failed);
        }
        assert_eq!(model.contents(1), expected, "batches of {size}");
        assert_eq!(model.watermark(1).await.expect("watermark"), last_position(&store));
        // One batch holding everything is put in order in memory; smaller ones see gaps.
        let filled = projector.progress().snapshot().gaps_filled;
        assert_eq!(filled > 0, size < delivery.len(), "batches of {size}: {filled} filled");
    }
}

// ---- what cannot be applied ----------------------------------------------------------------

#[tokio::test]
async fn an_event_that_never_fits_fails_alone_and_the_rest_of_its_batch_applies() {
    let Setup { store, model, projector } = setup().await;
    let events = store.course(2);
    // Version 2 of a course the event store has never heard of: its gap cannot be filled.
    let mut stray = events[1].clone();
    stray.course_id = Uuid::now_v7();
    stray.global_position = last_position(&store) + 1;
    let mut batch = vec![stray.clone()];
    batch.extend(events.iter().cloned());
    batch.push(stray);
    let report = projector.handle_batch(&batch).await.expect("the batch is handled");
    let failed: Vec<usize> = report.failed.iter().map(|(index, _)| *index).collect();
    assert_eq!(failed, [0, batch.len() - 1], "the stray and its copy, nothing else");
    assert!(report.failed.iter().all(|(_, err)| !err.is_transient()), "{:?}", report.failed);
    assert_eq!(report.applied, events.len());
    assert_eq!(model.contents(1), in_order(&store).await);
    assert_eq!(model.watermark(1).await.expect("watermark"), last_position(&store));
}

#[test]
fn a_body_that_is_not_a_valid_event_envelope_is_poison() {
    assert!(decode_body(b"\xff\xfe definitely not protobuf").is_err());
    // Well-formed protobuf, but not a usable envelope (no payload, no positions).
    let empty = prost::Message::encode_to_vec(&course_proto::v1::EventEnvelope::default());
    assert!(decode_body(&empty).is_err());
}

#[tokio::test]
async fn a_storage_outage_is_transient_and_the_retried_batch_applies_exactly_once() {
    let Setup { store, model, projector } = setup().await;
    let events = store.course(2);
    projector.handle_batch(&events[..3]).await.expect("first part");
    model.down.store(true, Ordering::Relaxed);
    let err = projector.handle_batch(&events).await.expect_err("storage down");
    assert!(err.is_transient(), "{err}");
    model.down.store(false, Ordering::Relaxed);
    let report = projector.handle_batch(&events).await.expect("storage back");
    assert_eq!((report.applied, report.duplicates), (events.len() - 3, 3));
    assert_eq!(model.contents(1), in_order(&store).await);
}

#[tokio::test]
async fn concurrent_projectors_on_one_model_stay_exact() {
    let Setup { store, model, .. } = setup().await;
    for _ in 0..3 {
        store.course(6);
    }
    let all = store.all();
    // Four replicas, each handed every event in its own order and batching: they race on
    // every course and resolve through the compare-and-set.
    let replicas = (0..4usize).map(|replica| {
        let projector = Projector::new(model.clone(), store.clone(), Progress::new());
        let mut events = all.clone();
        events.rotate_left(replica * 5);
        tokio::spawn(async move {
            for batch in events.chunks(replica + 2) {
                let report = projector.handle_batch(batch).await.expect("applied");
                assert!(report.failed.is_empty(), "{:?}", report.failed);
            }
        })
    });
    for replica in replicas {
        replica.await.expect("replica");
    }
    assert_eq!(model.contents(1), in_order(&store).await);
    assert_eq!(model.watermark(1).await.expect("watermark"), last_position(&store));
}

// ---- rebuilds --------------------------------------------------------------------------------

#[tokio::test]
async fn a_rebuild_with_live_events_flowing_switches_over_to_the_same_data_and_drops_the_old() {
    let Setup { store, model, projector } = setup().await;
    for _ in 0..3 {
        let events = store.course(4);
        projector.handle_batch(&events).await.expect("live");
    }
    let (marked, generation) = rebuild::begin(&model, &lessee()).await.expect("reserve");
    assert_eq!(generation, 2);
    assert!(matches!(
        rebuild::begin(&model, &lessee()).await,
        Err(rebuild::RebuildError::AlreadyRunning(2))
    ));
    // Events committed after the reservation reach the live consumer only, which writes them
    // to both generations while the replay runs.
    let live = {
        let projector = projector.clone();
        let store = store.clone();
        tokio::spawn(async move {
            for _ in 0..5 {
                let events = store.course(3);
                for batch in events.chunks(2) {
                    projector.handle_batch(batch).await.expect("live during the rebuild");
                }
                tokio::task::yield_now().await;
            }
        })
    };
    rebuild::complete(&projector, store.clone(), marked, generation, &lessee())
        .await
        .expect("rebuilt");
    live.await.expect("live consumer");
    assert_eq!(
        model.generations().await.expect("generations"),
        Generations { active: 2, building: None }
    );
    assert!(model.contents(1).is_empty(), "the old generation is dropped");
    assert_eq!(model.contents(2), in_order(&store).await, "each version applied once");
    assert_eq!(model.watermark(2).await.expect("watermark"), last_position(&store));
}

#[tokio::test]
async fn nothing_is_served_before_the_first_build_and_a_failed_rebuild_keeps_the_old_data() {
    let store = MemEventStore::default();
    let model = MemReadModel::default();
    let progress = Progress::new();
    let projector = Projector::new(model.clone(), store.clone(), progress.clone());
    let reads = ReadSide::new(model.clone(), progress, Duration::from_millis(10));
    assert!(matches!(reads.active().await, Err(QueryError::NotBuilt)));
    let status = tonic::Status::from(reads.active().await.expect_err("not built"));
    assert_eq!(status.code(), tonic::Code::Unavailable);
    // A read-your-writes read is told so at once, not "behind" after its wait.
    let err = reads.wait_for_version(Uuid::now_v7(), Some(1)).await.expect_err("not built");
    assert!(matches!(err, QueryError::NotBuilt), "{err}");
    let err = reads.wait_for_position(Some(1)).await.expect_err("not built");
    assert!(matches!(err, QueryError::NotBuilt), "{err}");

    let events = store.course(1);
    let (marked, generation) = rebuild::begin(&model, &lessee()).await.expect("reserve");
    // Live events before the switch are written to the building generation only.
    projector.handle_batch(&events).await.expect("live");
    assert!(matches!(reads.active().await, Err(QueryError::NotBuilt)));
    rebuild::complete(&projector, store.clone(), marked, generation, &lessee())
        .await
        .expect("built");
    assert_eq!(reads.active().await.expect("built"), 1);

    // A rebuild abandoned half-way leaves generation 1 served and frees the next attempt.
    let (_, abandoned) = rebuild::begin(&model, &lessee()).await.expect("reserve");
    rebuild::abandon(&model, abandoned).await.expect("abandon");
    assert_eq!(
        model.generations().await.expect("generations"),
        Generations { active: 1, building: None }
    );
    assert_eq!(model.contents(1), in_order(&store).await);
}

// ---- read-your-writes ------------------------------------------------------------------------

#[tokio::test]
async fn waits_end_when_the_version_or_position_is_applied() {
    let Setup { store, model, projector } = setup().await;
    let events = store.course(2);
    let course = events[0].course_id;
    let last = events.last().expect("events");
    let progress = projector.progress().clone();
    let long = Duration::from_secs(30);
    let version = tokio::spawn({
        let (model, progress) = (model.clone(), progress.clone());
        let wanted = last.version;
        async move { wait::for_version(&model, &progress, course, wanted, long).await }
    });
    let position = tokio::spawn({
        let (model, progress) = (model.clone(), progress.clone());
        let wanted = last.global_position;
        async move { wait::for_position(&model, &progress, wanted, long).await }
    });
    for event in &events {
        projector.handle(event).await.expect("applied");
    }
    version.await.expect("task").expect("the version arrived");
    position.await.expect("task").expect("the position arrived");
    // Already there: no wait at all.
    let reads = ReadSide::new(model, progress, Duration::from_millis(1));
    reads.wait_for_version(course, Some(last.version)).await.expect("at once");
    reads.wait_for_position(Some(last.global_position)).await.expect("at once");
}

#[tokio::test]
async fn a_wait_that_is_not_met_in_time_is_unavailable_saying_behind() {
    let Setup { store, model, projector } = setup().await;
    let events = store.course(0);
    projector.handle_batch(&events).await.expect("applied");
    let reads = ReadSide::new(model, projector.progress().clone(), Duration::from_millis(20));
    let err = reads.wait_for_version(events[0].course_id, Some(9)).await.expect_err("behind");
    assert!(matches!(err, QueryError::Behind(_)), "{err}");
    let status = tonic::Status::from(err);
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(status.message().contains("behind"), "{}", status.message());
    let err = reads.wait_for_position(Some(1_000)).await.expect_err("behind");
    assert!(matches!(err, QueryError::Behind(_)), "{err}");
}

#[tokio::test]
async fn an_event_a_rebuild_cannot_apply_is_recorded_as_a_dead_letter_and_the_rest_switches_over() {
    let Setup { store, model, projector } = setup().await;
    store.course(2);
    // A stored event that folds onto nothing: a join of a course never created.
    let stray = store.append(Uuid::now_v7(), Event::UserJoinedCourse { user_id: Uuid::now_v7() });
    store.course(1);
    let (marked, generation) = rebuild::begin(&model, &lessee()).await.expect("reserve");
    rebuild::complete(&projector, store.clone(), marked, generation, &lessee())
        .await
        .expect("the rebuild is not stopped by one event");
    assert_eq!(model.generations().await.expect("generations").active, generation);
    let letters = model.dead_letters(0, 10).await.expect("dead letters");
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].position, stray.global_position);
    assert_eq!(letters[0].course_id, stray.course_id.to_string());
    // Its position counts as applied: `min_position` reads are not held up by it.
    assert_eq!(model.watermark(generation).await.expect("watermark"), last_position(&store));
    let mut expected = in_order_skipping(&store, stray.course_id).await;
    assert_eq!(model.contents(generation).len(), expected.len());
    for (id, (summary, _)) in model.contents(generation) {
        assert_eq!(Some(summary), expected.remove(&id).map(|(s, _)| s));
    }
}

#[tokio::test]
async fn a_rebuild_whose_owner_stopped_renewing_is_abandoned_and_its_number_never_reused() {
    let Setup { store, model, projector } = setup().await;
    store.course(1);
    // An owner that reserved generation 2 and died: its lease (of no duration here) has run
    // out, so the next check abandons the rebuild.
    let dead = Lessee::new(Duration::ZERO);
    let (_, orphan) = rebuild::begin(&model, &dead).await.expect("reserve");
    assert_eq!(orphan, 2);
    assert_eq!(lease::abandon_orphaned(&model).await.expect("check"), Some(orphan));
    assert_eq!(
        model.generations().await.expect("generations"),
        Generations { active: 1, building: None }
    );
    let (marked, generation) = rebuild::begin(&model, &lessee()).await.expect("reserve");
    assert_eq!(generation, 3, "a number once leased is never reserved again");
    // A live owner's rebuild is not taken away from it.
    assert_eq!(lease::abandon_orphaned(&model).await.expect("check"), None, "alive");
    rebuild::complete(&projector, store.clone(), marked, generation, &lessee())
        .await
        .expect("built");
    assert_eq!(model.contents(3), in_order(&store).await);
}
