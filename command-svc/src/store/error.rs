use std::ops::Deref;

use sea_orm::{DbErr, RuntimeErr, sqlx};

/// What can go wrong talking to the event store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Someone else appended to the stream first (unique (stream_id, version)).
    #[error("stream is at version {current}")]
    Conflict {
        /// The stream's version now.
        current: u64,
    },
    /// A row of a batched append collides with a stored one; nothing was written.
    #[error("a course or command id in the batch was written concurrently")]
    BatchConflict,
    /// PostgreSQL cannot be reached or is shutting down.
    #[error("event store unavailable")]
    Unavailable(#[source] DbErr),
    /// Anything else: a bug or corrupt data.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<DbErr> for StoreError {
    fn from(err: DbErr) -> Self {
        if is_unavailable(&err) {
            StoreError::Unavailable(err)
        } else {
            StoreError::Unexpected(anyhow::Error::new(err))
        }
    }
}

/// The name of the constraint a statement violated, if any.
pub(crate) fn violated_constraint(err: &DbErr) -> Option<String> {
    match err {
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            match e.deref() {
                sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => {
                    db.constraint().map(str::to_owned)
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// True when the error says "the database is not there", as opposed to "the statement is wrong".
pub(crate) fn is_unavailable(err: &DbErr) -> bool {
    let sqlx_err = match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => return true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => e,
        _ => return false,
    };
    match sqlx_err.deref() {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        // Class 08: connection exception; 57P01-03: admin/crash shutdown, cannot connect now.
        sqlx::Error::Database(db) => {
            db.code().is_some_and(|code| code.starts_with("08") || code.starts_with("57P"))
        }
        _ => false,
    }
}
