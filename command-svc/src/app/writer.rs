//! A command writer: owns a share of the courses, decides their commands in memory and writes
//! each group of commands with one statement (group commit).
//!
//! One batch at a time per writer, so a course's versions are never written out of order, and
//! a course's commands never wait for each other's commit one by one: the commands that arrived
//! while a batch was being written form the next one. Per batch:
//! 1. answers recorded for `command_id`s are replayed (one query, only when ids are present);
//! 2. courses come from memory, else from their snapshot, plus the events after them (one query
//!    for the whole batch: that also catches what other replicas appended);
//! 3. commands are decided in arrival order, each on the state the previous ones left;
//! 4. everything is written with one statement. Courses that collide with another replica's
//!    writes are left out and their commands decided again in the next batch; the others' work
//!    is written at once.
//!
//! Answers are sent only after the write: a refusal decided on state that included events of
//! this batch is never answered if those events did not commit.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use chrono::Utc;
use course_domain::{Command, Course, SNAPSHOT_SCHEMA};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{AppError, CommandContext, Outcome, outcome, replay};
use crate::config::BatchArgs;
use crate::sequencer::{HeadSender, advance};
use crate::store::{
    Batch, CommandRecord, EventMetadata, EventStore, PendingCommand, PendingEvent, Snapshot,
    StoreError,
};

/// One command waiting for its writer.
pub struct Job {
    pub course_id: Uuid,
    pub ctx: CommandContext,
    pub command: Command,
    pub reply: oneshot::Sender<Result<Outcome, AppError>>,
    /// How many times it was decided and then collided with another replica's append.
    pub attempts: u32,
}

/// Starts a writer; it stops when every sender is dropped.
pub fn spawn(store: EventStore, settings: &BatchArgs, head: HeadSender) -> mpsc::Sender<Job> {
    let max_batch = settings.command_batch_max.max(1) as usize;
    let (tx, rx) = mpsc::channel(max_batch * 4);
    let snapshots = spawn_snapshot_saver(store.clone());
    let writer = Writer {
        store,
        head,
        rx,
        retry: VecDeque::new(),
        courses: HashMap::new(),
        capacity: (settings.cached_courses / settings.writers() as u64).max(1) as usize,
        max_batch,
        linger: Duration::from_micros(settings.command_batch_linger_us),
        retries: settings.command_retries,
        snapshot_every: settings.snapshot_every.max(1),
        snapshots,
    };
    tokio::spawn(writer.run());
    tx
}

/// A course as this writer knows it.
struct Known {
    course: Course,
    /// Version of its latest stored snapshot (0: none).
    snapshot_at: u64,
}

struct Writer {
    store: EventStore,
    /// Advanced after every commit that wrote events (it wakes the relay and the followers).
    head: HeadSender,
    rx: mpsc::Receiver<Job>,
    /// Commands to decide again (their course collided with another replica's append).
    retry: VecDeque<Job>,
    courses: HashMap<Uuid, Known>,
    capacity: usize,
    max_batch: usize,
    linger: Duration,
    retries: u32,
    snapshot_every: u64,
    /// Snapshots to store, taken by this writer's saver task.
    snapshots: mpsc::Sender<Snapshot>,
}

/// Most snapshots waiting to be stored per writer; when full, a due snapshot is taken later.
const SNAPSHOT_QUEUE: usize = 1024;
/// Most snapshots stored by one statement.
const SNAPSHOT_BATCH: usize = 256;

/// tokio's timer resolution: a linger with more than two of these left sleeps on the queue
/// instead of spinning.
const TIMER_GRAIN: Duration = Duration::from_millis(1);

/// Stores the snapshots sent to it, whatever queued up meanwhile with one statement (a snapshot
/// per durable commit had cost as many WAL flushes as a tenth of the appends).
fn spawn_snapshot_saver(store: EventStore) -> mpsc::Sender<Snapshot> {
    let (tx, mut rx) = mpsc::channel(SNAPSHOT_QUEUE);
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(SNAPSHOT_BATCH);
        while rx.recv_many(&mut batch, SNAPSHOT_BATCH).await > 0 {
            if let Err(err) = store.save_snapshots(&batch).await {
                tracing::warn!(error = %err, count = batch.len(), "snapshots not saved");
            }
            batch.clear();
        }
    });
    tx
}

/// What became of one command of a batch, before the write.
enum Decision {
    /// Answered whatever happens to the write.
    Final(Result<Outcome, AppError>),
    /// Accepted: answered `Ok` once its course's events are written.
    Accepted(Outcome),
    /// A duplicate of the accepted command at this index (same `command_id` in the batch).
    Follows(usize),
}

impl Writer {
    async fn run(mut self) {
        loop {
            let mut jobs: Vec<Job> = self.retry.drain(..).collect();
            if jobs.is_empty() {
                match self.rx.recv().await {
                    Some(job) => jobs.push(job),
                    None => return,
                }
            }
            self.gather(&mut jobs).await;
            self.process(jobs).await;
        }
    }

    /// Adds whatever is waiting, lingering up to `linger` for more while the batch is not full.
    async fn gather(&mut self, jobs: &mut Vec<Job>) {
        let deadline = Instant::now() + self.linger;
        loop {
            while jobs.len() < self.max_batch {
                match self.rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            let now = Instant::now();
            if jobs.len() >= self.max_batch || now >= deadline {
                return;
            }
            let left = deadline - now;
            if left > TIMER_GRAIN * 2 {
                // Long enough for a timer: sleep until the next command or (one grain early,
                // the timer may fire a grain late) the deadline.
                let wake = tokio::time::Instant::from_std(deadline - TIMER_GRAIN);
                match tokio::time::timeout_at(wake, self.rx.recv()).await {
                    Ok(Some(job)) => jobs.push(job),
                    Ok(None) => return, // every sender is gone: write what is here
                    Err(_) => {}        // the last grain is spun below
                }
            } else {
                // Sub-millisecond: the timer wheel is too coarse, let the request tasks run.
                tokio::task::yield_now().await;
            }
        }
    }

    async fn process(&mut self, jobs: Vec<Job>) {
        let jobs = match self.replay_recorded(jobs).await {
            Ok(jobs) => jobs,
            Err(failed) => return failed.answer_all(),
        };
        if jobs.is_empty() {
            return;
        }
        // Courses read from the store for this batch (or new): what is decided on them is
        // decided on their latest state. The others come from memory.
        let fresh: HashSet<Uuid> =
            jobs.iter().map(|j| j.course_id).filter(|id| !self.courses.contains_key(id)).collect();
        let mut courses = match self.load(&jobs).await {
            Ok(courses) => courses,
            Err(failed) => return Failed { jobs, err: failed }.answer_all(),
        };
        let (mut batch, decisions) = decide(&jobs, &mut courses);

        let mut collided = HashSet::new();
        let written = loop {
            match self.store.append_batch(&batch).await {
                Ok(last) => {
                    if let Some(last) = last {
                        advance(&self.head, last);
                    }
                    break Ok(());
                }
                Err(StoreError::BatchConflict) => {
                    let mut streams = match self.store.batch_conflicts(&batch).await {
                        Ok(streams) => streams,
                        Err(err) => break Err(err),
                    };
                    if streams.is_empty() {
                        // Nothing stored collides any more (the other writer rolled back):
                        // decide everything again rather than guess.
                        streams = batch.events.iter().map(|e| e.stream_id).collect();
                        streams.extend(batch.commands.iter().map(|c| c.stream_id));
                    }
                    tracing::debug!(courses = streams.len(), "concurrent appends; deciding again");
                    metrics::counter!("command_conflicts_total").increment(streams.len() as u64);
                    batch.without(&streams);
                    collided.extend(streams);
                }
                Err(err) => break Err(err),
            }
        };
        metrics::histogram!("command_batch_size").record(jobs.len() as f64);

        // Keep what is known for sure: courses that were written, or that had nothing to write.
        let failed_streams: HashSet<Uuid> = match &written {
            Ok(()) => HashSet::new(),
            Err(_) => batch.events.iter().map(|e| e.stream_id).collect(),
        };
        let mut kept = Vec::with_capacity(courses.len());
        for (id, course) in courses {
            if !collided.contains(&id) && !failed_streams.contains(&id) {
                self.remember(id, course);
                kept.push(id);
            } else {
                self.courses.remove(&id);
            }
        }
        self.snapshot_if_due(&kept);

        // What a duplicate answers: the accepted command it follows, unless that one's course
        // collided (then both are decided again).
        let settled: Vec<Option<Outcome>> = jobs
            .iter()
            .zip(&decisions)
            .map(|(job, decision)| match decision {
                Decision::Accepted(outcome) if !collided.contains(&job.course_id) => {
                    Some(outcome.clone())
                }
                _ => None,
            })
            .collect();
        let written_answer = |outcome: Outcome| match &written {
            Ok(()) => Ok(outcome),
            Err(err) => Err(batch_error(err)),
        };
        for (job, decision) in jobs.into_iter().zip(decisions) {
            // Decided on a state another replica had already moved past: decide again.
            if collided.contains(&job.course_id) {
                self.again(job);
                continue;
            }
            // A refusal decided on the state in memory may be stale if another replica moved
            // the course: decide it again on the stored state before saying no.
            if !fresh.contains(&job.course_id)
                && matches!(
                    decision,
                    Decision::Final(Err(AppError::Domain(_) | AppError::VersionMismatch { .. }))
                )
            {
                self.courses.remove(&job.course_id);
                self.again(job);
                continue;
            }
            let answer = match decision {
                Decision::Final(result) => Some(result),
                Decision::Accepted(outcome) => Some(written_answer(outcome)),
                Decision::Follows(first) => settled[first].clone().map(written_answer),
            };
            match answer {
                Some(result) => {
                    let _ = job.reply.send(result);
                }
                // It follows a command that has to be decided again: so does it.
                None => self.again(job),
            }
        }
    }

    /// Answers the commands whose `command_id` is recorded; returns the others.
    async fn replay_recorded(&self, jobs: Vec<Job>) -> Result<Vec<Job>, Failed> {
        let ids: Vec<Uuid> = jobs.iter().filter_map(|j| j.ctx.command_id).collect();
        if ids.is_empty() {
            return Ok(jobs);
        }
        let recorded: HashMap<Uuid, CommandRecord> = match self.store.find_commands(&ids).await {
            Ok(records) => records.into_iter().map(|r| (r.command_id, r)).collect(),
            Err(err) => return Err(Failed { jobs, err }),
        };
        let mut open = Vec::with_capacity(jobs.len());
        for job in jobs {
            match job.ctx.command_id.and_then(|id| recorded.get(&id)) {
                Some(previous) => {
                    let _ = job.reply.send(replay(&job.ctx, previous.clone()));
                }
                None => open.push(job),
            }
        }
        Ok(open)
    }

    /// The courses the jobs are about: from memory when known (not re-read: a decision to
    /// append on a stale course collides on its next version anyway), else from the store.
    async fn load(&mut self, jobs: &[Job]) -> Result<HashMap<Uuid, Known>, StoreError> {
        let mut courses: HashMap<Uuid, Known> = HashMap::new();
        let mut missing = Vec::new();
        for job in jobs {
            if courses.contains_key(&job.course_id) || missing.contains(&job.course_id) {
                continue;
            }
            match self.courses.remove(&job.course_id) {
                Some(known) => {
                    courses.insert(job.course_id, known);
                }
                // A new course's id was just made by the API: it has no history to read.
                None if matches!(job.command, Command::CreateCourse { .. }) => {
                    courses
                        .insert(job.course_id, Known { course: Course::default(), snapshot_at: 0 });
                }
                None => missing.push(job.course_id),
            }
        }
        if let Err(err) = self.read_missing(&mut courses, &missing).await {
            // Put back what was taken out of memory; it is still right.
            for (id, known) in courses {
                if !missing.contains(&id) && known.course.version > 0 {
                    self.courses.insert(id, known);
                }
            }
            return Err(err);
        }
        Ok(courses)
    }

    async fn read_missing(
        &self,
        courses: &mut HashMap<Uuid, Known>,
        missing: &[Uuid],
    ) -> Result<(), StoreError> {
        for snapshot in self.store.load_snapshots(missing).await? {
            let course = Course::from_snapshot(snapshot.schema, snapshot.state)
                .filter(|c| c.version == snapshot.version);
            match course {
                Some(course) => {
                    courses.insert(
                        snapshot.stream_id,
                        Known { course, snapshot_at: snapshot.version },
                    );
                }
                // Written in another shape: rebuilt from events and snapshotted again.
                None => metrics::counter!("snapshots_discarded_total").increment(1),
            }
        }
        for id in missing {
            courses
                .entry(*id)
                .or_insert_with(|| Known { course: Course::default(), snapshot_at: 0 });
        }
        // Whatever was appended after the snapshot.
        let from: Vec<(Uuid, u64)> = missing
            .iter()
            .map(|id| (*id, courses.get(id).map_or(0, |k| k.course.version)))
            .collect();
        for recorded in self.store.read_tails(&from).await? {
            if let Some(known) = courses.get_mut(&recorded.stream_id)
                && recorded.version == known.course.version + 1
            {
                known.course.apply(&recorded.event);
            }
        }
        Ok(())
    }

    fn remember(&mut self, id: Uuid, known: Known) {
        if self.courses.len() >= self.capacity && !self.courses.contains_key(&id) {
            self.courses.clear();
        }
        self.courses.insert(id, known);
    }

    /// Hands a snapshot of every known course that moved `snapshot_every` events past its last
    /// one to the saver task: a snapshot is a shortcut, never needed for correctness.
    fn snapshot_if_due(&mut self, ids: &[Uuid]) {
        for id in ids {
            let Some(known) = self.courses.get_mut(id) else { continue };
            // A large state (thousands of participants) is rewritten less often: at most once
            // per tenth of its participant count in events.
            let every = self.snapshot_every.max(known.course.participants.len() as u64 / 10);
            if known.course.version >= known.snapshot_at + every {
                let snapshot = Snapshot {
                    stream_id: *id,
                    version: known.course.version,
                    schema: SNAPSHOT_SCHEMA,
                    state: known.course.to_snapshot(),
                };
                if self.snapshots.try_send(snapshot).is_ok() {
                    known.snapshot_at = known.course.version;
                } else {
                    metrics::counter!("snapshots_deferred_total").increment(1);
                }
            }
        }
    }

    /// Queues `job` to be decided again, or answers it when it has collided too often.
    fn again(&mut self, mut job: Job) {
        job.attempts += 1;
        if job.attempts > self.retries {
            let _ = job.reply.send(Err(AppError::TooMuchContention));
        } else {
            self.retry.push_back(job);
        }
    }
}

/// Decides every job in order on `courses` (which it advances) and collects what to write.
fn decide(jobs: &[Job], courses: &mut HashMap<Uuid, Known>) -> (Batch, Vec<Decision>) {
    let mut batch = Batch::default();
    let mut decisions = Vec::with_capacity(jobs.len());
    // command_id -> index of the accepted command that carries it in this batch.
    let mut accepted_ids: HashMap<Uuid, usize> = HashMap::new();
    let now = Utc::now();
    for (index, job) in jobs.iter().enumerate() {
        if let Some(id) = job.ctx.command_id
            && let Some(&first) = accepted_ids.get(&id)
        {
            decisions.push(if jobs[first].ctx.fingerprint == job.ctx.fingerprint {
                Decision::Follows(first)
            } else {
                Decision::Final(Err(AppError::CommandIdReused(id)))
            });
            continue;
        }
        let Some(known) = courses.get_mut(&job.course_id) else {
            decisions.push(Decision::Final(Err(AppError::Unexpected(anyhow::anyhow!(
                "course {} was not loaded",
                job.course_id
            )))));
            continue;
        };
        decisions.push(match decide_one(job, &mut known.course, &mut batch, now) {
            Ok(outcome) => {
                if let Some(id) = job.ctx.command_id {
                    accepted_ids.insert(id, index);
                }
                Decision::Accepted(outcome)
            }
            Err(err) => Decision::Final(Err(err)),
        });
    }
    (batch, decisions)
}

/// Decides one command on `course`, applies its events and adds its rows to `batch`.
fn decide_one(
    job: &Job,
    course: &mut Course,
    batch: &mut Batch,
    now: chrono::DateTime<Utc>,
) -> Result<Outcome, AppError> {
    let ctx = &job.ctx;
    if let Some(expected) = ctx.expected_version
        && expected != course.version
    {
        return Err(AppError::VersionMismatch { expected, current: course.version });
    }
    let events = course.handle(ctx.actor, &job.command)?;
    let outcome = outcome(job.course_id, course.version + events.len() as u64, &events);
    if let Some(command_id) = ctx.command_id {
        let response =
            serde_json::to_value(&outcome).map_err(|e| AppError::Unexpected(e.into()))?;
        batch.commands.push(PendingCommand {
            stream_id: job.course_id,
            record: CommandRecord { command_id, fingerprint: ctx.fingerprint.clone(), response },
        });
    }
    if events.is_empty() {
        return Ok(outcome);
    }
    let causation_id = ctx.command_id.unwrap_or_else(Uuid::now_v7);
    let metadata = serde_json::to_value(EventMetadata {
        command_id: ctx.command_id,
        correlation_id: ctx.correlation_id.unwrap_or(causation_id),
        causation_id,
        actor_id: ctx.actor,
        traceparent: ctx.traceparent.clone(),
    })
    .map_err(|e| AppError::Unexpected(e.into()))?;
    for event in events {
        course.apply(&event);
        batch.events.push(PendingEvent {
            stream_id: job.course_id,
            version: course.version,
            event_id: Uuid::now_v7(),
            event,
            metadata: metadata.clone(),
            occurred_at: now,
        });
    }
    Ok(outcome)
}

/// A batch that could not be handled at all: every command gets the store's error.
struct Failed {
    jobs: Vec<Job>,
    err: StoreError,
}

impl Failed {
    fn answer_all(self) {
        for job in self.jobs {
            let _ = job.reply.send(Err(batch_error(&self.err)));
        }
    }
}

/// The error each command of a failed write gets.
fn batch_error(err: &StoreError) -> AppError {
    match err {
        StoreError::Unavailable(e) => AppError::Unavailable(anyhow::anyhow!("{e}")),
        other => AppError::Unexpected(anyhow::anyhow!("{other:#}")),
    }
}
