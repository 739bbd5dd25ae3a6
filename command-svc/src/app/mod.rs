//! The command side's use cases: load the course, decide, append — with idempotency keys,
//! optimistic concurrency, bounded retries and group commit.
//!
//! A command is handed to the [`writer`] that owns its course (courses are spread over a fixed
//! set of writers by id). A writer takes whatever commands are waiting, decides them one after
//! another against its in-memory courses — each seeing the events of the ones before it — and
//! writes all their events and idempotency records with one statement. Every caller still gets
//! its own answer.

mod writer;

use std::sync::Arc;

use course_domain::{Command, DomainError, Event};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::config::BatchArgs;
use crate::sequencer::HeadSender;
use crate::store::{CommandRecord, EventStore, StoreError};

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
    writers: Arc<[mpsc::Sender<writer::Job>]>,
}

impl CourseCommands {
    /// Starts the writers; each advances `head` to the position of its last committed event.
    /// The writers stop once every clone of the returned value is dropped.
    pub fn new(store: EventStore, settings: &BatchArgs, head: HeadSender) -> Self {
        let writers = (0..settings.writers())
            .map(|_| writer::spawn(store.clone(), settings, head.clone()))
            .collect();
        Self { writers }
    }

    /// Runs `command` on course `course_id` for `ctx.actor`.
    #[tracing::instrument(
        level = "debug",
        skip(self, ctx, command),
        fields(command = command.name(), %course_id, actor = %ctx.actor)
    )]
    pub async fn execute(
        &self,
        course_id: Uuid,
        ctx: CommandContext,
        command: Command,
    ) -> Result<Outcome, AppError> {
        let (reply, answer) = oneshot::channel();
        let job = writer::Job { course_id, ctx, command, reply, attempts: 0 };
        let (hi, lo) = course_id.as_u64_pair();
        let shard = ((hi ^ lo) % self.writers.len() as u64) as usize;
        self.writers[shard]
            .send(job)
            .await
            .map_err(|_| AppError::Unavailable(anyhow::anyhow!("the service is stopping")))?;
        let result = answer
            .await
            .map_err(|_| AppError::Unavailable(anyhow::anyhow!("the service is stopping")))?;
        match &result {
            Err(AppError::Domain(rule)) => tracing::debug!(%rule, "refused"),
            Err(err @ (AppError::VersionMismatch { .. } | AppError::CommandIdReused(_))) => {
                tracing::debug!(%err, "refused")
            }
            _ => {}
        }
        result
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
