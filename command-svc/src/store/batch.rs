//! Group commit: the events and idempotency records of many commands, on many courses, written
//! by one statement — one transaction, one round trip, one WAL flush.
//!
//! Rows are passed as column arrays and expanded with `unnest`, so the SQL text (and therefore
//! the prepared statement) is the same whatever the batch size. A statement is atomic: when
//! any row collides with a stored one (another replica appended that version first, or recorded
//! that `command_id`), nothing of the batch is written and [`StoreError::BatchConflict`] is
//! returned; [`EventStore::batch_conflicts`] then names the courses that collided so that the
//! caller can write the others again at once and decide the colliding ones again.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use course_domain::Event;
use sea_orm::{ConnectionTrait, DbBackend, EntityTrait, Statement, Value};
use uuid::Uuid;

use super::error::violated_constraint;
use super::{CommandRecord, EventStore, RecordedEvent, StoreError, decode, events};

/// An event to append as `version` of `stream_id`.
#[derive(Debug, Clone)]
pub struct PendingEvent {
    /// The course.
    pub stream_id: Uuid,
    /// Version of the course after this event.
    pub version: u64,
    /// UUID v7.
    pub event_id: Uuid,
    /// The event.
    pub event: Event,
    /// [`super::EventMetadata`] as JSON.
    pub metadata: serde_json::Value,
    /// When its command was decided.
    pub occurred_at: DateTime<Utc>,
}

/// A command's answer, recorded under its `command_id` with its events.
#[derive(Debug, Clone)]
pub struct PendingCommand {
    /// The course the command was about.
    pub stream_id: Uuid,
    /// Id, fingerprint and response.
    pub record: CommandRecord,
}

/// What one group commit writes.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// Events in append order (a stream's versions ascending).
    pub events: Vec<PendingEvent>,
    /// Idempotency records.
    pub commands: Vec<PendingCommand>,
}

impl Batch {
    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.commands.is_empty()
    }

    /// Drops everything that belongs to one of `streams`.
    pub fn without(&mut self, streams: &HashSet<Uuid>) {
        self.events.retain(|e| !streams.contains(&e.stream_id));
        self.commands.retain(|c| !streams.contains(&c.stream_id));
    }
}

/// One statement, atomic on its own. The events get their global positions here, from the
/// sequencer row: the `UPDATE` holds its lock until this transaction commits, so appends (of
/// every replica) commit one after another in position order and a reader never sees a
/// position before every lower one is visible; a statement that fails rolls the counter back
/// with everything else, so positions have no gaps. `WITH ORDINALITY ... ORDER BY` numbers the
/// events in array order (a course's versions ascending). The new head is returned and
/// announced to every replica (`NOTIFY` is delivered at commit).
const APPEND: &str = r#"
WITH recorded AS (
    INSERT INTO command_log (command_id, fingerprint, stream_id, response)
    SELECT * FROM unnest($1::uuid[], $2::bytea[], $3::uuid[], $4::jsonb[])
),
numbered AS (
    UPDATE event_sequencer SET last_position = last_position + cardinality($5::uuid[])
    WHERE id = 1 AND cardinality($5::uuid[]) > 0
    RETURNING last_position
),
appended AS (
    INSERT INTO events (event_id, stream_id, version, event_type, schema_version, payload, metadata, occurred_at, global_position)
    SELECT event_id, stream_id, version, event_type, schema_version, payload, metadata, occurred_at,
           (SELECT last_position FROM numbered) - cardinality($5::uuid[]) + n
    FROM unnest($5::uuid[], $6::uuid[], $7::bigint[], $8::text[], $9::int[], $10::jsonb[], $11::jsonb[], $12::timestamptz[])
         WITH ORDINALITY AS t(event_id, stream_id, version, event_type, schema_version, payload, metadata, occurred_at, n)
    ORDER BY n
)
SELECT last_position, pg_notify($13, last_position::text) FROM numbered"#;

// Both queries drive the (stream_id, version) index from the handful of ids in the arrays: with
// a plain join the planner, which cannot know how short the arrays are, scans all events.
const CONFLICTS: &str = r#"
SELECT t.stream_id FROM unnest($1::uuid[], $2::bigint[]) AS t(stream_id, version)
WHERE EXISTS (SELECT 1 FROM events e WHERE e.stream_id = t.stream_id AND e.version = t.version)
UNION
SELECT t.stream_id FROM unnest($3::uuid[], $4::uuid[]) AS t(command_id, stream_id)
WHERE EXISTS (SELECT 1 FROM command_log c WHERE c.command_id = t.command_id)"#;

const TAILS: &str = r#"
SELECT e.* FROM unnest($1::uuid[], $2::bigint[]) AS t(stream_id, after)
CROSS JOIN LATERAL (
    SELECT * FROM events WHERE stream_id = t.stream_id AND version > t.after ORDER BY version
) AS e
ORDER BY e.stream_id, e.version"#;

fn column<T>(items: impl Iterator<Item = T>) -> Value
where
    Value: From<Vec<T>>,
{
    Value::from(items.collect::<Vec<T>>())
}

/// A `u64` as the `BIGINT` PostgreSQL stores.
pub(super) fn bigint(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value)
        .map_err(|_| StoreError::Unexpected(anyhow::anyhow!("{value} exceeds BIGINT")))
}

impl EventStore {
    /// Writes `batch` atomically and returns the global position of its last event (`None`
    /// when it had no events). [`StoreError::BatchConflict`] when any of its rows collides
    /// with a stored one; then nothing was written.
    #[tracing::instrument(
        level = "debug",
        skip_all,
        fields(events = batch.events.len(), commands = batch.commands.len()),
        err(level = "debug")
    )]
    pub async fn append_batch(&self, batch: &Batch) -> Result<Option<u64>, StoreError> {
        if batch.is_empty() {
            return Ok(None);
        }
        let versions =
            batch.events.iter().map(|e| bigint(e.version)).collect::<Result<Vec<_>, _>>()?;
        let values = vec![
            column(batch.commands.iter().map(|c| c.record.command_id)),
            column(batch.commands.iter().map(|c| c.record.fingerprint.clone())),
            column(batch.commands.iter().map(|c| c.stream_id)),
            column(batch.commands.iter().map(|c| c.record.response.clone())),
            column(batch.events.iter().map(|e| e.event_id)),
            column(batch.events.iter().map(|e| e.stream_id)),
            Value::from(versions),
            column(batch.events.iter().map(|e| e.event.event_type().to_owned())),
            column(batch.events.iter().map(|e| e.event.schema_version())),
            column(batch.events.iter().map(|e| e.event.to_payload())),
            column(batch.events.iter().map(|e| e.metadata.clone())),
            column(batch.events.iter().map(|e| e.occurred_at)),
            Value::from(super::SEQUENCED_CHANNEL),
        ];
        let statement = Statement::from_sql_and_values(DbBackend::Postgres, APPEND, values);
        match self.db.query_one_raw(statement).await {
            Ok(row) => {
                metrics::counter!("events_appended_total").increment(batch.events.len() as u64);
                let last = match row {
                    Some(row) => Some(row.try_get::<i64>("", "last_position")? as u64),
                    None => None,
                };
                Ok(last)
            }
            Err(err) => match violated_constraint(&err).as_deref() {
                Some("events_stream_version_key" | "command_log_pkey") => {
                    Err(StoreError::BatchConflict)
                }
                _ => Err(err.into()),
            },
        }
    }

    /// The courses of `batch` whose rows collide with stored ones: a version someone else
    /// appended, or a `command_id` someone else recorded.
    pub async fn batch_conflicts(&self, batch: &Batch) -> Result<HashSet<Uuid>, StoreError> {
        let versions =
            batch.events.iter().map(|e| bigint(e.version)).collect::<Result<Vec<_>, _>>()?;
        let values = vec![
            column(batch.events.iter().map(|e| e.stream_id)),
            Value::from(versions),
            column(batch.commands.iter().map(|c| c.record.command_id)),
            column(batch.commands.iter().map(|c| c.stream_id)),
        ];
        let rows = self
            .db
            .query_all_raw(Statement::from_sql_and_values(DbBackend::Postgres, CONFLICTS, values))
            .await?;
        rows.iter().map(|row| Ok(row.try_get::<Uuid>("", "stream_id")?)).collect()
    }

    /// The recorded answers of whichever of `ids` were recorded.
    pub async fn find_commands(&self, ids: &[Uuid]) -> Result<Vec<CommandRecord>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self
            .db
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT command_id, fingerprint, response FROM command_log WHERE command_id = ANY($1::uuid[])",
                [Value::from(ids.to_vec())],
            ))
            .await?;
        rows.iter()
            .map(|row| {
                Ok(CommandRecord {
                    command_id: row.try_get("", "command_id")?,
                    fingerprint: row.try_get("", "fingerprint")?,
                    response: row.try_get("", "response")?,
                })
            })
            .collect()
    }

    /// For each `(stream, after)`, the stream's events with a version above `after`; ordered
    /// by stream, then version.
    pub async fn read_tails(&self, from: &[(Uuid, u64)]) -> Result<Vec<RecordedEvent>, StoreError> {
        if from.is_empty() {
            return Ok(Vec::new());
        }
        let after = from.iter().map(|(_, v)| bigint(*v)).collect::<Result<Vec<_>, _>>()?;
        let values = vec![column(from.iter().map(|(id, _)| *id)), Value::from(after)];
        events::Entity::find()
            .from_raw_sql(Statement::from_sql_and_values(DbBackend::Postgres, TAILS, values))
            .all(&self.db)
            .await?
            .into_iter()
            .map(decode)
            .collect()
    }
}
