//! The relay's bookkeeping: a checkpoint per relay (the last global position the broker
//! confirmed) and the lease that makes one replica at a time the publisher.
//!
//! The lease is a session-level advisory lock held on a connection taken out of the pool for
//! the purpose. It is held for as long as the replica keeps publishing — many batches, not one —
//! so the holder can have several batches in flight at once. The checkpoint only moves through
//! that same connection, and only while it holds the lock: a holder whose connection died (or
//! whose database restarted) fails its next statement and starts over, and PostgreSQL frees the
//! lock with the connection, so a standby takes over within its next poll.

use std::sync::Arc;

use sea_orm::sqlx::{self, Connection, PgConnection};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, RuntimeErr, Statement};

use super::{EventStore, StoreError};

/// First key of the relay's advisory locks ("utb"), so they cannot collide with other locks.
const LOCK_CLASS: i32 = 0x0075_7462;

/// What a relay still has to publish.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OutboxBacklog {
    /// Sequenced events not yet published.
    pub events: u64,
    /// Seconds since the oldest of them committed.
    pub oldest_age_secs: f64,
}

impl EventStore {
    /// Creates the checkpoint row of relay `name` if it does not exist yet.
    pub async fn ensure_outbox(&self, name: &str) -> Result<(), StoreError> {
        self.db
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "INSERT INTO outbox_checkpoint (name, position) VALUES ($1, 0) ON CONFLICT (name) DO NOTHING",
                [name.into()],
            ))
            .await?;
        Ok(())
    }

    /// A connection of its own (outside the pool) on which relay `name` asks for its lease.
    /// A standby keeps it and asks again on it, rather than opening a connection each time.
    pub async fn outbox_lease_candidate(&self, name: &str) -> Result<LeaseCandidate, StoreError> {
        let conn =
            self.db.get_postgres_connection_pool().acquire().await.map_err(query_err)?.detach();
        Ok(LeaseCandidate { conn, name: name.to_owned() })
    }

    /// How many sequenced events relay `name` has not published, and how long ago the oldest of
    /// them committed.
    pub async fn outbox_backlog(&self, name: &str) -> Result<OutboxBacklog, StoreError> {
        let row = self
            .db
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                r#"
SELECT (SELECT last_position FROM event_sequencer WHERE id = 1) - c.position AS events,
       EXTRACT(EPOCH FROM now() - e.committed_at)::DOUBLE PRECISION AS oldest_secs
FROM outbox_checkpoint c
LEFT JOIN events e ON e.global_position = c.position + 1
WHERE c.name = $1"#,
                [name.into()],
            ))
            .await?;
        Ok(match row {
            Some(row) => OutboxBacklog {
                events: row.try_get::<i64>("", "events")?.max(0) as u64,
                oldest_age_secs: row.try_get::<Option<f64>>("", "oldest_secs")?.unwrap_or(0.0),
            },
            None => OutboxBacklog::default(),
        })
    }
}

/// A connection that may become a relay's lease.
pub struct LeaseCandidate {
    conn: PgConnection,
    name: String,
}

/// What asking for the lease gave.
pub enum Leased {
    /// This replica publishes.
    Held(RelayLease),
    /// Another replica holds the lease; ask again later with this.
    Standby(LeaseCandidate),
}

impl LeaseCandidate {
    /// Takes the lease if no other replica holds it.
    pub async fn try_lease(mut self) -> Result<Leased, StoreError> {
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext($2))")
            .bind(LOCK_CLASS)
            .bind(&self.name)
            .fetch_one(&mut self.conn)
            .await
            .map_err(query_err)?;
        if !locked {
            return Ok(Leased::Standby(self));
        }
        // The checkpoint only saves work: one lost in a database crash makes the relay publish
        // those events again (consumers skip duplicates), it never loses one. So its updates do
        // not wait for the WAL flush. Events and their positions are always committed durably.
        sqlx::query("SET synchronous_commit = off")
            .execute(&mut self.conn)
            .await
            .map_err(query_err)?;
        let position: i64 =
            sqlx::query_scalar("SELECT position FROM outbox_checkpoint WHERE name = $1")
                .bind(&self.name)
                .fetch_optional(&mut self.conn)
                .await
                .map_err(query_err)?
                .ok_or_else(|| anyhow::anyhow!("outbox checkpoint {} missing", self.name))?;
        let Self { conn, name } = self;
        Ok(Leased::Held(RelayLease { conn, name, position: position.max(0) as u64 }))
    }
}

/// The exclusive right to publish a relay's events, held until [`RelayLease::close`] or drop.
pub struct RelayLease {
    conn: PgConnection,
    name: String,
    /// Everything up to this global position was confirmed when the lease was taken.
    pub position: u64,
}

impl RelayLease {
    /// Records that everything up to `position` is published. Fails when the lease's connection
    /// is gone (and with it the lock): the caller must stop publishing and start over.
    pub async fn advance(&mut self, position: u64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbox_checkpoint SET position = $2, updated_at = now() WHERE name = $1",
        )
        .bind(&self.name)
        .bind(position as i64)
        .execute(&mut self.conn)
        .await
        .map_err(query_err)?;
        self.position = position;
        Ok(())
    }

    /// Gives the lease up (closing its connection frees the lock).
    pub async fn close(self) {
        if let Err(err) = self.conn.close().await {
            tracing::debug!(error = %err, "closing the relay lease's connection");
        }
    }
}

fn query_err(err: sqlx::Error) -> StoreError {
    StoreError::from(DbErr::Query(RuntimeErr::SqlxError(Arc::new(err))))
}
