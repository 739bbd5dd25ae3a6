//! The MongoDB read model.
//!
//! One database holds:
//! * `projection_state`: `{_id: "generations", active, building}`, one
//!   `{_id: "watermark_g{n}", position}` per generation and one
//!   `{_id: "lease_g{n}", owner, expires_at}` per generation ever reserved for a rebuild;
//! * `dead_letters`: events the projection could not apply, `_id` = global position;
//! * per generation `n`: `courses_g{n}` (one document per course, `_id` = course id, with its
//!   sections and counts, never its participants), `participants_g{n}` (one document per course
//!   and user, `participants`), `comments_g{n}` (one document per comment) and `applied_g{n}`
//!   (positions applied above the watermark).
//!
//! Every write of a course is a single-document operation; the course's `version` field guards
//! it (a participation's own `version` guards it). No multi-document transactions are used. A
//! batch of events is written in bulk (`bulk`).

mod bulk;
mod documents;
mod participants;
mod queries;
mod read_model;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mongodb::bson::{Document, doc};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::ClientOptions;
use mongodb::{Client, Collection, Database, IndexModel};
use projection::ReadModelError;

pub use documents::{CommentDoc, CourseDoc, Malformed, chrono_time, participant_proto};
pub use participants::ParticipantDoc;
pub use queries::{
    CommentCursor, CourseCursor, Enrollment, EnrollmentCursor, PlatformStats, SearchFilter,
};

/// Name of the collection with the generation state and watermarks.
const STATE: &str = "projection_state";
/// `_id` of the generation state document.
const GENERATIONS_ID: &str = "generations";
/// Server selection timeout when the URI does not set one: a request fails with UNAVAILABLE
/// after this long when MongoDB is down, instead of the driver's 30 s.
const SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(5);
/// MongoDB's duplicate key error.
const DUPLICATE_KEY: i32 = 11000;

/// The read model's storage. Cheap to clone.
#[derive(Clone)]
pub struct MongoReadModel {
    db: Database,
    /// Generations whose indexes this process has created.
    indexed: Arc<Mutex<HashSet<u32>>>,
}

impl std::fmt::Debug for MongoReadModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoReadModel").field("database", &self.db.name()).finish()
    }
}

/// The collections of one generation.
pub(crate) struct GenerationCollections {
    pub courses: Collection<CourseDoc>,
    pub comments: Collection<CommentDoc>,
    pub participants: Collection<Document>,
    pub applied: Collection<Document>,
}

impl MongoReadModel {
    /// Parses `uri` and prepares a client; connections are made lazily, so a MongoDB that is
    /// down does not stop the service from starting.
    pub async fn connect(uri: &str, database: &str) -> anyhow::Result<Self> {
        let mut options = ClientOptions::parse(uri).await?;
        if options.server_selection_timeout.is_none() {
            options.server_selection_timeout = Some(SERVER_SELECTION_TIMEOUT);
        }
        if options.app_name.is_none() {
            options.app_name = Some("query-mongo-svc".to_owned());
        }
        let client = Client::with_options(options)?;
        Ok(Self { db: client.database(database), indexed: Arc::default() })
    }

    /// The database (tests inspect and flush it).
    pub fn database(&self) -> &Database {
        &self.db
    }

    fn state(&self) -> Collection<Document> {
        self.db.collection(STATE)
    }

    pub(crate) fn generation(&self, generation: u32) -> GenerationCollections {
        GenerationCollections {
            courses: self.db.collection(&format!("courses_g{generation}")),
            comments: self.db.collection(&format!("comments_g{generation}")),
            participants: self.db.collection(&format!("participants_g{generation}")),
            applied: self.db.collection(&format!("applied_g{generation}")),
        }
    }

    /// Checks that MongoDB answers and creates the indexes of the active generation.
    /// Idempotent; run at start-up.
    pub async fn prepare(&self) -> Result<(), ReadModelError> {
        self.db.run_command(doc! { "ping": 1 }).await.map_err(classify)?;
        let generations = projection::ReadModel::generations(self).await?;
        for generation in generations.written() {
            self.ensure_indexes(generation).await?;
        }
        Ok(())
    }

    /// Creates the indexes of `generation` once per process (creating an index that exists is
    /// a no-op for MongoDB, so several replicas may race here).
    pub(crate) async fn ensure_indexes(&self, generation: u32) -> Result<(), ReadModelError> {
        if generation == 0 || self.is_indexed(generation) {
            return Ok(());
        }
        let g = self.generation(generation);
        let index = |keys: Document| IndexModel::builder().keys(keys).build();
        // Sorts are (time desc, _id desc); `_id` stays out of the index keys because the
        // nx-27017 test server rejects every insert into a collection with a compound index
        // on `_id`. Ties within one millisecond are rare, so MongoDB sorts them in memory.
        g.courses
            .create_indexes([
                index(doc! { "created_at": -1 }),
                index(doc! { "status": 1, "created_at": -1 }),
                index(doc! { "instructor_id": 1, "created_at": -1 }),
                index(doc! { "category_key": 1, "created_at": -1 }),
            ])
            .await
            .map_err(classify)?;
        g.comments
            .create_index(index(doc! { "course_id": 1, "posted_at": -1 }))
            .await
            .map_err(classify)?;
        // A course's participants in join order; a user's courses, most recently joined first.
        g.participants
            .create_indexes([
                index(doc! { "course_id": 1, "state": 1, "version": 1 }),
                index(doc! { "user_id": 1, "state": 1, "joined_at": -1 }),
            ])
            .await
            .map_err(classify)?;
        // `applied_g{n}` is only queried by `_id`.
        if let Ok(mut indexed) = self.indexed.lock() {
            indexed.insert(generation);
        }
        Ok(())
    }

    fn is_indexed(&self, generation: u32) -> bool {
        self.indexed.lock().map(|set| set.contains(&generation)).unwrap_or(false)
    }

    fn forget_indexes(&self, generation: u32) {
        if let Ok(mut indexed) = self.indexed.lock() {
            indexed.remove(&generation);
        }
    }
}

/// Maps a driver error: connectivity is [`ReadModelError::Unavailable`] (retry later), the
/// rest is unexpected.
pub(crate) fn classify(err: mongodb::error::Error) -> ReadModelError {
    let unavailable = matches!(
        err.kind.as_ref(),
        ErrorKind::Io(_)
            | ErrorKind::ServerSelection { .. }
            | ErrorKind::ConnectionPoolCleared { .. }
            | ErrorKind::Shutdown
    ) || err.contains_label(mongodb::error::RETRYABLE_WRITE_ERROR);
    if unavailable {
        ReadModelError::Unavailable(err.into())
    } else {
        ReadModelError::Unexpected(err.into())
    }
}

/// True for MongoDB's duplicate key error (E11000).
pub(crate) fn is_duplicate_key(err: &mongodb::error::Error) -> bool {
    match err.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(e)) => e.code == DUPLICATE_KEY,
        ErrorKind::Command(e) => e.code == DUPLICATE_KEY,
        ErrorKind::InsertMany(e) => {
            e.write_errors.iter().flatten().any(|w| w.code == DUPLICATE_KEY)
        }
        _ => false,
    }
}
