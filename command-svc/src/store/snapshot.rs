//! Snapshots: a course's state at some version, so that a long stream is not read from its
//! first event after a restart or a cache eviction. A snapshot is only a shortcut — the events
//! stay the truth — so it is written outside the append transaction and may lag behind.

use std::collections::HashMap;

use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait, Value};
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

    /// Stores `snapshots` with one statement, each unless a newer one of the same shape is
    /// already there; of several of one course, the newest. Committed without waiting for the
    /// WAL flush: the events a snapshot sums up were durable before it was taken, so a snapshot
    /// lost in a database crash only means reading more events.
    pub async fn save_snapshots(&self, snapshots: &[Snapshot]) -> Result<(), StoreError> {
        // One statement cannot update a row twice: keep the newest of each course.
        let mut newest: HashMap<Uuid, &Snapshot> = HashMap::with_capacity(snapshots.len());
        for snapshot in snapshots {
            let kept = newest.entry(snapshot.stream_id).or_insert(snapshot);
            if snapshot.version > kept.version {
                *kept = snapshot;
            }
        }
        if newest.is_empty() {
            return Ok(());
        }
        let (mut ids, mut versions, mut schemas, mut states) = (vec![], vec![], vec![], vec![]);
        for snapshot in newest.into_values() {
            ids.push(snapshot.stream_id);
            versions.push(bigint(snapshot.version)?);
            schemas.push(snapshot.schema);
            states.push(snapshot.state.clone());
        }
        let txn = self.db.begin().await?;
        txn.execute_raw(Statement::from_string(
            DbBackend::Postgres,
            "SET LOCAL synchronous_commit = off",
        ))
        .await?;
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            r#"
INSERT INTO snapshots (stream_id, version, schema_version, state)
SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::int[], $4::jsonb[])
ON CONFLICT (stream_id) DO UPDATE
SET version = EXCLUDED.version, schema_version = EXCLUDED.schema_version,
    state = EXCLUDED.state, taken_at = now()
WHERE snapshots.schema_version <> EXCLUDED.schema_version OR snapshots.version < EXCLUDED.version"#,
            [ids.into(), versions.into(), schemas.into(), states.into()],
        ))
        .await?;
        txn.commit().await?;
        Ok(())
    }
}
