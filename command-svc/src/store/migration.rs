//! Schema of the event store, applied at start-up and by `command-svc migrate`.

use sea_orm_migration::prelude::*;

/// All migrations, in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateEventStore), Box::new(CreateSnapshots)]
    }
}

struct CreateEventStore;

impl MigrationName for CreateEventStore {
    fn name(&self) -> &str {
        "m20261126_000001_create_event_store"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateEventStore {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Plain SQL: jsonb, partial indexes and constraint names matter here and read best as SQL.
        manager
            .get_connection()
            .execute_unprepared(
                r#"
CREATE TABLE events (
    id              BIGSERIAL PRIMARY KEY,
    global_position BIGINT,
    event_id        UUID NOT NULL,
    stream_id       UUID NOT NULL,
    version         BIGINT NOT NULL CHECK (version > 0),
    event_type      TEXT NOT NULL,
    schema_version  INTEGER NOT NULL,
    payload         JSONB NOT NULL,
    metadata        JSONB NOT NULL,
    occurred_at     TIMESTAMPTZ NOT NULL,
    committed_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    -- The optimistic-concurrency check: two writers cannot both append version N of a stream.
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, version),
    CONSTRAINT events_global_position_key UNIQUE (global_position)
);
-- The sequencer's work list: committed events that have no global position yet.
CREATE INDEX events_unsequenced_idx ON events (id) WHERE global_position IS NULL;

-- Single row: the last global position handed out. Locking it serializes sequencers.
CREATE TABLE event_sequencer (
    id            SMALLINT PRIMARY KEY CHECK (id = 1),
    last_position BIGINT NOT NULL
);
INSERT INTO event_sequencer (id, last_position) VALUES (1, 0);

CREATE TABLE command_log (
    command_id  UUID PRIMARY KEY,
    fingerprint BYTEA NOT NULL,
    stream_id   UUID NOT NULL,
    response    JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Publication checkpoints of the outbox relay (one row per relay name).
CREATE TABLE outbox_checkpoint (
    name       TEXT PRIMARY KEY,
    position   BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
"#,
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "DROP TABLE outbox_checkpoint; DROP TABLE command_log; DROP TABLE event_sequencer; DROP TABLE events;",
            )
            .await?;
        Ok(())
    }
}

/// Course snapshots (see `store::snapshot`): one row per course, the latest state written.
struct CreateSnapshots;

impl MigrationName for CreateSnapshots {
    fn name(&self) -> &str {
        "m20261202_000001_create_snapshots"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateSnapshots {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                r#"
CREATE TABLE snapshots (
    stream_id      UUID PRIMARY KEY,
    version        BIGINT NOT NULL CHECK (version > 0),
    -- The aggregate's shape when written; another shape is ignored and overwritten.
    schema_version INTEGER NOT NULL,
    state          JSONB NOT NULL,
    taken_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
"#,
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared("DROP TABLE snapshots;").await?;
        Ok(())
    }
}
