//! The command side's use cases: load the course, decide, append — with idempotency keys,
//! optimistic concurrency and bounded retries.

mod cache;
mod locks;

use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use chrono::Utc;
use course_domain::{Command, Course, DomainError, Event};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::store::{CommandRecord, EventMetadata, EventStore, NewEvent, StoreError};
pub use cache::CourseCache;
pub use locks::KeyedLocks;

/// Who issues a command and under which guarantees.
#[derive(Debug, Clone)]
pub struct CommandContext {
    /// The authenticated caller.
    pub actor: Uuid,
    /// Client idempotency key.
    pub command_id: Option<Uuid>,
    /// Fail with [`AppError::VersionMismatch`] unless the course is at this version.
    pub expected_version: Option<u64>,
    /// Hash of the request, compared when a `command_id` is reused.
    pub fingerprint: Vec<u8>,
    /// Correlation id from the caller, if any.
    pub correlation_id: Option<Uuid>,
    /// W3C traceparent of the command span.
    pub traceparent: Option<String>,
}

/// What a command answers; stored verbatim for idempotent retries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The course.
    pub course_id: Uuid,
    /// Its version after the command.
    pub version: u64,
    /// The section AddSection created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_id: Option<Uuid>,
    /// Its 1-based position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<u32>,
    /// The comment CommentCourse created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment_id: Option<Uuid>,
}

/// Why a command did not go through.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A business rule refused it.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// `expected_version` did not match.
    #[error("expected version {expected} but the course is at version {current}")]
    VersionMismatch {
        /// What the caller expected.
        expected: u64,
        /// What it is.
        current: u64,
    },
    /// The idempotency key was used for another request.
    #[error("command_id {0} was already used for a different request")]
    CommandIdReused(Uuid),
    /// Still conflicting after every retry.
    #[error("the course is changing too fast; retry the command")]
    TooMuchContention,
    /// The event store is unreachable.
    #[error("event store unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// A bug or corrupt data.
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

impl From<StoreError> for AppError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(e) => AppError::Unavailable(e.into()),
            other => AppError::Unexpected(other.into()),
        }
    }
}

/// Handles the ten course commands.
#[derive(Clone)]
pub struct CourseCommands {
    store: EventStore,
    locks: KeyedLocks,
    cache: CourseCache,
    retries: usize,
    appended: Arc<Notify>,
}

/// Courses kept in memory per replica.
const CACHED_COURSES: usize = 50_000;

enum Attempt {
    Conflict,
    Fail(AppError),
}

impl CourseCommands {
    /// `appended` is notified after every successful append (it wakes the sequencer).
    pub fn new(store: EventStore, retries: usize, appended: Arc<Notify>) -> Self {
        Self {
            store,
            locks: KeyedLocks::default(),
            cache: CourseCache::new(CACHED_COURSES),
            retries,
            appended,
        }
    }

    /// Runs `command` on course `course_id` for `ctx.actor`.
    #[tracing::instrument(
        skip(self, ctx, command),
        fields(command = command.name(), %course_id, actor = %ctx.actor),
        // Refusals are business outcomes; what an operator must act on is logged at ERROR
        // where it is mapped to a status.
        err(level = "info", Display)
    )]
    pub async fn execute(
        &self,
        course_id: Uuid,
        ctx: CommandContext,
        command: Command,
    ) -> Result<Outcome, AppError> {
        if let Some(id) = ctx.command_id
            && let Some(previous) = self.store.find_command(id).await?
        {
            return replay(&ctx, previous);
        }
        let _turn = self.locks.lock(course_id).await;
        let attempt = || self.attempt(course_id, &ctx, &command);
        let result = attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(2))
                    .with_max_delay(Duration::from_millis(100))
                    .with_max_times(self.retries)
                    .with_jitter(),
            )
            .when(|e| matches!(e, Attempt::Conflict))
            .await;
        match result {
            Ok(outcome) => Ok(outcome),
            Err(Attempt::Fail(err)) => Err(err),
            Err(Attempt::Conflict) => Err(AppError::TooMuchContention),
        }
    }

    async fn attempt(
        &self,
        course_id: Uuid,
        ctx: &CommandContext,
        command: &Command,
    ) -> Result<Outcome, Attempt> {
        // The cached course (if any) plus whatever was appended after it; a new course has no
        // history to read.
        let mut course = self.cache.take(course_id).unwrap_or_default();
        if !matches!(command, Command::CreateCourse { .. }) {
            let newer = self
                .store
                .read_stream(course_id, course.version + 1, None)
                .await
                .map_err(|e| Attempt::Fail(e.into()))?;
            for recorded in &newer {
                course.apply(&recorded.event);
            }
        }
        let result = self.decide_and_append(course_id, &course, ctx, command).await;
        // Whatever happened, the course as known is worth keeping for the next command.
        if let Ok((_, appended)) = &result {
            for event in appended {
                course.apply(event);
            }
        }
        self.cache.put(course_id, course);
        result.map(|(outcome, _)| outcome)
    }

    /// Decides `command` on `course` and appends the result; returns the answer and the events
    /// appended.
    async fn decide_and_append(
        &self,
        course_id: Uuid,
        course: &Course,
        ctx: &CommandContext,
        command: &Command,
    ) -> Result<(Outcome, Vec<Event>), Attempt> {
        if let Some(expected) = ctx.expected_version
            && expected != course.version
        {
            return Err(Attempt::Fail(AppError::VersionMismatch {
                expected,
                current: course.version,
            }));
        }
        let events = course.handle(ctx.actor, command).map_err(|e| Attempt::Fail(e.into()))?;
        let outcome = outcome(course_id, course.version + events.len() as u64, &events);
        let record = match ctx.command_id {
            Some(command_id) => Some(CommandRecord {
                command_id,
                fingerprint: ctx.fingerprint.clone(),
                response: serde_json::to_value(&outcome)
                    .map_err(|e| Attempt::Fail(AppError::Unexpected(e.into())))?,
            }),
            None => None,
        };
        if events.is_empty() && record.is_none() {
            return Ok((outcome, Vec::new()));
        }
        let causation_id = ctx.command_id.unwrap_or_else(Uuid::now_v7);
        let metadata = EventMetadata {
            command_id: ctx.command_id,
            correlation_id: ctx.correlation_id.unwrap_or(causation_id),
            causation_id,
            actor_id: ctx.actor,
            traceparent: ctx.traceparent.clone(),
        };
        let new_events: Vec<NewEvent> =
            events.into_iter().map(|event| NewEvent { event_id: Uuid::now_v7(), event }).collect();
        match self
            .store
            .append(course_id, course.version, &new_events, &metadata, Utc::now(), record.as_ref())
            .await
        {
            Ok(_) => {
                if !new_events.is_empty() {
                    self.appended.notify_one();
                }
                Ok((outcome, new_events.into_iter().map(|new| new.event).collect()))
            }
            Err(StoreError::Conflict { current }) => match ctx.expected_version {
                Some(expected) => {
                    Err(Attempt::Fail(AppError::VersionMismatch { expected, current }))
                }
                None => {
                    tracing::debug!(current, "concurrent append, deciding again");
                    Err(Attempt::Conflict)
                }
            },
            Err(StoreError::DuplicateCommand) => {
                // A concurrent call with the same command_id won; answer what it answered.
                let id = ctx.command_id.ok_or_else(|| {
                    Attempt::Fail(AppError::Unexpected(anyhow::anyhow!(
                        "duplicate without command id"
                    )))
                })?;
                match self.store.find_command(id).await.map_err(|e| Attempt::Fail(e.into()))? {
                    Some(previous) => {
                        replay(ctx, previous).map(|o| (o, Vec::new())).map_err(Attempt::Fail)
                    }
                    None => Err(Attempt::Conflict),
                }
            }
            Err(other) => Err(Attempt::Fail(other.into())),
        }
    }
}

fn replay(ctx: &CommandContext, previous: CommandRecord) -> Result<Outcome, AppError> {
    if previous.fingerprint != ctx.fingerprint {
        return Err(AppError::CommandIdReused(previous.command_id));
    }
    serde_json::from_value(previous.response).map_err(|e| AppError::Unexpected(e.into()))
}

fn outcome(course_id: Uuid, version: u64, events: &[Event]) -> Outcome {
    let mut outcome =
        Outcome { course_id, version, section_id: None, position: None, comment_id: None };
    for event in events {
        match event {
            Event::SectionAdded { section_id, position, .. } => {
                outcome.section_id = Some(*section_id);
                outcome.position = Some(*position);
            }
            Event::CourseCommented { comment_id, .. } => outcome.comment_id = Some(*comment_id),
            _ => {}
        }
    }
    outcome
}
