//! The PostgreSQL event store, through SeaORM.
//!
//! Appends are batched (see [`batch`]): one statement per group of commands, guarded by the
//! unique (stream_id, version) constraint.
//! Global order is assigned *after* commit by [`EventStore::sequence`]: a single-row lock
//! serializes sequencers, and each run numbers the committed, not-yet-numbered events in insertion
//! order. An event that commits late therefore gets a *higher* position than everything already
//! readable, so a reader resuming from its last position can never skip it (the "sequence gap"
//! trap of a plain BIGSERIAL).

mod batch;
mod entity;
mod error;
pub mod migration;
mod outbox;
mod snapshot;

use chrono::{DateTime, Utc};
use course_domain::Event;
use sea_orm::{
    ColumnTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, Statement, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use batch::{Batch, PendingCommand, PendingEvent};
pub use entity::{command_log, events};
pub use error::StoreError;
pub use outbox::{LeaseCandidate, Leased, OutboxBacklog, RelayLease};
pub use snapshot::Snapshot;

/// Who and what caused an event; stored as jsonb next to it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    /// Client idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<Uuid>,
    /// Shared by everything one user action caused.
    pub correlation_id: Uuid,
    /// The message that caused this event.
    pub causation_id: Uuid,
    /// The authenticated caller.
    pub actor_id: Uuid,
    /// W3C traceparent of the command span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// An event read back from the store.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    /// Position in global order; `None` until sequenced.
    pub global_position: Option<u64>,
    /// Unique id.
    pub event_id: Uuid,
    /// The course.
    pub stream_id: Uuid,
    /// Version of the course after this event.
    pub version: u64,
    /// The event, upcast to its current shape.
    pub event: Event,
    /// Metadata.
    pub metadata: EventMetadata,
    /// When the command was decided.
    pub occurred_at: DateTime<Utc>,
}

/// What a command answered, kept for idempotent retries.
#[derive(Debug, Clone)]
pub struct CommandRecord {
    /// Client idempotency key.
    pub command_id: Uuid,
    /// SHA-256 of the request.
    pub fingerprint: Vec<u8>,
    /// The stored response.
    pub response: serde_json::Value,
}

/// Handle to the event store; cheap to clone.
#[derive(Debug, Clone)]
pub struct EventStore {
    db: DatabaseConnection,
}

impl EventStore {
    /// Connects lazily: the service starts even while PostgreSQL is down.
    pub async fn connect_lazy(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .max_connections(max_connections)
            .min_connections(0)
            .connect_timeout(std::time::Duration::from_secs(3))
            .acquire_timeout(std::time::Duration::from_secs(3))
            .connect_lazy(true)
            .sqlx_logging(false);
        let db = Database::connect(options).await?;
        Ok(Self { db })
    }

    /// The underlying connection (for LISTEN and tests).
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Connects to `url`, applies pending migrations and disconnects (`command-svc migrate`).
    pub async fn migrate_url(url: &str) -> anyhow::Result<()> {
        Self::connect_lazy(url, 2).await?.migrate().await?;
        tracing::info!("migrations applied");
        Ok(())
    }

    /// Applies pending migrations.
    #[tracing::instrument(skip(self), err)]
    pub async fn migrate(&self) -> Result<(), StoreError> {
        migration::Migrator::up(&self.db, None).await?;
        Ok(())
    }

    /// Connections in the pool: (open, idle).
    pub fn pool_size(&self) -> (u32, usize) {
        let pool = self.db.get_postgres_connection_pool();
        (pool.size(), pool.num_idle())
    }

    /// True when PostgreSQL answers.
    pub async fn ping(&self) -> bool {
        self.db.ping().await.is_ok()
    }

    /// Events of a stream from `from_version` (inclusive), at most `limit`.
    pub async fn read_stream(
        &self,
        stream_id: Uuid,
        from_version: u64,
        limit: Option<u64>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut query = events::Entity::find()
            .filter(events::Column::StreamId.eq(stream_id))
            .filter(events::Column::Version.gte(from_version.max(1) as i64))
            .order_by_asc(events::Column::Version);
        if let Some(limit) = limit {
            query = query.limit(limit);
        }
        query.all(&self.db).await?.into_iter().map(decode).collect()
    }

    /// Sequenced events with a global position above `after`, in global order.
    pub async fn read_all(&self, after: u64, limit: u64) -> Result<Vec<RecordedEvent>, StoreError> {
        events::Entity::find()
            .filter(events::Column::GlobalPosition.gt(after as i64))
            .order_by_asc(events::Column::GlobalPosition)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(decode)
            .collect()
    }

    /// Gives global positions to committed events that have none, in insertion order, at most
    /// `batch` of them. Returns the last position handed out (or `None` if there was nothing to
    /// do). Concurrent callers (other replicas) wait on the sequencer row lock.
    pub async fn sequence(&self, batch: u64) -> Result<Option<u64>, StoreError> {
        // Usually there is nothing to number: find out without taking the sequencer's lock
        // (which every append holds until it commits).
        let pending = self
            .db
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT EXISTS (SELECT 1 FROM events WHERE global_position IS NULL) AS pending",
            ))
            .await?
            .map(|row| row.try_get::<bool>("", "pending"))
            .transpose()?
            .unwrap_or(false);
        if !pending {
            return Ok(None);
        }
        let txn = self.db.begin().await?;
        let row = txn
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT last_position FROM event_sequencer WHERE id = 1 FOR UPDATE",
            ))
            .await?
            .ok_or_else(|| anyhow::anyhow!("event_sequencer row missing"))?;
        let last: i64 = row.try_get("", "last_position")?;
        // A fresh statement, so a fresh READ COMMITTED snapshot taken after the lock was granted:
        // it sees every event committed before now, and none of them is numbered twice.
        let numbered = txn
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                r#"
WITH pending AS (
    SELECT id, row_number() OVER (ORDER BY id) AS rn
    FROM events WHERE global_position IS NULL ORDER BY id LIMIT $2
)
UPDATE events e SET global_position = $1 + pending.rn
FROM pending WHERE e.id = pending.id"#,
                [last.into(), (batch as i64).into()],
            ))
            .await?
            .rows_affected() as i64;
        if numbered == 0 {
            txn.rollback().await?;
            return Ok(None);
        }
        let new_last = last + numbered;
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE event_sequencer SET last_position = $1 WHERE id = 1",
            [new_last.into()],
        ))
        .await?;
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_notify($1, $2)",
            [SEQUENCED_CHANNEL.into(), new_last.to_string().into()],
        ))
        .await?;
        txn.commit().await?;
        Ok(Some(new_last as u64))
    }

    /// The highest global position handed out so far.
    pub async fn head_position(&self) -> Result<u64, StoreError> {
        let row = self
            .db
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT last_position FROM event_sequencer WHERE id = 1",
            ))
            .await?;
        Ok(match row {
            Some(row) => row.try_get::<i64>("", "last_position")? as u64,
            None => 0,
        })
    }
}

/// NOTIFY channel on which sequencers announce the new head position.
pub const SEQUENCED_CHANNEL: &str = "course_events_sequenced";

fn decode(row: events::Model) -> Result<RecordedEvent, StoreError> {
    let event = Event::from_stored(&row.event_type, row.schema_version, row.payload)
        .map_err(|e| anyhow::anyhow!("event {}: {e}", row.event_id))?;
    let metadata: EventMetadata = serde_json::from_value(row.metadata)
        .map_err(|e| anyhow::anyhow!("event {} metadata: {e}", row.event_id))?;
    Ok(RecordedEvent {
        global_position: row.global_position.map(|p| p as u64),
        event_id: row.event_id,
        stream_id: row.stream_id,
        version: row.version as u64,
        event,
        metadata,
        occurred_at: row.occurred_at.with_timezone(&Utc),
    })
}
