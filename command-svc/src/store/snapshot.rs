//! Snapshots: a course's state at some version, so that a long stream is not read from its
//! first event after a restart or a cache eviction. A snapshot is only a shortcut — the events
//! stay the truth — so it is written outside the append transaction and may lag behind.

use sea_orm::{ConnectionTrait, DbBackend, Statement, Value};
use uuid::Uuid;

use super::batch::bigint;
use super::{EventStore, StoreError};

/// A stored course state.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The course.
    pub stream_id: Uuid,
    /// The version the state is at.
    pub version: u64,
    /// The shape the state was written in (`course_domain::SNAPSHOT_SCHEMA` then).
    pub schema: i32,
    /// The state.
    pub state: serde_json::Value,
}

impl EventStore {
    /// The stored snapshots of whichever of `streams` have one.
    pub async fn load_snapshots(&self, streams: &[Uuid]) -> Result<Vec<Snapshot>, StoreError> {
        if streams.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self
            .db
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT stream_id, version, schema_version, state FROM snapshots WHERE stream_id = ANY($1::uuid[])",
                [Value::from(streams.to_vec())],
            ))
            .await?;
        rows.iter()
            .map(|row| {
                Ok(Snapshot {
                    stream_id: row.try_get("", "stream_id")?,
                    version: row.try_get::<i64>("", "version")?.max(0) as u64,
                    schema: row.try_get("", "schema_version")?,
                    state: row.try_get("", "state")?,
                })
            })
            .collect()
    }

    /// Stores `snapshot` unless a newer one of the same shape is already there.
    pub async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let version = bigint(snapshot.version)?;
        self.db
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                r#"
INSERT INTO snapshots (stream_id, version, schema_version, state) VALUES ($1, $2, $3, $4)
ON CONFLICT (stream_id) DO UPDATE
SET version = EXCLUDED.version, schema_version = EXCLUDED.schema_version,
    state = EXCLUDED.state, taken_at = now()
WHERE snapshots.schema_version <> EXCLUDED.schema_version OR snapshots.version < EXCLUDED.version"#,
                [
                    snapshot.stream_id.into(),
                    version.into(),
                    snapshot.schema.into(),
                    snapshot.state.clone().into(),
                ],
            ))
            .await?;
        Ok(())
    }
}
